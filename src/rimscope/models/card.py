"""Model files: `weights.pt` (a plain dict of tensors) + `card.json` (what it is, how it was
made, its sha256).

Loading never unpickles code: `torch.load(..., weights_only=True)` only, and the card's sha256
must match, so a truncated download or a swapped file is refused with a clear message instead of
producing silent nonsense probabilities.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import torch

from ..errors import InputError
from ..patches import PatchConfig
from ..runtime import atomic_path, versions, write_json_atomic
from .base import RimModel

CARD_VERSION = 1


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_model(model: RimModel, directory, extra: dict | None = None) -> Path:
    """Write dir/weights.pt then dir/card.json (both atomic); returns the card path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / "weights.pt", suffix=".pt") as tmp:
        torch.save(model.state_dict(), tmp)
    card = {
        "card_version": CARD_VERSION,
        "name": model.name,
        "kind": model.kind,
        "config": model.config,
        "threshold": float(model.threshold),
        **({"calibration": [float(v) for v in model.calibration]} if hasattr(model, "calibration") else {}),
        "patch": model.patch_config.to_dict(),
        "weights": "weights.pt",
        "weights_sha256": sha256_file(directory / "weights.pt"),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        **model.card_extra,
        **(extra or {}),
    }
    write_json_atomic(directory / "card.json", card)
    return directory / "card.json"


def read_card(path) -> tuple[dict, Path]:
    path = Path(path)
    card_path = path / "card.json" if path.is_dir() else path
    if not card_path.exists():
        raise InputError("no model card here; give a folder with card.json (from `rimscope train`) "
                         "or the card itself", card_path)
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"model card is not valid JSON ({exc}); re-save or re-download the model",
                         card_path) from None
    for key in ("name", "config", "weights_sha256"):
        if key not in card:
            raise InputError(f"model card lacks {key!r}; it was not written by rimscope", card_path)
    return card, card_path


def load_model(path, device: str = "cpu") -> RimModel:
    """A model from its folder (or card.json): checks the weights' sha256, loads tensors only."""
    from .registry import build

    card, card_path = read_card(path)
    weights = card_path.parent / card.get("weights", "weights.pt")
    if not weights.exists():
        raise InputError("model weights missing; weights.pt must sit beside card.json", weights)
    digest = sha256_file(weights)
    if digest != card["weights_sha256"]:
        raise InputError(f"weights do not match their card (sha256 {digest[:12]}... != "
                         f"{card['weights_sha256'][:12]}...): the file is corrupted or from another "
                         "model; re-download or retrain it", weights)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to replace
        raise InputError(f"cannot read weights ({type(exc).__name__}); re-download or retrain",
                         weights) from None
    model = build(card["name"], **card["config"])
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise InputError(f"weights do not fit model {card['name']!r} ({str(exc)[:120]}); the card "
                         "and weights come from different models", weights) from None
    model.threshold = float(card.get("threshold", 0.5))
    if hasattr(model, "calibration"):
        model.calibration = tuple(float(v) for v in card.get("calibration", (1.0, 0.0)))
    if "patch" in card:
        model.patch_config = PatchConfig.from_dict(card["patch"])
    model.card_extra = {k: v for k, v in card.items() if k in ("training", "metrics", "pretraining")}
    model.card = card
    if hasattr(model, "net"):
        model.net.to(device).eval()
    return model
