"""Rim voxels on the subject's own grid: from a network's patch-space voxel probabilities, or by
an analytic rule for models without a voxel head.

Networks see 32³ patches at 1 mm along world axes (rimscope.patches.patch_transform maps patch
index -> voxel coordinates). `patch_probs_to_native` inverts that map: every voxel in a lesion's
neighbourhood (within NEIGHBOUR_MM of it, in no other lesion and not nearer another lesion)
reads that lesion's patch probability by trilinear interpolation; where neighbourhoods would
overlap the nearer lesion owns the voxel, and any remaining overlap takes the maximum. The rim
mask is p >= 0.5.

`analytic_rim_mask` is the fallback and the baseline a learned head must beat on Dice: voxels
from 1.5 mm inside to 3 mm outside the edge whose (lightly smoothed) QSM exceeds the local
surround (rim_measures' median 2-5 mm outside) by `threshold_ppb`, kept only in 26-connected
components of at least `min_mm3` that reach the edge band (|s| <= 1 mm): isolated noise
voxels and veins passing at a distance are dropped, a vein touching the edge is not (that is the
mimic a learned head should learn to reject).
Stage: after patches, before models.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .lesions import STRUCT26
from .patches import PatchConfig, patch_transform
from .rim_measures import NEIGHBOUR_MM, SURROUND_MM, LesionFrame, surround_ppm

ANALYTIC_BAND_MM = (-1.5, 3.0)
ANALYTIC_DEFAULTS = {"threshold_ppb": 15.0, "min_mm3": 3.0, "smooth_mm": 0.5}


def _boxes(labels):
    return ndimage.find_objects(labels.astype(np.int64, copy=False))


def patch_probs_to_native(probs: np.ndarray, lesions, labels: np.ndarray, affine: np.ndarray,
                          zooms, config: PatchConfig | None = None) -> np.ndarray:
    """Per-lesion voxel probability patches (N, S, S, S), patch i of `lesions[i]` (rimscope
    lesions.Lesion, as in a PatchSet) -> a float32 rim probability map on the canonical grid."""
    config = config or PatchConfig()
    probs = np.asarray(probs, np.float32)
    if probs.ndim != 4 or probs.shape[0] != len(lesions) or probs.shape[1:] != (config.size,) * 3:
        raise ValueError(f"probabilities {probs.shape} do not match {len(lesions)} patches of "
                         f"{config.size}^3")
    out = np.zeros(labels.shape, np.float32)
    for p, les in zip(probs, lesions):
        frame = LesionFrame(labels, les.id, zooms, NEIGHBOUR_MM, bbox=les.bbox)
        m, t = patch_transform(les.centroid_mm, affine, config)
        vox = np.argwhere(frame.near) + np.array([s.start for s in frame.window])
        ijk = np.linalg.solve(m, (vox - t).T)  # (3, K) patch coordinates
        vals = ndimage.map_coordinates(p, ijk, order=1, mode="constant", cval=0.0, prefilter=False)
        flat = np.ravel_multi_index(vox.T, labels.shape)
        np.maximum.at(out.reshape(-1), flat, vals.astype(np.float32))
    return out


def rim_mask_from_probability(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    return np.asarray(prob) >= threshold


def analytic_rim_mask(qsm: np.ndarray, labels: np.ndarray, zooms, brainmask=None,
                      lesion_ids=None, **options) -> np.ndarray:
    """Boolean rim mask of every lesion (or `lesion_ids`) by the rule in the module docstring."""
    opts = {**ANALYTIC_DEFAULTS, **options}
    unknown = set(opts) - set(ANALYTIC_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown analytic rim option(s) {sorted(unknown)}")
    zooms = np.asarray(zooms, float)
    vvox = float(np.prod(zooms))
    boxes = _boxes(labels)
    ids = range(1, len(boxes) + 1) if lesion_ids is None else [int(i) for i in lesion_ids]
    out = np.zeros(labels.shape, bool)
    sigma = opts["smooth_mm"] / zooms
    for lid in ids:
        box = boxes[lid - 1] if 0 < lid <= len(boxes) else None
        if box is None:
            continue
        frame = LesionFrame(labels, lid, zooms, max(NEIGHBOUR_MM, SURROUND_MM[1]), bbox=box,
                            brainmask=brainmask)
        q = np.asarray(qsm[frame.window], np.float64)
        if opts["smooth_mm"] > 0:
            q = ndimage.gaussian_filter(q, sigma)
        sur = surround_ppm(q, frame)
        if not np.isfinite(sur):
            continue
        band = (frame.s >= ANALYTIC_BAND_MM[0]) & (frame.s <= ANALYTIC_BAND_MM[1]) & frame.near
        if frame.brain is not None:
            band &= frame.brain
        cand = band & ((q - sur) * 1000.0 >= opts["threshold_ppb"])
        lab, n = ndimage.label(cand, STRUCT26)
        if n == 0:
            continue
        idx = np.arange(1, n + 1)
        size = ndimage.sum_labels(np.ones_like(lab), lab, idx) * vvox
        touches = ndimage.maximum(np.abs(frame.s) <= 1.0, lab, idx) > 0
        keep = np.zeros(n + 1, bool)
        keep[1:] = (size >= opts["min_mm3"]) & touches
        out[frame.window] |= keep[lab]
    return out
