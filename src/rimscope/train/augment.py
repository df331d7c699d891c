"""Physics-aware augmentation of raw patches (B0 on the last axis).

QSM contrast depends on orientation to B0 (dipole streaking, vein appearance), so only
transformations that keep B0 fixed are allowed: rotations about the last axis (90° multiples,
exact) and flips of any axis (the dipole kernel is symmetric under them). QSM stays in ppm: only
a small global offset jitter, as different reference regions would give.
"""
from __future__ import annotations

import torch


def augment(x: torch.Tensor, gen: torch.Generator, offset_ppm: float = 0.01) -> torch.Tensor:
    """x (N, 4, S, S, S) raw; one random transform per sample, drawn from `gen` (CPU)."""
    n = x.shape[0]
    k = torch.randint(0, 4, (n,), generator=gen)
    flips = torch.rand(n, 3, generator=gen) < 0.5
    off = (torch.rand(n, generator=gen) * 2 - 1) * offset_ppm
    out = []
    for i in range(n):
        xi = x[i]
        if k[i]:
            xi = torch.rot90(xi, int(k[i]), dims=(1, 2))  # about the B0 (last) axis
        dims = [d + 1 for d in range(3) if flips[i, d]]
        if dims:
            xi = torch.flip(xi, dims)
        out.append(xi)
    out = torch.stack(out)
    out[:, 0] = out[:, 0] + off.to(out.device, out.dtype)[:, None, None, None]
    return out
