"""Rim voxel truth in the fine-tuning batches: the one place finetune.py asks for it.

Training data may carry `rim` (N, S, S, S) float, the fraction of each patch voxel that is rim
(the lesion engine's voxel truth; NaN rows where an example has none). The truth must see the
same rotation and flip as its patch, so it rides along as a fifth channel through `augment`,
which draws its random numbers per sample, not per channel: with or without the truth, the same
seed gives the same augmentation.
"""
from __future__ import annotations

import numpy as np
import torch

from .augment import augment


def rim_batch(data, index) -> torch.Tensor | None:
    """The batch's rim voxel truth, or None when the data carries none."""
    rim = getattr(data, "rim", None)
    if rim is None:
        return None
    return torch.from_numpy(np.asarray(rim[np.asarray(index)], np.float32))


def augment_with_rim(x: torch.Tensor, rim: torch.Tensor | None, gen: torch.Generator,
                     offset_ppm: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    if rim is None:
        return augment(x, gen, offset_ppm), None
    out = augment(torch.cat([x, rim[:, None].to(x.dtype)], dim=1), gen, offset_ppm)
    return out[:, :-1].contiguous(), out[:, -1].contiguous()


def soft_dice(p, truth) -> float:
    """Soft Dice 2·Σ p·t / (Σ p + Σ t) of voxel probabilities against rim-fraction truth, over the
    examples whose truth is finite; NaN when no rim truth is there to match."""
    t = np.asarray(truth, np.float32).reshape(len(truth), -1)
    ok = np.isfinite(t).all(1)
    p, t = np.asarray(p, np.float32).reshape(len(p), -1)[ok], t[ok]
    ts = float(t.sum())
    return float(2 * (p * t).sum() / (p.sum() + ts)) if ts > 0 else float("nan")


# below this validation soft Dice a voxel head has learned no rim: its masks come out empty
MIN_HEAD_DICE = 0.05


def check_head(history: list, best_epoch: int) -> str | None:
    """A warning when the kept epoch's voxel head learned no rim (None when fine or unmeasured)."""
    d = next((e.get("val_rim_dice") for e in history if e["epoch"] == best_epoch), None)
    if d is None or not np.isfinite(d) or d >= MIN_HEAD_DICE:
        return None
    return (f"the voxel head learned no rim (validation rim Dice {d:.3f} at epoch {best_epoch}): its "
            "rim masks will be empty; train it longer or from scratch, or drop model.rim_head")
