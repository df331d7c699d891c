"""Every metric rimscope reports, on the ground floor so that every stage uses the same ones:
ROC / PR / partial AUC, sensitivity at specificity, F1, kappa, Brier, calibration bins, ICC,
subject-level Rim+ counts, and the choice of an operating threshold (training, evaluation,
review and the demo all read their numbers from here).

Written out rather than borrowed.

Why our own code: the bootstrap calls these thousands of times on resampled data, where a metric
must return NaN (not raise) when a resample holds one class only, and the ROC points must be the
exact ones DeLong and the CI bands use. tests/test_metrics.py checks every one against
scikit-learn on random data with ties.

Conventions: `y` is 0/1 (1 = Rim+), `p` a score where higher means more likely Rim+, `t` the
operating threshold (`p >= t` is called Rim+): a number, or one per lesion when out-of-fold
predictions pool folds whose thresholds were each chosen inside their own training part.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats as _sstats

NAN = float("nan")


def _arrays(y, p):
    y = np.asarray(y).astype(int).ravel()
    p = np.asarray(p, float).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels and scores differ in length ({y.size} vs {p.size})")
    return y, p


def roc_curve(y, p) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points (fpr, tpr, thresholds) at every distinct score, starting at (0, 0).

    Ties share one point, so tied scores give a diagonal segment (the Mann-Whitney convention).
    """
    y, p = _arrays(y, p)
    order = np.argsort(-p, kind="mergesort")
    ps, ys = p[order], y[order]
    last = np.r_[np.nonzero(np.diff(ps))[0], ps.size - 1]  # last index of each distinct score
    tps = np.cumsum(ys)[last]
    fps = (last + 1) - tps
    P, N = ys.sum(), ys.size - ys.sum()
    tpr = np.r_[0.0, tps / P] if P else np.full(tps.size + 1, NAN)
    fpr = np.r_[0.0, fps / N] if N else np.full(fps.size + 1, NAN)
    return fpr, tpr, np.r_[np.inf, ps[last]]


def roc_auc(y, p) -> float:
    """Area under the ROC curve = P(score of a Rim+ lesion > score of a Rim- one), ties count 1/2."""
    y, p = _arrays(y, p)
    m, n = int(y.sum()), int(y.size - y.sum())
    if m == 0 or n == 0:
        return NAN
    r = _sstats.rankdata(p)  # midranks
    return float((r[y == 1].sum() - m * (m + 1) / 2) / (m * n))


def partial_auc(y, p, max_fpr: float = 0.1) -> float:
    """Standardised partial AUC over FPR in [0, max_fpr] (McClish 1989), as sklearn's max_fpr.

    0.5 means chance and 1 perfect within the region that matters clinically (few false alarms).
    """
    fpr, tpr, _ = roc_curve(y, p)
    if not np.isfinite(fpr).all() or not np.isfinite(tpr).all():
        return NAN
    stop = np.searchsorted(fpr, max_fpr, side="right")
    x, yv = fpr[:stop], tpr[:stop]
    if stop < fpr.size:  # close the region with the interpolated point at max_fpr
        x = np.r_[x, max_fpr]
        yv = np.r_[yv, np.interp(max_fpr, fpr[stop - 1:stop + 1], tpr[stop - 1:stop + 1])]
    area = float(np.trapezoid(yv, x)) if hasattr(np, "trapezoid") else float(np.trapz(yv, x))
    lo, hi = 0.5 * max_fpr ** 2, max_fpr
    return 0.5 * (1 + (area - lo) / (hi - lo))


