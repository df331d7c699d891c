"""What `rimscope predict` writes, defined once: OUT as a BIDS derivatives dataset (file names in
BIDS entity order, a JSON sidecar per image with its `Sources`, the lesions table and its column
descriptions), the completion stamp and `summary.tsv` (review.catalog reads them back).

    OUT/dataset_description.json, .bidsignore, summary.tsv, run.json, runs/<UTC>-<hash>.json
    OUT/sub-<s>/[ses-<t>/]anat/sub-<s>[_ses-<t>][_acq-…][_run-…]_desc-rim_probseg.nii.gz (+ .json)
                                                          …_desc-rim_dseg.nii.gz (+ .json, .tsv)
                                                          …_desc-rim_mask.nii.gz (+ .json)
                                                          …_desc-rimvoxel_probseg.nii.gz (+ .json; voxel head)
                                                          …_lesions.tsv (+ .json)
    OUT/sub-<s>/sub-<s>[_ses-<t>…]_report.html   (with --report)

Every file is written atomically; the stamp, written last by the batch, marks a subject done.
Outputs of rimscope <= 0.1 (flat `OUT/sub-<id>/sub-<id>_lesions.tsv`) are still found by
`find_lesions_tsv`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..cohort_bids import ORDER, id_entities
from ..io import Subject, save_atomic
from ..rim_measures import COLUMNS as RIM_COLUMNS
from ..runtime import read_tsv, write_json_atomic, write_text_atomic, write_tsv_atomic

LESION_COLUMNS = ["lesion_id", "n_voxels", "volume_mm3", "x_mm", "y_mm", "z_mm", "rim_probability", "rim",
                  *RIM_COLUMNS, "flags"]
_RIM_EMPTY = " Empty where no rim voxel was found."
LESION_SIDECAR = {
    "lesion_id": {"Description": "lesion label in the lesion map, after numbering connected components"},
    "n_voxels": {"Description": "lesion size on the QSM grid", "Units": "voxels"},
    "volume_mm3": {"Description": "lesion volume", "Units": "mm^3"},
    "x_mm": {"Description": "lesion centroid, scanner x (RAS+)", "Units": "mm"},
    "y_mm": {"Description": "lesion centroid, scanner y (RAS+)", "Units": "mm"},
    "z_mm": {"Description": "lesion centroid, scanner z (RAS+)", "Units": "mm"},
    "rim_probability": {"Description": "probability of a paramagnetic rim (PRL)", "Units": "arbitrary"},
    "rim": {"Description": "1 if rim_probability >= the model's operating threshold",
            "Levels": {"0": "Rim-", "1": "Rim+"}},
    "rim_susceptibility_ppb": {"Description": "mean QSM over the lesion's rim voxels (desc-rim_mask) minus the "
                               "local surround (median QSM 2-5 mm outside the lesion, without lesions or "
                               "rims)." + _RIM_EMPTY, "Units": "ppb"},
    "rim_volume_mm3": {"Description": "volume of the lesion's rim voxels." + _RIM_EMPTY, "Units": "mm^3"},
    "rim_coverage": {"Description": "fraction of the lesion edge the rim covers (each rim voxel covers its "
                     "nearest edge voxel; the NAIMS criterion is >= 2/3)." + _RIM_EMPTY, "Units": "fraction (0-1)"},
    "rim_thickness_mm": {"Description": "rim volume / (coverage x area of the surface at the rim's mean "
                         "depth)." + _RIM_EMPTY, "Units": "mm"},
    "core_susceptibility_ppb": {"Description": "mean QSM over the lesion's non-rim voxels deeper than 1 mm "
                                "minus the local surround (given for every lesion)", "Units": "ppb"},
    "flags": {"Description": "comma-separated quality flags (e.g. touches the edge of the brain)"},
}
SUMMARY_COLUMNS = ["subject", "n_lesions", "n_rim", "expected_n_rim", "max_probability", "status"]
DSEG_TSV = "index\tname\n0\tbackground\n1\trim_negative\n2\trim_positive\n"
STAMP = ".rimscope-done.json"
BIDSIGNORE = "summary.tsv\nrun.json\nrun_shard-*.json\nruns/\n*_lesions.tsv\n*_lesions.json\n*_report.html\n"
BIDS_VERSION = "1.9.0"


def prefix(subject: str) -> str:
    """sub-<s>[_ses-<t>][_acq-…][_run-…]: the entry id in BIDS entity order."""
    ents = id_entities(subject)
    return "_".join(f"{k}-{ents[k]}" for k in ORDER if k in ents)


def subject_dir(out, subject: str) -> Path:
    """OUT/sub-<s>/[ses-<t>/]anat: where one entry's files go."""
    ents = id_entities(subject)
    return Path(out) / f"sub-{ents['sub']}" / (f"ses-{ents['ses']}" if "ses" in ents else "") / "anat"


