"""Rim voxel truth of a simulated validation cohort, on each lesion's patch grid.

Why: a voxel head trained on the lesion engine has its voxel threshold chosen, and its rim Dice
tracked every epoch, on the validation data. With `--val-cohort` those are whole-brain subjects,
whose rims the engine's own held-out examples may not resemble, so their truth is what the head
should be judged by. A simulated cohort (`rimscope simulate`) writes its rim voxel truth beside
each lesion mask (`sub-<id>_desc-rimtruth_mask.nii.gz`); it is sampled through the same patch
grid as the QSM channel (patches.sample_volume), so the truth is each patch voxel's rim fraction,
as the engine's is. A patch holds every rim in it, a neighbour's too. A cohort without the truth
(a user's own scans) gets none: validation then tracks the lesion calls only.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..simulate.layout import rimtruth_path


def rimtruth_beside(entry) -> Path:
    """Where a simulated cohort keeps the subject's rim truth: beside its lesion mask, under the
    simulator's file name (simulate.layout)."""
    return Path(entry.lesions).parent / Path(rimtruth_path(entry.subject)).name


def cohort_rim_truth(entries, data, config) -> np.ndarray | None:
    """(N, S, S, S) float32 rim truth for `data`'s rows (train.data.LesionData of `entries`), or
    None when any subject has no rim truth file."""
    from ..io import canonical_mask, load_subject
    from ..lesions import lesion_table
    from ..patches import sample_volume

    entries = list(entries)
    if not entries or not all(rimtruth_beside(e).exists() for e in entries):
        return None
    s = config.size
    out = np.full((len(data), s, s, s), np.nan, np.float32)
    for entry in entries:
        rows = np.flatnonzero(data.subject == entry.subject)
        if not len(rows):
            continue
        subject = load_subject(subject_id=entry.subject, **entry.paths())
        truth = canonical_mask(rimtruth_beside(entry), subject, "rim truth").astype(np.float32)
        table = {les.id: les for les in lesion_table(subject.lesions, subject.affine)}
        for r in rows:
            out[r] = sample_volume(subject, table[int(data.lesion_id[r])], truth, config)
    return out
