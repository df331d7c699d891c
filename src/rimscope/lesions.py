"""Lesion instances and the regions a rim is judged on: `label_components` (26-connected ids
of a binary mask), `lesion_table` (id, size, centroid, bounding box, flags of every lesion) and
`lesion_regions` (edge shell, core and surroundings of one lesion, in millimetres).

The same definitions serve the simulator's truth, the rim-contrast and radiomics baselines and the
network's mask channel, so "the edge of a lesion" means one thing everywhere in rimscope.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

STRUCT26 = np.ones((3, 3, 3), dtype=bool)
STRUCT6 = ndimage.generate_binary_structure(3, 1)  # face neighbours: edges and rims (rim_measures)
TINY_MM3 = 50.0  # FRODO drops lesions under 110 voxels (~40-50 mm3); rimscope keeps and flags them


def mask_bbox(mask: np.ndarray) -> tuple | None:
    """Slices of the smallest box holding every non-zero voxel (None when there is none)."""
    out = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(np.any(mask, axis=other))
        if hit.size == 0:
            return None
        out.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(out)


def label_components(mask: np.ndarray) -> np.ndarray:
    """26-connected components; ids 1..n follow the raster (C) order of each component's first
    voxel. On a closest-canonical RAS array (as rimscope.io calls it) that is: lowest x (left)
    first, then y, then z. Labelled inside the mask's bounding box only (same ids, much faster
    on a whole-brain volume)."""
    mask = np.asarray(mask) != 0
    out = np.zeros(mask.shape, np.int32)
    box = mask_bbox(mask)
    if box is None:
        return out
    lab, _ = ndimage.label(mask[box], structure=STRUCT26)
    out[box] = lab
    return out


@dataclass
class Lesion:
    id: int
    n_voxels: int
    volume_mm3: float
    centroid_vox: np.ndarray  # canonical voxel coordinates
    centroid_mm: np.ndarray  # world coordinates
    bbox: tuple  # slices in canonical voxel space
    flags: list = field(default_factory=list)


def lesion_table(labels: np.ndarray, affine: np.ndarray) -> list[Lesion]:
    """Geometry of every lesion in one pass over its voxels (ids may be large or have gaps).

    `edge_of_fov`: the lesion touches the border of the field of view, so it may be cut;
    `tiny`: under TINY_MM3.
    """
    idx = np.flatnonzero(labels)
    if idx.size == 0:
        return []
    ids = labels.ravel()[idx]
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    coords = np.stack(np.unravel_index(idx[order], labels.shape), axis=1)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    counts = np.diff(np.r_[starts, ids.size])
    cents = np.add.reduceat(coords.astype(np.float64), starts, axis=0) / counts[:, None]
    lo = np.minimum.reduceat(coords, starts, axis=0)
    hi = np.maximum.reduceat(coords, starts, axis=0) + 1
    vvol = float(abs(np.linalg.det(affine[:3, :3])))
    out = []
    for k, start in enumerate(starts):
        vol = float(counts[k] * vvol)
        bbox = tuple(slice(int(a), int(b)) for a, b in zip(lo[k], hi[k]))
        les = Lesion(id=int(ids[start]), n_voxels=int(counts[k]), volume_mm3=vol,
                     centroid_vox=cents[k], centroid_mm=affine[:3, :3] @ cents[k] + affine[:3, 3],
                     bbox=bbox)
        if vol < TINY_MM3:
            les.flags.append("tiny")
        if any(sl.start == 0 or sl.stop == n for sl, n in zip(bbox, labels.shape)):
            les.flags.append("edge_of_fov")
        out.append(les)
    return out


def _ball(radius_vox: np.ndarray) -> np.ndarray:
    r = np.maximum(np.asarray(radius_vox, float), 0.5)
    n = np.ceil(r).astype(int)
    g = np.meshgrid(*[np.arange(-k, k + 1) for k in n], indexing="ij")
    return sum((gi / ri) ** 2 for gi, ri in zip(g, r)) <= 1.0


@dataclass
class Regions:
    """Boolean masks inside `window` (slices into the volume) for one lesion."""

    window: tuple
    lesion: np.ndarray
    shell: np.ndarray  # edge band: within `shell_mm` of the boundary, inside and outside
    core: np.ndarray  # lesion voxels deeper than `core_mm`
    surround: np.ndarray  # a ring of normal-appearing tissue outside the lesion


def lesion_regions(labels: np.ndarray, lesion_id: int, zooms, brainmask: np.ndarray | None = None,
                   shell_mm: float = 1.0, core_mm: float = 1.5, surround_mm=(2.0, 4.0),
                   bbox=None) -> Regions:
    """Edge shell, core and surroundings of one lesion, in millimetres so resolution does not matter.

    The shell straddles the boundary (a rim sits at the FLAIR edge, partly outside it after
    partial volume); the surroundings skip a gap and exclude other lesions.
    """
    zooms = np.asarray(zooms, float)
    pad = np.ceil((surround_mm[1] + 1.0) / zooms).astype(int)
    if bbox is None:
        bbox = mask_bbox(labels == lesion_id)
        if bbox is None:
            raise ValueError(f"lesion {lesion_id} is not in the label map")
    window = tuple(slice(max(s.start - p, 0), min(s.stop + p, n))
                   for s, p, n in zip(bbox, pad, labels.shape))
    sub = labels[window]
    les = sub == lesion_id
    others = (sub > 0) & ~les
    # distance (mm) from the boundary, outside and inside
    d_out = ndimage.distance_transform_edt(~les, sampling=zooms)
    d_in = ndimage.distance_transform_edt(les, sampling=zooms)
    shell = ((d_out > 0) & (d_out <= shell_mm)) | (les & (d_in <= shell_mm))
    core = les & (d_in > core_mm)
    surround = (d_out > surround_mm[0]) & (d_out <= surround_mm[1]) & ~others
    if brainmask is not None:
        bm = brainmask[window]
        shell &= bm
        surround &= bm
    shell &= ~others
    return Regions(window=window, lesion=les, shell=shell, core=core, surround=surround)

