"""The lesion engine: domain-randomised, lesion-centred training examples made on the fly.

The whole-brain simulator makes ~2 lesions/s: enough to test, far too few to train a network.
The engine draws one lesion per example (a real shape from the library, posed at random), its
rim, core, neighbours and mimics, and an acquisition (voxel size, obliquity, B0 angle, noise,
background, inversion, FLAIR) from ranges wider than real scanners (EngineConfig), computes the
physics on a small periodic box ON THE ACQUISITION GRID (engine_physics), and then builds a
rimscope.io.Subject of that box and calls patches.sample_patch: the patch is made by the same
code path predict uses, so the network cannot learn an engine-only artefact of patch making.

Labels are the truth, by one rule: Rim+ iff the example carries a rim whose realised coverage
of the lesion edge is >= cfg.min_coverage (2/3, NAIMS) AND whose realised mean amplitude over
the covered edge is >= cfg.min_amplitude_ppm (20 ppb); then labels flip at cfg.rater_flip.
Weak full rims, partial rims, paramagnetic cores, veins and deep grey matter are Rim-. About
cfg.rim_fraction of the examples are drawn as Rim+ (the engine's prevalence, which training's
prior shift must use). Example i of seed s depends on (s, i) only: render_batch is pure.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import nibabel as nib
import numpy as np

from ..io import Subject
from ..lesions import lesion_table
from ..patches import PatchConfig, sample_patch
from . import engine_physics as phys
from .engine_config import EngineConfig
from .engine_parts import fov_cut, mask_error, normalise_like_brain, sample_like_patch, veins_for
from .engine_render import BoxGrid, half_space, render_flair, render_lesion, sphere
from .engine_shapes import library, random_pose, unit, warm_library


@dataclass
class EngineBatch:
    x: np.ndarray  # (n, 4, S, S, S) float32 on the patch contract
    y: np.ndarray  # (n,) int64 label (truth, after optional rater flips)
    rim: np.ndarray  # (n, S, S, S) float32 rim voxel truth in [0, 1]
    field: np.ndarray  # (n, S, S, S) float32 local field patch (ppm)
    meta: list = field(default_factory=list)


def _rot_to(z_to: np.ndarray) -> np.ndarray:
    """A rotation taking the z axis to the unit vector z_to (Rodrigues)."""
    z = np.array([0.0, 0.0, 1.0])
    v, c = np.cross(z, z_to), float(z @ z_to)
    if np.linalg.norm(v) < 1e-9:
        return np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def _tilted(rng, deg_range) -> tuple[np.ndarray, float]:
    th = np.deg2rad(rng.uniform(*deg_range))
    ph = rng.uniform(0, 2 * np.pi)
    return np.array([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)]), float(np.degrees(th))


def draw_grid(rng, cfg: EngineConfig) -> tuple[BoxGrid, np.ndarray, dict]:
    """The acquisition box around the world origin, and B0 in world coordinates."""
    a = float(rng.uniform(*cfg.voxel_mm))
    sl = max(float(rng.uniform(*cfg.slice_mm)), 0.8 * a)
    zooms = np.array([a, a, sl])
    b0_world, jitter = _tilted(rng, cfg.b0_patch_jitter_deg)  # the user's --b0-dir is world z
    if rng.random() < cfg.p_axis_aligned:
        R = _rot_to(b0_world) if jitter > 0 else np.eye(3)
    else:
        s_axis, _ = _tilted(rng, cfg.b0_angle_deg)
        psi = rng.uniform(-np.pi / 4, np.pi / 4)
        Rz = np.array([[np.cos(psi), -np.sin(psi), 0], [np.sin(psi), np.cos(psi), 0], [0, 0, 1]])
        R = _rot_to(_rot_to(b0_world) @ s_axis) @ Rz
    shape = tuple(int(min(cfg.box_max_vox, np.ceil(cfg.box_mm / z))) // 2 * 2 for z in zooms)
    centre_vox = (np.array(shape) - 1) / 2 + rng.uniform(-0.5, 0.5, 3)
    origin = -(R * zooms[None, :]) @ centre_vox
    b0_grid = R.T @ b0_world
    angle = float(np.degrees(np.arccos(np.clip(abs(b0_grid[2]), -1, 1))))
    meta = {"voxel_mm": [round(a, 3), round(a, 3), round(sl, 3)], "b0_angle_deg": round(angle, 2),
            "b0_patch_jitter_deg": round(jitter, 2), "box_shape": list(shape)}
    return BoxGrid(shape, zooms, R, origin), b0_grid, meta


def draw_rim(rng, cfg: EngineConfig, shape, scale: float, coverage: float, amplitude: float) -> dict:
    """Rim geometry in the shape's frame: contiguous cap(s) hitting `coverage` of the edge."""
    caps = [unit(rng) for _ in range(2 if rng.random() < cfg.p_two_caps else 1)]
    dirs = shape.surface_dirs
    score = np.max(np.stack([dirs @ c.astype(np.float32) for c in caps]), axis=0)
    thr = float(np.quantile(score, 1 - coverage)) if coverage < 0.999 else -2.0
    covered = score >= thr
    var, m = float(rng.uniform(*cfg.rim_amplitude_variation)), unit(rng)
    mod = 1 + var * (dirs[covered] @ m.astype(np.float32)) if covered.any() else np.ones(1)
    offset = max(float(rng.uniform(*cfg.rim_offset_mm)), -0.5 * scale * shape.radius_mm)
    return {"caps": caps, "threshold": thr, "variation": var, "var_dir": m, "amplitude_ppm": amplitude,
            "offset_mm": offset, "thickness_mm": float(rng.uniform(*cfg.rim_thickness_mm)),
            "coverage": float(covered.mean()), "amplitude_real_ppm": float(amplitude * np.mean(mod))}


