"""`rimscope predict`: rate every lesion of new subjects and write results users can check.

One function (`predict_subject`) and one CLI with the same few options, TotalSegmentator-style.
A batch goes on past a bad subject, writes each subject's files atomically with a completion
stamp written last, so a killed run restarted with the same command redoes only what was
unfinished, and `--shard i/n` splits a cohort across cluster array jobs.
"""
from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from .cohort import SubjectEntry, load_cohort
from .errors import InputError
from .io import Subject, load_subject, save_atomic
from .patches import PatchConfig, extract_patches
from .runtime import (progress, read_tsv, resolve_device, versions, write_json_atomic,
                      write_text_atomic, write_tsv_atomic)

log = logging.getLogger("rimscope")

COLUMNS = ["lesion_id", "n_voxels", "volume_mm3", "x_mm", "y_mm", "z_mm", "rim_probability", "rim",
           "flags"]
DSEG_TSV = "index\tname\n0\tbackground\n1\trim_negative\n2\trim_positive\n"
STAMP = ".rimscope-done.json"


# ---------------------------------------------------------------- model

def resolve_model(model=None, device: str = "cpu"):
    """None → the shipped default; a name of a shipped model; a folder or card path; or a model."""
    from .models.card import load_model
    from .weights import shipped as shipped_models

    if model is not None and not isinstance(model, (str, Path)):
        return model
    shipped = shipped_models()
    if model is None:
        model = "default"
    if str(model) in shipped:
        return load_model(shipped[str(model)], device=device)
    path = Path(model)
    if not path.exists():
        raise InputError(f"model not found; give a folder with card.json + weights.pt, or one of: "
                         f"{', '.join(sorted(shipped)) or 'none shipped'}", path)
    return load_model(path, device=device)


def _patch_config(model) -> PatchConfig:
    """The model's own patch geometry (saved in its card): train and predict share it."""
    return getattr(model, "patch_config", None) or PatchConfig()


# ---------------------------------------------------------------- one subject

def rate_subject(subject: Subject, model, device: str = "cpu", b0_dir=None) -> list[dict]:
    """Per-lesion rows (the lesions TSV) of a loaded subject."""
    config = _patch_config(model)
    if b0_dir is not None:
        config = PatchConfig(size=config.size, spacing_mm=config.spacing_mm, b0_dir=tuple(b0_dir))
    ps = extract_patches(subject, config)
    prob = model.predict_proba(ps.x, device=device) if len(ps) else np.zeros(0)
    rows = []
    for les, p, flags in zip(ps.lesions, prob, ps.flags):
        x, y, z = (float(v) for v in les.centroid_mm)
        rows.append({"lesion_id": les.id, "n_voxels": les.n_voxels, "volume_mm3": round(les.volume_mm3, 3),
                     "x_mm": round(x, 2), "y_mm": round(y, 2), "z_mm": round(z, 2),
                     "rim_probability": round(float(p), 4), "rim": int(p >= model.threshold),
                     "flags": ",".join(flags)})
    return rows


def predict_subject(qsm, flair, lesions, model=None, brainmask=None, device: str = "auto",
                    subject_id: str | None = None, qsm_units: str = "ppm", b0_dir=None,
                    lesion_label: int | None = None) -> list[dict]:
    """Python API: rate every lesion of one subject (paths or nibabel images) → list of row dicts.
    `lesion_label` takes one label of a label map as the lesion mask (e.g. 99 for SAMSEG)."""
    device = resolve_device(device)
    model = resolve_model(model, device)
    subject = load_subject(qsm, flair, lesions, brainmask=brainmask, subject_id=subject_id,
                           qsm_units=qsm_units, lesion_label=lesion_label)
    return rate_subject(subject, model, device, b0_dir)


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
    """All files of one subject, atomically; the stamp last marks the subject done."""
    d = Path(out_dir) / f"sub-{subject.id}"
    d.mkdir(parents=True, exist_ok=True)
    pre = d / f"sub-{subject.id}"
    prob, dseg = paint(subject, rows)
    save_atomic(subject.original_image(prob, np.float32), f"{pre}_desc-rim_probseg.nii.gz")
    save_atomic(subject.original_image(dseg, np.uint8), f"{pre}_desc-rim_dseg.nii.gz")
    write_text_atomic(f"{pre}_desc-rim_dseg.tsv", DSEG_TSV)
    write_tsv_atomic(f"{pre}_lesions.tsv", rows, COLUMNS)
    files = [f"{pre.name}_lesions.tsv", f"{pre.name}_desc-rim_probseg.nii.gz",
             f"{pre.name}_desc-rim_dseg.nii.gz", f"{pre.name}_desc-rim_dseg.tsv"]
    if report:
        from .subject_report import write_report

        write_report(subject, rows, f"{pre}_report.html", model=model)
        files.append(f"{pre.name}_report.html")
    return {"files": files}


