"""Patient-grouped, label-stratified folds, repeated with different seeds.

A patient's lesions share scanner, reconstruction and rater: putting some in training and others
in test leaks all three. Rim+ lesions are rare (5-15 %), so folds are also stratified, otherwise
a fold can end up with no positive to score.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class Fold:
    repeat: int
    fold: int
    train: np.ndarray  # lesion indices (outer training part, inner validation included)
    test: np.ndarray


def check_folds(y, groups, n_folds: int) -> None:
    """Refuse fold counts the labels cannot support (called before hours of patch extraction)."""
    y = np.asarray(y).astype(int)
    groups = np.asarray(groups)
    n_groups = len(set(groups.tolist()))
    if n_folds < 2:
        raise InputError(f"--folds {n_folds}: need at least 2 folds")
    if n_groups < n_folds:
        raise InputError(f"--folds {n_folds} needs at least {n_folds} labelled subjects, the cohort "
                         f"has {n_groups}; lower --folds or label more subjects")
    pos_groups = len(set(groups[y == 1].tolist()))
    if pos_groups < n_folds:
        raise InputError(f"only {pos_groups} subject(s) have a Rim+ lesion, fewer than --folds "
                         f"{n_folds}: some test folds would hold no Rim+ lesion; lower --folds")


def grouped_folds(y, groups, n_folds: int = 5, repeats: int = 1, seed: int = 0) -> list[Fold]:
    """Stratified group K-fold (sklearn StratifiedGroupKFold), one shuffled pass per repeat."""
    from sklearn.model_selection import StratifiedGroupKFold

    y = np.asarray(y).astype(int)
    groups = np.asarray(groups)
    check_folds(y, groups, n_folds)
    out = []
    for r in range(repeats):
        sgkf = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed + 1000 * r)
        for f, (tr, te) in enumerate(sgkf.split(np.zeros(y.size), y, groups)):
            out.append(Fold(repeat=r, fold=f, train=np.sort(tr), test=np.sort(te)))
    return out


def subsample_subjects(groups, y, n_subjects: int, seed: int = 0) -> np.ndarray:
    """Positions of the lesions of `n_subjects` patients drawn at random (for label efficiency),
    with at least one patient holding a Rim+ lesion when any exists."""
    groups = np.asarray(groups)
    y = np.asarray(y).astype(int)
    ids = sorted(set(groups.tolist()))
    if n_subjects >= len(ids):
        return np.arange(groups.size)
    rng = np.random.default_rng(seed)
    pos_ids = sorted(set(groups[y == 1].tolist()))
    chosen = []
    if pos_ids:  # a draw with no Rim+ lesion cannot train a classifier; keep the curve defined
        chosen.append(pos_ids[rng.integers(len(pos_ids))])
    rest = [s for s in ids if s not in chosen]
    chosen += list(rng.choice(rest, n_subjects - len(chosen), replace=False))
    return np.nonzero(np.isin(groups, chosen))[0]
