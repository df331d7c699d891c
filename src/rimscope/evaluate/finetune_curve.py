"""Label efficiency across a shift: what a user's own labelled subjects buy on a new scanner.

A user with another acquisition has a handful of labelled subjects. On a simulated cohort of one
acquisition preset, fit on n labelled training subjects (several random draws per n, each with
at least one Rim+ lesion) and score a separate test cohort of the same preset against the truth,
starting from
- `shipped`: the shipped model's weights and architecture (its learned head kept: no probe refit),
- `scratch`: random weights, the training defaults,
- `pretrained`: self-supervised pre-training on the training cohort's own images, unlabelled
  (all its lesions plus white-matter patches; never a test image).
n = 0 is the shipped model untouched. Training reads the cohort's labels.tsv (rater labels, as a
user's would be); the test scores against the truth. Every fit keeps its figures in OUT/fits/, so
a rerun only fits what is missing; the curve is OUT/finetune_curve.{tsv,md,json,png}.
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np

from .. import metrics as M
from . import stats

log = logging.getLogger("rimscope")

STARTS = ("shipped", "scratch", "pretrained")
SHIPPED_LR_FACTOR = 0.1  # fine-tuning a trained model: a tenth of the from-scratch learning rate
COLUMNS = ["start", "n_subjects", "draw", "n_train_lesions", "n_train_rim", "roc_auc", "pr_auc",
           "sens_at_spec0.90", "threshold", "sensitivity", "specificity", "seconds"]


def parse_sizes(text) -> list[int]:
    """The curve simulates its own training subjects: counts only, no 'all'."""
    from .pipeline import parse_sizes as parse

    return parse(text, allow_all=False)


def parse_starts(text) -> list[str]:
    from ..errors import InputError

    starts = [t.strip() for t in str(text).split(",") if t.strip()]
    bad = [s for s in starts if s not in STARTS]
    if bad or not starts:
        raise InputError(f"--starts {text!r}: choose from {', '.join(STARTS)}")
    return starts


def _score(y, groups, p, threshold, n_boot, seed) -> dict:
    sens, spec = M.sens_spec(y, p, threshold)
    ci = stats.bootstrap_ci(lambda i: {"roc_auc": M.roc_auc(y[i], p[i])}, groups, n_boot=n_boot, seed=seed)
    return {"roc_auc": M.roc_auc(y, p), "pr_auc": M.average_precision(y, p),
            "sens_at_spec0.90": M.sensitivity_at_specificity(y, p, 0.90), "threshold": float(threshold),
            "sensitivity": sens, "specificity": spec,
            "roc_ci": [ci["roc_auc"].get("lo"), ci["roc_auc"].get("hi")]}


def draw_subjects(data, n: int, draw: int, seed: int) -> np.ndarray:
    """Lesion positions of n training subjects for one draw (at least one with a Rim+ lesion)."""
    from .splits import subsample_subjects

    return subsample_subjects(data.subject, data.y, n, seed=seed + 1009 * draw + 7 * n)


def finetune_curve(train_cohort, test_cohort, out, *, sizes=(2, 4, 8, 16), draws: int = 2,
                   starts=STARTS, base="default", options: dict | None = None,
                   pretrain_options: dict | None = None, wm_per_subject: int = 20, seed: int = 0,
                   n_boot: int = 500, device: str = "cpu", quiet: bool = False, fit_fn=None,
                   pretrain_fn=None, command: str | None = None) -> dict:
    """Fit every (start, n, draw), score the test cohort against the truth; the curve as a dict."""
    from ..cohort import load_cohort, read_labels
    from ..errors import InputError
    from ..models.card import load_model, read_card
    from ..runtime import progress, versions, write_json_atomic, write_text_atomic, write_tsv_atomic
    from ..train.data import inner_split, load_lesion_data, subset
    from ..train.options import parse_training_options
    from ..weights import shipped
    from .adapter import fit_model, pretrain_init
    from .transfer import cohort_manifest, cohort_truth

    fit_fn, pretrain_fn = fit_fn or fit_model, pretrain_fn or pretrain_init
    train_cohort, test_cohort, out = Path(train_cohort), Path(test_cohort), Path(out)
    if train_cohort.resolve() == test_cohort.resolve():
        raise InputError("the test cohort must not be the training cohort", test_cohort)
    if draws < 1:
        raise InputError("--draws must be at least 1")
    base_path = shipped().get(str(base), Path(base))
    base_model = load_model(base_path, device=device)
    card = read_card(base_path)
    pc = base_model.patch_config
    train_entries = load_cohort(cohort_manifest(train_cohort))
    test_entries = load_cohort(cohort_manifest(test_cohort))
    cache = out / ".patch_cache"
    train = load_lesion_data(train_entries, read_labels(train_cohort / "labels.tsv"), pc, cache_dir=cache,
                             quiet=quiet, labels_path=train_cohort / "labels.tsv")
    test = load_lesion_data(test_entries, cohort_truth(test_cohort), pc, cache_dir=cache, quiet=quiet)
    test = subset(test, test.y >= 0)
    labelled = subset(train, train.y >= 0)
    if not (test.y == 1).any() or not (test.y == 0).any():
        raise InputError("the test cohort needs Rim+ and Rim- lesions in its truth", test_cohort)
    n_subjects = len(set(labelled.subject.tolist()))
    sizes = [n for n in sizes if n <= n_subjects] or [n_subjects]
    groups = np.asarray(test.subject)
    fits = out / "fits"
    fits.mkdir(parents=True, exist_ok=True)
    opts = dict(options or {})
    name = base_model.name
    # the shipped start is already a model: a tenth of the from-scratch learning rate (unless --set
    # lr says otherwise), and its untouched self competes as epoch 0 of early stopping (train.finetune)
    arm_options = {"shipped": {"lr": SHIPPED_LR_FACTOR * parse_training_options(opts, name)["lr"], **opts,
                               "rim_probe": False, "model": {**card.config, **opts.get("model", {})}},
                   "scratch": opts, "pretrained": opts}
    rows = [{"start": "shipped (no fine-tuning)", "n_subjects": 0, "draw": 0, "n_train_lesions": 0,
             "n_train_rim": 0, **_score(test.y, groups, np.asarray(base_model.predict_proba(test.x, device), float),
                                        base_model.threshold, n_boot, seed), "seconds": 0.0}]
    init = {"shipped": base_path}
    jobs = [(s, n, d) for n in sizes for d in range(draws) for s in starts]
    stamp = {"train": str(train_cohort), "test": str(test_cohort), "base_sha256": card.weights_sha256, "seed": seed,
             "pretrain_options": pretrain_options or {}, "wm_per_subject": wm_per_subject,
             "n_test": len(test), "n_train": len(labelled)}

    def record(job):
        return fits / "{}-n{}-d{}.json".format(*job)

    def stamp_of(start):  # a fit is redone when its own start's options change, not another's
        return {**stamp, "options": json.loads(json.dumps(arm_options[start], default=str))}

    def done(job):
        have = json.loads(record(job).read_text(encoding="utf-8")) if record(job).exists() else {}
        return have["row"] if have.get("stamp") == stamp_of(job[0]) else None

    finished = {job: done(job) for job in jobs}  # each fit record read once
    pretrain_seconds = None
    if any(job[0] == "pretrained" and finished[job] is None for job in jobs):
        from ..train.wm_patches import cohort_wm_patches

        unl = train.x if wm_per_subject <= 0 else np.concatenate(
            [train.x, cohort_wm_patches(train_entries, wm_per_subject, pc, seed=seed, quiet=quiet)])
        log.info("pre-training %s on %d unlabelled patches of the training cohort", name, len(unl))
        t0 = time.time()
        init["pretrained"] = pretrain_fn(name, unl, options=dict(pretrain_options or {}), seed=seed,
                                         device=device, quiet=quiet)
        pretrain_seconds = round(time.time() - t0, 1)
    for start, n, d in progress(jobs, desc="fine-tune curve", unit="fit", quiet=quiet):
        if finished[(start, n, d)] is not None:
            rows.append(finished[(start, n, d)])
            continue
        idx = draw_subjects(labelled, n, d, seed)
        part = subset(labelled, idx)
        fit_m, val_m = inner_split(part, 0.2, seed=seed + d)
        t0 = time.time()
        model = fit_fn(name, subset(part, fit_m),
                       subset(part, val_m) if val_m.any() else None, init=init.get(start),
                       options=arm_options[start], seed=seed + d, device=device, quiet=True)
        p = np.asarray(model.predict_proba(test.x, device), float)
        row = {"start": start, "n_subjects": n, "draw": d, "n_train_lesions": len(part),
               "n_train_rim": int((part.y == 1).sum()), **_score(test.y, groups, p, model.threshold, n_boot, seed),
               "seconds": round(time.time() - t0, 1)}
        write_json_atomic(record((start, n, d)), {"stamp": stamp_of(start), "row": row})
        rows.append(row)
    rule = _rule_row(test, groups, n_boot, seed)
    summary = summarise(rows)
    res = {"command": command or "finetune_curve() from Python", "train_cohort": str(train_cohort),
           "test_cohort": str(test_cohort), "base": str(base_path), "base_sha256": card.weights_sha256,
           "model": name, "sizes": sizes, "draws": draws, "starts": list(starts), "options": json.loads(json.dumps(arm_options, default=str)),
           "pretrain_options": pretrain_options or {}, "wm_per_subject": wm_per_subject, "seed": seed,
           "bootstrap": n_boot, "device": device, "n_test_lesions": len(test), "n_test_rim": int(test.y.sum()),
           "n_test_subjects": len(set(groups.tolist())), "n_train_subjects": n_subjects,
           "pretrain_seconds": pretrain_seconds,
           "rule": rule, "rows": rows, "summary": summary, "versions": versions()}
    write_json_atomic(out / "finetune_curve.json", res)
    write_tsv_atomic(out / "finetune_curve.tsv", rows, COLUMNS)
    write_text_atomic(out / "finetune_curve.md", curve_markdown(res))
    curve_figure(res, out / "finetune_curve.png")
    return res


def _rule_row(test, groups, n_boot, seed) -> dict:
    from .transfer import RULE, RULE_THRESHOLD_PPM, shell_minus_surround

    return {"name": RULE, **_score(test.y, groups, shell_minus_surround(test.x), RULE_THRESHOLD_PPM, n_boot, seed)}


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and range over draws per (start, n)."""
    out = []
    keys = sorted({(r["start"], r["n_subjects"]) for r in rows}, key=lambda k: (k[1], k[0]))
    for start, n in keys:
        sel = [r for r in rows if (r["start"], r["n_subjects"]) == (start, n)]
        roc = [r["roc_auc"] for r in sel]
        out.append({"start": start, "n_subjects": n, "draws": len(sel), "roc_auc_mean": float(np.mean(roc)),
                    "roc_auc_min": float(np.min(roc)), "roc_auc_max": float(np.max(roc)),
                    "pr_auc_mean": float(np.mean([r["pr_auc"] for r in sel])),
                    "sens_at_spec0.90_mean": float(np.mean([r["sens_at_spec0.90"] for r in sel])),
                    "sensitivity_mean": float(np.mean([r["sensitivity"] for r in sel])),
                    "specificity_mean": float(np.mean([r["specificity"] for r in sel]))})
    return out


