"""Transfer evaluation: every model on the same lesions of cohorts it never saw, against the truth.

A model trained on generated examples is worth what it scores on cohorts made another way
(shifted whole-brain simulations, the independent foreign bench). Scores are compared with the
TRUTH (the simulator's true rim, or a foreign cohort's labels.tsv, which is its truth), never
with rater labels, and every model reads its lesions through the one patch path
(rimscope.patches.subject_patches), with the cohort's B0 direction where it gives one.
Intervals resample patients; DeLong compares models on the same lesions.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from .. import metrics as M
from . import stats

log = logging.getLogger("rimscope")

RULE = "shell-minus-surround"
RULE_THRESHOLD_PPM = 0.03  # where rim-contrast's prior map gives p = 0.5
SENS_TARGET = 0.90


def shell_minus_surround(x: np.ndarray) -> np.ndarray:
    """Per patch (N, 4, S, S, S): mean QSM within 2 patch voxels outside the lesion mask (6-connected
    steps) minus the mean 3-6 steps out, voxels with QSM exactly 0 (outside the brain) left out.
    Two numbers per lesion and no fitting: the reference any model has to beat."""
    out = np.zeros(len(x))
    for i, p in enumerate(x):
        q, m = p[0], p[2] > 0.5
        steps = ndimage.distance_transform_cdt(~m, metric="taxicab")  # = number of dilations
        ok = (q != 0) & ~m
        a, b = q[ok & (steps <= 2)], q[ok & (steps >= 4) & (steps <= 6)]
        out[i] = (a.mean() if a.size else 0.0) - (b.mean() if b.size else 0.0)
    return out


@dataclass
class Scorer:
    """One model of the table: its score function, card threshold and patch geometry."""

    name: str
    score: object  # (N, 4, S, S, S) -> (N,)
    threshold: float
    probabilistic: bool
    patch: object  # PatchConfig
    source: str = ""
    info: dict = field(default_factory=dict)
    reads: str = "qsm"  # "phase": fed the cohort's phase only (a QSM model then reads its TKD inversion)


def make_scorers(models: dict, device: str = "cpu") -> list[Scorer]:
    """{name: folder | shipped name, with "@phase" to feed it the cohort's phase only} -> scorers,
    then the two rules (rim-contrast, RULE)."""
    from ..models.card import load_model, sha256_file
    from ..models.registry import build
    from ..patches import PatchConfig
    from ..weights import shipped

    out = []
    for name, src in models.items():
        src, _, reads = str(src).partition("@")
        if reads not in ("", "phase"):
            from ..errors import InputError

            raise InputError(f"--models {name}={src}@{reads}: the only input suffix is @phase")
        path = shipped().get(src, Path(src))
        m = load_model(path, device=device)
        card = path / "card.json" if Path(path).is_dir() else Path(path)
        out.append(Scorer(name, lambda x, m=m: m.predict_proba(x, device=device), float(m.threshold), True,
                          m.patch_config, str(path), {"model": m.name, "card_sha256": sha256_file(card),
                                                      **({"reads": "phase"} if reads else {})},
                          reads or "qsm"))
    rc = build("rim-contrast")
    out.append(Scorer("rim-contrast", rc.predict_proba, float(rc.threshold), True, PatchConfig(), "built-in",
                      {"map": "prior (no fitting)"}))
    out.append(Scorer(RULE, shell_minus_surround, RULE_THRESHOLD_PPM, False, PatchConfig(), "built-in",
                      {"threshold_ppm": RULE_THRESHOLD_PPM}))
    return out


def cohort_truth(folder: Path) -> dict:
    """{(subject, lesion_id): true rim}: the simulator's truth.json, else labels.tsv (foreign)."""
    t = folder / "truth.json"
    doc = json.loads(t.read_text(encoding="utf-8")) if t.exists() else {}
    if doc.get("generator") is None and "subjects" in doc:
        return {(sid, int(les["lesion_id"])): int(les["true_rim"])
                for sid, s in doc["subjects"].items() for les in s["lesions"]}
    from ..cohort import read_labels

    return read_labels(folder / "labels.tsv")


def cohort_manifest(folder: Path) -> Path:
    """The manifest of a cohort folder (manifest.tsv, else manifest.csv), else the folder (BIDS)."""
    return next((folder / n for n in ("manifest.tsv", "manifest.csv") if (folder / n).exists()), folder)


def score_cohort(folder: Path, scorers: list[Scorer], cache=None, quiet: bool = False) -> dict:
    """Scores of every model on every truthed lesion of a cohort folder (manifest + truth)."""
    from ..cohort import load_cohort
    from ..patches import subject_patches
    from ..runtime import progress

    manifest = cohort_manifest(folder)
    truth = cohort_truth(folder)
    b0 = None
    if (folder / "b0_dir.txt").exists():
        b0 = tuple(float(v) for v in (folder / "b0_dir.txt").read_text().split()[:3])
    rows, scores = [], {s.name: [] for s in scorers}
    for entry in progress(load_cohort(manifest), desc=f"score {folder.name}", unit="subject", quiet=quiet):
        by_config: dict = {}
        ids = None
        for s in scorers:
            pc = s.patch if b0 is None else replace(s.patch, b0_dir=b0)  # a phase model keeps its source
            if (pc, s.reads) not in by_config:
                fed = replace(entry, qsm=None) if s.reads == "phase" else entry
                reads_phase = s.reads == "phase" or pc.source == "phase"  # B0 for the sign check and TKD
                by_config[(pc, s.reads)] = subject_patches(
                    fed, pc, cache, phase_options={"b0_dir": b0} if reads_phase and b0 is not None else None)
            ps = by_config[(pc, s.reads)]
            keep = [i for i, lid in enumerate(ps.ids) if (entry.subject, int(lid)) in truth]
            if ids is None:  # every patch geometry lists the lesions in the same order
                ids = [int(ps.ids[i]) for i in keep]
                rows += [(entry.subject, lid, truth[(entry.subject, lid)]) for lid in ids]
            scores[s.name] += list(np.asarray(s.score(ps.x[keep]), float)) if keep else []
    missing = len(truth) - len(rows)
    if missing:
        log.warning("%s: %d truthed lesion(s) not found in the lesion maps", folder.name, missing)
    return {"subjects": [r[0] for r in rows], "lesion_ids": [r[1] for r in rows],
            "y": np.array([r[2] for r in rows], int), "scores": {k: np.array(v) for k, v in scores.items()},
            "b0_dir": list(b0) if b0 else None, "missing": missing}


def score_rows(sc: dict) -> list[dict]:
    """One row per lesion of a scored cohort: subject, lesion_id, truth and every model's score."""
    return [{"subject": sid, "lesion_id": lid, "truth": int(y),
             **{name: float(v[i]) for name, v in sc["scores"].items()}}
            for i, (sid, lid, y) in enumerate(zip(sc["subjects"], sc["lesion_ids"], sc["y"]))]


def ece(y, p, n_bins: int = 10) -> float:
    """Expected calibration error: sum over equal-width bins of (share of lesions) x |mean p - Rim+ rate|."""
    b = M.calibration_bins(y, p, n_bins)
    n = sum(b["count"])
    return float(sum(c * abs(mp - o) for c, mp, o in zip(b["count"], b["mean_predicted"], b["observed"])) / n) \
        if n else math.nan


def sensitive_threshold(y, s, target: float = SENS_TARGET) -> float:
    """Highest threshold whose sensitivity is at least `target` on these lesions."""
    pos = np.sort(np.asarray(s, float)[np.asarray(y) == 1])[::-1]
    return float(pos[int(math.ceil(target * pos.size)) - 1]) if pos.size else math.nan


def _delong_p(y, a, b) -> float:
    try:
        return stats.delong_test(y, a, b)["p"]
    except ValueError:  # fewer than two lesions of a class
        return math.nan


def cohort_metrics(sc: dict, scorers: list[Scorer], sens_thresholds: dict, n_boot: int = 1000,
                   seed: int = 0) -> dict:
    """Per model: point figures, patient-bootstrap CIs, DeLong p against the first model and the rule."""
    y, g = sc["y"], np.asarray(sc["subjects"])
    first, rule = sc["scores"][scorers[0].name], sc["scores"][RULE]
    out = {}
    for s in scorers:
        p = sc["scores"][s.name]
        sens, spec = M.sens_spec(y, p, s.threshold)
        m = {"roc_auc": M.roc_auc(y, p), "pr_auc": M.average_precision(y, p),
             "sens_at_spec0.90": M.sensitivity_at_specificity(y, p, 0.90), "threshold": s.threshold,
             "sensitivity": sens, "specificity": spec,
             "ece": ece(y, p) if s.probabilistic else math.nan,
             "reliability": M.calibration_bins(y, p) if s.probabilistic else None}
        t2 = sens_thresholds.get(s.name, math.nan)
        m["sens_threshold"] = t2
        m["sensitivity_at_sens_threshold"], m["specificity_at_sens_threshold"] = \
            M.sens_spec(y, p, t2) if np.isfinite(t2) else (math.nan, math.nan)
        m["roc_auc_minus_rule"] = m["roc_auc"] - M.roc_auc(y, rule)
        m["delong_p_vs_rule"] = _delong_p(y, p, rule) if s.name != RULE else math.nan
        m["delong_p_vs_first"] = _delong_p(y, p, first) if s is not scorers[0] else math.nan

        def fn(idx, p=p):
            yy, pp, rr = y[idx], p[idx], rule[idx]
            return {"roc_auc": M.roc_auc(yy, pp), "pr_auc": M.average_precision(yy, pp),
                    "sens_at_spec0.90": M.sensitivity_at_specificity(yy, pp, 0.90),
                    "roc_auc_minus_rule": M.roc_auc(yy, pp) - M.roc_auc(yy, rr)}

        m["ci95"] = stats.bootstrap_ci(fn, g, n_boot=n_boot, seed=seed)
        out[s.name] = m
    return out


def reliability_figure(name: str, metrics: dict, path: Path) -> None:
    """Observed Rim+ rate against mean probability per bin, one line per probabilistic model."""
    from .figures import _plt, save_png

    fig, ax = _plt().subplots(figsize=(4.8, 4.6))
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--")
    for model, m in metrics.items():
        r = m["reliability"]
        if r:
            ax.plot(r["mean_predicted"], r["observed"], marker="o", label=f"{model} (ECE {m['ece']:.3f})")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted probability", ylabel="observed Rim+ rate (truth)",
           title=f"reliability: {name}")
    ax.legend(fontsize=7, loc="upper left")
    save_png(fig, path)


