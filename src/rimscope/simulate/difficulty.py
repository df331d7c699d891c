"""How hard is a cohort? The figures that say whether a simulated cohort is realistic.

A simulator that makes the task easy makes every later result meaningless, so this measures the
cohort the way a skeptical reader would: lesion counts and Rim+ prevalence against the
literature, the rim contrast that survives the inversion, how far the simple `rim-contrast` rule
(mean QSM of the edge shell minus the surroundings) gets (target ROC AUC 0.70-0.85), and whether
lesion volume alone gives the answer away (must stay ≤ 0.70). Images are read back through
rimscope.io, so the numbers are those any model would see.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..cohort import load_cohort
from ..errors import InputError
from ..io import load_subject
from ..lesions import lesion_regions
from ..runtime import progress, read_tsv


def _auc(y, s) -> float:
    y = np.asarray(y)
    if y.min() == y.max():
        return float("nan")
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s))


def expected_kappa(p: np.ndarray) -> float:
    """Cohen's kappa expected between two independent raters who call Rim+ with probabilities p."""
    p = np.asarray(p, float)
    po = float(np.mean(p * p + (1 - p) * (1 - p)))
    m = float(p.mean())
    pe = m * m + (1 - m) * (1 - m)
    return (po - pe) / (1 - pe) if pe < 1 else float("nan")


def rim_contrast(subject, lesion_id: int) -> float:
    r = lesion_regions(subject.lesions, lesion_id, subject.zooms, subject.brainmask)
    q = subject.qsm[r.window]
    if not r.shell.any() or not r.surround.any():
        return float("nan")
    return float(q[r.shell].mean() - q[r.surround].mean())


def measure(folder, quiet: bool = False, max_subjects: int | None = None) -> dict:
    folder = Path(folder)
    manifest = folder / "manifest.tsv"
    if not manifest.exists():
        raise InputError("no manifest.tsv here; give a folder written by `rimscope simulate`", folder)
    entries = load_cohort(manifest)[:max_subjects]
    truth = {}
    if (folder / "truth.json").exists():
        truth = json.loads((folder / "truth.json").read_text(encoding="utf-8")).get("subjects", {})
    labels = {}
    if (folder / "labels.tsv").exists():
        labels = {(r["subject"], int(r["lesion_id"])): int(r["rim"]) for r in read_tsv(folder / "labels.tsv")}
    rows = []
    rlog = logging.getLogger("rimscope")
    level = rlog.level
    rlog.setLevel(logging.ERROR)  # resampling warnings of every subject would drown the figures
    try:
        for e in progress(entries, desc="check", unit="subject", quiet=quiet):
            rows += _subject_rows(e, truth, labels)
    finally:
        rlog.setLevel(level)
    return summarise(rows, len(entries))


def _subject_rows(e, truth: dict, labels: dict) -> list[dict]:
    rows = []
    s = load_subject(**e.paths(), subject_id=e.subject)
    tl = {t["lesion_id"]: t for t in truth.get(e.subject, {}).get("lesions", [])}
    for lid in np.unique(s.lesions[s.lesions > 0]).tolist():
        t = tl.get(lid, {})
        rows.append({"subject": e.subject, "lesion_id": lid,
                     "volume_mm3": float((s.lesions == lid).sum() * s.voxel_volume),
                     "contrast": rim_contrast(s, lid), "label": labels.get((e.subject, lid)),
                     "true_rim": t.get("true_rim"), "p_rater": t.get("p_rater"),
                     "kind": t.get("kind"), "rim_ppm": t.get("rim_ppm", 0.0)})
    return rows


def summarise(rows: list[dict], n_subjects: int) -> dict:
    subj = np.array([r["subject"] for r in rows])
    per_subject = np.array([np.sum(subj == s) for s in np.unique(subj)]) if rows else np.array([0])
    c = np.array([r["contrast"] for r in rows], float)
    vol = np.array([r["volume_mm3"] for r in rows], float)
    ok = np.isfinite(c)
    out = {"subjects": n_subjects, "lesions": len(rows),
           "lesions_per_subject": {"median": float(np.median(per_subject)), "min": int(per_subject.min()),
                                   "max": int(per_subject.max())}}
    for key in ("label", "true_rim"):
        if not rows or rows[0][key] is None:
            continue
        y = np.array([r[key] for r in rows], int)
        pos_subj = {r["subject"] for r in rows if r[key] == 1}
        out[key] = {
            "prevalence": float(y.mean()),
            "subjects_with_rim": len(pos_subj) / max(n_subjects, 1),
            "rim_contrast_auc": _auc(y[ok], c[ok]),
            "volume_auc": _auc(y, vol),
            "contrast_pos_ppm": float(np.nanmedian(c[y == 1])) if y.any() else float("nan"),
            "contrast_neg_ppm": float(np.nanmedian(c[y == 0])),
        }
    if rows and rows[0]["p_rater"] is not None:
        out["expected_inter_rater_kappa"] = expected_kappa([r["p_rater"] for r in rows])
        kinds = sorted({r["kind"] for r in rows})
        out["contrast_by_kind_ppm"] = {k: float(np.nanmedian(c[[r["kind"] == k for r in rows]])) for k in kinds}
        out["count_by_kind"] = {k: int(sum(r["kind"] == k for r in rows)) for k in kinds}
    return out


def format_report(m: dict) -> str:
    lines = [f"subjects {m['subjects']}, lesions {m['lesions']}, lesions/subject median "
             f"{m['lesions_per_subject']['median']:.0f} (range {m['lesions_per_subject']['min']}-"
             f"{m['lesions_per_subject']['max']})"]
    for key, name in (("label", "rater labels"), ("true_rim", "true rim (coverage >= 2/3)")):
        if key in m:
            d = m[key]
            lines.append(f"{name}: Rim+ prevalence {d['prevalence']:.1%}, subjects with >=1 Rim+ "
                         f"{d['subjects_with_rim']:.0%}, rim-contrast ROC AUC {d['rim_contrast_auc']:.3f} "
                         f"(target 0.70-0.85), volume ROC AUC {d['volume_auc']:.3f} (target <= 0.70), "
                         f"shell-minus-surround median Rim+ {d['contrast_pos_ppm']*1000:.1f} ppb vs "
                         f"Rim- {d['contrast_neg_ppm']*1000:.1f} ppb")
    if "expected_inter_rater_kappa" in m:
        lines.append(f"expected inter-rater kappa {m['expected_inter_rater_kappa']:.2f} (target ~0.7)")
        lines.append("median shell-minus-surround by kind (ppb): " + ", ".join(
            f"{k} {v*1000:.1f} (n={m['count_by_kind'][k]})" for k, v in m["contrast_by_kind_ppm"].items()))
    return "\n".join(lines)
