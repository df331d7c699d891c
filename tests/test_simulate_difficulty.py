"""Slow: a default cohort is as hard as intended (CI only; the full figures use 40 subjects)."""
from __future__ import annotations

import pytest

from rimscope.simulate.config import SimConfig
from rimscope.simulate.cohort_writer import simulate_cohort
from rimscope.simulate.difficulty import measure


@pytest.mark.slow
def test_default_cohort_is_neither_trivial_nor_hopeless(tmp_path):
    simulate_cohort(tmp_path / "c", 8, 0, SimConfig(), quiet=True, montage=True)
    assert (tmp_path / "c" / "montage.png").stat().st_size > 10_000
    m = measure(tmp_path / "c", quiet=True)
    lab = m["label"]
    assert 0.03 <= lab["prevalence"] <= 0.2, m
    assert 0.6 <= lab["rim_contrast_auc"] <= 0.9, m  # too easy is a defect, not a success
    assert lab["volume_auc"] <= 0.75, m
    assert lab["contrast_pos_ppm"] > lab["contrast_neg_ppm"], m
    assert 10 <= m["lesions_per_subject"]["median"] <= 35, m