def _f(v, nd=3) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:.{nd}f}"


def _ci(m, key) -> str:
    c = m["ci95"].get(key, {})
    return f"{_f(m[key])} [{_f(c.get('lo'), 2)}, {_f(c.get('hi'), 2)}]"


def results_markdown(results: dict) -> str:
    """The domain-shift table, ready for BENCHMARK.md."""
    first = results["models"][0]
    lines = ["| cohort | lesions (Rim+) | model | ROC AUC [95 % CI] | PR AUC [CI] | sens @ spec 0.90 [CI] | "
             "sens / spec @ card t | sens / spec @ sens-t | ECE | ΔROC vs rule [CI] (DeLong p) | "
             f"DeLong p vs {first} |", "|" + "---|" * 11]
    for c in results["cohorts"]:
        label = c["name"] + (" — foreign (test bench only)" if c["kind"] == "foreign" else "")
        for model, m in c["metrics"].items():
            lines.append(
                f"| {label} | {c['n_lesions']} ({c['n_rim']}) | {model} | {_ci(m, 'roc_auc')} | {_ci(m, 'pr_auc')} | "
                f"{_ci(m, 'sens_at_spec0.90')} | {_f(m['sensitivity'], 2)} / {_f(m['specificity'], 2)} | "
                f"{_f(m['sensitivity_at_sens_threshold'], 2)} / {_f(m['specificity_at_sens_threshold'], 2)} | "
                f"{_f(m['ece'])} | {_ci(m, 'roc_auc_minus_rule')} ({_f(m['delong_p_vs_rule'], 3)}) | "
                f"{_f(m['delong_p_vs_first'], 3)} |")
    return "\n".join(lines) + "\n"
