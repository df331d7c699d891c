"""How well rims are segmented and quantified, against a simulated cohort's voxel truth.

On the true Rim+ lesions of a cohort (truth.json `true_rim`), per lesion: voxel Dice of the
predicted rim mask against the simulator's rim truth (`sub-XXX_desc-rimtruth_mask.nii.gz`),
within the lesion's neighbourhood (rim_measures: within 4 mm, nearer this lesion than any
other); the rim quantities measured on the predicted mask (rim_measures) against the truth's
amplitude (`rim_ppm`) and realised coverage. Summary: mean and pooled Dice, Spearman of measured
rim susceptibility vs true amplitude (over lesions where a rim was found, with how many were
not), mean absolute coverage error (a missed rim counts as coverage 0). The same measurement on
the truth mask itself is reported beside it, so the measurement's own error is separate from the
segmentation's. `bland_altman` is the repeatability of a quantity between two acquisitions.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import canonical_mask
from ..rim_measures import LesionFrame, NEIGHBOUR_MM, measure_lesion
from ..rim_segment import analytic_rim_mask
from ..metrics import spearman


def bland_altman(a, b) -> dict:
    """Agreement of paired measurements (e.g. rim susceptibility at two resolutions): mean
    difference a - b, its SD and the 95 % limits of agreement; pairs with a missing value are
    dropped (n says how many remain)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    if d.size < 2:
        return {"n": int(d.size), "mean_diff": float("nan"), "sd_diff": float("nan"),
                "loa_low": float("nan"), "loa_high": float("nan")}
    m, sd = float(d.mean()), float(d.std(ddof=1))
    return {"n": int(d.size), "mean_diff": m, "sd_diff": sd, "loa_low": m - 1.96 * sd,
            "loa_high": m + 1.96 * sd, "mean_of_pairs": float(((a[ok] + b[ok]) / 2).mean())}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    n = int(a.sum() + b.sum())
    return float(2 * (a & b).sum() / n) if n else float("nan")


def _predictor(predict):
    """A callable (Subject -> canonical bool rim mask), a folder of `*_desc-rim_mask.nii.gz`, or
    None for the analytic rule."""
    if predict is None:
        return lambda s: analytic_rim_mask(s.qsm, s.lesions, s.zooms, s.brainmask)
    if callable(predict):
        return predict
    folder = Path(predict)

    def from_folder(s):
        hits = sorted(folder.rglob(f"sub-{s.id}*_desc-rim_mask.nii*"))
        if not hits:
            raise InputError(f"no sub-{s.id}_desc-rim_mask.nii.gz under the predictions folder; "
                             "run predict on this cohort first", folder)
        return canonical_mask(hits[0], s, "rim mask")
    return from_folder


def evaluate_rims(cohort_dir, predict=None, subjects=None, quiet: bool = True) -> dict:
    """Rim segmentation and quantities of `predict` (see _predictor) on a simulated cohort's
    true Rim+ lesions. Returns {"lesions": rows, "summary": {...}, "summary_truth_mask": {...}}."""
    from ..cohort import load_cohort
    from ..io import load_subject
    from ..runtime import progress
    from ..simulate.layout import rimtruth_path

    root = Path(cohort_dir)
    truth_file = root / "truth.json"
    if not truth_file.exists():
        raise InputError("not a simulated cohort (no truth.json); give a `rimscope simulate` folder", root)
    truth = json.loads(truth_file.read_text(encoding="utf-8"))["subjects"]
    pred_fn = _predictor(predict)
    rows = []
    entries = [e for e in load_cohort(root / "manifest.tsv") if subjects is None or e.subject in subjects]
    for entry in progress(entries, desc="rims", unit="subject", quiet=quiet):
        rpath = root / rimtruth_path(entry.subject)
        if not rpath.exists():
            raise InputError("no rim voxel truth: the cohort predates it; simulate it again", rpath)
        s = load_subject(subject_id=entry.subject, **entry.paths())
        true_mask = canonical_mask(rpath, s, "rim truth")
        pred = np.asarray(pred_fn(s), bool)
        for t in truth[entry.subject]["lesions"]:
            if not t.get("true_rim"):
                continue
            lid = int(t["lesion_id"])
            if not (s.lesions == lid).any():
                continue
            frame = LesionFrame(s.lesions, lid, s.zooms, NEIGHBOUR_MM, bbox=None)
            w = frame.window
            tm, pm = true_mask[w] & frame.near, pred[w] & frame.near
            mp = measure_lesion(s.qsm, s.lesions, pred, lid, s.zooms, s.brainmask)
            mt = measure_lesion(s.qsm, s.lesions, true_mask, lid, s.zooms, s.brainmask)
            rows.append({"subject": entry.subject, "lesion_id": lid, "dice": dice(pm, tm),
                         "true_voxels": int(tm.sum()), "pred_voxels": int(pm.sum()),
                         "true_amplitude_ppb": 1000.0 * float(t["rim_ppm"]),
                         "true_coverage": float(t["coverage"]),
                         **{f"pred_{k}": v for k, v in mp.items()},
                         **{f"truthmask_{k}": v for k, v in mt.items()}})
    return {"lesions": rows, "summary": summarise(rows, "pred"),
            "summary_truth_mask": summarise(rows, "truthmask")}


def summarise(rows: list, prefix: str) -> dict:
    def col(name):
        return np.array([np.nan if r[name] is None else r[name] for r in rows], float)

    if not rows:
        return {"n_lesions": 0}
    sus = col(f"{prefix}_rim_susceptibility_ppb")
    amp = col("true_amplitude_ppb")
    found = np.isfinite(sus)
    cov = np.nan_to_num(col(f"{prefix}_rim_coverage"), nan=0.0)
    out = {"n_lesions": len(rows), "n_no_rim_found": int((~found).sum()),
           "spearman_susceptibility_vs_amplitude": spearman(sus[found], amp[found]),
           "coverage_mae": float(np.abs(cov - col("true_coverage")).mean())}
    if prefix == "pred":
        d = col("dice")
        inter = np.array([r["dice"] * (r["true_voxels"] + r["pred_voxels"]) / 2 if np.isfinite(r["dice"]) else 0.0
                          for r in rows])
        total = sum(r["true_voxels"] + r["pred_voxels"] for r in rows)
        out.update(dice_mean=float(np.nanmean(d)) if np.isfinite(d).any() else float("nan"),
                   dice_pooled=float(2 * inter.sum() / total) if total else float("nan"))
    return out
