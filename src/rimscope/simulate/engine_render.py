"""Rendering susceptibility structures on the engine's acquisition box, with partial volume.

The box is the acquisition grid itself (anisotropic, oblique to the world), so what a voxel
holds is what a scanner voxel would average. Two cheap routes keep ~100 examples/s possible:
- lesions (core, rim band, mask) come from the shape's signed distance sampled at the voxel
  centres of a window around them, with a partial-volume ramp across each voxel's extent along
  the surface normal (thick slices blur what crosses them, as a slice profile does);
- large smooth structures (tubes for veins, spheres for deep grey matter and ventricles, a
  half-space for a grey-matter boundary) use squared distances that are separable in the grid
  indices (the grid is a rotation times a diagonal), with a partial-volume edge profile.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass
class BoxGrid:
    """world mm = R @ (zooms * index) + origin; R a rotation (grid axes in world columns)."""

    shape: tuple
    zooms: np.ndarray
    R: np.ndarray
    origin: np.ndarray

    @property
    def A(self) -> np.ndarray:
        return self.R * self.zooms[None, :]

    @property
    def affine(self) -> np.ndarray:
        aff = np.eye(4)
        aff[:3, :3] = self.A
        aff[:3, 3] = self.origin
        return aff

    def to_index(self, world) -> np.ndarray:
        return (self.R.T @ (np.asarray(world, float) - self.origin)) / self.zooms

    def _axes(self, c, scale):
        return [(np.arange(n, dtype=np.float32) * np.float32(z * s) + np.float32(ci)).reshape(
            [-1 if a == ax else 1 for a in range(3)])
            for ax, (n, z, s, ci) in enumerate(zip(self.shape, self.zooms, scale, c))]

    def sq_dist(self, p) -> np.ndarray:
        """|x - p|² (mm²) for every voxel, built from three 1-D terms."""
        c = self.R.T @ (self.origin - np.asarray(p, float))
        a = self._axes(c, (1, 1, 1))
        return a[0] ** 2 + a[1] ** 2 + a[2] ** 2

    def dot(self, p, d) -> np.ndarray:
        """(x - p)·d (mm) for every voxel."""
        dv = self.R.T @ np.asarray(d, float)
        a = self._axes(dv * (self.R.T @ (self.origin - np.asarray(p, float))), dv)
        return a[0] + a[1] + a[2]


def edge_profile(dist_in: np.ndarray, width: float) -> np.ndarray:
    """Voxel fraction inside a surface at signed depth `dist_in` (mm, > 0 inside)."""
    return np.clip(dist_in / np.float32(width) + np.float32(0.5), 0, 1)


def tube(grid: BoxGrid, p, d, radius: float) -> np.ndarray:
    """Occupancy of a straight tube (partial volume; thin tubes keep their volume, faint)."""
    d = np.asarray(d, float) / np.linalg.norm(d)
    t = grid.dot(p, d)
    dist2 = np.maximum(grid.sq_dist(p) - t * t, 0)
    dv = grid.R.T @ d
    w2 = float((grid.zooms ** 2 * (1 - dv ** 2)).sum() / 2)  # voxel extent across the tube
    if radius >= 0.5 * np.sqrt(w2):
        return edge_profile(np.float32(radius) - np.sqrt(dist2), np.sqrt(w2))
    s2 = w2 / 12 + radius ** 2 / 4
    amp = min(radius ** 2 / (2 * s2), 1.0)
    return (np.float32(amp) * np.exp(dist2 * np.float32(-0.5 / s2))).astype(np.float32)


def sphere(grid: BoxGrid, c, radius: float) -> np.ndarray:
    return edge_profile(np.float32(radius) - np.sqrt(grid.sq_dist(c)), float(grid.zooms.mean()))


def half_space(grid: BoxGrid, p, n) -> np.ndarray:
    return edge_profile(grid.dot(p, n), float(grid.zooms.mean()))


@dataclass
class LesionRender:
    window: tuple  # slices into the box
    core: np.ndarray  # voxel fraction inside the lesion
    rim: np.ndarray  # voxel fraction of rim band (truth indicator), 0 without rim
    rim_chi: np.ndarray  # rim susceptibility (ppm) including the variation along the rim


def render_lesion(grid: BoxGrid, shape, pose, centre_w, rim: dict | None, margin_mm: float) -> LesionRender | None:
    """Core and rim of one library shape at a pose, on the voxels of a window around it.

    The shape's signed distance d is sampled at voxel centres; a voxel's fraction below a level
    of d is a linear ramp across the voxel's extent along the local normal n (from the gradient
    of d), of width sqrt(Σ (n_j z_j)²): the box filter's own spread along n (exact for a plane
    along a grid axis), so thick slices get their wide partial volume and an isotropic voxel
    the same blur in every direction. `rim`: offset_mm, thickness_mm, amplitude_ppm, caps (unit
    vectors), threshold, variation, var_dir (shape frame); see engine.draw_rim."""
    L, s = pose
    radius = s * shape.extent + margin_mm
    ci = grid.to_index(centre_w)
    half = radius / grid.zooms
    lo = np.maximum(np.floor(ci - half).astype(int), 0)
    hi = np.minimum(np.ceil(ci + half).astype(int) + 1, np.array(grid.shape))
    if np.any(hi - lo < 2):
        return None
    idx = [np.arange(lo[a], hi[a], dtype=np.float64) for a in range(3)]
    M = L.T @ grid.A / s  # grid index -> shape-frame mm
    m0 = L.T @ (grid.origin - np.asarray(centre_w, float)) / s
    n = tuple(len(i) for i in idx)
    u = [np.broadcast_to(sum((M[d, a] * idx[a]).reshape([-1 if b == a else 1 for b in range(3)])
                             for a in range(3)) + m0[d], n).astype(np.float32) for d in range(3)]
    coords = np.stack([ui + np.float32(c) for ui, c in zip(u, shape.centre)]).reshape(3, -1)
    d = ndimage.map_coordinates(shape.sdf, coords, order=1, mode="nearest").reshape(n) * np.float32(s)
    g = np.gradient(d, *grid.zooms)
    gn = np.sqrt(g[0] ** 2 + g[1] ** 2 + g[2] ** 2) + np.float32(1e-6)
    z2 = (grid.zooms ** 2).astype(np.float32)
    w = np.sqrt(g[0] ** 2 * z2[0] + g[1] ** 2 * z2[1] + g[2] ** 2 * z2[2]) / gn
    w = np.maximum(w, np.float32(0.3))

    def below(level):  # voxel fraction with d < level
        return np.clip((np.float32(level) - d) / w + np.float32(0.5), 0, 1)

    core = below(0.0)
    window = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    if rim is None:
        z = np.zeros(n, np.float32)
        return LesionRender(window, core, z, z)
    th, off = rim["thickness_mm"], rim["offset_mm"]
    band = below(off + th / 2) - below(off - th / 2)
    r = np.sqrt(u[0] ** 2 + u[1] ** 2 + u[2] ** 2) + np.float32(1e-3)
    score = None
    for cap in rim["caps"]:
        sc = (u[0] * np.float32(cap[0]) + u[1] * np.float32(cap[1]) + u[2] * np.float32(cap[2])) / r
        score = sc if score is None else np.maximum(score, sc)
    capw = np.clip((score - np.float32(rim["threshold"])) / np.float32(0.08) + np.float32(0.5), 0, 1)
    ind = band * capw
    m = rim["var_dir"]
    mod = 1 + np.float32(rim["variation"]) * (u[0] * np.float32(m[0]) + u[1] * np.float32(m[1])
                                              + u[2] * np.float32(m[2])) / r
    return LesionRender(window, core, ind, ind * mod * np.float32(rim["amplitude_ppm"]))


def add_window(vol: np.ndarray, window: tuple, values: np.ndarray, scale: float = 1.0) -> None:
    vol[window] += values * np.float32(scale)


def render_flair(grid: BoxGrid, parts: dict, rng, cfg, noise) -> tuple[np.ndarray, dict]:
    """Raw FLAIR (arbitrary scanner scale): tissue levels, lesions bright (no rim), own
    resolution (blur), bias, Rician noise. `parts`: occupancy volumes by name."""
    c_les = float(rng.uniform(*cfg.flair_lesion_contrast))
    c_gm = float(rng.uniform(*cfg.flair_gm_contrast))
    csf = float(rng.uniform(0.15, 0.45))
    f = np.ones(grid.shape, np.float32)
    if "gm" in parts:
        f += np.float32(c_gm) * parts["gm"]
    if "ventricle" in parts:
        f += np.float32(csf - 1) * parts["ventricle"]
    if "deep_gm" in parts:
        f += np.float32(-0.05) * parts["deep_gm"]
    f += np.float32(c_les) * parts["lesions"]
    info = {"lesion_contrast": c_les, "gm_contrast": c_gm, "csf": csf, "blur_mm": 0.0}
    if rng.random() < cfg.p_flair_blur:
        b = float(rng.uniform(*cfg.flair_blur_mm))
        ax = int(rng.integers(3))
        sig = np.full(3, 0.3) * grid.zooms.min()
        sig[ax] = b
        f = ndimage.gaussian_filter(f, sig / 2.355 / grid.zooms, mode="wrap")
        info["blur_mm"], info["blur_axis"] = b, ax
    bias = float(rng.uniform(*cfg.flair_bias))
    g = rng.normal(size=3)
    f *= np.exp(np.float32(bias) * grid.dot(grid.origin + grid.A @ (np.array(grid.shape) / 2), g / np.linalg.norm(g))
                / np.float32(60.0))
    sd = float(rng.uniform(*cfg.flair_noise))
    n = f.size
    f = np.sqrt((f + np.float32(sd) * noise(rng, n).reshape(f.shape)) ** 2
                + (np.float32(sd) * noise(rng, n).reshape(f.shape)) ** 2)
    scale = float(rng.uniform(200, 2000))
    info.update(bias=bias, noise=sd, scale=scale)
    return (f * np.float32(scale)).astype(np.float32), info
