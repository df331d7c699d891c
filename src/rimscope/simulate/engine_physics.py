"""Fourier-space physics for the lesion engine: dipole forward model, noise, residual background
and five inversion families, all on one local box.

The engine must make ~100 examples per second on 2 cores, so everything that can live in
k-space does: tissue texture and field noise are drawn as spectra (from a fixed pool of normal
deviates: no per-example random-number cost), the residual background is a handful of the
lowest Fourier modes, and every inversion is a filter — TKD, closed-form Tikhonov, closed-form
gradient (Laplacian) regularisation, a strong blur, and a few-iteration conjugate gradient whose
operator is diagonal in k-space (the unmasked box makes CG exact there, so its early-stopped
under-estimation is reproduced at the cost of elementwise products). One rfftn and two irfftn
per example. The box is periodic: it stands for tissue continuing on all sides.
"""
from __future__ import annotations

import functools

import numpy as np
from scipy import fft as sfft

from .physics import dipole_kernel, kspace_grid

POOL_SIZE = 1 << 22


@functools.lru_cache(maxsize=1)
def _pool() -> np.ndarray:
    return np.random.default_rng(20240611).standard_normal(POOL_SIZE, dtype=np.float32)


def normals(rng: np.random.Generator, n: int) -> np.ndarray:
    """n standard normal deviates: a random window of a fixed pool, random sign. Deterministic
    per rng state, essentially free; windows of different examples rarely overlap."""
    pool = _pool()
    if n > POOL_SIZE // 2:
        return rng.standard_normal(n, dtype=np.float32)
    start = int(rng.integers(0, POOL_SIZE - n))
    sign = np.float32(1.0 if rng.random() < 0.5 else -1.0)
    return pool[start:start + n] * sign


def half_weights(shape) -> np.ndarray:
    """Parseval weights of an rfftn half spectrum: 2 for bins standing for a conjugate pair."""
    n = shape[-1] // 2 + 1
    w = np.full(n, 2.0, np.float32)
    w[0] = 1.0
    if shape[-1] % 2 == 0:
        w[-1] = 1.0
    return w[None, None, :]


def laplacian_symbol(shape, zooms) -> np.ndarray:
    """|∇|² of forward differences in k-space (1/mm²), as physics._grad uses."""
    ks = kspace_grid(shape, zooms, real=True)
    return sum((4 * np.sin(np.pi * k * np.float32(z)) ** 2 / np.float32(z * z)) for k, z in zip(ks, zooms))


def k2(shape, zooms) -> np.ndarray:
    ks = kspace_grid(shape, zooms, real=True)
    return ks[0] ** 2 + ks[1] ** 2 + ks[2] ** 2


def complex_normals(rng, shape_half) -> np.ndarray:
    n = int(np.prod(shape_half))
    v = normals(rng, 2 * n)
    return (v[:n] + 1j * v[n:]).astype(np.complex64).reshape(shape_half)


def texture_spectrum(shape, zooms, amplitude: float, sigma_mm: float, rng) -> np.ndarray:
    """Spectrum of a smooth Gaussian random field of image-domain std ≈ amplitude (ppm)."""
    g = np.exp(np.float32(-2 * np.pi ** 2 * sigma_mm ** 2) * k2(shape, zooms)).astype(np.float32)
    g[0, 0, 0] = 0.0
    nvox = float(np.prod(shape))
    # image variance = Σ_half w E|T|² / N², E|Z|² = 2
    scale = amplitude * nvox / np.sqrt(2 * max(float((half_weights(shape) * g * g).sum()), 1e-12))
    return complex_normals(rng, g.shape) * (g * np.float32(scale))


