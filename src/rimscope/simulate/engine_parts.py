"""The engine's smaller steps, each a function: veins and mimics, the user's mask errors, a field
of view that cuts the lesion, FLAIR normalised as for a whole brain, extra patch channels.

Split from engine.py so the example recipe there reads top to bottom; nothing here draws the
label, so the truth rule stays in one place.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..io import normalise_flair
from ..patches import PatchConfig, patch_transform, sample_grid
from . import engine_physics as phys
from .engine_render import tube
from .engine_shapes import unit


def sample_like_patch(volumes, centre_mm, affine, patch: PatchConfig) -> list:
    """Trilinear samples of box volumes on a lesion's patch grid (zero outside): the field and
    rim-truth channels, by the oblique sampler of sample_patch's QSM on exactly its grid."""
    m, t = patch_transform(centre_mm, affine, patch)
    return sample_grid(volumes, (0.0,) * len(volumes), m, t, patch.size, np.asarray(volumes[0].shape))


def veins_for(rng, cfg, grid, shp, pose, kind, r_eq) -> list:
    """(occupancy, ppm) of background veins (random or medullary-parallel) and the mimics."""
    out = []
    med_dir = unit(rng) if rng.random() < cfg.p_medullary else None
    for _ in range(int(rng.integers(cfg.n_veins[0], cfg.n_veins[1] + 1))):
        d = unit(rng) if med_dir is None else med_dir + 0.2 * unit(rng)
        d = d / np.linalg.norm(d)
        off = np.cross(d, unit(rng))
        p = off / max(np.linalg.norm(off), 1e-9) * rng.uniform(r_eq + 1, 20)
        out.append((tube(grid, p, d, float(rng.uniform(*cfg.vein_radius_mm))), float(rng.uniform(*cfg.vein_ppm))))
    if kind == "central_vein":
        out.append((tube(grid, np.zeros(3), unit(rng), float(rng.uniform(0.25, 0.6))),
                    float(rng.uniform(*cfg.vein_ppm))))
    if kind == "vein_edge":
        L, s = pose
        dirs = shp.surface_dirs
        j = int(rng.integers(len(dirs)))
        n = L @ dirs[j].astype(float)
        r_v = float(rng.uniform(*cfg.vein_radius_mm))
        # the edge along n: the shape's signed distance is ~0 there; approximate by its extent
        along = edge_distance(shp, dirs[j]) * s
        p = n * (along + r_v + rng.uniform(*cfg.vein_edge_gap_mm))
        tang = np.cross(n, unit(rng))
        out.append((tube(grid, p, tang / np.linalg.norm(tang), r_v), float(rng.uniform(*cfg.vein_ppm))))
    return out


def edge_distance(shp, direction) -> float:
    """Distance (shape mm) from the shape centre to its edge along a direction."""
    t = np.arange(0, shp.extent + 8, 0.25)
    pts = shp.centre[:, None] + np.asarray(direction, float)[:, None] * t[None, :]
    d = ndimage.map_coordinates(shp.sdf, pts, order=1, mode="nearest")
    out = np.flatnonzero(d > 0)
    return float(t[out[0]]) if out.size else float(shp.extent)


def mask_error(rng, cfg, mask: np.ndarray, labels: np.ndarray) -> str:
    """The user's segmentation: dilated or eroded by 1-2 voxels, or merged with its neighbour."""
    if (labels == 2).any() and rng.random() < cfg.p_merged:
        mask |= labels == 2
        labels[labels == 2] = 0
        return "merged"
    u = rng.random()
    k = int(rng.integers(cfg.mask_error_vox[0], cfg.mask_error_vox[1] + 1))
    if u < cfg.p_dilate:
        mask[:] = ndimage.binary_dilation(mask, iterations=k) & (labels == 0)
        return f"dilate{k}"
    if u < cfg.p_dilate + cfg.p_erode:
        er = ndimage.binary_erosion(mask, iterations=k)
        if er.sum() >= 4:
            mask[:] = er
            return f"erode{k}"
    return "none"


def fov_cut(rng, grid, arrays: dict, extent_mm: float):
    """Crop the box so the field of view ends across the lesion (keeping >= 1/3 of the mask)."""
    ax = int(rng.integers(3))
    lab = arrays["labels"]
    idx = np.argwhere(lab == 1)[:, ax]
    cut = int(rng.integers(idx.min(), idx.max() + 1)) if idx.max() > idx.min() else int(idx.min())
    keep_hi = rng.random() < 0.5
    sl = [slice(None)] * 3
    sl[ax] = slice(cut, None) if keep_hi else slice(0, cut + 1)
    sl = tuple(sl)
    if (lab[sl] == 1).sum() < max(2, (lab == 1).sum() / 3):
        return arrays, grid.origin, "none"
    start = np.zeros(3)
    start[ax] = sl[ax].start or 0
    return {k: np.ascontiguousarray(v[sl]) for k, v in arrays.items()}, grid.origin + grid.A @ start, f"axis{ax}"


def normalise_like_brain(flair: np.ndarray, info: dict, rng) -> tuple[np.ndarray, float]:
    """FLAIR normalised as io.load_subject does for a whole brain: normalise_flair's statistics
    over the box plus a whole-brain-like sample of tissue levels (WM, GM, CSF, lesions) at the
    same scale and noise, so the box's own composition does not set the scale."""
    n = 6000
    levels = np.array([1.0, 1 + info["gm_contrast"], info["csf"], 1 + info["lesion_contrast"]])
    which = rng.choice(4, n, p=[0.45, 0.4, 0.1, 0.05])
    ref = levels[which] * (1 + info["noise"] * phys.normals(rng, n)) * info["scale"]
    stats = np.concatenate([ref.astype(np.float32), flair[::3, ::3, ::3].ravel()])
    out, zero = normalise_flair(stats, np.ones(stats.shape, bool))
    scale = float(stats[0] / (out[0] - zero)) if out[0] != zero else 1.0
    med = -zero * scale
    return ((flair - np.float32(med)) / np.float32(scale)).astype(np.float32), zero
