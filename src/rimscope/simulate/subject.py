"""One simulated subject, end to end: anatomy → lesions and veins → acquisition → physics → images.

Kept as one readable pipeline so the order of effects (partial volume before the dipole field,
noise before the inversion, segmentation error on the mask a user would have) is visible at once.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from . import physics
from .acquisition import Acquisition, ModelGrid, head_pose, make_grid, random_acquisition, random_rotation, sample, upsample_to_model
from .anatomy import load_brain, tissue_chi
from .flair import finish_flair
from .lesions_model import assign_kinds, rater_probability, render_lesion, select_lesions
from .veins import random_veins, render_veins

log = logging.getLogger("rimscope")
RIM_TRUTH_FRACTION = 1 / 3


@dataclass
class SimulatedSubject:
    qsm: np.ndarray
    qsm_affine: np.ndarray
    flair: np.ndarray
    flair_affine: np.ndarray
    lesions: np.ndarray  # int32 instance map on the QSM grid, ids 1..K
    brainmask: np.ndarray  # uint8 on the QSM grid
    truth: dict
    rim: np.ndarray | None = None  # uint8 on the QSM grid: rim voxel truth (RIM_TRUTH_FRACTION)
    local_field: np.ndarray | None = None  # ppm on the QSM grid: the dipole inversion's input, masked


def _choice(rng, weights: dict) -> str:
    names = list(weights)
    p = np.array([weights[k] for k in names], float)
    return str(names[rng.choice(len(names), p=p / p.sum())])


def segmentation_error(labels: np.ndarray, rng, cfg) -> tuple[np.ndarray, dict]:
    """What a user's segmentation tool would give: per lesion a one-voxel dilation or erosion,
    and random flips of boundary voxels (`seg_voxels` sets how many voxels are dilated or eroded)."""
    out = labels.copy()
    noise = float(rng.uniform(*cfg.seg_boundary_noise))
    changes = {}
    for lid, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        pad = max(2, cfg.seg_voxels[1] + 1)
        sl = tuple(slice(max(s.start - pad, 0), s.stop + pad) for s in sl)
        m = labels[sl] == lid
        free = (labels[sl] == 0) | m
        u = rng.random()
        dilate = u < cfg.seg_p_dilate
        erode = not dilate and u < cfg.seg_p_dilate + cfg.seg_p_erode and m.sum() > 30
        k = 1  # a second draw only when a range is asked for: default cohorts stay as they were
        if (dilate or erode) and cfg.seg_voxels[0] != cfg.seg_voxels[1]:
            k = int(rng.integers(cfg.seg_voxels[0], cfg.seg_voxels[1] + 1))
        elif dilate or erode:
            k = int(cfg.seg_voxels[0])
        suffix = "" if k == 1 else str(k)
        if dilate:
            new, kind = ndimage.binary_dilation(m, iterations=k) & free, "dilate" + suffix
        elif erode:
            new, kind = ndimage.binary_erosion(m, iterations=k), "erode" + suffix
        else:
            new, kind = m.copy(), "none"
        if noise > 0:
            border = (ndimage.binary_dilation(new) & free) ^ ndimage.binary_erosion(new)
            flip = border & (rng.random(m.shape) < noise)
            new = (new ^ flip) & free
        if new.sum() < 3:
            new = m
        view = out[sl]
        view[m] = 0
        view[new] = lid
        changes[lid] = kind
    return out, {"boundary_noise": noise, "per_lesion": changes}


def simulate_subject(cfg, seed: int, index: int, labelled: bool = True, keep: dict | None = None) -> SimulatedSubject:
    """`keep`, if given, receives intermediate volumes (true χ on the QSM grid) for checks."""
    rng = np.random.default_rng([int(seed), int(index)])
    acq_t: dict = {}
    # ---------------------------------------------------------------- anatomy on the model grid
    brain_name = str(rng.choice(cfg.brains))
    b = load_brain(brain_name)
    chi1, tissue = tissue_chi(b, rng, cfg)
    h = float(cfg.model_mm)
    origin, extent = b.origin.copy(), np.array(b.brain.shape, float) - 1
    if cfg.crop_mm > 0:  # a cube around the ventricles, where most lesions are
        centre = np.array([0.0, -12.0, 12.0])
        lo = np.maximum(centre - cfg.crop_mm / 2, origin)
        extent = np.minimum(centre + cfg.crop_mm / 2, origin + extent) - lo
        origin = lo
    shape = tuple(int(np.ceil(e / h)) + 1 for e in extent)
    grid = ModelGrid(origin, h, shape)
    chi = upsample_to_model(chi1, b.origin, grid)
    flair = upsample_to_model(b.flair, b.origin, grid)
    brain_f = upsample_to_model(b.brain.astype(np.float32), b.origin, grid)
    brain_m = brain_f >= 0.5
    # ---------------------------------------------------------------- lesions and veins
    labels = np.zeros(shape, np.int32)
    placed = select_lesions(rng, cfg, grid, brain_m, labels)
    assign_kinds(rng, cfg, placed, h)
    contrast = float(rng.uniform(*cfg.flair_lesion_contrast))
    veins = []
    rim_m = np.zeros(shape, np.float32)
    for p in placed:
        p.truth["flair_scale"] = float(rng.uniform(0.7, 1.3))
        veins += render_lesion(p, grid, chi, flair, rng, cfg, contrast, rim_out=rim_m)
    p_wm1 = b.p_wm

    def p_wm_at(mm):
        idx = np.round(np.asarray(mm) - b.origin).astype(int)
        idx = np.clip(idx, 0, np.array(p_wm1.shape) - 1)
        return p_wm1[idx[:, 0], idx[:, 1], idx[:, 2]]

    n_wm = int(rng.integers(cfg.n_veins[0], cfg.n_veins[1] + 1))
    n_med = int(rng.integers(cfg.n_medullary[0], cfg.n_medullary[1] + 1))
    veins += random_veins(rng, cfg, p_wm_at, n_wm, n_med)
    render_veins(chi, grid, veins, inside=brain_f)
    chi *= brain_f
    flair *= brain_m
    # ---------------------------------------------------------------- acquisition (QSM grid)
    head, pose = head_pose(rng, cfg.b0_tilt_deg)
    box_min = grid.origin
    box_max = grid.to_mm(np.array(shape) - 1)
    acq = random_acquisition(rng, cfg, head, box_min, box_max)
    chi_a = sample(chi, grid, acq, order=1, prefilter_mm=acq.zooms)
    brain_a = sample(brain_f, grid, acq, order=1) >= 0.5
    # rim voxel truth: a voxel holds at least a third of rim by partial volume, so a 0.8 mm rim
    # straddling two 1 mm voxels still marks both (at >= 0.5 it would vanish there)
    rim_a = sample(rim_m, grid, acq, order=1, prefilter_mm=acq.zooms) >= RIM_TRUTH_FRACTION
    del rim_m
    b0 = acq.b0_in_axes()
    if keep is not None:
        keep["chi"] = chi_a
    # ---------------------------------------------------------------- physics
    field = physics.forward_field(chi_a, acq.zooms, b0)
    bg_amp = float(rng.uniform(*cfg.background_ppm))
    field += physics.background_field(field.shape, acq.zooms, rng, bg_amp, b0)
    sigma = float(rng.uniform(*cfg.noise_ppm_1mm)) / np.sqrt(float(np.prod(acq.zooms)))
    field += rng.standard_normal(field.shape, dtype=np.float32) * np.float32(sigma)
    erode = float(rng.uniform(*cfg.mask_erode_mm))
    mask = brain_a
    if erode > 0:
        mask = ndimage.distance_transform_edt(brain_a, sampling=acq.zooms) > erode
    kind = _choice(rng, cfg.inversions)
    inv: dict = {"kind": kind}
    if kind == "tkd":
        inv["threshold"] = float(rng.uniform(*cfg.tkd_threshold))
        qsm = physics.tkd(field, mask, acq.zooms, b0, inv["threshold"])
    else:
        inv["lambda"] = float(np.exp(rng.uniform(*np.log(cfg.cg_lambda))))
        inv["iterations"] = int(rng.integers(cfg.cg_iterations[0], cfg.cg_iterations[1] + 1))
        qsm = physics.cg_l2(field, mask, acq.zooms, b0, inv["lambda"], inv["iterations"])
    ref = _choice(rng, cfg.reference)
    if ref == "brain":
        qsm -= np.float32(qsm[mask].mean())
    elif ref == "csf":
        csf = sample(upsample_to_model(b.p_csf, b.origin, grid), grid, acq, order=1) > 0.8
        csf &= mask
        if csf.sum() > 100:
            qsm -= np.float32(qsm[csf].mean())
    offset = float(rng.uniform(*cfg.offset_ppm))
    qsm = (qsm + np.float32(offset)) * mask
    # ---------------------------------------------------------------- lesion masks on the QSM grid
    lab_a = sample(labels, grid, acq, order=0).astype(np.int32)
    lab_a *= mask
    seg_lab, seg_t = segmentation_error(lab_a, rng, cfg)
    seg_lab *= mask
    # ---------------------------------------------------------------- FLAIR grid
    own = rng.random() < cfg.p_flair_own_grid
    flair_kind = _choice(rng, cfg.flair_grids) if own else "qsm_grid"
    if flair_kind == "3d_1mm":
        R, ang = random_rotation(rng, cfg.oblique_deg[1])
        orient = str(rng.choice(cfg.orientations))
        fshape, faff = make_grid(orient, (1.0, 1.0, 1.0), R, head, box_min, box_max)
        facq = Acquisition(fshape, faff, (1.0, 1.0, 1.0), orient, ang, head)
    elif flair_kind == "2d_thick":
        facq = random_acquisition(rng, cfg, head, box_min, box_max, voxel=float(rng.uniform(0.8, 1.0)),
                                  slice_mm=float(rng.uniform(2.5, 3.5)))
    else:
        facq = acq
    fl = sample(flair, grid, facq, order=1, prefilter_mm=facq.zooms)
    fbrain = sample(brain_f, grid, facq, order=1) >= 0.5
    fl, fl_t = finish_flair(fl, fbrain, facq.zooms, rng, cfg)
    # ---------------------------------------------------------------- truth, ids 1..K in order
    truth_lesions = []
    final = np.zeros_like(seg_lab)
    k = 0
    present = np.bincount(seg_lab.ravel(), minlength=len(placed) + 1)
    vvol = float(np.prod(acq.zooms))
    for old_id, p in enumerate(placed, start=1):
        if present[old_id] < 2:
            continue
        k += 1
        final[seg_lab == old_id] = k
        t = dict(p.truth)
        t["lesion_id"] = k
        t["true_rim"] = int(t["kind"] == "rim" and t["coverage"] >= 2 / 3)
        t["ambiguous"] = bool(0.5 <= t["coverage"] < 2 / 3 and t["rim_ppm"] > 0)
        t["volume_mm3"] = float(present[old_id] * vvol)
        t["segmentation"] = seg_t["per_lesion"].get(old_id, "none")
        t["p_rater"] = rater_probability(t, cfg)
        t["rim"] = int(rng.random() < t["p_rater"]) if labelled else None
        truth_lesions.append(t)
    acq_t.update({
        "brain": brain_name, "tissue_ppm": tissue, "model_mm": h, "shape": list(acq.shape),
        "voxel_mm": list(acq.zooms), "orientation": acq.orientation, "oblique_deg": acq.oblique_deg,
        "qsm_affine": acq.affine.tolist(), "head_to_world": head.tolist(), **pose,
        "b0_world": [0.0, 0.0, 1.0], "b0_in_array_axes": b0.tolist(), "inversion": inv,
        "noise_ppm": sigma, "background_ppm": bg_amp, "mask_erode_mm": erode, "reference": ref,
        "offset_ppm": offset, "flair_grid": flair_kind, "flair_voxel_mm": list(facq.zooms),
        "flair_orientation": facq.orientation, "flair": fl_t, "flair_lesion_contrast": contrast,
        "segmentation_boundary_noise": seg_t["boundary_noise"], "n_veins": len(veins),
    })
    truth = {"acquisition": acq_t, "lesions": truth_lesions}
    return SimulatedSubject(qsm.astype(np.float32), acq.affine, fl, facq.affine, final.astype(np.int32),
                            mask.astype(np.uint8), truth, rim=(rim_a & mask).astype(np.uint8),
                            local_field=(field * mask).astype(np.float32))
