"""Lesion maps that are not lesion instance maps: tell them apart, and take one label on request.

Segmentation tools write label maps whose values are classes, not lesions: LST-AI's annotated
map labels lesion *locations* (periventricular, juxtacortical, ...: few labels, each many
separate lesions), SAMSEG a whole-brain segmentation where lesions are one label (99) and white
matter, cortex, ventricles are others (components of hundreds of millilitres). Read as instance
maps they give nonsense quietly (white matter rated as "lesion 2"), so such maps are refused
with what to pass instead, and `--lesion-label N` turns one label into a binary lesion mask.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .errors import InputError

HUGE_MM3 = 100_000.0  # 100 mL: no single MS lesion; white matter is ~500 mL
MAX_FILL = 0.15  # lesions never fill this fraction of the image; a brain segmentation does
CLASS_MAP_MAX_LABELS = 12  # a location-class map has few labels, and half of them or more ...
SCATTER_MM = 30.0  # ... in separate pieces spread wider than this (one lesion's fragments are not)
SAMSEG_LESION = 99
FIX = ("pass --lesion-label N to take one label as a binary lesion mask (e.g. --lesion-label "
       f"{SAMSEG_LESION} for SAMSEG), or give a binary lesion mask (LST-AI: space-flair_seg-lst.nii.gz)")


def select_label(data: np.ndarray, label: int, name) -> np.ndarray:
    """One label of a label map as a binary uint8 mask; a label not in the map is refused."""
    mask = np.asarray(data) == label
    if not mask.any():
        present = np.unique(data[data != 0])
        shown = ", ".join(str(int(v)) for v in present[:12]) + (", ..." if present.size > 12 else "")
        raise InputError(f"--lesion-label {label}: no voxel has this label (labels present: "
                         f"{shown or 'none'}); give one of them", name)
    return mask.view(np.uint8)


def _components_per_label(ids: np.ndarray, labels: np.ndarray, zooms) -> dict:
    """{label: (26-connected components, largest in voxels, extent of the label in mm)}, each
    label searched inside its own bounding box only (cheap for instance maps of small lesions)."""
    out = {}
    boxes = ndimage.find_objects(ids)
    structure = np.ones((3, 3, 3), bool)
    for lab in labels:
        box = boxes[int(lab) - 1]
        if box is None:
            continue
        comp, n = ndimage.label(ids[box] == lab, structure=structure)
        extent = max((sl.stop - sl.start) * z for sl, z in zip(box, zooms))
        out[int(lab)] = (n, int(np.bincount(comp.ravel())[1:].max()) if n else 0, float(extent))
    return out


def check_instance_map(ids: np.ndarray, labels: np.ndarray, zooms, name) -> None:
    """Refuse an integer label map that is not one id per lesion (see the module docstring).

    `ids`: int32 map, `labels`: its distinct non-zero values, `zooms`: voxel size (mm). Three
    signs, any one refuses: labels filling more than MAX_FILL of the image, a component larger
    than HUGE_MM3, or few labels of which half or more lie in pieces scattered over more than
    SCATTER_MM (location classes; a lesion split by resampling stays within its own extent).
    """
    voxel_mm3 = float(np.prod(zooms))
    filled = float(np.count_nonzero(ids)) / ids.size
    shown = ", ".join(str(int(v)) for v in labels[:8]) + (", ..." if labels.size > 8 else "")
    what = f"lesion map has {labels.size} labels ({shown})"
    hint = (f"; label {SAMSEG_LESION} is present (SAMSEG's lesion label)"
            if SAMSEG_LESION in labels else "")
    if filled > MAX_FILL:
        raise InputError(f"{what} covering {filled:.0%} of the image: a whole-brain segmentation "
                         f"(e.g. SAMSEG), not one id per lesion{hint}; {FIX}", name)
    if labels.max() > 1_000_000:  # ids this large are not class labels; find_objects would not fit
        return
    stats = _components_per_label(ids, labels, zooms)
    big = max(stats.items(), key=lambda kv: kv[1][1])
    if big[1][1] * voxel_mm3 > HUGE_MM3:
        raise InputError(f"{what}; label {big[0]} has a connected piece of "
                         f"{big[1][1] * voxel_mm3 / 1000:.0f} mL, no lesion is that large: a tissue "
                         f"segmentation (e.g. SAMSEG), not one id per lesion{hint}; {FIX}", name)
    scattered = {lab: st for lab, st in stats.items() if st[0] >= 2 and st[2] > SCATTER_MM}
    if labels.size <= CLASS_MAP_MAX_LABELS and 2 * len(scattered) >= labels.size:
        lab, (n, _, extent) = max(scattered.items(), key=lambda kv: kv[1][0])
        raise InputError(f"{what}; label {lab} has {n} separate pieces across {extent:.0f} mm: "
                         "labels are lesion classes (e.g. LST-AI's annotated locations), not one "
                         f"id per lesion{hint}; {FIX}", name)