def _pick(rng, weights: dict) -> str:
    names = list(weights)
    p = np.array([weights[k] for k in names], float)
    return str(names[rng.choice(len(names), p=p / p.sum())])


def _core_ppm(rng, cfg) -> tuple[str, float]:
    kind = _pick(rng, cfg.core_kinds)
    return kind, float(rng.uniform(*getattr(cfg, f"core_{kind}")))


def _place_near(rng, centre_dist: float):
    return unit(rng) * centre_dist


def render_example(cfg: EngineConfig, seed: int, index: int, patch: PatchConfig | None = None) -> dict:
    """One example: x, y, rim, field, meta (see the module docstring for the label rule)."""
    patch = patch or PatchConfig()
    rng = np.random.default_rng([int(seed), int(index), 12])
    lib = library(cfg.lesion_min_mm3, cfg.lesion_max_mm3, tuple(cfg.donors))
    shp = lib[int(rng.integers(len(lib)))]
    positive = bool(rng.random() < cfg.rim_fraction)
    kind = "rim" if positive else _pick(rng, cfg.negative_kinds)
    grid, b0, meta = draw_grid(rng, cfg)
    pose = random_pose(rng, cfg.scale, cfg.p_rotate)
    s, r_eq = pose[1], pose[1] * shp.radius_mm
    rim = None
    if kind in ("rim", "partial_rim", "weak_rim"):
        cov = rng.uniform(*(cfg.rim_coverage_partial if kind == "partial_rim" else cfg.rim_coverage_pos))
        amp = rng.uniform(*(cfg.weak_rim_ppm if kind == "weak_rim" else cfg.rim_amplitude_ppm))
        rim = draw_rim(rng, cfg, shp, s, float(cov), float(amp))
    core_kind, core = _core_ppm(rng, cfg)
    if kind == "hyper_core":
        core_kind, core = "hyper", float(rng.uniform(*cfg.hyper_core_ppm))
    chi = np.zeros(grid.shape, np.float32)
    flair_parts = {}
    c0 = np.zeros(3)
    margin = 2.0 + (abs(rim["offset_mm"]) + rim["thickness_mm"] if rim else 0.0)
    les = render_lesion(grid, shp, pose, c0, rim, margin)
    chi[les.window] += les.core * np.float32(core) + les.rim_chi
    rim_box = np.zeros(grid.shape, np.float32)
    rim_box[les.window] = les.rim
    les_occ = np.zeros(grid.shape, np.float32)
    les_occ[les.window] = les.core
    extras = []
    if rng.random() < cfg.p_gm_boundary:
        n = unit(rng)
        gm = half_space(grid, n * (r_eq + rng.uniform(*cfg.gm_distance_mm)), n)
        chi += gm * np.float32(rng.uniform(*cfg.gm_contrast_ppm))
        flair_parts["gm"] = gm
        extras.append("gm_boundary")
    if rng.random() < cfg.p_ventricle:
        rv = rng.uniform(5, 15)
        ven = sphere(grid, _place_near(rng, r_eq + rng.uniform(1, 6) + rv), rv)
        chi += ven * np.float32(rng.uniform(0.015, 0.04))
        flair_parts["ventricle"] = ven
        extras.append("ventricle")
    if kind == "deep_gm" or rng.random() < cfg.p_deep_gm:
        rd = rng.uniform(*cfg.deep_gm_radius_mm)
        dgm = sphere(grid, _place_near(rng, r_eq + rng.uniform(*cfg.deep_gm_gap_mm) + rd), rd)
        chi += dgm * np.float32(rng.uniform(*cfg.deep_gm_ppm))
        flair_parts["deep_gm"] = dgm
        extras.append("deep_gm")
    labels = np.zeros(grid.shape, np.int32)
    neighbour = None
    if rng.random() < cfg.p_neighbour:
        shp2 = lib[int(rng.integers(len(lib)))]
        pose2 = random_pose(rng, cfg.scale, cfg.p_rotate)
        c2 = _place_near(rng, r_eq + pose2[1] * shp2.radius_mm + rng.uniform(*cfg.neighbour_gap_mm))
        rim2 = None
        if rng.random() < 0.3:
            rim2 = draw_rim(rng, cfg, shp2, pose2[1], float(rng.uniform(0.2, 1.0)),
                            float(rng.uniform(*cfg.rim_amplitude_ppm)))
        neighbour = render_lesion(grid, shp2, pose2, c2, rim2, 4.0)
        if neighbour is not None:
            chi[neighbour.window] += neighbour.core * np.float32(_core_ppm(rng, cfg)[1]) + neighbour.rim_chi
            les_occ[neighbour.window] += neighbour.core
            labels[neighbour.window][neighbour.core >= 0.5] = 2
            extras.append("neighbour_rim" if rim2 else "neighbour")
    veins = veins_for(rng, cfg, grid, shp, pose, kind, r_eq)
    for occ, v in veins:
        chi += occ * np.float32(v)
    flair_parts["lesions"] = np.minimum(les_occ, 1)
    # ---------------------------------------------------------------- physics
    inv = phys.draw_inversion(rng, cfg)
    tex = phys.texture_spectrum(grid.shape, grid.zooms, float(rng.uniform(*cfg.texture_ppm)),
                                float(rng.uniform(*cfg.texture_mm)), rng)
    noise = float(rng.uniform(*cfg.noise_ppm))
    bg = float(rng.uniform(*cfg.background_ppm))
    field_box, qsm = phys.field_and_qsm(chi, grid.zooms, b0, tex, noise, bg, inv, rng)
    offset = float(rng.uniform(*cfg.offset_ppm))
    qsm += np.float32(offset)
    # ---------------------------------------------------------------- the user's mask
    mask = np.zeros(grid.shape, bool)
    mask[les.window] = les.core >= 0.5
    if not mask.any():  # a lesion thinner than the voxels: its most-covered voxel
        w = np.unravel_index(int(np.argmax(les.core)), les.core.shape)
        mask[tuple(sl.start + i for sl, i in zip(les.window, w))] = True
    mask_err = mask_error(rng, cfg, mask, labels)
    labels[mask] = 1
    arrays = {"qsm": qsm, "labels": labels, "field": field_box, "rim": rim_box}
    flair_raw, flair_info = render_flair(grid, flair_parts, rng, cfg, phys.normals)
    arrays["flair"] = flair_raw
    origin, fov = grid.origin, "none"
    if rng.random() < cfg.p_fov_cut:
        arrays, origin, fov = fov_cut(rng, grid, arrays, shp.extent * s)
    flair_n, flair_zero = normalise_like_brain(arrays["flair"], flair_info, rng)
    affine = grid.affine
    affine[:3, 3] = origin
    subj = Subject(id=f"engine-{seed}-{index}", qsm=arrays["qsm"], flair=flair_n, lesions=arrays["labels"],
                   brainmask=np.ones(arrays["qsm"].shape, bool), affine=affine,
                   ref_header=nib.Nifti1Header(), ref_affine=affine, ornt=np.array([[0, 1], [1, 1], [2, 1]]),
                   info={"flair_background": float(flair_zero)})
    lesion = next(t for t in lesion_table(arrays["labels"], affine) if t.id == 1)
    x, flags = sample_patch(subj, lesion, patch)
    fpatch, rpatch = sample_like_patch((arrays["field"], arrays["rim"]), lesion.centroid_mm, affine, patch)
    truth = int(rim is not None and rim["coverage"] >= cfg.min_coverage - 1e-9
                and rim["amplitude_real_ppm"] >= cfg.min_amplitude_ppm)
    y = truth ^ int(rng.random() < cfg.rater_flip)
    meta.update(kind=kind, truth=truth, y=y, donor=shp.donor, component=shp.index,
                volume_mm3=round(lesion.volume_mm3, 1), scale=round(s, 3), core=core_kind,
                core_ppm=round(core, 4), inversion=inv, noise_ppm=noise, background_ppm=bg,
                offset_ppm=offset, mask_error=mask_err, fov_cut=fov, extras=extras,
                veins=len(veins), flags=flags, flair=flair_info,
                amplitude_ppb=round(1000 * rim["amplitude_real_ppm"], 2) if rim else 0.0,
                coverage=round(rim["coverage"], 4) if rim else 0.0,
                offset_mm=round(rim["offset_mm"], 3) if rim else 0.0,
                thickness_mm=round(rim["thickness_mm"], 3) if rim else 0.0)
    return {"x": x, "y": y, "rim": np.clip(rpatch, 0, 1), "field": fpatch, "meta": meta}


