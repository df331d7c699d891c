"""Metric code against scikit-learn / scipy, a hand-worked DeLong example, Shrout & Fleiss ICCs."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from rimscope import metrics as M
from rimscope.evaluate import stats as S


def _data(seed, n=300, prev=0.12, ties=True):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prev).astype(int)
    y[:2], y[2:4] = 1, 0
    p = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + 1.5 * y)))
    if ties:  # rounding creates tied scores, the case where sloppy implementations differ
        p = np.round(p, 2)
    return y, p


@pytest.mark.parametrize("seed", range(6))
def test_threshold_free_metrics_match_sklearn(seed):
    y, p = _data(seed, ties=seed % 2 == 0)
    assert M.roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert M.average_precision(y, p) == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)
    for max_fpr in (0.1, 0.25):
        assert M.partial_auc(y, p, max_fpr) == pytest.approx(skm.roc_auc_score(y, p, max_fpr=max_fpr),
                                                             abs=1e-12)
    assert M.brier(y, p) == pytest.approx(skm.brier_score_loss(y, p), abs=1e-12)
    fpr, tpr, _ = skm.roc_curve(y, p, drop_intermediate=False)
    for spec in (0.9, 0.95):
        want = tpr[fpr <= 1 - spec + 1e-12].max()
        assert M.sensitivity_at_specificity(y, p, spec) == pytest.approx(want, abs=1e-12)
    f_ours, t_ours, _ = M.roc_curve(y, p)
    assert np.allclose(f_ours, fpr) and np.allclose(t_ours, tpr)


@pytest.mark.parametrize("t", [0.3, 0.5, 0.71])
def test_thresholded_metrics_match_sklearn(t):
    y, p = _data(11)
    pred = (p >= t).astype(int)
    assert M.f1(y, p, t) == pytest.approx(skm.f1_score(y, pred), abs=1e-12)
    assert M.cohen_kappa(y, p, t) == pytest.approx(skm.cohen_kappa_score(y, pred), abs=1e-12)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    assert M.confusion(y, p, t) == {"tp": tp, "fp": fp, "tn": tn, "fn": fn}


def test_degenerate_inputs_give_nan_not_errors():
    y = np.zeros(10, int)
    p = np.linspace(0, 1, 10)
    assert math.isnan(M.roc_auc(y, p)) and math.isnan(M.partial_auc(y, p))
    assert math.isnan(M.average_precision(y, p)) and math.isnan(M.sensitivity_at_specificity(y, p))
    assert M.roc_auc([0, 1], [0.2, 0.8]) == 1.0 and M.roc_auc([0, 1], [0.8, 0.2]) == 0.0


def test_delong_hand_worked_example():
    # Positives (Rim+) and negatives scored by two models A and B:
    #   A: pos .9 .8 .4 | neg .7 .3 .2      B: pos .6 .5 .3 | neg .55 .2 .1
    # V10 (fraction of negatives each positive beats): A = 1, 1, 2/3      B = 1, 2/3, 2/3
    # V01 (fraction of positives beating each negative): A = 2/3, 1, 1   B = 1/3, 1, 1
    # AUC_A = 8/9, AUC_B = 7/9.
    # S10 (sample cov over positives): var A = 1/27, var B = 1/27, cov = 1/54
    # S01 (over negatives):            var A = 1/27, var B = 4/27, cov = 2/27
    # Var = S10/m + S01/n with m = n = 3: Var A = 2/81, Var B = 5/81, Cov = 1/162 + 4/162 = 5/162
    # Var(A - B) = 2/81 + 5/81 - 2 * 5/162 = 2/81;  z = (1/9) / sqrt(2/81) = 1/sqrt(2)
    # p = 2 * (1 - Phi(0.7071)) = 0.4795
    y = np.array([1, 1, 1, 0, 0, 0])
    a = np.array([.9, .8, .4, .7, .3, .2])
    b = np.array([.6, .5, .3, .55, .2, .1])
    aucs, cov = S.delong_components(y, np.vstack([a, b]))
    assert aucs == pytest.approx([8 / 9, 7 / 9])
    assert cov == pytest.approx(np.array([[2 / 81, 5 / 162], [5 / 162, 5 / 81]]))
    r = S.delong_test(y, a, b)
    assert r["z"] == pytest.approx(1 / math.sqrt(2))
    assert r["p"] == pytest.approx(0.4795, abs=1e-4)


def _naive_delong(y, a, b):
    """O(m n) DeLong straight from the definition, for comparison."""
    def comps(s):
        X, Y = s[y == 1], s[y == 0]
        psi = (X[:, None] > Y[None]).astype(float) + 0.5 * (X[:, None] == Y[None])
        return psi.mean(1), psi.mean(0)
    (a10, a01), (b10, b01) = comps(a), comps(b)
    m, n = a10.size, a01.size
    c10, c01 = np.cov(np.vstack([a10, b10])), np.cov(np.vstack([a01, b01]))
    cov = c10 / m + c01 / n
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    z = (a10.mean() - b10.mean()) / math.sqrt(var)
    return z


@pytest.mark.parametrize("seed", range(3))
def test_fast_delong_matches_naive_definition(seed):
    y, a = _data(seed, n=200)
    b = np.round(np.clip(a + np.random.default_rng(seed + 9).normal(0, 0.15, a.size), 0, 1), 2)
    assert S.delong_test(y, a, b)["z"] == pytest.approx(_naive_delong(y, a, b), rel=1e-9)
    lo, hi = S.delong_ci(y, a)
    assert lo < M.roc_auc(y, a) < hi


def test_delong_detects_a_real_difference():
    rng = np.random.default_rng(3)
    y = (rng.random(600) < 0.15).astype(int)
    good = y * 2.0 + rng.normal(0, 1, y.size)
    weak = y * 0.3 + rng.normal(0, 1, y.size)
    assert S.delong_test(y, good, weak)["p"] < 1e-3
    assert S.delong_test(y, good, good)["p"] == 1.0


def test_icc_shrout_fleiss_table():
    # Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges.
    X = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
    assert M.icc(X, "1,1") == pytest.approx(0.17, abs=0.005)
    assert M.icc(X, "2,1") == pytest.approx(0.29, abs=0.005)
    assert M.icc(X, "3,1") == pytest.approx(0.71, abs=0.005)
    # absolute agreement punishes an offset; consistency does not
    t = np.arange(10.0)
    assert M.icc(np.stack([t, t + 3], 1), "3,1") == pytest.approx(1.0)
    assert M.icc(np.stack([t, t + 3], 1), "2,1") < 0.8


def test_subject_metrics_counts_and_prl_cutoffs():
    subj = np.repeat(["a", "b", "c", "d"], 5)
    y = np.zeros(20, int)
    y[[0, 1, 2, 3, 4]] = 1  # a: 5 Rim+
    y[[5]] = 1  # b: 1
    p = y * 0.9 + 0.05
    p[10] = 0.95  # c: one false positive
    out = M.subject_metrics(subj, y, p, 0.5)
    # one threshold per lesion (pooled folds) gives the same answer when they are all equal
    assert M.subject_metrics(subj, y, p, np.full(20, 0.5)) == out
    assert out["prl1_sensitivity"] == 1.0 and out["prl1_specificity"] == 0.5  # c called, d not
    assert out["prl4_sensitivity"] == 1.0 and out["prl4_specificity"] == 1.0
    assert out["count_mae"] == pytest.approx(0.25)
    assert out["count_spearman"] > 0.7


def test_bootstrap_resamples_whole_patients_and_brackets_estimate():
    y, p = _data(5, n=400)
    groups = np.repeat(np.arange(40), 10)
    for idx in S.bootstrap_samples(groups, 5, seed=1):
        counts = np.bincount(groups[idx], minlength=40)
        assert set(np.unique(counts % 10)) == {0}  # each drawn patient comes with all 10 lesions
    ci = S.bootstrap_ci(lambda i: {"auc": M.roc_auc(y[i], p[i])}, groups, n_boot=300, seed=0)
    assert ci["auc"]["lo"] < M.roc_auc(y, p) < ci["auc"]["hi"]
    assert ci["auc"]["hi"] - ci["auc"]["lo"] < 0.3
    bands = S.curve_bands(y, p, groups, n_boot=60)
    assert np.all(bands["tpr_lo"] <= bands["tpr_hi"] + 1e-12)


def test_fpr_by_kind():
    y = np.array([0, 0, 0, 0, 1])
    p = np.array([0.9, 0.1, 0.8, 0.7, 0.9])
    kinds = ["vein", "vein", "", "hyperintense", ""]
    out = M.fpr_by_kind(y, p, 0.5, kinds)
    assert out["vein"] == {"n": 2, "fpr": 0.5}
    assert out["none"]["fpr"] == 1.0 and out["hyperintense"]["fpr"] == 1.0
