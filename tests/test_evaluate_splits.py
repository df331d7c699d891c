"""Folds: grouped by patient, stratified, repeated; inner validation and label-efficiency draws."""
from __future__ import annotations

import numpy as np
import pytest

from rimscope.errors import InputError
from rimscope.evaluate.splits import grouped_folds, subsample_subjects


def _cohort(n_subj=30, seed=0):
    rng = np.random.default_rng(seed)
    groups, y = [], []
    for s in range(n_subj):
        k = rng.integers(3, 15)
        groups += [f"s{s:02d}"] * k
        y += list((rng.random(k) < 0.1).astype(int))
    y = np.array(y)
    y[:1] = 1
    return np.array(groups), y


def test_no_subject_in_two_folds_and_every_lesion_tested_once():
    groups, y = _cohort()
    folds = grouped_folds(y, groups, n_folds=5, repeats=3, seed=7)
    assert len(folds) == 15
    for r in range(3):
        fr = [f for f in folds if f.repeat == r]
        seen = np.concatenate([f.test for f in fr])
        assert np.array_equal(np.sort(seen), np.arange(y.size))  # each lesion tested exactly once
        for f in fr:
            assert not set(groups[f.train]) & set(groups[f.test])
            assert np.intersect1d(f.train, f.test).size == 0
    # repeats differ
    assert not all(np.array_equal(a.test, b.test) for a, b in zip(folds[:5], folds[5:10]))


def test_positives_are_spread_over_folds():
    groups, y = _cohort(seed=3)
    prev = y.mean()
    folds = grouped_folds(y, groups, n_folds=5, repeats=2, seed=0)
    for f in folds:
        assert y[f.test].sum() >= 1
        assert abs(y[f.test].mean() - prev) < 0.1
    # a plain GroupKFold without stratification is what this protects against: check the
    # stratified folds are at least as balanced in their Rim+ counts
    counts = [y[f.test].sum() for f in folds[:5]]
    assert max(counts) - min(counts) <= max(3, y.sum() // 3)


def test_too_few_subjects_is_a_user_error():
    groups, y = _cohort(n_subj=4)
    with pytest.raises(InputError, match="--folds"):
        grouped_folds(y, groups, n_folds=5)


def test_subsample_keeps_whole_subjects_and_a_positive():
    groups, y = _cohort(seed=2)
    for seed in range(5):
        idx = subsample_subjects(groups, y, 4, seed=seed)
        assert len(set(groups[idx])) == 4 and y[idx].sum() >= 1
        # whole subjects only
        for s in set(groups[idx]):
            assert (groups[idx] == s).sum() == (groups == s).sum()
