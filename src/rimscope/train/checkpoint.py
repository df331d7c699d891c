"""Per-epoch training checkpoints (atomic) for `--resume`.

Everything is tensors, numbers and strings, so it loads with `torch.load(weights_only=True)`.
A fingerprint of the run (model, options, seed, data sizes) is stored and checked: resuming a
different run from a stale checkpoint is refused instead of silently mixing the two.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import InputError
from ..runtime import atomic_path

NAME = "checkpoint.pt"


def save(out, fingerprint: str, net, opt, sched, w, state: dict) -> None:
    out = Path(out)
    blob = {"fingerprint": fingerprint, "net": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "opt": opt.state_dict(), "sched": sched.state_dict(), "w": w.detach().cpu(),
            "state": {**state, "history": json.dumps(state["history"])}}
    with atomic_path(out / NAME, suffix=".pt") as tmp:
        torch.save(blob, tmp)


def load(out, fingerprint: str) -> dict | None:
    f = Path(out) / NAME
    if not f.exists():
        return None
    try:
        blob = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"checkpoint unreadable ({type(exc).__name__}); delete it to start over", f) from None
    if blob.get("fingerprint") != fingerprint:
        raise InputError("checkpoint belongs to a different run (model, options, seed or data "
                         "differ); use another -o/--output or delete the checkpoint to start over", f)
    blob["state"]["history"] = json.loads(blob["state"]["history"])
    return blob