def _init_worker(config: EngineConfig) -> None:
    import torch

    torch.set_num_threads(1)  # one core per worker; the library loads once per worker
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)  # BLAS too: two workers on two cores must not oversubscribe
    except ImportError:  # pragma: no cover - an optional speed-up
        pass
    library(config.lesion_min_mm3, config.lesion_max_mm3, tuple(config.donors))


def engine_pool(config: EngineConfig, workers: int):
    """Worker processes for render_batch (forkserver: they start clean, never inheriting a
    thread pool of the training process)."""
    import multiprocessing as mp

    warm_library(library(config.lesion_min_mm3, config.lesion_max_mm3, tuple(config.donors)))
    return mp.get_context("forkserver").Pool(int(workers), initializer=_init_worker, initargs=(config,))


def render_batch(config: EngineConfig, seed: int, index_start: int, n: int, patch: PatchConfig | None = None,
                 workers: int = 1, pool=None) -> EngineBatch:
    """Examples index_start .. index_start+n-1 of `seed`; identical for any `workers` or `pool`
    (example i depends on (seed, i) only)."""
    idx = list(range(int(index_start), int(index_start) + int(n)))
    own = pool is None and workers > 1 and n > 1
    if own:
        pool = engine_pool(config, workers)
    try:
        if pool is not None and n > 1:
            k = pool._processes
            chunks = [c for c in (idx[i::k] for i in range(k)) if c]
            parts = pool.starmap(_render_many, [(config, seed, c, patch) for c in chunks])
            by = {i: r for c, part in zip(chunks, parts) for i, r in zip(c, part)}
            rows = [by[i] for i in idx]
        else:
            rows = _render_many(config, seed, idx, patch)
    finally:
        if own:
            pool.terminate()
            pool.join()
    s = (patch or PatchConfig()).size
    if not rows:
        z = np.zeros((0, s, s, s), np.float32)
        return EngineBatch(np.zeros((0, 4, s, s, s), np.float32), np.zeros(0, np.int64), z, z.copy(), [])
    return EngineBatch(x=np.stack([r["x"] for r in rows]), y=np.array([r["y"] for r in rows], np.int64),
                       rim=np.stack([r["rim"] for r in rows]).astype(np.float32),
                       field=np.stack([r["field"] for r in rows]).astype(np.float32),
                       meta=[r["meta"] for r in rows])


def _render_many(config, seed, indices, patch):
    return [render_example(config, seed, i, patch) for i in indices]