def lesions_tsv(out, subject: str) -> Path:
    """The per-lesion table of one entry."""
    return subject_dir(out, subject) / f"{prefix(subject)}_lesions.tsv"


def find_lesions_tsv(out, subject: str) -> Path:
    """lesions_tsv, or the flat layout of rimscope <= 0.1 where only that exists (old outputs)."""
    new, old = lesions_tsv(out, subject), Path(out) / f"sub-{subject}" / f"sub-{subject}_lesions.tsv"
    return old if not new.exists() and old.exists() else new


def report_path(out, subject: str) -> Path:
    return Path(out) / f"sub-{id_entities(subject)['sub']}" / f"{prefix(subject)}_report.html"


def stamp_path(out, subject: str) -> Path:
    return subject_dir(out, subject) / f".{prefix(subject)}{STAMP}"


def sources(paths: dict, out, bids_root=None) -> list[str]:
    """Sidecar `Sources`: BIDS URIs (bids:raw:<path>) for inputs inside the BIDS folder, else
    paths relative to OUT."""
    res = []
    for _, p in sorted(paths.items()):
        p = Path(p).resolve()
        if bids_root is not None and Path(bids_root).resolve() in p.parents:
            res.append(f"bids:raw:{p.relative_to(Path(bids_root).resolve()).as_posix()}")
        else:
            res.append(os.path.relpath(p, Path(out).resolve()))
    return res


def write_description(out, model_name: str, model_sha: str | None, version: str, bids_root=None) -> None:
    """OUT/dataset_description.json (a BIDS derivatives dataset) and .bidsignore."""
    desc = {"Name": "rimscope paramagnetic rim lesion ratings", "BIDSVersion": BIDS_VERSION,
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "rimscope", "Version": version,
                             "Description": f"model {model_name}, weights sha256 {model_sha or 'n/a'}"}]}
    if bids_root is not None:
        uri = Path(bids_root).resolve().as_uri()
        desc["SourceDatasets"] = [{"URL": uri}]
        desc["DatasetLinks"] = {"raw": uri}
    Path(out).mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(out) / "dataset_description.json", desc)
    write_text_atomic(Path(out) / ".bidsignore", BIDSIGNORE)


IMAGE_ENDS = ("_lesions.tsv", "_lesions.json", "_desc-rim_probseg.nii.gz", "_desc-rim_probseg.json",
              "_desc-rim_dseg.nii.gz", "_desc-rim_dseg.json", "_desc-rim_dseg.tsv", "_desc-rim_mask.nii.gz",
              "_desc-rim_mask.json")
VOXEL_ENDS = ("_desc-rimvoxel_probseg.nii.gz", "_desc-rimvoxel_probseg.json")  # models with a voxel head


def subject_files(out, subject: str, report: bool = True, voxel: bool = True) -> list[Path]:
    """Every file write_subject writes for one entry (the report only with `report`, the voxel
    probability map only with `voxel`)."""
    pre = subject_dir(out, subject) / prefix(subject)
    ends = IMAGE_ENDS + (VOXEL_ENDS if voxel else ())
    return [Path(f"{pre}{end}") for end in ends] + ([report_path(out, subject)] if report else [])


def discard_subject(out, subject: str) -> None:
    """Remove an entry's results (stamp first), and its anat/ses/sub folders if nothing else is in
    them."""
    for path in [stamp_path(out, subject)] + subject_files(out, subject):
        try:
            path.unlink(missing_ok=True)
        except OSError:  # a read-only disk: nothing was written there either
            pass
    d = subject_dir(out, subject)
    for folder in (d, d.parent, Path(out) / f"sub-{id_entities(subject)['sub']}"):  # anat, ses, sub
        try:
            folder.rmdir()
        except OSError:  # absent, or holds the user's own files or another entry's
            pass


