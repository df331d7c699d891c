"""What `rimscope predict` writes, defined once: file names, the lesions table's columns, the
per-subject images, the completion stamp and `summary.tsv` (review.catalog reads them back).

Every file is written atomically; the stamp, written last by the batch, marks a subject done.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import Subject, save_atomic
from ..runtime import read_tsv, write_text_atomic, write_tsv_atomic

LESION_COLUMNS = ["lesion_id", "n_voxels", "volume_mm3", "x_mm", "y_mm", "z_mm", "rim_probability", "rim",
                  "flags"]
SUMMARY_COLUMNS = ["subject", "n_lesions", "n_rim", "expected_n_rim", "max_probability"]
DSEG_TSV = "index\tname\n0\tbackground\n1\trim_negative\n2\trim_positive\n"
STAMP = ".rimscope-done.json"


def subject_dir(out, subject: str) -> Path:
    return Path(out) / f"sub-{subject}"


def lesions_tsv(out, subject: str) -> Path:
    """OUT/sub-<id>/sub-<id>_lesions.tsv: the per-lesion table of one subject."""
    return subject_dir(out, subject) / f"sub-{subject}_lesions.tsv"


def stamp_path(out, subject: str) -> Path:
    return subject_dir(out, subject) / STAMP


def discard_subject(out, subject: str) -> None:
    """Remove a subject's results (stamp first), and its folder if nothing else is in it."""
    d = subject_dir(out, subject)
    for name in (STAMP, f"sub-{subject}_lesions.tsv", f"sub-{subject}_desc-rim_probseg.nii.gz",
                 f"sub-{subject}_desc-rim_dseg.nii.gz", f"sub-{subject}_desc-rim_dseg.tsv",
                 f"sub-{subject}_report.html"):
        try:
            (d / name).unlink(missing_ok=True)
        except OSError:  # a read-only disk: nothing was written there either
            pass
    try:
        d.rmdir()
    except OSError:  # absent, or holds the user's own files
        pass


def paint(subject: Subject, rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Probability map and 0/1/2 dseg, canonical grid."""
    lut_p = np.zeros(int(subject.lesions.max()) + 1, np.float32)
    lut_d = np.zeros_like(lut_p, dtype=np.uint8)
    for r in rows:
        lut_p[r["lesion_id"]] = r["rim_probability"]
        lut_d[r["lesion_id"]] = 2 if r["rim"] else 1
    return lut_p[subject.lesions], lut_d[subject.lesions]


def write_subject(subject: Subject, rows: list[dict], out_dir: Path, report: bool = False,
                  model=None) -> dict:
    """All files of one subject, atomically (the batch writes the stamp after them); `model` gives
    the report its name and operating threshold."""
    d = subject_dir(out_dir, subject.id)
    d.mkdir(parents=True, exist_ok=True)
    pre = d / f"sub-{subject.id}"
    prob, dseg = paint(subject, rows)
    save_atomic(subject.original_image(prob, np.float32), f"{pre}_desc-rim_probseg.nii.gz")
    save_atomic(subject.original_image(dseg, np.uint8), f"{pre}_desc-rim_dseg.nii.gz")
    write_text_atomic(f"{pre}_desc-rim_dseg.tsv", DSEG_TSV)
    write_tsv_atomic(lesions_tsv(out_dir, subject.id), rows, LESION_COLUMNS)
    files = [f"{pre.name}_lesions.tsv", f"{pre.name}_desc-rim_probseg.nii.gz",
             f"{pre.name}_desc-rim_dseg.nii.gz", f"{pre.name}_desc-rim_dseg.tsv"]
    if report:
        from .report import write_report

        write_report(subject, rows, f"{pre}_report.html", model=model)
        files.append(f"{pre.name}_report.html")
    return {"files": files}


def write_summary(out: Path) -> list[dict]:
    """summary.tsv rebuilt from every finished subject on disk (so shards agree)."""
    rows = []
    for stamp in sorted(Path(out).glob(f"sub-*/{STAMP}")):
        sid = stamp.parent.name.removeprefix("sub-")
        les = read_tsv(lesions_tsv(out, sid))
        probs = [float(r["rim_probability"]) for r in les]
        # expected_n_rim (sum of probabilities): a threshold-free count estimate, meaningful
        # because models' probabilities are put on the training prevalence (train.finetune)
        rows.append({"subject": sid, "n_lesions": len(les), "n_rim": sum(int(r["rim"]) for r in les),
                     "expected_n_rim": round(sum(probs), 2),
                     "max_probability": round(max(probs), 4) if probs else 0.0})
    write_tsv_atomic(Path(out) / "summary.tsv", rows, SUMMARY_COLUMNS)
    return rows
