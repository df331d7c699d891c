"""Synthetic lesion patches with a known rim, for tests and `rimscope bench models`.

Not a simulator (that is rimscope.simulate): just patches shaped like rimscope.patches' output
(QSM ppm, FLAIR, mask, signed distance/6 mm) where Rim+ lesions carry a paramagnetic shell, so
speed can be measured and "can this model learn anything" tested without NIfTI files.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def synthetic_patches(n: int, seed: int = 0, pos_frac: float = 0.3, size: int = 32, rim_ppm: float = 0.05,
                      noise_ppm: float = 0.01):
    """-> x (n, 4, S, S, S) float32, y (n,) int64, subject (n,) str (4 lesions per subject)."""
    rng = np.random.default_rng(seed)
    zz = np.indices((size,) * 3).astype(np.float32) - (size - 1) / 2
    x = np.zeros((n, 4, size, size, size), np.float32)
    y = (rng.random(n) < pos_frac).astype(np.int64)
    if n >= 2:
        y[0], y[1] = 1, 0
    for i in range(n):
        c = rng.uniform(-2, 2, 3)
        radii = rng.uniform(2.5, 6.0) * rng.uniform(0.8, 1.25, 3)
        r = np.sqrt((((zz - c[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0))
        mask = r <= 1.0
        sd = ndimage.distance_transform_edt(~mask) - ndimage.distance_transform_edt(mask)
        q = rng.normal(0, noise_ppm, mask.shape) + rng.uniform(-0.02, 0.03) * mask
        if y[i]:
            q += rim_ppm * (np.abs(sd) <= 1.0)
        f = rng.normal(0, 0.1, mask.shape) + rng.uniform(0.5, 1.5) * mask
        x[i] = [ndimage.gaussian_filter(q, 0.6), f, mask, np.clip(sd, -6, 6) / 6.0]
    subject = np.array([f"s{i // 4:03d}" for i in range(n)], dtype=object)
    return x, y, subject
