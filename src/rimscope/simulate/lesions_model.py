"""Which lesions a subject has, what each one is (Rim+, partial rim, mimic), and its χ and FLAIR.

This is where the truth is decided, so the rules are explicit and recorded per lesion:
- Rim+ iff a rim covers ≥ 2/3 of the edge (NAIMS consensus); partial rims cover less;
- larger lesions carry rims more often (log-odds linear in log volume), but weakly enough that
  volume alone does not solve the task;
- hard negatives: diffusely hyperintense cores without rim, veins running along the edge, and
  central veins; cores may be hypo-, iso- or hyperintense;
- the rim is a 1-2 voxel band at the lesion edge covering one contiguous patch of the surface.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .acquisition import ModelGrid
from .anatomy import MNI_ORIGIN_RAS, smooth_noise
from .library import LibLesion, donor_lesions, donors
from .veins import Vein, line_through

MEDIAN_VOLUME_MM3 = 60.0


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


@dataclass
class Placed:
    lib: LibLesion
    window: tuple  # slices into the model grid
    mask: np.ndarray  # bool in window
    truth: dict = field(default_factory=dict)


def n_lesions(rng, cfg) -> int:
    n = rng.lognormal(np.log(cfg.lesions_median), cfg.lesions_sigma)
    return int(np.clip(round(n), *cfg.lesions_range))


def _on_model(lib: LibLesion, grid: ModelGrid):
    """The 1 mm donor crop resampled onto the model grid (smooth edges), with its window."""
    lo_mm = lib.corner + MNI_ORIGIN_RAS - 1.0
    hi_mm = lib.corner + MNI_ORIGIN_RAS + np.array(lib.mask.shape) + 0.0
    lo = np.maximum(np.floor(grid.to_index(lo_mm)).astype(int), 0)
    hi = np.minimum(np.ceil(grid.to_index(hi_mm)).astype(int) + 1, np.array(grid.shape))
    if np.any(hi - lo < 2):
        return None, None
    idx = [np.arange(lo[i], hi[i]) for i in range(3)]
    mm = [grid.origin[i] + grid.h * idx[i] for i in range(3)]
    src = [mm[i] - (lib.corner[i] + MNI_ORIGIN_RAS[i]) for i in range(3)]
    coords = np.meshgrid(*src, indexing="ij")
    soft = ndimage.gaussian_filter(np.pad(lib.mask.astype(np.float32), 2), 0.5)
    vals = ndimage.map_coordinates(soft, [c + 2 for c in coords], order=1, cval=0.0)
    mask = vals >= 0.5
    if not mask.any():
        return None, None
    return tuple(slice(a, b) for a, b in zip(lo, hi)), mask


def select_lesions(rng, cfg, grid: ModelGrid, brain_m: np.ndarray, labels: np.ndarray) -> list[Placed]:
    """Real lesions from several donors at their own MNI positions, not touching each other."""
    target = n_lesions(rng, cfg)
    pool_donors = list(rng.permutation(donors()))
    k = int(rng.integers(cfg.donors_per_subject[0], cfg.donors_per_subject[1] + 1))
    placed: list[Placed] = []
    gap = max(int(round(1.5 / grid.h)), 1)
    while len(placed) < target and pool_donors:
        chosen, pool_donors = pool_donors[:k], pool_donors[k:]
        cands = [l for d in chosen for l in donor_lesions(d, cfg.lesion_min_mm3, cfg.lesion_max_mm3)]
        for j in rng.permutation(len(cands)):
            if len(placed) >= target:
                break
            win, mask = _on_model(cands[j], grid)
            if win is None:
                continue
            if brain_m[win][mask].mean() < cfg.lesion_in_brain_frac:
                continue
            grown = ndimage.binary_dilation(np.pad(mask, gap), iterations=gap)
            pwin = tuple(slice(max(s.start - gap, 0), s.stop + gap) for s in win)
            sub = labels[pwin]
            off = [gap - (s.start - p.start) for s, p in zip(win, pwin)]
            g = grown[off[0]: off[0] + sub.shape[0], off[1]: off[1] + sub.shape[1], off[2]: off[2] + sub.shape[2]]
            if np.any(sub[g] > 0):
                continue
            labels[win][mask] = len(placed) + 1
            placed.append(Placed(cands[j], win, mask))
        k = 2
    return placed


def assign_kinds(rng, cfg, placed: list[Placed], h: float) -> bool:
    """Draw each lesion's kind, core, rim and rater label; the truth lives in `p.truth`."""
    # about half of MS patients have no paramagnetic rim lesion at all: a subject-level propensity
    rim_free = bool(rng.random() < cfg.p_subject_rim_free)
    odds_factor = 0.03 if rim_free else 1 / max(1 - cfg.p_subject_rim_free, 0.05)
    core_names = list(cfg.core_kinds)
    core_p = np.array([cfg.core_kinds[c] for c in core_names], float)
    core_p /= core_p.sum()
    for p in placed:
        vol = float(p.mask.sum() * h ** 3)
        logit = (np.log(cfg.p_rim_base / (1 - cfg.p_rim_base)) + np.log(odds_factor)
                 + cfg.rim_volume_slope * np.log(vol / MEDIAN_VOLUME_MM3))
        p_pos = float(_sigmoid(logit))
        rest = 1 - p_pos
        probs = np.array([p_pos, rest * cfg.p_partial_rim, rest * cfg.p_hyper_norim, rest * cfg.p_vein_touch])
        probs = np.append(probs, max(1 - probs.sum(), 0))
        kind = ["rim", "partial_rim", "hyper_norim", "vein_touch", "plain"][rng.choice(5, p=probs / probs.sum())]
        core = str(rng.choice(core_names, p=core_p))
        t = {"donor": p.lib.donor, "donor_component": p.lib.index, "volume_mm3_model": vol,
             "kind": kind, "core_type": core, "core_ppm": float(rng.uniform(*getattr(cfg, f"core_{core}"))),
             "coverage": 0.0, "rim_ppm": 0.0, "rim_thickness_mm": 0.0,
             "central_vein": bool(rng.random() < cfg.p_central_vein), "subject_rim_free": rim_free}
        if kind in ("rim", "partial_rim"):
            t["coverage"] = float(rng.uniform(*(cfg.coverage_pos if kind == "rim" else cfg.coverage_partial)))
            t["rim_ppm"] = float(rng.uniform(*cfg.rim_chi))
            t["rim_thickness_mm"] = float(rng.uniform(*cfg.rim_thickness_mm))
        if kind == "hyper_norim":
            t["core_type"] = "hyper"
            t["core_ppm"] = float(rng.uniform(*cfg.hyper_norim_chi))
        hard = {"hyper_norim": "hyperintense_no_rim", "vein_touch": "vein_touching"}.get(kind)
        if hard is None and kind != "rim" and t["central_vein"]:
            hard = "central_vein"
        if hard is None and kind == "partial_rim":
            hard = "partial_rim"
        t["hard_negative"] = hard or "none"
        p.truth = t
    return rim_free