def _f(v, nd=3):
    return "–" if v is None or not math.isfinite(v) else f"{v:.{nd}f}"


def curve_markdown(res: dict) -> str:
    head = (f"Command: `{res['command']}`. Train: {res['train_cohort']} ({res['n_train_subjects']} labelled "
            f"subjects, labels.tsv); test: {res['test_cohort']} ({res['n_test_subjects']} subjects, "
            f"{res['n_test_lesions']} lesions, {res['n_test_rim']} Rim+, against the truth). {res['draws']} "
            f"draw(s) of subjects per n; ROC AUC mean [min, max] over draws. Rule "
            f"({res['rule']['name']}) on the same test lesions: ROC AUC {_f(res['rule']['roc_auc'])}.\n\n")
    lines = ["| start | labelled subjects | ROC AUC mean [min, max] | PR AUC | sens @ spec 0.90 | "
             "sens / spec @ model t |", "|---|---|---|---|---|---|"]
    for s in res["summary"]:
        lines.append(f"| {s['start']} | {s['n_subjects']} | {_f(s['roc_auc_mean'])} [{_f(s['roc_auc_min'])}, "
                     f"{_f(s['roc_auc_max'])}] | {_f(s['pr_auc_mean'])} | {_f(s['sens_at_spec0.90_mean'], 2)} | "
                     f"{_f(s['sensitivity_mean'], 2)} / {_f(s['specificity_mean'], 2)} |")
    return head + "\n".join(lines) + "\n"


def curve_figure(res: dict, path: Path) -> None:
    from .figures import _plt, save_png

    fig, ax = _plt().subplots(figsize=(5.2, 4.0))
    base = next((s for s in res["summary"] if s["n_subjects"] == 0), None)
    for start in res["starts"]:
        pts = [s for s in res["summary"] if s["start"] == start]
        if pts:
            n = [s["n_subjects"] for s in pts]
            ax.errorbar(n, [s["roc_auc_mean"] for s in pts],
                        yerr=[[s["roc_auc_mean"] - s["roc_auc_min"] for s in pts],
                              [s["roc_auc_max"] - s["roc_auc_mean"] for s in pts]],
                        marker="o", capsize=3, label=start)
    if base:
        ax.axhline(base["roc_auc_mean"], color="0.3", ls="--", lw=1, label="shipped, no fine-tuning")
    ax.axhline(res["rule"]["roc_auc"], color="0.6", ls=":", lw=1, label=res["rule"]["name"])
    ax.set_xscale("log", base=2)
    ax.set(xlabel="labelled training subjects", ylabel="test ROC AUC (truth)", title="label efficiency")
    ax.legend(fontsize=7)
    save_png(fig, path)
