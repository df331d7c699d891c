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
