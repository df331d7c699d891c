"""The validation summary written into a trained model's card (rimscope.metrics computes it).

The operating threshold itself is chosen by `rimscope.metrics.choose_threshold` on held-out
lesions only: the default maximises validation F1 (FRODO's rule), so Rim+ counts per subject
— the number a study reads — land near the rater's; `threshold_rule=sensitivity` keeps
>= `min_sensitivity` of validation Rim+ lesions, for screening.
"""
from __future__ import annotations

import numpy as np

from .. import metrics as M

NAN = float("nan")


def summary(y, p, threshold: float) -> dict:
    """n, n_pos, PR AUC, ROC AUC (NaN on one class), sensitivity and specificity at `threshold`."""
    y, p = np.asarray(y), np.asarray(p)
    one_class = y.min(initial=1) == y.max(initial=0)
    sens, spec = M.sens_spec(y, p, threshold)
    return {"n": int(len(y)), "n_pos": int((y == 1).sum()),
            "pr_auc": NAN if one_class else M.average_precision(y, p),
            "roc_auc": NAN if one_class else M.roc_auc(y, p),
            "sensitivity": float(sens), "specificity": float(spec)}