def noise_spectrum(shape, sigma: float, rng) -> np.ndarray:
    """White image-domain noise of std sigma, drawn in k-space (unnormalised rfftn)."""
    half = (shape[0], shape[1], shape[-1] // 2 + 1)
    return complex_normals(rng, half) * np.float32(sigma * np.sqrt(np.prod(shape) / 2))


def background_spectrum(shape, amplitude: float, rng) -> np.ndarray:
    """A residual background field of robust amplitude ≈ `amplitude` ppm: random lowest modes."""
    half = (shape[0], shape[1], shape[-1] // 2 + 1)
    out = np.zeros(half, np.complex64)
    if amplitude <= 0:
        return out
    nvox = float(np.prod(shape))
    idx = [(i, j, k) for i in (0, 1, -1) for j in (0, 1, -1) for k in (0, 1) if (i, j, k) != (0, 0, 0)]
    vals = complex_normals(rng, (len(idx),))
    for (i, j, k), v in zip(idx, vals):
        out[i, j, k] = v
    w = half_weights(shape)[0, 0, :2]
    var = sum(float(abs(v) ** 2 * w[k]) for (i, j, k), v in zip(idx, vals)) / nvox ** 2
    # a 5-95 % range of about 3.3 std
    return out * np.float32(amplitude / 3.3 / np.sqrt(max(var, 1e-20)))


def cg_fourier(F: np.ndarray, D: np.ndarray, L: np.ndarray, lam: float, iterations: int,
               weights: np.ndarray) -> np.ndarray:
    """CG on (D² + λ|∇|²) χ = D f with the operator diagonal in k-space (no mask in the box)."""
    A = (D * D + np.float32(lam) * L).astype(np.float32)
    b = D * F
    x = np.zeros_like(b)
    r = b.copy()
    p = r.copy()

    def dot(u, v):
        return float((weights * (u.real * v.real + u.imag * v.imag)).sum())

    rs = dot(r, r)
    rs0 = rs
    for _ in range(int(iterations)):
        Ap = A * p
        alpha = rs / max(dot(p, Ap), 1e-30)
        x += np.float32(alpha) * p
        r -= np.float32(alpha) * Ap
        rs_new = dot(r, r)
        if rs_new < 1e-10 * rs0:
            break
        p = r + np.float32(rs_new / rs) * p
        rs = rs_new
    return x


def inversion_filter(kind: str, D, L, K2, params: dict) -> np.ndarray:
    """H(k) with χ̂ = H f̂, for the closed-form families; H(0) = 0 (the mean is unknown)."""
    if kind == "tkd":
        t = np.float32(params["threshold"])
        safe = np.where(D == 0, np.float32(1), D)
        H = np.where(np.abs(D) > t, 1.0 / safe, np.sign(D) / t)
    elif kind == "tikhonov":
        H = D / (D * D + np.float32(params["lambda"]))
    else:  # gradient, blur
        den = D * D + np.float32(params["lambda"]) * L
        den[0, 0, 0] = 1.0
        H = D / den
        if kind == "blur":
            H = H * np.exp(np.float32(-2 * np.pi ** 2 * params["blur_mm"] ** 2) * K2)
    H = H.astype(np.float32)
    H[0, 0, 0] = 0.0
    return H


def draw_inversion(rng, cfg) -> dict:
    names = list(cfg.inversions)
    p = np.array([cfg.inversions[k] for k in names], float)
    kind = str(names[rng.choice(len(names), p=p / p.sum())])

    def logu(r):
        return float(np.exp(rng.uniform(np.log(r[0]), np.log(r[1]))))

    if kind == "tkd":
        return {"kind": kind, "threshold": float(rng.uniform(*cfg.tkd_threshold))}
    if kind == "tikhonov":
        return {"kind": kind, "lambda": logu(cfg.tikhonov_lambda)}
    if kind == "gradient":
        return {"kind": kind, "lambda": logu(cfg.gradient_lambda)}
    if kind == "cg":
        return {"kind": kind, "lambda": logu(cfg.cg_lambda),
                "iterations": int(rng.integers(cfg.cg_iterations[0], cfg.cg_iterations[1] + 1))}
    return {"kind": kind, "lambda": logu(cfg.blur_lambda), "blur_mm": float(rng.uniform(*cfg.blur_mm))}


def field_and_qsm(chi: np.ndarray, zooms, b0, extra_chi_spectrum, noise_sigma: float,
                  background_ppm: float, inversion: dict, rng) -> tuple[np.ndarray, np.ndarray]:
    """Local field (ppm, with noise and residual background) and its QSM on the box."""
    shape = chi.shape
    D = dipole_kernel(shape, zooms, b0)
    X = sfft.rfftn(chi, workers=1)
    if extra_chi_spectrum is not None:
        X += extra_chi_spectrum
    F = (D * X).astype(np.complex64)
    F += noise_spectrum(shape, noise_sigma, rng)
    F += background_spectrum(shape, background_ppm, rng)
    field = sfft.irfftn(F, s=shape, workers=1).astype(np.float32)
    kind = inversion["kind"]
    if kind == "cg":
        Q = cg_fourier(F, D, laplacian_symbol(shape, zooms), inversion["lambda"],
                       inversion["iterations"], half_weights(shape))
    else:
        L = laplacian_symbol(shape, zooms) if kind in ("gradient", "blur") else None
        K2 = k2(shape, zooms) if kind == "blur" else None
        Q = F * inversion_filter(kind, D, L, K2, inversion)
    qsm = sfft.irfftn(Q, s=shape, workers=1).astype(np.float32)
    return field, qsm
