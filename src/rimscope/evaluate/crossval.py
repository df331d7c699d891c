"""Out-of-fold predictions: every model (and ablation) fitted on the same patient-grouped folds.

Honesty rules enforced here, not left to the caller:
- folds are by patient and stratified (splits.grouped_folds);
- the operating threshold and early stopping use an inner validation split of the training
  patients only;
- pre-trained weights come from a separate unlabeled cohort (checked in cli), so no test
  lesion's image or label has shaped them;
- every model sees exactly the same folds, so DeLong can pair their predictions lesion by lesion.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from .splits import grouped_folds, subsample_subjects

log = logging.getLogger("rimscope")

PRETRAINABLE = ("asymmetric", "asymmetric-frodo")
REFERENCE = "asymmetric"


@dataclass(frozen=True)
class Variant:
    """One row of the results table: a registry model, fit options, with or without pre-training."""

    label: str
    model: str
    pretrained: bool = False
    options: dict = field(default_factory=dict, hash=False, compare=False)
    note: str = ""


def plan_variants(models: list[str], pretrain: bool, ablations: bool,
                  no_contrastive: dict | None = None) -> list[Variant]:
    """Table rows: each asked model (pre-trained when it can be), then the ablations of the method.

    `no_contrastive` is the fit-options dict that switches the supervised contrastive term off.
    """
    out = [Variant(m, m, pretrained=pretrain and m in PRETRAINABLE,
                   note="pre-trained" if pretrain and m in PRETRAINABLE else "") for m in models]
    if ablations:
        if pretrain:
            out.append(Variant(f"{REFERENCE} w/o pre-training", REFERENCE, False, note="ablation"))
        out.append(Variant(f"{REFERENCE} w/o contrastive", REFERENCE, pretrain,
                           options=dict(no_contrastive or {"supcon": False}), note="ablation"))
        out.append(Variant(f"{REFERENCE} w/o rim probe", REFERENCE, pretrain,
                           options={"rim_probe": False, "model": {"rim_skip": False}},
                           note="ablation: the head starts random, no linear path from the rim statistics"))
        out.append(Variant(f"{REFERENCE} probe only", REFERENCE, False, options={"epochs": 0},
                           note="ablation: the fitted rim-statistics probe, no network training"))
        if "rimnet" not in models:
            out.append(Variant("rimnet", "rimnet", False, note="ablation: symmetric fusion"))
    return out


def _subset(data, idx):
    from ..train.data import subset

    return subset(data, idx)


def _inner(data, seed):
    from ..train.data import inner_split

    fit_mask, val_mask = inner_split(data, 0.2, seed=seed)
    return np.flatnonzero(fit_mask), np.flatnonzero(val_mask)


def _fit_and_score(v: Variant, data, train_idx, test_idx, *, init, fit_fn, seed, device, quiet):
    part = _subset(data, train_idx)
    fit_i, val_i = _inner(part, seed)
    t0 = time.time()
    model = fit_fn(v.model, _subset(part, fit_i), _subset(part, val_i) if val_i.size else None,
                   init=init if v.pretrained else None, options=dict(v.options), seed=seed,
                   device=device, quiet=True)
    p = np.asarray(model.predict_proba(data.x[test_idx], device), float)
    return p, float(model.threshold), time.time() - t0


def run_crossval(data, variants: list[Variant], *, folds: int = 5, repeats: int = 1, seed: int = 0,
                 inits: dict | None = None, fit_fn=None, device: str = "cpu", quiet: bool = False,
                 on_fold=None) -> tuple[list[dict], list[dict]]:
    """Out-of-fold predictions of every variant on every fold of every repeat.

    Returns (prediction rows, fold records). A prediction row: repeat, fold, variant, model,
    subject, lesion_id, y, probability, threshold, call.
    """
    from ..runtime import progress
    from .adapter import fit_model

    fit_fn = fit_fn or fit_model
    inits = inits or {}
    fl = grouped_folds(data.y, data.subject, folds, repeats, seed)
    rows, records = [], []
    jobs = [(f, v) for f in fl for v in variants]
    for f, v in progress(jobs, desc="cross-validation", unit="fit", quiet=quiet):
        fit_seed = seed + 100 * f.repeat + f.fold
        p, t, secs = _fit_and_score(v, data, f.train, f.test, init=inits.get(v.model), fit_fn=fit_fn,
                                    seed=fit_seed, device=device, quiet=quiet)
        for i, pi in zip(f.test, p):
            rows.append({"repeat": f.repeat, "fold": f.fold, "variant": v.label, "model": v.model,
                         "subject": str(data.subject[i]), "lesion_id": int(data.lesion_id[i]),
                         "y": int(data.y[i]), "probability": float(pi), "threshold": t,
                         "call": int(pi >= t)})
        records.append({"repeat": f.repeat, "fold": f.fold, "variant": v.label, "seconds": round(secs, 2),
                        "threshold": t, "n_train_subjects": int(len(set(data.subject[f.train].tolist()))),
                        "n_test_lesions": int(f.test.size), "n_test_rim": int(data.y[f.test].sum())})
        if on_fold:
            on_fold(rows, records)
    return rows, records


def run_label_efficiency(data, sizes: list[int], *, model: str = REFERENCE, folds: int = 5,
                         seed: int = 0, init=None, options: dict | None = None, fit_fn=None,
                         device: str = "cpu", quiet: bool = False, skip=()) -> list[dict]:
    """AUC against the number of labelled training subjects, with and without pre-training.

    For each outer fold (first repeat), n training patients are drawn from that fold's training
    part (at least one with a Rim+ lesion), the model is fitted, and the untouched test fold is
    scored; the pooled out-of-fold AUC per n is what the curve shows. `skip`: (n, pretrained)
    points the caller already has (see reuse_full_points).
    """
    from ..runtime import progress
    from .adapter import fit_model

    fit_fn = fit_fn or fit_model
    fl = grouped_folds(data.y, data.subject, folds, 1, seed)
    arms = [False] + ([True] if init is not None else [])
    rows = []
    jobs = [(f, n, pre) for f in fl for n in sizes for pre in arms if (n, pre) not in set(skip)]
    for f, n, pre in progress(jobs, desc="label efficiency", unit="fit", quiet=quiet):
        tr = f.train[subsample_subjects(data.subject[f.train], data.y[f.train], n, seed=seed + f.fold + 7 * n)]
        v = Variant(model, model, pretrained=pre, options=dict(options or {}))
        p, t, _ = _fit_and_score(v, data, tr, f.test, init=init, fit_fn=fit_fn, seed=seed + f.fold,
                                 device=device, quiet=quiet)
        n_used = len(set(data.subject[tr].tolist()))
        for i, pi in zip(f.test, p):
            rows.append({"fold": f.fold, "n_subjects": int(n), "n_used": n_used, "pretrained": int(pre),
                         "subject": str(data.subject[i]), "lesion_id": int(data.lesion_id[i]),
                         "y": int(data.y[i]), "probability": float(pi), "threshold": t})
    return rows


def reuse_full_points(rows: list[dict], records: list[dict], pretrained_label: str | None,
                      scratch_label: str | None, n_all: int) -> tuple[list[dict], set]:
    """The label-efficiency points at "all subjects" are the main cross-validation's own fits of
    the reference model (first repeat, same folds): reuse them instead of fitting twice."""
    n_train = {(r["fold"], r["variant"]): r["n_train_subjects"] for r in records if r["repeat"] == 0}
    out, have = [], set()
    for label, pre in ((pretrained_label, True), (scratch_label, False)):
        sel = [r for r in rows if label and r["variant"] == label and r["repeat"] == 0]
        if not sel:
            continue
        have.add((n_all, pre))
        out += [{"fold": r["fold"], "n_subjects": n_all, "n_used": n_train[(r["fold"], label)],
                 "pretrained": int(pre), "subject": r["subject"], "lesion_id": r["lesion_id"], "y": r["y"],
                 "probability": r["probability"], "threshold": r["threshold"]} for r in sel]
    return out, have
