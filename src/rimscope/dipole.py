"""Dipole physics shared by every stage: the dipole kernel and the closed-form inversion (TKD).

The simulator pushes susceptibility through the forward model and back through real inversions
(rimscope.simulate.physics); the phase input turns a local field into susceptibility with the same
TKD (rimscope.phase), and the sign check reads the tail of one (rimscope.phase_sign). Arrays are on
a regular grid with voxel sizes `zooms` (mm) and B0 a unit vector in the grid's own axes.
"""
from __future__ import annotations

import numpy as np
from scipy import fft as sfft

WORKERS = 2


def padded_shape(shape, pad_frac: float):
    return tuple(sfft.next_fast_len(int(np.ceil(n * (1 + pad_frac))), real=True) for n in shape)


def kspace_grid(shape, zooms, real: bool = True):
    """Spatial frequencies (cycles/mm) per axis, broadcastable, for rfftn layout when real."""
    ks = []
    for ax, (n, z) in enumerate(zip(shape, zooms)):
        if real and ax == len(shape) - 1:
            k = np.fft.rfftfreq(n, d=z)
        else:
            k = np.fft.fftfreq(n, d=z)
        sh = [1] * len(shape)
        sh[ax] = k.size
        ks.append(k.reshape(sh).astype(np.float32))
    return ks


def dipole_kernel(shape, zooms, b0=(0.0, 0.0, 1.0), real: bool = True) -> np.ndarray:
    """D(k) = 1/3 - (k·b0)²/|k|², D(0) = 0 (the mean field is unknown / referenced away)."""
    b0 = np.asarray(b0, float)
    b0 = b0 / np.linalg.norm(b0)
    ks = kspace_grid(shape, zooms, real)
    # the Nyquist bin of an even axis stands for both +k and -k: average (k·b0)² over the two
    # signs (drop its cross terms) so D is symmetric and does not depend on which axis rfftn halves
    kb = np.zeros([1] * 3, np.float32)
    nyq_sq = np.zeros([1] * 3, np.float32)
    for ax, (k, n) in enumerate(zip(ks, shape)):
        nyq = np.zeros(k.shape, bool)
        if n % 2 == 0:
            nyq.flat[n // 2 if not (real and ax == 2) else -1] = True
        kb = kb + np.where(nyq, 0, k) * np.float32(b0[ax])
        nyq_sq = nyq_sq + np.where(nyq, k * k, 0) * np.float32(b0[ax] ** 2)
    k2 = ks[0] ** 2 + ks[1] ** 2 + ks[2] ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.float32(1 / 3) - (kb * kb + nyq_sq) / k2
    d[0, 0, 0] = 0.0
    return d.astype(np.float32)


def tkd(field: np.ndarray, mask: np.ndarray, zooms, b0, threshold: float = 0.15,
        pad_frac: float = 0.25) -> np.ndarray:
    """Truncated k-space division: 1/D where |D| > t, else sign(D)/t. Streaks and underestimates."""
    shape = field.shape
    pshape = padded_shape(shape, pad_frac)
    D = dipole_kernel(pshape, zooms, b0)
    inv = np.where(np.abs(D) > threshold, 1.0 / np.where(D == 0, 1, D),
                   np.sign(D) / threshold).astype(np.float32)
    inv[0, 0, 0] = 0.0
    F = sfft.rfftn((field * mask).astype(np.float32), s=pshape, workers=WORKERS)
    F *= inv
    chi = sfft.irfftn(F, s=pshape, workers=WORKERS)[: shape[0], : shape[1], : shape[2]]
    return (chi * mask).astype(np.float32)