def average_precision(y, p) -> float:
    """PR AUC as average precision: sum over thresholds of (recall step) x precision.

    Step-wise, not trapezoidal: interpolating a PR curve linearly overstates it.
    """
    y, p = _arrays(y, p)
    P = int(y.sum())
    if P == 0 or P == y.size:
        return NAN if P == 0 else 1.0
    order = np.argsort(-p, kind="mergesort")
    ps, ys = p[order], y[order]
    last = np.r_[np.nonzero(np.diff(ps))[0], ps.size - 1]
    tps = np.cumsum(ys)[last]
    precision = tps / (last + 1)
    recall = tps / P
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def pr_curve(y, p) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at every distinct score, from high to low score."""
    y, p = _arrays(y, p)
    order = np.argsort(-p, kind="mergesort")
    ps, ys = p[order], y[order]
    last = np.r_[np.nonzero(np.diff(ps))[0], ps.size - 1]
    tps = np.cumsum(ys)[last]
    P = max(int(ys.sum()), 1)
    return tps / P, tps / (last + 1)


def sensitivity_at_specificity(y, p, specificity: float = 0.9) -> float:
    """Highest sensitivity at a threshold whose specificity is at least `specificity`.

    No interpolation between ROC points: the number is achievable by some real threshold.
    """
    fpr, tpr, _ = roc_curve(y, p)
    if not np.isfinite(fpr).all() or not np.isfinite(tpr).all():
        return NAN
    ok = fpr <= (1 - specificity) + 1e-12
    return float(tpr[ok].max())


def confusion(y, p, t: float) -> dict:
    """Counts at the operating threshold: tp, fp, tn, fn."""
    y, p = _arrays(y, p)
    pred = p >= np.broadcast_to(np.asarray(t, float), p.shape)
    return {"tp": int((pred & (y == 1)).sum()), "fp": int((pred & (y == 0)).sum()),
            "tn": int((~pred & (y == 0)).sum()), "fn": int((~pred & (y == 1)).sum())}


def f1(y, p, t: float) -> float:
    c = confusion(y, p, t)
    d = 2 * c["tp"] + c["fp"] + c["fn"]
    return 2 * c["tp"] / d if d else NAN


def cohen_kappa(y, p, t: float) -> float:
    """Agreement of the thresholded calls with the labels beyond chance (labels are a rater too)."""
    c = confusion(y, p, t)
    n = sum(c.values())
    if n == 0:
        return NAN
    po = (c["tp"] + c["tn"]) / n
    pe = ((c["tp"] + c["fp"]) * (c["tp"] + c["fn"]) + (c["tn"] + c["fn"]) * (c["tn"] + c["fp"])) / n ** 2
    return float((po - pe) / (1 - pe)) if pe < 1 else NAN


def brier(y, p) -> float:
    """Mean squared error of the probabilities: calibration and sharpness together."""
    y, p = _arrays(y, p)
    return float(np.mean((p - y) ** 2)) if y.size else NAN


def sens_spec(y, p, t: float) -> tuple[float, float]:
    c = confusion(y, p, t)
    sens = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else NAN
    spec = c["tn"] / (c["tn"] + c["fp"]) if c["tn"] + c["fp"] else NAN
    return sens, spec


def lesion_metrics(y, p, t: float) -> dict:
    """Every lesion-level number of the results table."""
    sens, spec = sens_spec(y, p, t)
    return {"roc_auc": roc_auc(y, p), "pr_auc": average_precision(y, p),
            "pauc_fpr0.1": partial_auc(y, p, 0.1),
            "sens_at_spec0.90": sensitivity_at_specificity(y, p, 0.90),
            "sens_at_spec0.95": sensitivity_at_specificity(y, p, 0.95),
            "f1": f1(y, p, t), "kappa": cohen_kappa(y, p, t), "brier": brier(y, p),
            "sensitivity": sens, "specificity": spec}


def calibration_bins(y, p, n_bins: int = 10) -> dict:
    """Reliability diagram data: mean predicted vs observed Rim+ fraction in equal-width bins."""
    y, p = _arrays(y, p)
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
    out = {"mean_predicted": [], "observed": [], "count": []}
    for b in range(n_bins):
        sel = idx == b
        if sel.any():
            out["mean_predicted"].append(float(p[sel].mean()))
            out["observed"].append(float(y[sel].mean()))
            out["count"].append(int(sel.sum()))
    return out


# ------------------------------------------------------------------ subject level

def subject_counts(subjects, y, p, t: float) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    """Per subject: (ids, true Rim+ count, predicted count at t, expected count = sum of p)."""
    subjects = np.asarray(subjects)
    y, p = _arrays(y, p)
    call = p >= np.broadcast_to(np.asarray(t, float), p.shape)
    ids, inv = np.unique(subjects, return_inverse=True)
    true = np.bincount(inv, weights=y, minlength=ids.size).astype(float)
    pred = np.bincount(inv, weights=call, minlength=ids.size).astype(float)
    expected = np.bincount(inv, weights=p, minlength=ids.size).astype(float)
    return ids.tolist(), true, pred, expected


def spearman(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return NAN
    ra, rb = _sstats.rankdata(a), _sstats.rankdata(b)  # Spearman = Pearson of midranks
    return float(np.corrcoef(ra, rb)[0, 1])


def subject_metrics(subjects, y, p, t: float) -> dict:
    """Rim+ count agreement (Spearman, ICC(2,1)) and >=1 / >=4 PRL classification.

    The counts are what a clinical study reads (PRL count is a prognostic marker; >=1 and >=4 are
    the published cut-offs). ICC(2,1): two-way random, absolute agreement, single measurement,
    because a model that is off by a constant is not interchangeable with the rater.
    """
    _, true, pred, expected = subject_counts(subjects, y, p, t)
    out = {"count_spearman": spearman(true, pred),
           "count_icc21": icc(np.stack([true, pred], 1), kind="2,1") if true.size >= 2 else NAN,
           "count_mae": float(np.mean(np.abs(true - pred))) if true.size else NAN}
    for k in (1, 4):
        pos = (true >= k).astype(int)
        call = (pred >= k).astype(int)
        out[f"prl{k}_sensitivity"] = float(call[pos == 1].mean()) if pos.any() else NAN
        out[f"prl{k}_specificity"] = float(1 - call[pos == 0].mean()) if (pos == 0).any() else NAN
        out[f"prl{k}_auc"] = roc_auc(pos, expected)  # expected count ranks subjects, no threshold
        out[f"prl{k}_n_positive"] = int(pos.sum())
    out["n_subjects"] = int(true.size)
    return out


def fpr_by_kind(y, p, t: float, kinds) -> dict:
    """False-positive rate among true Rim- lesions of each hard-negative kind ('' = ordinary).

    Shows which look-alikes (veins, hyperintense cores, partial rims...) fool a model.
    """
    y, p = _arrays(y, p)
    kinds = np.asarray([k if k else "none" for k in kinds], dtype=object)
    out = {}
    for k in sorted(set(kinds[y == 0].tolist())):
        sel = (kinds == k) & (y == 0)
        call = p >= np.broadcast_to(np.asarray(t, float), p.shape)
        out[k] = {"n": int(sel.sum()), "fpr": float(call[sel].mean())}
    return out


# ------------------------------------------------------------------ operating threshold

def choose_threshold(y, p, rule: str = "f1", min_sensitivity: float = 0.9) -> float:
    """Threshold on validation scores; 0.5 when there is no positive to choose with.

    "f1" maximises F1 (FRODO's rule); "sensitivity" keeps >= `min_sensitivity` of the Rim+ lesions.
    """
    y, p = np.asarray(y), np.asarray(p, dtype=np.float64)
    pos = np.sort(p[y == 1])[::-1]
    if pos.size == 0:
        return 0.5
    if rule == "sensitivity":
        k = max(1, math.ceil(min_sensitivity * pos.size - 1e-9))
        return float(pos[k - 1])
    if rule == "f1":
        best, thr = -1.0, 0.5
        for t in np.unique(p):
            pred = p >= t
            tp = np.sum(pred & (y == 1))
            f1_t = 2 * tp / max(1, pred.sum() + (y == 1).sum())
            if f1_t > best:
                best, thr = f1_t, float(t)
        return thr
    raise ValueError(f"threshold rule {rule!r} is not 'sensitivity' or 'f1'")


# ------------------------------------------------------------------ ICC (Shrout & Fleiss 1979)

def icc(ratings, kind: str = "2,1") -> float:
    """Intraclass correlation of an (n targets x k raters) table.

    kind "2,1": two-way random effects, absolute agreement, single rater (used for Rim+ counts:
    a constant offset counts as disagreement). "3,1": two-way mixed, consistency. "1,1": one-way.
    """
    X = np.asarray(ratings, float)
    n, k = X.shape
    if n < 2 or k < 2:
        return NAN
    grand = X.mean()
    ss_rows = k * ((X.mean(1) - grand) ** 2).sum()
    ss_cols = n * ((X.mean(0) - grand) ** 2).sum()
    ss_tot = ((X - grand) ** 2).sum()
    ss_err = ss_tot - ss_rows - ss_cols
    bms = ss_rows / (n - 1)
    jms = ss_cols / (k - 1)
    ems = ss_err / ((n - 1) * (k - 1))
    wms = (ss_cols + ss_err) / (n * (k - 1))
    if kind == "1,1":
        den = bms + (k - 1) * wms
        return float((bms - wms) / den) if den > 0 else NAN
    if kind == "2,1":
        den = bms + (k - 1) * ems + k * (jms - ems) / n
        return float((bms - ems) / den) if den > 0 else NAN
    if kind == "3,1":
        den = bms + (k - 1) * ems
        return float((bms - ems) / den) if den > 0 else NAN
    raise ValueError(f"unknown ICC kind {kind!r}")
