"""Real anatomy for simulated subjects: three MNI-space MS brains → tissue classes → χ and FLAIR.

Learning a rim detector on a sphere phantom teaches nothing about deep grey matter, veins and
cortex that surround real lesions, so the susceptibility background is built from real brains
(open_ms_data patients 07/19/26, CC-BY, Lesjak 2018): k-means tissue classes on T1+FLAIR, iron-rich
deep grey matter by an atlas-free position heuristic, smooth texture. The brains' own lesions
are painted over with normal-appearing white matter, so every lesion in a simulated subject is
one the simulator placed and knows the truth of.
"""
from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

DATA = Path(__file__).resolve().parent.parent / "data" / "open_ms_data"
# MNI152 1 mm grid after flipping the LAS arrays to RAS: world mm = index + ORIGIN
MNI_ORIGIN_RAS = np.array([-91.0, -126.0, -72.0])

# nominal susceptibility (ppm) and MNI position (centre mm, radii mm) of iron-rich nuclei; both
# hemispheres by mirroring x. Values follow in-vivo QSM atlases (e.g. Lim 2013, Zhang 2018).
DEEP_GM = {
    "globus_pallidus": ((19, -4, -1), (5, 8, 5), 0.14),
    "putamen": ((25, 2, 1), (6, 13, 8), 0.07),
    "caudate": ((13, 12, 10), (4, 9, 7), 0.06),
    "thalamus": ((11, -18, 7), (7, 11, 7), 0.02),
    "red_nucleus": ((5, -20, -8), (3, 3, 3), 0.12),
    "substantia_nigra": ((11, -17, -11), (4, 7, 3), 0.13),
    "dentate": ((14, -57, -33), (5, 6, 5), 0.10),
}


def _load_ras(path: Path) -> np.ndarray:
    img = nib.load(str(path))
    return np.ascontiguousarray(np.asarray(img.dataobj, dtype=np.float32)[::-1])


@dataclass
class Brain:
    """One host brain on its cropped 1 mm RAS box (world mm = index + origin)."""

    name: str
    origin: np.ndarray  # mm of voxel (0,0,0)
    brain: np.ndarray  # bool
    flair: np.ndarray  # normalised: brain median 1, own lesions painted over
    p_wm: np.ndarray  # soft tissue memberships
    p_gm: np.ndarray
    p_csf: np.ndarray
    deep_gm: np.ndarray  # nominal ppm of the nuclei (soft edges), 0 elsewhere


def _kmeans_1d(x: np.ndarray, k: int = 3, iters: int = 20) -> np.ndarray:
    c = np.percentile(x, np.linspace(15, 85, k))
    for _ in range(iters):
        lab = np.argmin(np.abs(x[:, None] - c[None, :]), axis=1)
        c = np.array([x[lab == j].mean() if np.any(lab == j) else c[j] for j in range(k)])
    return np.sort(c)


@functools.lru_cache(maxsize=3)
def load_brain(name: str) -> Brain:
    """Tissue classes of one host brain (cached per process: the same three brains serve all)."""
    folder = DATA / name
    flair = _load_ras(folder / "flair.nii.gz")
    t1 = _load_ras(folder / "t1.nii.gz")
    brain = _load_ras(folder / "brainmask.nii.gz") > 0
    own = _load_ras(DATA / "masks" / f"{name}_lesions.nii.gz") > 0
    sl = ndimage.find_objects(brain.astype(np.int8))[0]
    sl = tuple(slice(max(s.start - 4, 0), min(s.stop + 4, n)) for s, n in zip(sl, brain.shape))
    flair, t1, brain, own = flair[sl], t1[sl], brain[sl], own[sl]
    origin = MNI_ORIGIN_RAS + np.array([s.start for s in sl], float)

    fmed = np.median(flair[brain])
    tmed = np.median(t1[brain])
    flair, t1 = flair / fmed, t1 / tmed
    # paint the host's own lesions (dilated) with normal-appearing white matter
    paint = ndimage.binary_dilation(own, iterations=2) & brain
    x = t1[brain & ~paint]
    c = _kmeans_1d(x[:: 7])
    wm_sel = brain & ~paint & (t1 > (c[1] + c[2]) / 2)
    rng = np.random.default_rng(zlib.crc32(name.encode()))  # not hash(): salted per process
    for img in (flair, t1):
        vals = img[wm_sel]
        img[paint] = rng.choice(vals, int(paint.sum()))
        sm = ndimage.gaussian_filter(img, 0.7)
        img[paint] = sm[paint]
    # soft memberships from T1 (CSF dark, GM mid, WM bright), FLAIR breaks ties for CSF
    x = t1[brain]
    c = _kmeans_1d(x[:: 5])
    width = max((c[2] - c[0]) / 6, 1e-3)
    d = np.stack([-(t1 - cj) ** 2 / (2 * width ** 2) for cj in c])
    d -= d.max(0, keepdims=True)
    p = np.exp(d)
    p /= p.sum(0, keepdims=True)
    p *= brain
    p_csf, p_gm, p_wm = (p[i].astype(np.float32) for i in range(3))
    # deep grey matter: soft ellipsoids at MNI positions, not where CSF is
    idx = np.indices(brain.shape, dtype=np.float32)
    mm = [idx[i] + np.float32(origin[i]) for i in range(3)]
    deep = np.zeros(brain.shape, np.float32)
    for centre, radii, chi in DEEP_GM.values():
        for sx in (1, -1):
            q = sum(((mm[i] - (centre[i] * (sx if i == 0 else 1))) / radii[i]) ** 2 for i in range(3))
            deep = np.maximum(deep, np.float32(chi) / (1 + np.exp(np.minimum((q - 1.0) * 6, 60))))
    deep *= (1 - p_csf) * brain
    return Brain(name=name, origin=origin, brain=brain, flair=flair.astype(np.float32),
                 p_wm=p_wm, p_gm=p_gm, p_csf=p_csf, deep_gm=deep.astype(np.float32))


def smooth_noise(shape, sigma_vox: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-std smooth random field (texture, bias fields, rim heterogeneity)."""
    n = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox)
    return n / max(float(n.std()), 1e-9)


def tissue_chi(b: Brain, rng: np.random.Generator, cfg) -> tuple[np.ndarray, dict]:
    """Susceptibility (ppm) of the lesion-free brain on its 1 mm box, with the values drawn."""
    vals = {
        "wm": float(rng.uniform(*cfg.chi_wm)),
        "gm": float(rng.uniform(*cfg.chi_gm)),
        "csf": float(rng.uniform(*cfg.chi_csf)),
        "deep_gm_scale": float(rng.uniform(*cfg.chi_deep_gm_scale)),
    }
    chi = (b.p_wm * vals["wm"] + b.p_gm * vals["gm"] + b.p_csf * vals["csf"]).astype(np.float32)
    chi += b.deep_gm * np.float32(vals["deep_gm_scale"])
    chi += np.float32(cfg.texture_ppm) * smooth_noise(chi.shape, cfg.texture_mm, rng) * (1 - b.p_csf)
    chi *= b.brain
    return chi, vals
