"""Class-balanced sampling, single-process and distributed.

Rim+ lesions are 5-15 %: uniform batches would hold one or two positives, too few for the
supervised contrastive term and a noisy gradient for the focal loss. Each epoch draws len(data)
indices with probability ∝ 1/class count (with replacement). The distributed version draws the
*same* global sequence on every rank from a shared seed and gives rank r the slice r::world, so
ranks see disjoint samples and together exactly the single-process epoch.
"""
from __future__ import annotations

import numpy as np
import torch


def balanced_indices(y: np.ndarray, n: int, gen: torch.Generator, power: float = 1.0) -> np.ndarray:
    """n indices, class weights ∝ count^-power (power 1: balanced, 0: natural)."""
    y = np.asarray(y)
    counts = {c: (y == c).sum() for c in np.unique(y)}
    w = np.array([counts[c] ** -power for c in y], dtype=np.float64)
    w = torch.from_numpy(w / w.sum())
    return torch.multinomial(w, n, replacement=True, generator=gen).numpy()


def epoch_indices(y: np.ndarray, epoch: int, seed: int, rank: int = 0, world: int = 1,
                  sampler: str = "balanced", batch_size: int = 32) -> np.ndarray:
    """This rank's indices for `epoch`, a pure function of (seed, epoch): resuming a run or
    running it on N ranks replays the same global sequence. Trimmed to full batches per rank."""
    gen = torch.Generator().manual_seed(seed * 100003 + epoch)
    n = len(y)
    if sampler == "balanced":
        idx = balanced_indices(y, n, gen)
    elif sampler == "sqrt":
        idx = balanced_indices(y, n, gen, power=0.5)
    else:
        idx = torch.randperm(n, generator=gen).numpy()
    mine = idx[rank::world]
    per = len(idx) // world
    mine = mine[:per]
    if len(mine) >= batch_size:
        mine = mine[: (len(mine) // batch_size) * batch_size]
    return mine
