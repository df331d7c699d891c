"""Validation metrics and the operating threshold, chosen on held-out lesions only.

The default operating point maximises validation F1 (FRODO's rule): Rim+ counts per subject
— the number a study reads — then land near the rater's. `threshold_rule=sensitivity` instead
keeps >= `min_sensitivity` of validation Rim+ lesions, for screening where a missed chronic
active lesion costs more than a second look (with ROC AUC ~0.8 it calls several times too many).
"""
from __future__ import annotations

import math

import numpy as np


def pr_auc(y, p) -> float:
    from sklearn.metrics import average_precision_score

    y = np.asarray(y)
    if y.min(initial=1) == y.max(initial=0):
        return float("nan")
    return float(average_precision_score(y, p))


def roc_auc(y, p) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y)
    if y.min(initial=1) == y.max(initial=0):
        return float("nan")
    return float(roc_auc_score(y, p))


def choose_threshold(y, p, rule: str = "f1", min_sensitivity: float = 0.9) -> float:
    """Threshold on validation scores; 0.5 when there is no positive to choose with."""
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
            f1 = 2 * tp / max(1, pred.sum() + (y == 1).sum())
            if f1 > best:
                best, thr = f1, float(t)
        return thr
    raise ValueError(f"threshold rule {rule!r} is not 'sensitivity' or 'f1'")


def summary(y, p, threshold: float) -> dict:
    y, p = np.asarray(y), np.asarray(p)
    pred = p >= threshold
    npos, nneg = int((y == 1).sum()), int((y == 0).sum())
    return {"n": int(len(y)), "n_pos": npos, "pr_auc": pr_auc(y, p), "roc_auc": roc_auc(y, p),
            "sensitivity": float(np.sum(pred & (y == 1)) / npos) if npos else float("nan"),
            "specificity": float(np.sum(~pred & (y == 0)) / nneg) if nneg else float("nan")}