def paint(subject: Subject, rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Probability map and 0/1/2 dseg, canonical grid."""
    lut_p = np.zeros(int(subject.lesions.max()) + 1, np.float32)
    lut_d = np.zeros_like(lut_p, dtype=np.uint8)
    for r in rows:
        lut_p[r["lesion_id"]] = r["rim_probability"]
        lut_d[r["lesion_id"]] = 2 if r["rim"] else 1
    return lut_p[subject.lesions], lut_d[subject.lesions]


def images(subject: Subject, rows: list[dict], rims) -> dict:
    """{"probseg", "dseg", "rim_mask"[, "rimvoxel_probseg"]}: nibabel images on the subject's
    original grid (`rims`: inference.rims.SubjectRims)."""
    prob, dseg = paint(subject, rows)
    out = {"probseg": subject.original_image(prob, np.float32), "dseg": subject.original_image(dseg, np.uint8),
           "rim_mask": subject.original_image(rims.mask.astype(np.uint8), np.uint8)}
    if rims.prob is not None:
        out["rimvoxel_probseg"] = subject.original_image(rims.prob, np.float32)
    return out


def write_subject(subject: Subject, rows: list[dict], out_dir: Path, rims, report: bool = False,
                  sources: list | None = None, model=None) -> dict:
    """All files of one subject, atomically (the batch writes the stamp after them); `rims`
    (inference.rims.SubjectRims) gives the rim mask, `model` the report's name and operating
    threshold."""
    d = subject_dir(out_dir, subject.id)
    d.mkdir(parents=True, exist_ok=True)
    pre = d / prefix(subject.id)
    src = {"Sources": list(sources)} if sources else {}
    imgs = images(subject, rows, rims)
    save_atomic(imgs["probseg"], f"{pre}_desc-rim_probseg.nii.gz")
    write_json_atomic(f"{pre}_desc-rim_probseg.json", {
        "Description": "probability of a paramagnetic rim, painted over each lesion", **src})
    save_atomic(imgs["dseg"], f"{pre}_desc-rim_dseg.nii.gz")
    write_json_atomic(f"{pre}_desc-rim_dseg.json", {
        "Description": "lesions called Rim- (1) or Rim+ (2) at the model's operating threshold", **src})
    write_text_atomic(f"{pre}_desc-rim_dseg.tsv", DSEG_TSV)
    how = {"rim_segmentation": rims.method}
    save_atomic(imgs["rim_mask"], f"{pre}_desc-rim_mask.nii.gz")
    write_json_atomic(f"{pre}_desc-rim_mask.json", {
        "Description": "rim voxels (1) of every lesion; the lesions table's rim columns are measured on them",
        **how, **src})
    if "rimvoxel_probseg" in imgs:
        save_atomic(imgs["rimvoxel_probseg"], f"{pre}_desc-rimvoxel_probseg.nii.gz")
        write_json_atomic(f"{pre}_desc-rimvoxel_probseg.json", {
            "Description": "voxel probability of belonging to a rim (the model's voxel head); the rim "
                           f"mask is p >= {rims.threshold:g}", "RimThreshold": rims.threshold, **how, **src})
    write_tsv_atomic(lesions_tsv(out_dir, subject.id), rows, LESION_COLUMNS)
    phase = {"PhaseHandling": subject.info["phase"]} if "phase" in subject.info else {}  # rimscope.phase
    write_json_atomic(f"{pre}_lesions.json", {**LESION_SIDECAR, **src, **phase})
    if report:
        from .report import write_report

        write_report(subject, rows, report_path(out_dir, subject.id), model=model, rim_mask=rims.mask)
    files = [p.relative_to(out_dir).as_posix()
             for p in subject_files(out_dir, subject.id, report, voxel="rimvoxel_probseg" in imgs)]
    return {"files": files}


def finished(out) -> list[str]:
    """The ids of every finished entry on disk (their stamps)."""
    return sorted(p.name[1:-len(STAMP)].removeprefix("sub-") for p in Path(out).glob(f"sub-*/**/.sub-*{STAMP}"))


def summary_rows(out: Path, subjects: list[str] | None = None, failed: dict | None = None) -> list[dict]:
    """The summary of `subjects` (this run's; None: every finished entry on disk, the BIDS App
    `group` level) and of the `failed` ones {id: error}."""
    rows = []
    for sid in (finished(out) if subjects is None else subjects):
        les = read_tsv(lesions_tsv(out, sid))
        probs = [float(r["rim_probability"]) for r in les]
        # expected_n_rim (sum of probabilities): a threshold-free count estimate, meaningful
        # because models' probabilities are put on the training prevalence (train.finetune)
        rows.append({"subject": sid, "n_lesions": len(les), "n_rim": sum(int(r["rim"]) for r in les),
                     "expected_n_rim": round(sum(probs), 2),
                     "max_probability": round(max(probs), 4) if probs else 0.0, "status": "ok"})
    for sid in sorted(failed or {}):
        rows.append({"subject": sid, "n_lesions": "", "n_rim": "", "expected_n_rim": "",
                     "max_probability": "", "status": "failed"})
    return rows


def write_summary(out: Path, subjects: list[str] | None = None, failed: dict | None = None) -> list[dict]:
    """summary.tsv (summary_rows): it describes the run that wrote it, nothing older."""
    rows = summary_rows(out, subjects, failed)
    write_tsv_atomic(Path(out) / "summary.tsv", rows, SUMMARY_COLUMNS)
    return rows