# ---------------------------------------------------------------- batches

def _stamp(entry: SubjectEntry, model_sha: str, options: dict) -> str:
    parts = {"model": model_sha, "options": options}
    for role, p in sorted(entry.paths().items()):
        st = Path(p).stat()
        parts[role] = [str(Path(p).resolve()), st.st_size, st.st_mtime_ns]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _done(out: Path, entry: SubjectEntry, stamp: str) -> bool:
    f = out / f"sub-{entry.subject}" / STAMP
    try:
        return json.loads(f.read_text())["stamp"] == stamp
    except (OSError, ValueError, KeyError):
        return False


def shard(entries: list, spec: str | None) -> list:
    if not spec:
        return entries
    try:
        i, n = (int(v) for v in spec.split("/"))
        assert 1 <= i <= n
    except (ValueError, AssertionError):
        raise InputError(f"--shard {spec!r}: give i/n with 1 <= i <= n, e.g. --shard 3/10") from None
    return entries[i - 1::n]


def write_summary(out: Path) -> list[dict]:
    """summary.tsv rebuilt from every finished subject on disk (so shards agree)."""
    rows = []
    for stamp in sorted(out.glob(f"sub-*/{STAMP}")):
        sid = stamp.parent.name.removeprefix("sub-")
        les = read_tsv(stamp.parent / f"sub-{sid}_lesions.tsv")
        probs = [float(r["rim_probability"]) for r in les]
        # expected_n_rim (sum of probabilities): a threshold-free count estimate, meaningful
        # because models' probabilities are put on the training prevalence (train.finetune)
        rows.append({"subject": sid, "n_lesions": len(les), "n_rim": sum(int(r["rim"]) for r in les),
                     "expected_n_rim": round(sum(probs), 2),
                     "max_probability": round(max(probs), 4) if probs else 0.0})
    write_tsv_atomic(out / "summary.tsv", rows, ["subject", "n_lesions", "n_rim", "expected_n_rim",
                                                 "max_probability"])
    return rows


def single_entry(args) -> list[SubjectEntry]:
    if not (args.qsm and args.flair and args.lesions):
        raise InputError("give -i SUBJECT_DIR|MANIFEST|BIDS, or all of --qsm --flair --lesions")
    for p in (args.qsm, args.flair, args.lesions):
        if not Path(p).exists():
            raise InputError("file not found", p)
    sid = args.subject or Path(args.qsm).name.split("_")[0].split(".")[0].removeprefix("sub-")
    return [SubjectEntry(subject=sid, qsm=Path(args.qsm), flair=Path(args.flair), lesions=Path(args.lesions),
                         brainmask=Path(args.brainmask) if args.brainmask else None)]


def subject_folder(path: Path) -> list[SubjectEntry] | None:
    """A plain folder holding one subject's files, found by name (qsm/chimap, flair, lesion)."""
    nii = [p for p in sorted(path.iterdir()) if p.name.endswith((".nii", ".nii.gz"))]
    if not nii or any(path.glob("sub-*/")):
        return None

    def pick(*keys, exclude=()):
        hits = [p for p in nii if any(k in p.name.lower() for k in keys)
                and not any(e in p.name.lower() for e in exclude)]
        return hits[0] if len(hits) == 1 else None

    qsm, flair = pick("qsm", "chimap"), pick("flair")
    les = pick("lesion", exclude=("brain",))
    if not (qsm and flair and les):
        raise InputError("folder holds NIfTIs but not exactly one each of *qsm*|*Chimap*, *flair*, "
                         "*lesion*; rename them or use --qsm/--flair/--lesions", path)
    return [SubjectEntry(subject=path.name.removeprefix("sub-"), qsm=qsm, flair=flair, lesions=les,
                         brainmask=pick("brainmask", "brain_mask"))]


def gather(args) -> list[SubjectEntry]:
    if not args.input:
        return single_entry(args)
    path = Path(args.input)
    if path.is_dir():
        return subject_folder(path) or load_cohort(path)
    return load_cohort(path)


