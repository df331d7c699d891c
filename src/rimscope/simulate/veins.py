"""Veins: thin paramagnetic tubes (+0.2..+0.5 ppm) that look like rims when they pass a lesion.

Veins are the commonest rim mimic on real QSM (a vein along a lesion edge, the central vein of
a lesion), so the simulator draws tortuous white-matter veins, medullary veins radiating from
the ventricles, and veins placed on purpose at lesion edges and centres. Tubes are rendered with
sub-voxel partial volume (distance to the centre line), so thin veins are faint, as in vivo.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from .acquisition import ModelGrid


@dataclass
class Vein:
    points: np.ndarray  # (n, 3) head mm, spaced ~0.25 mm
    radius: float  # mm
    chi: float  # ppm
    kind: str  # "wm", "medullary", "touch", "central"


def densify(points: np.ndarray, step: float = 0.25) -> np.ndarray:
    out = [points[:1]]
    for a, b in zip(points[:-1], points[1:]):
        n = max(int(np.ceil(np.linalg.norm(b - a) / step)), 1)
        t = (np.arange(1, n + 1) / n)[:, None]
        out.append(a + t * (b - a))
    return np.concatenate(out)


def tortuous_path(start, direction, length, rng, persistence=0.15, step=0.5) -> np.ndarray:
    d = np.asarray(direction, float)
    d /= np.linalg.norm(d)
    pts = [np.asarray(start, float)]
    for _ in range(int(length / step)):
        d = d + rng.normal(0, persistence, 3)
        d /= np.linalg.norm(d)
        pts.append(pts[-1] + step * d)
    return densify(np.array(pts))


def line_through(point, direction, half_length, rng, bend=0.05) -> np.ndarray:
    """A gently curved line centred on `point` (used for central and edge veins)."""
    d = np.asarray(direction, float)
    d /= np.linalg.norm(d)
    t = np.linspace(-half_length, half_length, max(int(2 * half_length / 0.5), 3))
    perp = np.cross(d, rng.normal(size=3))
    perp /= max(np.linalg.norm(perp), 1e-9)
    curve = bend * (t ** 2) / max(half_length, 1.0)
    return densify(point + t[:, None] * d + curve[:, None] * perp)


def random_veins(rng, cfg, p_wm_at, n_wm: int, n_med: int) -> list[Vein]:
    """Tortuous veins started in white matter and medullary veins radiating from the ventricles.
    `p_wm_at(mm_points)` gives the white-matter membership, used to keep starts in white matter."""
    veins = []
    tries = 0
    while len(veins) < n_wm and tries < n_wm * 50:
        tries += 1
        start = rng.uniform([-55, -90, -25], [55, 60, 55])
        if p_wm_at(start[None])[0] < 0.6:
            continue
        path = tortuous_path(start, rng.normal(size=3), rng.uniform(10, 40), rng)
        veins.append(Vein(path, float(rng.uniform(*cfg.vein_radius_mm)), float(rng.uniform(*cfg.vein_chi)), "wm"))
    tries = 0
    centre = np.array([0.0, -10.0, 15.0])  # roughly the lateral ventricles' middle
    while sum(v.kind == "medullary" for v in veins) < n_med and tries < n_med * 50:
        tries += 1
        side = rng.choice([-1, 1])
        start = np.array([side * rng.uniform(12, 22), rng.uniform(-40, 25), rng.uniform(0, 30)])
        if p_wm_at(start[None])[0] < 0.4:
            continue
        d = start - centre
        d[0] *= 2.0
        path = tortuous_path(start, d, rng.uniform(15, 35), rng, persistence=0.06)
        r = float(rng.uniform(cfg.vein_radius_mm[0], np.mean(cfg.vein_radius_mm)))
        veins.append(Vein(path, r, float(rng.uniform(*cfg.vein_chi)), "medullary"))
    return veins


def render_veins(chi: np.ndarray, grid: ModelGrid, veins: list[Vein], inside: np.ndarray | None = None) -> None:
    """Add tubes to a model-grid χ in place: value = chi × fraction of the voxel inside the tube."""
    if not veins:
        return
    h = grid.h
    for v in veins:
        idx = grid.to_index(v.points)
        reach = int(np.ceil((v.radius + h) / h)) + 1
        # candidate voxels: those within `reach` of a centre-line point
        shp = np.array(chi.shape)
        base = np.round(idx[:: max(1, int(h / 0.25 / 2))]).astype(np.int64)
        off = np.stack(np.meshgrid(*[np.arange(-reach, reach + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
        cand = (base[:, None, :] + off[None]).reshape(-1, 3)
        cand = cand[np.all((cand >= 0) & (cand < shp), axis=1)]
        if cand.size == 0:
            continue
        lin = np.unique(np.ravel_multi_index(cand.T, chi.shape))  # 1-D unique: fast
        cand = np.stack(np.unravel_index(lin, chi.shape), axis=1)
        if cand.size == 0:
            continue
        dist, _ = cKDTree(v.points).query(grid.to_mm(cand), distance_upper_bound=v.radius + 2 * h)
        frac = np.clip((v.radius - dist) / h + 0.5, 0, 1)
        keep = frac > 0
        c = cand[keep]
        f = frac[keep].astype(np.float32)
        if inside is not None:
            f *= inside[c[:, 0], c[:, 1], c[:, 2]]
        cur = chi[c[:, 0], c[:, 1], c[:, 2]]
        chi[c[:, 0], c[:, 1], c[:, 2]] = np.maximum(cur, cur + f * (np.float32(v.chi) - cur))
