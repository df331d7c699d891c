"""Rim voxel truth in the fine-tuning batches: the one place finetune.py asks for it.

Training data may carry `rim` (N, S, S, S) float, the fraction of each patch voxel that is rim
(the lesion engine's voxel truth; NaN rows where an example has none). The truth must see the
same rotation and flip as its patch, so it rides along as a fifth channel through `augment`,
which draws its random numbers per sample, not per channel: with or without the truth, the same
seed gives the same augmentation.

After training, `finish_head` checks that the kept voxel head learned a rim and picks the voxel
probability at which predict calls a voxel rim (the model's `rim_threshold`), on the held-out
examples: the head is trained on soft rim fractions, so a voxel that is one-third rim (rim in
the whole-brain truth, RIM_TRUTH_FRACTION) is predicted near 0.33, and a fixed 0.5 misses it.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from ..simulate.subject import RIM_TRUTH_FRACTION
from .augment import augment

log = logging.getLogger("rimscope")

# candidate voxel thresholds; predict's default (no validation rim truth) is 0.5
RIM_THRESHOLDS = tuple(np.round(np.arange(0.05, 0.8, 0.05), 2))


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


def _with_truth(p, truth) -> tuple[np.ndarray, np.ndarray]:
    """(p, truth) flattened per example, keeping only the examples whose rim truth is finite."""
    t = np.asarray(truth, np.float32).reshape(len(truth), -1)
    ok = np.isfinite(t).all(1)
    return np.asarray(p, np.float32).reshape(len(p), -1)[ok], t[ok]


def soft_dice(p, truth) -> float:
    """Soft Dice 2·Σ p·t / (Σ p + Σ t) of voxel probabilities against rim-fraction truth, over the
    examples whose truth is finite; NaN when no rim truth is there to match."""
    p, t = _with_truth(p, truth)
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


def choose_rim_threshold(p, truth) -> tuple[float, dict]:
    """(threshold, {threshold: Dice}): the voxel threshold whose mask (p >= t) best matches the
    rim truth (fraction >= RIM_TRUTH_FRACTION), by Dice pooled over every example that carries
    truth, Rim- ones included (so rims called on lesions without one count against it); 0.5 and
    an empty curve when no truth is there."""
    p, t = _with_truth(p, truth)
    t = t >= RIM_TRUTH_FRACTION
    n_true = int(t.sum())
    if n_true == 0:
        return 0.5, {}
    curve = {}
    for thr in RIM_THRESHOLDS:
        m = p >= thr
        curve[float(thr)] = round(float(2 * (m & t).sum() / (m.sum() + n_true)), 4)
    return max(curve, key=curve.get), curve


def finish_head(model, val, history: list, best_epoch: int, record: dict) -> None:
    """For a model with a voxel head: the collapsed-head warning (check_head) and the voxel
    threshold chosen on `val`'s rim truth, both into the training `record`."""
    if not model.has_voxel_head:
        return
    warning = check_head(history, best_epoch)
    if warning:
        log.warning(warning)
        record["warnings"] = [*record.get("warnings", []), warning]
    truth = getattr(val, "rim", None)  # None also when there is no validation data
    if truth is None or not len(val):
        return
    _, voxels = model.predict_with_rims(val.x)
    model.rim_threshold, curve = choose_rim_threshold(voxels, truth)
    record.update(rim_threshold=model.rim_threshold, rim_threshold_dice=curve)
    log.info("voxel rim threshold %.2f (validation Dice %.3f)", model.rim_threshold,
             curve.get(model.rim_threshold, float("nan")))
