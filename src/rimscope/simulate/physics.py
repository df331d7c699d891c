"""Dipole physics: susceptibility → field, and the dipole inversions that make QSM look like QSM.

A rim detector must learn on maps with the artefacts of real reconstructions (streaking along the
magic-angle cone, blurring, under-estimation, residual background), so χ is pushed through the
forward model and back through a real inversion instead of being written out directly.
All arrays are on a regular grid with voxel sizes `zooms` (mm) and B0 given as a unit vector in
the grid's own (orthonormal) axes. Written with numpy/scipy FFT only.
"""
from __future__ import annotations

import numpy as np
from scipy import fft as sfft

from ..dipole import WORKERS, dipole_kernel, kspace_grid, tkd  # noqa: F401 (re-exported)
from ..dipole import padded_shape as _padded_shape


def forward_field(chi: np.ndarray, zooms, b0=(0.0, 0.0, 1.0), pad_frac: float = 0.5) -> np.ndarray:
    """Field (ppm of B0) of χ (ppm), zero-padded so the periodic FFT does not wrap around."""
    shape = chi.shape
    pshape = _padded_shape(shape, pad_frac)
    D = dipole_kernel(pshape, zooms, b0)
    F = sfft.rfftn(chi.astype(np.float32), s=pshape, workers=WORKERS)
    F *= D
    out = sfft.irfftn(F, s=pshape, workers=WORKERS)
    return np.ascontiguousarray(out[: shape[0], : shape[1], : shape[2]], dtype=np.float32)


def _grad(x, zooms):
    return [(np.roll(x, -1, axis=a) - x) / np.float32(z) for a, z in enumerate(zooms)]


def _grad_adj(gs, zooms):
    out = np.zeros_like(gs[0])
    for a, (g, z) in enumerate(zip(gs, zooms)):
        out += (np.roll(g, 1, axis=a) - g) / np.float32(z)
    return out


def cg_l2(field: np.ndarray, mask: np.ndarray, zooms, b0, lam: float = 0.01, iterations: int = 20,
          pad_frac: float = 0.12) -> np.ndarray:
    """Iterative L2 inversion: CG on (Dᴴ M D + λ ∇ᴴ∇) χ = Dᴴ M f, data fitted only inside the mask.

    The mask weighting (unlike closed-form Tikhonov) is what makes it iterative; few iterations and
    the gradient penalty give the blurring and under-estimation of real regularised QSM.
    """
    shape = field.shape
    pshape = _padded_shape(shape, pad_frac)
    D = dipole_kernel(pshape, zooms, b0)
    M = np.zeros(pshape, np.float32)
    M[: shape[0], : shape[1], : shape[2]] = mask
    f = np.zeros(pshape, np.float32)
    f[: shape[0], : shape[1], : shape[2]] = field * mask
    lam = np.float32(lam)

    def Dop(x):
        return sfft.irfftn(sfft.rfftn(x, workers=WORKERS) * D, s=pshape, workers=WORKERS).astype(np.float32)

    def A(x):
        return Dop(M * Dop(x)) + lam * _grad_adj(_grad(x, zooms), zooms)

    b = Dop(M * f)
    x = np.zeros(pshape, np.float32)
    r = b.copy()
    p = r.copy()
    rs = float(np.vdot(r, r))
    rs0 = rs
    for _ in range(int(iterations)):
        Ap = A(p)
        alpha = rs / max(float(np.vdot(p, Ap)), 1e-30)
        x += np.float32(alpha) * p
        r -= np.float32(alpha) * Ap
        rs_new = float(np.vdot(r, r))
        if rs_new < 1e-10 * rs0:
            break
        p = r + np.float32(rs_new / rs) * p
        rs = rs_new
    return (x[: shape[0], : shape[1], : shape[2]] * mask).astype(np.float32)


def background_field(shape, zooms, rng: np.random.Generator, amplitude: float, b0) -> np.ndarray:
    """Residual background: a random smooth low-order polynomial plus far dipoles outside the brain
    (air/bone interfaces), scaled so its robust amplitude inside the volume is `amplitude` ppm."""
    if amplitude <= 0:
        return np.zeros(shape, np.float32)
    coords = [((np.arange(n) - (n - 1) / 2) * z / 80.0).astype(np.float32) for n, z in zip(shape, zooms)]
    X, Y, Z = np.meshgrid(*coords, indexing="ij", sparse=True)
    terms = [X, Y, Z, X * X, Y * Y, Z * Z, X * Y, X * Z, Y * Z]
    c = rng.normal(0, 1, len(terms)).astype(np.float32)
    bg = sum(ci * t for ci, t in zip(c, terms)) + np.zeros(shape, np.float32)
    # far dipoles (sinus-like): field of a point dipole along b0, centred just outside the box
    b0 = np.asarray(b0, float) / np.linalg.norm(b0)
    half = np.array([n * z / 2 for n, z in zip(shape, zooms)])
    for _ in range(rng.integers(1, 4)):
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        pos = d * (half * rng.uniform(0.9, 1.2))
        rx, ry, rz = (X * 80 - pos[0]), (Y * 80 - pos[1]), (Z * 80 - pos[2])
        r2 = rx * rx + ry * ry + rz * rz + 25.0
        cos = (rx * b0[0] + ry * b0[1] + rz * b0[2]) / np.sqrt(r2)
        bg += rng.normal(0, 1) * 2e4 * (3 * cos * cos - 1) / r2 ** 1.5
    lo, hi = np.percentile(bg[:: 4, :: 4, :: 4], [5, 95])
    return (bg - np.median(bg)) * np.float32(amplitude / max(hi - lo, 1e-9))


def sphere_field_analytic(coords_mm: np.ndarray, radius: float, chi: float, b0=(0, 0, 1)) -> np.ndarray:
    """Analytic field of a uniformly magnetised sphere outside it (Lorentz-corrected, ppm):
    χ a³/3 (3cos²θ - 1)/r³; inside it is 0 with the Lorentz sphere correction."""
    b0 = np.asarray(b0, float) / np.linalg.norm(b0)
    r = np.linalg.norm(coords_mm, axis=-1)
    cos = (coords_mm @ b0) / np.maximum(r, 1e-9)
    out = chi * radius ** 3 / 3 * (3 * cos ** 2 - 1) / np.maximum(r, 1e-9) ** 3
    return np.where(r > radius, out, 0.0)