def run_batch(entries: list[SubjectEntry], out: Path, model, device: str, report: bool = False,
              qsm_units: str = "ppm", b0_dir=None, quiet: bool = False,
              lesion_label: int | None = None) -> dict:
    """Predict every entry; returns the run record (failures listed, the batch goes on)."""
    out.mkdir(parents=True, exist_ok=True)
    sha = (getattr(model, "card", {}) or {}).get("weights_sha256", model.name)
    options = {"report": report, "qsm_units": qsm_units, "b0_dir": b0_dir}
    if lesion_label is not None:  # only when given, so stamps of earlier runs stay valid
        options["lesion_label"] = lesion_label
    record = {"done": [], "skipped": [], "failures": [], "warnings": {}, "timings_s": {}}
    for entry in progress(entries, desc="predict", unit="subject", quiet=quiet):
        stamp = _stamp(entry, sha, options)
        if _done(out, entry, stamp):
            record["skipped"].append(entry.subject)
            continue
        t0 = time.perf_counter()
        try:
            subject = load_subject(subject_id=entry.subject, qsm_units=qsm_units,
                                   lesion_label=lesion_label, **entry.paths())
            rows = rate_subject(subject, model, device, b0_dir)
            info = write_subject(subject, rows, out, report, model=model)
        except InputError as exc:
            log.error("%s: %s", entry.subject, exc)
            record["failures"].append({"subject": entry.subject, "error": str(exc)})
            continue
        dt = time.perf_counter() - t0
        write_json_atomic(out / f"sub-{entry.subject}" / STAMP,
                          {"stamp": stamp, "seconds": round(dt, 3), **info})
        record["done"].append(entry.subject)
        record["timings_s"][entry.subject] = round(dt, 3)
        if subject.warnings:
            record["warnings"][entry.subject] = subject.warnings
        log.info("%s: %d lesions, %d Rim+ (%.1f s)", entry.subject, len(rows),
                 sum(r["rim"] for r in rows), dt)
    return record


# ---------------------------------------------------------------- CLI

def add_arguments(p) -> None:
    p.add_argument("-i", "--input", help="subject folder, manifest (.csv/.tsv) or BIDS folder")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("-m", "--model", default=None, help="shipped model name or folder with card.json "
                   "(default: the shipped default model)")
    p.add_argument("-d", "--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--report", action="store_true", help="write a per-subject HTML report")
    p.add_argument("--shard", default=None, help="i/n: process every n-th subject from the i-th")
    p.add_argument("--qsm", help="single subject: QSM map (ppm)")
    p.add_argument("--flair", help="single subject: FLAIR")
    p.add_argument("--lesions", help="single subject: lesion mask or instance map")
    p.add_argument("--brainmask", help="single subject: brain mask (optional)")
    p.add_argument("--subject", help="single subject: its id (default from the QSM file name)")
    p.add_argument("--qsm-units", choices=("ppm", "ppb"), default="ppm")
    p.add_argument("--lesion-label", type=int, default=None, metavar="N",
                   help="lesion maps are label maps: take label N as the lesion mask (e.g. 99 for "
                        "SAMSEG's segmentation)")
    p.add_argument("--b0-dir", type=float, nargs=3, metavar=("X", "Y", "Z"), default=None,
                   help="B0 direction in world coordinates (default: scanner z)")


def run(args) -> int:
    t0 = time.perf_counter()
    entries = shard(gather(args), args.shard)
    device = resolve_device(args.device)
    model = resolve_model(args.model, device)
    out = Path(args.output)
    record = run_batch(entries, out, model, device, args.report, args.qsm_units, args.b0_dir, args.quiet,
                       lesion_label=args.lesion_label)
    summary = write_summary(out)
    card = getattr(model, "card", {}) or {}
    run_name = "run.json" if not args.shard else f"run_shard-{args.shard.replace('/', 'of')}.json"
    write_json_atomic(out / run_name, {
        "command": "predict", "argv": sys.argv, "arguments": {k: v for k, v in vars(args).items()},
        "versions": versions(), "device": device,
        "model": {"name": model.name, "path": card.get("path"), "sha256": card.get("weights_sha256"),
                  "threshold": model.threshold},
        "n_subjects": len(entries), **record, "total_seconds": round(time.perf_counter() - t0, 3)})
    n_fail = len(record["failures"])
    print(f"rimscope: {len(record['done'])} subjects rated, {len(record['skipped'])} already done, "
          f"{n_fail} failed; {sum(r['n_rim'] for r in summary)} Rim+ of "
          f"{sum(r['n_lesions'] for r in summary)} lesions. Results: {out.resolve()}/summary.tsv",
          file=sys.stderr)
    for f in record["failures"]:
        print(f"rimscope: failed: {f['subject']}: {f['error']}", file=sys.stderr)
    return 2 if n_fail else 0
