"""FLAIR synthesis: the host brain's real FLAIR, lesions hyperintense, scanner bias and noise.

FLAIR is the structural context the asymmetric model conditions on; it must show every lesion
(with variable contrast) but never the rim, so a model cannot read the label off FLAIR.
"""
from __future__ import annotations

import numpy as np


def bias_field(shape, zooms, rng, strength: float) -> np.ndarray:
    """A smooth multiplicative field exp(low-order polynomial), max deviation ~ `strength`."""
    coords = [((np.arange(n) - (n - 1) / 2) * z / 100.0).astype(np.float32) for n, z in zip(shape, zooms)]
    X, Y, Z = np.meshgrid(*coords, indexing="ij", sparse=True)
    c = rng.normal(0, 1, 6).astype(np.float32)
    poly = c[0] * X + c[1] * Y + c[2] * Z + c[3] * X * X + c[4] * Y * Y + c[5] * Z * Z
    poly = poly + np.zeros(shape, np.float32)
    poly /= max(float(np.abs(poly).max()), 1e-6)
    return np.exp(np.float32(strength) * poly).astype(np.float32)


def finish_flair(flair: np.ndarray, brain: np.ndarray, zooms, rng, cfg) -> tuple[np.ndarray, dict]:
    """Bias, Rician-like noise and an arbitrary scanner scale; zero outside the brain (skull-stripped)."""
    bias = float(rng.uniform(*cfg.flair_bias))
    noise = float(rng.uniform(*cfg.flair_noise)) / np.sqrt(max(float(np.prod(zooms)), 0.1))
    scale = float(rng.uniform(200, 2000))
    out = flair * bias_field(flair.shape, zooms, rng, bias)
    n1 = rng.standard_normal(flair.shape, dtype=np.float32) * np.float32(noise)
    n2 = rng.standard_normal(flair.shape, dtype=np.float32) * np.float32(noise)
    out = np.sqrt((out + n1) ** 2 + n2 ** 2) * np.float32(scale)
    out *= brain
    return out.astype(np.float32), {"bias": bias, "noise": noise, "scale": scale}
