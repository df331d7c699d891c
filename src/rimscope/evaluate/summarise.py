"""From out-of-fold predictions to the numbers of the results table.

Each repeat's out-of-fold predictions cover every labelled lesion once, so metrics are computed
per repeat on the pooled lesions (thresholds per lesion, from its own fold) and averaged over
repeats. Intervals resample patients; each bootstrap draw is scored on every repeat and averaged,
so the CI describes the same quantity as the point estimate.
"""
from __future__ import annotations

import numpy as np

from .. import metrics as M
from .stats import bootstrap_ci, curve_bands, delong_test

HEADLINE = ["roc_auc", "pr_auc", "pauc_fpr0.1", "sens_at_spec0.90", "sens_at_spec0.95", "f1", "kappa",
            "brier", "count_spearman", "count_icc21", "prl1_auc", "prl4_auc"]


class Pooled:
    """Predictions of one variant as arrays aligned on a common lesion order, one row per repeat."""

    def __init__(self, rows: list[dict], keys: list[tuple]):
        pos = {k: i for i, k in enumerate(keys)}
        repeats = sorted({r["repeat"] for r in rows})
        self.keys = keys
        self.P = np.full((len(repeats), len(keys)), np.nan)
        self.T = np.full((len(repeats), len(keys)), np.nan)
        self.y = np.zeros(len(keys), int)
        for r in rows:
            i = pos[(r["subject"], r["lesion_id"])]
            self.P[r["repeat"], i] = r["probability"]
            self.T[r["repeat"], i] = r["threshold"]
            self.y[i] = r["y"]
        self.subject = np.array([k[0] for k in keys])


def _metrics(y, p, t, subjects) -> dict:
    out = M.lesion_metrics(y, p, t)
    out.update(M.subject_metrics(subjects, y, p, t))
    return out


def _avg(dicts: list[dict]) -> dict:
    keys = [k for k, v in dicts[0].items() if isinstance(v, (int, float))]
    out = {}
    for k in keys:
        v = np.array([d[k] for d in dicts], float)
        out[k] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
    return out


def summarise(rows: list[dict], *, n_boot: int = 1000, seed: int = 0, reference: str = "asymmetric",
              kinds: dict | None = None, truth_rim: dict | None = None, bands: bool = True) -> dict:
    """Per variant: metrics (mean over repeats), patient-bootstrap CIs, DeLong vs the reference,
    FPR per hard-negative kind (from simulator truth, when given), curves for the report."""
    keys = sorted({(r["subject"], r["lesion_id"]) for r in rows})
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    pooled = {v: Pooled([r for r in rows if r["variant"] == v], keys) for v in variants}
    out = {"n_lesions": len(keys), "n_subjects": len({k[0] for k in keys}),
           "n_rim": int(next(iter(pooled.values())).y.sum()) if pooled else 0,
           "n_repeats": int(max(r["repeat"] for r in rows) + 1) if rows else 0, "variants": {}}
    for v, pl in pooled.items():
        R = pl.P.shape[0]
        point = _avg([_metrics(pl.y, pl.P[r], pl.T[r], pl.subject) for r in range(R)])
        ci = bootstrap_ci(lambda idx: _avg([_metrics(pl.y[idx], pl.P[r, idx], pl.T[r, idx], pl.subject[idx])
                                           for r in range(R)]),
                          pl.subject, n_boot=n_boot, seed=seed)
        entry = {"metrics": point, "ci95": {k: ci[k] for k in HEADLINE if k in ci},
                 "confusion": M.confusion(pl.y, pl.P[0], pl.T[0]),
                 "calibration": M.calibration_bins(pl.y, pl.P[0]),
                 "model": next(r["model"] for r in rows if r["variant"] == v)}
        if bands:
            fpr, tpr, _ = M.roc_curve(pl.y, pl.P[0])
            rec, prec = M.pr_curve(pl.y, pl.P[0])
            entry["curves"] = {"roc": [fpr, tpr], "pr": [rec, prec],
                               "bands": curve_bands(pl.y, pl.P[0], pl.subject, n_boot=min(n_boot, 300),
                                                    seed=seed)}
        if kinds:
            kk = [kinds.get(k, "") for k in keys]
            yt = np.array([truth_rim.get(k, pl.y[i]) for i, k in enumerate(keys)]) if truth_rim else pl.y
            entry["fpr_by_kind"] = M.fpr_by_kind(yt, pl.P[0], pl.T[0], kk)
            if truth_rim:  # against the simulator's truth instead of the (noisy) rater labels
                entry["vs_truth"] = {"roc_auc": M.roc_auc(yt, pl.P[0]), "pr_auc": M.average_precision(yt, pl.P[0]),
                                     "rater_vs_truth_kappa": M.cohen_kappa(yt, pl.y.astype(float), 0.5),
                                     "oracle_roc_auc": M.roc_auc(pl.y, yt.astype(float))}
        out["variants"][v] = entry
    if reference in pooled:
        ref = pooled[reference]
        for v, pl in pooled.items():
            if v == reference:
                continue
            try:
                tests = [delong_test(pl.y, ref.P[r], pl.P[r]) for r in range(pl.P.shape[0])]
            except ValueError:  # fewer than two lesions of a class: no test
                continue
            out["variants"][v]["delong_vs_reference"] = {
                "reference": reference, "per_repeat": tests,
                "p_median": float(np.median([t["p"] for t in tests])),
                "diff_mean": float(np.mean([t["diff"] for t in tests]))}
    return out


def summarise_label_efficiency(rows: list[dict], n_boot: int = 500, seed: int = 0) -> list[dict]:
    """One point per (requested n, pre-trained or not): pooled out-of-fold AUC and patient CI."""
    out = []
    for n in sorted({r["n_subjects"] for r in rows}):
        for pre in sorted({r["pretrained"] for r in rows}):
            sel = [r for r in rows if r["n_subjects"] == n and r["pretrained"] == pre]
            if not sel:
                continue
            y = np.array([r["y"] for r in sel])
            p = np.array([r["probability"] for r in sel])
            g = np.array([r["subject"] for r in sel])
            ci = bootstrap_ci(lambda i: {"auc": M.roc_auc(y[i], p[i]), "pauc": M.partial_auc(y[i], p[i])},
                              g, n_boot=n_boot, seed=seed)
            n_used = sorted({r["n_used"] for r in sel})
            out.append({"n_subjects": int(n), "n_used": n_used, "pretrained": bool(pre),
                        "roc_auc": M.roc_auc(y, p), "roc_auc_ci95": [ci["auc"]["lo"], ci["auc"]["hi"]],
                        "pauc_fpr0.1": M.partial_auc(y, p)})
    return out
