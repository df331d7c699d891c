"""Rim quantities of one lesion from its QSM and a rim-voxel mask: what a trial measures.

A Rim+ call is a yes/no; rim susceptibility (microglial iron) and how much of the edge the rim
covers are the quantities that change over time. Everything is measured on the subject's
canonical grid in millimetres, so voxel size and orientation do not change the definitions:

- **rim voxels of a lesion**: voxels of the rim mask within `NEIGHBOUR_MM` of the lesion, not in
  another lesion, and closer to this lesion than to any other (`assign_rim`);
- **surround**: the median QSM 2-5 mm outside the lesion, excluding every lesion and every rim
  voxel (grown by one voxel): the median ignores the odd vein, and excluding rims keeps a
  neighbour's rim from raising it;
- **rim susceptibility** (ppb): mean QSM over the lesion's rim voxels minus the surround;
- **rim volume** (mm³): number of rim voxels times the voxel volume;
- **rim coverage** (fraction of the edge, the NAIMS "rim around >= 2/3 of the edge"): each rim
  voxel covers the lesion edge voxel nearest to it (a radial projection), the covered set is
  closed on the edge surface by one coarsest voxel size (thin rims on thick slices are sparse);
  coverage is covered edge voxels / edge voxels. Unlike "edge voxels within d of a rim voxel",
  this adds no margin at the rim's ends, so a half-covered lesion reads 0.5, not 0.5 +
  perimeter·d/area; edge voxels are lesion voxels with a face neighbour outside it, the
  simulator's definition;
- **rim thickness** (mm): rim volume / (coverage x area of the surface at the rim's mean depth
  below or above the edge), the area from the total variation of the smoothed indicator
  (edge_area_mm2); the mid-surface makes it exact for curved shells, inside or outside the edge;
- **core susceptibility** (ppb): mean QSM over lesion voxels deeper than 1 mm (s < -1 mm) that are
  not rim voxels, minus the surround; shallower lesions fall back to all their non-rim voxels.

Rim columns are None for a lesion without rim voxels; core is always given.
Stage: after lesions (uses their instance maps), before models.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .lesions import STRUCT6, mask_bbox

NEIGHBOUR_MM = 4.0  # rim voxels farther than this from a lesion belong to no lesion
SURROUND_MM = (2.0, 5.0)
CORE_MM = 1.0
AREA_SMOOTH_MM = 1.0  # Gaussian sigma of the edge-area estimate
COLUMNS = ("rim_susceptibility_ppb", "rim_volume_mm3", "rim_coverage", "rim_thickness_mm",
           "core_susceptibility_ppb")
UNITS = {"rim_susceptibility_ppb": "ppb over the local surround", "rim_volume_mm3": "mm3",
         "rim_coverage": "fraction of the lesion edge (0-1)", "rim_thickness_mm": "mm",
         "core_susceptibility_ppb": "ppb over the local surround"}


def window_around(bbox, margin_mm: float, zooms, shape) -> tuple:
    """The bbox grown by `margin_mm` (+1 voxel) on every side, clipped to the volume."""
    pad = np.ceil(margin_mm / np.asarray(zooms, float)).astype(int) + 1
    return tuple(slice(max(s.start - p, 0), min(s.stop + p, n)) for s, p, n in zip(bbox, pad, shape))


def subvoxel_signed_distance(mask: np.ndarray, zooms) -> np.ndarray:
    """Signed distance (mm, negative inside) to the edge between voxel centres: the EDT to the
    nearest voxel of the other side minus half a voxel, so s ~ 0 on the mask's true surface
    (the simulator's convention, not a voxel-centre distance)."""
    zooms = np.asarray(zooms, float)
    half = 0.5 * float(zooms.min())
    d_out = ndimage.distance_transform_edt(~mask, sampling=zooms)
    d_in = ndimage.distance_transform_edt(mask, sampling=zooms)
    return np.where(mask, -(d_in - half), d_out - half).astype(np.float32)


class LesionFrame:
    """One lesion's window with its distances, its neighbours and its rim voxels."""

    def __init__(self, labels, lesion_id: int, zooms, margin_mm: float, rim=None, bbox=None,
                 brainmask=None):
        self.zooms = np.asarray(zooms, float)
        bbox = bbox if bbox is not None else mask_bbox(labels == lesion_id)
        if bbox is None:
            raise ValueError(f"lesion {lesion_id} is not in the label map")
        self.window = window_around(bbox, margin_mm, self.zooms, labels.shape)
        sub = labels[self.window]
        self.lesion = sub == lesion_id
        self.others = (sub > 0) & ~self.lesion
        self.brain = None if brainmask is None else np.asarray(brainmask[self.window], bool)
        self.s = subvoxel_signed_distance(self.lesion, self.zooms)
        self.d_out = ndimage.distance_transform_edt(~self.lesion, sampling=self.zooms)
        self.d_other = (ndimage.distance_transform_edt(~self.others, sampling=self.zooms)
                        if self.others.any() else np.full(sub.shape, np.inf))
        # a voxel is this lesion's neighbourhood if it is near it, in no other lesion and not
        # nearer another lesion (ties go to this one: lesions never touch in practice)
        self.near = ((self.d_out <= NEIGHBOUR_MM) & ~self.others & (self.d_out <= self.d_other))
        self.rim = None if rim is None else (np.asarray(rim[self.window], bool) & self.near)


def surround_ppm(qsm_w: np.ndarray, frame: LesionFrame, all_rim_w=None) -> float:
    """Median QSM 2-5 mm outside the lesion, without lesions or (grown) rim voxels; NaN if empty."""
    ring = (frame.d_out > SURROUND_MM[0]) & (frame.d_out <= SURROUND_MM[1]) & ~frame.others
    if frame.brain is not None:
        ring &= frame.brain
    if all_rim_w is not None and all_rim_w.any():
        ring &= ~ndimage.binary_dilation(all_rim_w, STRUCT6)
    return float(np.median(qsm_w[ring])) if ring.any() else float("nan")


def edge_voxels(lesion: np.ndarray) -> np.ndarray:
    """Lesion voxels with a face neighbour outside the lesion."""
    return lesion & ~ndimage.binary_erosion(lesion, STRUCT6, border_value=0)


def covered_edge(lesion: np.ndarray, rim: np.ndarray, zooms) -> tuple[np.ndarray, np.ndarray]:
    """(edge, covered): each rim voxel marks the edge voxel nearest to it, then the marks are
    closed on the edge surface (see close_on_edge)."""
    edge = edge_voxels(lesion)
    covered = np.zeros_like(edge)
    if rim.any() and edge.any():
        _, idx = ndimage.distance_transform_edt(~edge, sampling=zooms, return_indices=True)
        pts = idx[:, rim]
        covered[pts[0], pts[1], pts[2]] = True
        covered = close_on_edge(covered & edge, edge, zooms)
    return edge, covered & edge


def close_on_edge(covered: np.ndarray, edge: np.ndarray, zooms, radius_mm: float | None = None) -> np.ndarray:
    """Morphological closing of the covered edge voxels within the edge, by a ball of
    `radius_mm` (default: the coarsest voxel size): gaps narrower than about twice that fill (a
    thin rim on thick slices partial-volumes into a sparse band, whose projection is sparse),
    and a coverage border comes back where it was (the erosion undoes the dilation), so the
    closing adds no margin at the rim's ends."""
    radius = float(np.max(zooms)) if radius_mm is None else float(radius_mm)
    near = edge & (ndimage.distance_transform_edt(~covered, sampling=zooms) <= radius)
    far = edge & ~near
    if not far.any():
        return edge.copy()
    return edge & (ndimage.distance_transform_edt(~far, sampling=zooms) > radius)


def edge_area_mm2(lesion: np.ndarray, zooms) -> float:
    """Surface area of a voxel mask: the total variation of its indicator smoothed by a Gaussian
    of AREA_SMOOTH_MM (coarea formula), which converges to the area of the smooth surface the
    voxels sample, unlike counts of edge voxels or faces (staircase: up to 50 % too large)."""
    zooms = np.asarray(zooms, float)
    f = ndimage.gaussian_filter(lesion.astype(np.float64), AREA_SMOOTH_MM / zooms, mode="constant")
    g = np.gradient(f, *zooms)
    return float(np.sqrt(sum(gi ** 2 for gi in g)).sum() * np.prod(zooms))


def measure_lesion(qsm: np.ndarray, labels: np.ndarray, rim_mask, lesion_id: int, zooms,
                   brainmask=None, bbox=None) -> dict:
    """The COLUMNS of one lesion (see the module docstring). `rim_mask` (bool, same grid) may be
    None: then only the core is measured. QSM in ppm; results in ppb, mm³, mm, fractions."""
    frame = LesionFrame(labels, lesion_id, zooms, NEIGHBOUR_MM + SURROUND_MM[1], rim_mask, bbox,
                        brainmask)
    q = np.asarray(qsm[frame.window], np.float64)
    all_rim = None if rim_mask is None else np.asarray(rim_mask[frame.window], bool)
    sur = surround_ppm(q, frame, all_rim)
    rim = frame.rim if frame.rim is not None else np.zeros_like(frame.lesion)
    core = frame.lesion & (frame.s < -CORE_MM) & ~rim
    if not core.any():
        core = frame.lesion & ~rim
    if not core.any():
        core = frame.lesion
    out = dict.fromkeys(COLUMNS)
    out["core_susceptibility_ppb"] = 1000.0 * (float(q[core].mean()) - sur)
    if not rim.any():
        return out
    vvox = float(np.prod(frame.zooms))
    edge, covered = covered_edge(frame.lesion, rim, frame.zooms)
    coverage = float(covered.sum() / max(edge.sum(), 1))
    # the area of the surface at the rim's mean depth: a shell's volume is its mid-surface area
    # times its thickness, whatever the curvature (the lesion's own edge area is not)
    depth = float(frame.s[rim].mean())
    area = edge_area_mm2(frame.s < depth, frame.zooms)
    volume = float(rim.sum() * vvox)
    out.update(rim_susceptibility_ppb=1000.0 * (float(q[rim].mean()) - sur), rim_volume_mm3=volume,
               rim_coverage=coverage,
               rim_thickness_mm=volume / (coverage * area) if coverage > 0 and area > 0 else None)
    return out


def measure_subject(qsm: np.ndarray, labels: np.ndarray, rim_mask, zooms, brainmask=None,
                    lesion_ids=None) -> dict[int, dict]:
    """{lesion_id: COLUMNS} for every lesion (or `lesion_ids`) of a canonical subject."""
    boxes = ndimage.find_objects(labels.astype(np.int64, copy=False))
    ids = range(1, len(boxes) + 1) if lesion_ids is None else [int(i) for i in lesion_ids]
    out = {}
    for lid in ids:
        box = boxes[lid - 1] if 0 < lid <= len(boxes) else None
        if box is None:
            continue
        out[lid] = measure_lesion(qsm, labels, rim_mask, lid, zooms, brainmask, bbox=box)
    return out


def rounded(row: dict, digits: int = 3) -> dict:
    """Columns ready for a TSV: floats rounded, None kept (written as an empty cell)."""
    return {k: (None if v is None or not np.isfinite(v) else round(float(v), digits)) for k, v in row.items()}
