"""Uncertainty: DeLong tests between correlated ROC AUCs and the patient-level bootstrap.

Lesions of one patient are not independent (same scanner session, same reconstruction, same
rater), so every interval resamples *patients*, never lesions. DeLong compares two models scored
on the same lesions, which is why its covariance term matters.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats as _sstats

from ..metrics import pr_curve, roc_curve

NAN = float("nan")


# ------------------------------------------------------------------ DeLong (Sun & Xu 2014)

def _midrank(x: np.ndarray) -> np.ndarray:
    """Midranks (1-based, ties get the mean of their positions), O(n log n) and vectorised."""
    return _sstats.rankdata(x, method="average")


def delong_components(y, scores) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (k,) and their DeLong covariance (k, k) for k score vectors on the same lesions.

    Sun & Xu's trick: the structural components V10 (per positive) and V01 (per negative) come from
    three midrankings (pooled, positives only, negatives only) instead of an m x n comparison.
    """
    y = np.asarray(y).astype(int).ravel()
    S = np.atleast_2d(np.asarray(scores, float))
    pos, neg = S[:, y == 1], S[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    if m < 2 or n < 2:
        raise ValueError("DeLong needs at least two Rim+ and two Rim- lesions")
    k = S.shape[0]
    tx = np.array([_midrank(pos[r]) for r in range(k)])
    ty = np.array([_midrank(neg[r]) for r in range(k)])
    tz = np.array([_midrank(np.r_[pos[r], neg[r]]) for r in range(k)])
    aucs = tz[:, :m].sum(1) / (m * n) - (m + 1.0) / (2.0 * n)
    v10 = (tz[:, :m] - tx) / n  # per positive: fraction of negatives it beats
    v01 = 1.0 - (tz[:, m:] - ty) / m  # per negative: fraction of positives that beat it
    s10 = np.atleast_2d(np.cov(v10))
    s01 = np.atleast_2d(np.cov(v01))
    return aucs, s10 / m + s01 / n


def delong_test(y, p1, p2) -> dict:
    """Two-sided DeLong test of AUC(p1) = AUC(p2) on the same lesions."""
    aucs, cov = delong_components(y, np.vstack([p1, p2]))
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    diff = float(aucs[0] - aucs[1])
    if var <= 1e-15:
        z, pval = 0.0, 1.0 if abs(diff) < 1e-12 else 0.0
    else:
        z = diff / math.sqrt(var)
        pval = float(2 * _sstats.norm.sf(abs(z)))
    return {"auc1": float(aucs[0]), "auc2": float(aucs[1]), "diff": diff, "z": float(z),
            "p": float(pval), "var_diff": float(var)}


def delong_ci(y, p, level: float = 0.95) -> tuple[float, float]:
    """Asymptotic CI of one AUC (lesions treated as independent; prefer the patient bootstrap)."""
    aucs, cov = delong_components(y, np.atleast_2d(p))
    se = math.sqrt(max(cov[0, 0], 0.0))
    zq = _sstats.norm.ppf(0.5 + level / 2)
    return float(max(0.0, aucs[0] - zq * se)), float(min(1.0, aucs[0] + zq * se))


# ------------------------------------------------------------------ patient-level bootstrap

def cluster_indices(groups) -> list[np.ndarray]:
    groups = np.asarray(groups)
    _, inv = np.unique(groups, return_inverse=True)
    return [np.nonzero(inv == g)[0] for g in range(inv.max() + 1)] if groups.size else []


def bootstrap_samples(groups, n_boot: int, seed: int):
    """Yield lesion index arrays, each the lesions of patients drawn with replacement."""
    clusters = cluster_indices(groups)
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        pick = rng.integers(0, len(clusters), len(clusters))
        yield np.concatenate([clusters[i] for i in pick])


def bootstrap_ci(fn, groups, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Percentile CI of `fn(idx) -> dict of floats` (idx: lesion positions) over patient resamples.

    Resamples where a metric is undefined (e.g. no Rim+ lesion drawn) are skipped for that metric;
    the number used is reported, and fewer than 20 usable resamples give no interval.
    """
    draws: dict[str, list] = {}
    for idx in bootstrap_samples(groups, n_boot, seed):
        for key, v in fn(idx).items():
            draws.setdefault(key, []).append(v)
    a = (1 - level) / 2
    out = {}
    for key, vals in draws.items():
        v = np.asarray(vals, float)
        v = v[np.isfinite(v)]
        out[key] = ({"lo": float(np.quantile(v, a)), "hi": float(np.quantile(v, 1 - a)), "n": int(v.size)}
                    if v.size >= 20 else {"lo": NAN, "hi": NAN, "n": int(v.size)})
    return out


def curve_bands(y, p, groups, n_boot: int = 500, seed: int = 0, level: float = 0.95,
                grid: np.ndarray | None = None) -> dict:
    """Bootstrap bands of the ROC (TPR at fixed FPR) and PR (precision at fixed recall) curves."""
    grid = np.linspace(0, 1, 101) if grid is None else grid
    y, p = np.asarray(y), np.asarray(p)
    tprs, precs = [], []
    for idx in bootstrap_samples(groups, n_boot, seed):
        yy, pp = y[idx], p[idx]
        if yy.min() == yy.max():
            continue
        fpr, tpr, _ = roc_curve(yy, pp)
        tprs.append(np.interp(grid, fpr, tpr))
        rec, prec = pr_curve(yy, pp)
        # interpolated precision (max precision at recall >= r), the usual monotone envelope
        env = np.maximum.accumulate(prec[::-1])[::-1]
        precs.append(np.array([env[rec >= r].max() if (rec >= r).any() else 0.0 for r in grid]))
    a = (1 - level) / 2
    if len(tprs) < 20:
        return {"grid": grid, "n": len(tprs)}
    T, Pm = np.array(tprs), np.array(precs)
    return {"grid": grid, "n": len(tprs), "tpr_lo": np.quantile(T, a, 0), "tpr_hi": np.quantile(T, 1 - a, 0),
            "prec_lo": np.quantile(Pm, a, 0), "prec_hi": np.quantile(Pm, 1 - a, 0)}
