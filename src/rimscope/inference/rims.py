"""Rim voxels and rim quantities of one rated subject: the part of issue 13 that predict writes.

The rim mask comes from the model's voxel head when it has one (its patch-space probabilities,
from the same forward pass as the lesion probabilities, put back on the subject's grid by
rim_segment.patch_probs_to_native, rim where p >= the model's `rim_threshold`, chosen on held-out
rim truth when it was trained), else from rim_segment's analytic rule.
Which one is said in `SubjectRims.method` (written to the mask's sidecar and the run record).
The per-lesion columns are rim_measures.COLUMNS over that mask (empty where no rim was found).
Everything here is on the subject's canonical grid; outputs maps it back to the original one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..io import Subject
from ..rim_measures import COLUMNS, measure_subject, rounded
from ..rim_segment import (ANALYTIC_DEFAULTS, analytic_rim_mask, patch_probs_to_native,
                           rim_mask_from_probability)

BY_HEAD = "model voxel head"
BY_RULE = (f"analytic rule (QSM ≥ {ANALYTIC_DEFAULTS['threshold_ppb']:g} ppb over the local surround "
           "near the edge)")
NO_QSM = "none (no QSM map to measure on)"


@dataclass
class SubjectRims:
    """The rim segmentation of one subject (canonical grid) and its per-lesion COLUMNS."""

    mask: np.ndarray  # bool
    prob: np.ndarray | None  # float32 voxel probability (voxel head only)
    method: str  # BY_HEAD, BY_RULE or NO_QSM
    columns: dict = field(default_factory=dict)  # {lesion_id: {COLUMNS: float or None}}
    threshold: float | None = None  # voxel head: the probability at which a voxel is rim


def rim_method(model) -> str:
    """How the rim mask of `model`'s predictions is made (BY_HEAD or BY_RULE)."""
    return BY_HEAD if getattr(model, "has_voxel_head", False) else BY_RULE


def subject_rims(subject: Subject, lesions, rim_proba, config, threshold: float = 0.5) -> SubjectRims:
    """`lesions`: the patch set's lesions (patch i is lesions[i]); `rim_proba`: their voxel
    probabilities (N, S, S, S) or None (no voxel head); `config`: the patch geometry used;
    `threshold`: the voxel probability at which a voxel is rim."""
    if rim_proba is not None:
        prob = (patch_probs_to_native(rim_proba, lesions, subject.lesions, subject.affine, subject.zooms,
                                      config) if len(lesions) else np.zeros(subject.lesions.shape, np.float32))
        mask, method = rim_mask_from_probability(prob, threshold), BY_HEAD
    elif subject.qsm is not None:
        prob = None
        mask = analytic_rim_mask(subject.qsm, subject.lesions, subject.zooms, subject.brainmask,
                                 lesion_ids=[les.id for les in lesions])
        method = BY_RULE
    else:
        prob, mask, method = None, np.zeros(subject.lesions.shape, bool), NO_QSM
    ids = [les.id for les in lesions]
    if subject.qsm is None:
        cols = {i: dict.fromkeys(COLUMNS) for i in ids}
    else:
        cols = {i: rounded(v) for i, v in measure_subject(subject.qsm, subject.lesions, mask, subject.zooms,
                                                         subject.brainmask, lesion_ids=ids).items()}
    return SubjectRims(mask, prob, method, cols, threshold if method == BY_HEAD else None)