def rater_probability(t: dict, cfg) -> float:
    """Probability that an expert calls the lesion Rim+: sharp around 2/3 coverage (NAIMS),
    weak rims missed more often, a small confusion rate on clear and mimicking lesions."""
    if t["rim_ppm"] > 0:
        vis = 1 - np.exp(-t["rim_ppm"] / cfg.rater_weak_rim_ppm)
        p = _sigmoid((t["coverage"] - 2 / 3) / cfg.rater_softness) * vis
        return float(np.clip(p, cfg.rater_flip_clear, 1 - cfg.rater_flip_clear))
    mimic = t["hard_negative"] not in ("none",)
    return float(cfg.rater_flip_clear * (3 if mimic else 1))


def render_lesion(p: Placed, grid: ModelGrid, chi: np.ndarray, flair: np.ndarray, rng, cfg,
                  flair_contrast: float, rim_out: np.ndarray | None = None) -> list[Vein]:
    """Paint one lesion's core, rim and FLAIR signal; return the veins it asks for. `rim_out`
    (model grid, float), if given, receives the rim's weight (0-1, before texture): the voxel
    truth of where the rim is. It draws nothing from `rng`, so the images do not change."""
    t = p.truth
    h = grid.h
    pad = int(np.ceil(3.0 / h))
    win = tuple(slice(max(s.start - pad, 0), min(s.stop + pad, n)) for s, n in zip(p.window, grid.shape))
    les = np.zeros(tuple(s.stop - s.start for s in win), bool)
    inner = tuple(slice(s.start - w.start, s.stop - w.start) for s, w in zip(p.window, win))
    les[inner] = p.mask
    d_out = ndimage.distance_transform_edt(~les) * h
    d_in = ndimage.distance_transform_edt(les) * h
    s = np.where(les, -(d_in - h / 2), d_out - h / 2).astype(np.float32)  # signed, 0 at the edge
    w_in = _sigmoid(-s / 0.3).astype(np.float32)
    tex = smooth_noise(les.shape, 1.0 / h, rng)
    chi_w, fl_w = chi[win], flair[win]
    chi_w += w_in * np.float32(t["core_ppm"]) * (1 + 0.3 * tex)
    fl_w += w_in * np.float32(flair_contrast * t.get("flair_scale", 1.0)) * (1 + 0.15 * tex)
    pts = np.argwhere(les)
    centre = pts.mean(0)
    if t["rim_ppm"] > 0:
        idx = np.indices(les.shape, dtype=np.float32)
        vec = idx - centre[:, None, None, None].astype(np.float32)
        vec /= np.maximum(np.sqrt((vec ** 2).sum(0)), 1e-3)
        u = rng.normal(size=3)
        u /= np.linalg.norm(u)
        score = (vec * u[:, None, None, None].astype(np.float32)).sum(0) + 0.25 * smooth_noise(les.shape, 2.0 / h, rng)
        edge = les & (d_in <= h * 1.01)
        thr = np.quantile(score[edge], 1 - t["coverage"]) if t["coverage"] < 1 else -np.inf
        t["coverage"] = float(np.mean(score[edge] >= thr))
        cap = _sigmoid((score - thr) / 0.05) if np.isfinite(thr) else np.ones_like(score)
        th = t["rim_thickness_mm"]
        # the band straddles the FLAIR edge, mostly inside (iron-laden microglia at the border)
        band = _sigmoid((s + 0.65 * th) / 0.2) * _sigmoid((0.35 * th - s) / 0.2)
        chi_w += (np.float32(t["rim_ppm"]) * band * cap * (1 + 0.2 * tex)).astype(np.float32)
        if rim_out is not None:
            rim_w = rim_out[win]
            np.maximum(rim_w, (band * cap).astype(np.float32), out=rim_w)
    veins = []
    c_mm = grid.to_mm(centre + np.array([w.start for w in win]))
    radius = (3 * les.sum() * h ** 3 / (4 * np.pi)) ** (1 / 3)
    t["centroid_mm_head"] = c_mm.tolist()
    if t["central_vein"]:
        veins.append(Vein(line_through(c_mm, rng.normal(size=3), radius + 5, rng), float(rng.uniform(0.35, 0.7)),
                          float(rng.uniform(*cfg.vein_chi)), "central"))
    if t["kind"] == "vein_touch":
        edge = np.argwhere(les & (d_in <= h * 1.01))
        e = edge[rng.integers(len(edge))].astype(float)
        n = e - centre
        n /= max(np.linalg.norm(n), 1e-6)
        tang = np.cross(n, rng.normal(size=3))
        tang /= max(np.linalg.norm(tang), 1e-6)
        r = float(rng.uniform(0.4, 0.8))
        p_mm = grid.to_mm(e + np.array([w.start for w in win])) + n * r * 0.8
        veins.append(Vein(line_through(p_mm, tang, radius + 7, rng, bend=0.15), r, float(rng.uniform(*cfg.vein_chi)), "touch"))
    return veins
