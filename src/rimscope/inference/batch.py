"""Batch control of `rimscope predict`: many subjects, one model, a run that survives.

A batch goes on past a bad subject (listed in the run record), writes each subject's files with
a completion stamp written last, so a killed run restarted with the same command redoes only
what was unfinished, and `--shard i/n` splits a cohort across cluster array jobs.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..cohort import SubjectEntry, fingerprint
from ..errors import InputError
from ..phase import load_inputs
from ..runtime import progress, write_json_atomic
from .api import rate_subject_rims
from .outputs import discard_subject, sources, stamp_path, write_subject

log = logging.getLogger("rimscope")


@dataclass(frozen=True)
class BatchOptions:
    """What changes a subject's outputs (kept in its stamp), and how the batch reports."""

    report: bool = False  # write the per-subject HTML report
    qsm_units: str = "ppm"
    b0_dir: tuple | None = None  # B0 direction in world coordinates (None: scanner z)
    quiet: bool = False  # no progress bar
    lesion_label: int | None = None  # lesion maps are label maps: this label is the lesion mask
    phase: dict | None = None  # rimscope.phase options when a phase is read (None: QSM only)

    def stamped(self) -> dict:
        """The options a finished subject's stamp records (a change redoes the subject)."""
        d = asdict(self)
        d.pop("quiet")
        for key in ("lesion_label", "phase"):  # only when given, so stamps of earlier runs stay valid
            if d[key] is None:
                d.pop(key)
        d["b0_dir"] = list(self.b0_dir) if self.b0_dir is not None else None
        return d


def subject_stamp(entry: SubjectEntry, model_sha: str, options: BatchOptions) -> str:
    return fingerprint(entry.inputs() if options.phase is not None else entry.paths(), model=model_sha,
                       options=options.stamped())


def is_done(out: Path, entry: SubjectEntry, stamp: str) -> bool:
    try:
        return json.loads(stamp_path(out, entry.subject).read_text())["stamp"] == stamp
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


def run_batch(entries: list[SubjectEntry], out: Path, model, device: str,
              options: BatchOptions = BatchOptions(), card=None) -> dict:
    """Predict every entry; returns the run record (failures listed, the batch goes on)."""
    out.mkdir(parents=True, exist_ok=True)
    sha = card.weights_sha256 if card is not None else model.name
    record = {"done": [], "skipped": [], "failures": [], "warnings": {}, "timings_s": {},
              "inputs": {e.subject: {"files": {k: str(v) for k, v in e.inputs().items()}, "why": e.why}
                         for e in entries}}
    if options.phase is not None:
        record["phase"] = {}  # per subject: units, TE, B0, sign given/detected/used, filtered
    for entry in progress(entries, desc="predict", unit="subject", quiet=options.quiet):
        stamp = subject_stamp(entry, sha, options)
        if is_done(out, entry, stamp):
            record["skipped"].append(entry.subject)
            continue
        t0 = time.perf_counter()
        try:
            subject = load_inputs(entry.inputs(), model.patch_config.source == "phase", options.phase,
                                  subject_id=entry.subject, qsm_units=options.qsm_units,
                                  lesion_label=options.lesion_label)
            rows, rims = rate_subject_rims(subject, model, device, options.b0_dir)
            discard_subject(out, entry.subject)  # the old stamp no longer holds once files change
            info = write_subject(subject, rows, out, rims, options.report,
                                 sources(entry.inputs() if options.phase is not None else entry.paths(),
                                         out, entry.bids_root), model=model)
            if "phase" in subject.info:
                info["phase"] = record["phase"][entry.subject] = subject.info["phase"]
            dt = time.perf_counter() - t0
            write_json_atomic(stamp_path(out, entry.subject), {"stamp": stamp, "seconds": round(dt, 3), **info})
        except InputError as exc:  # listed once at the end of the run
            discard_subject(out, entry.subject)  # an old result of other inputs is not listed
            record["failures"].append({"subject": entry.subject, "error": str(exc)})
            continue
        except BaseException:  # full disk, SIGTERM, Ctrl-C: no subject folder without its stamp
            discard_subject(out, entry.subject)
            raise
        record["done"].append(entry.subject)
        record["timings_s"][entry.subject] = round(dt, 3)
        if subject.warnings:
            record["warnings"][entry.subject] = subject.warnings
        log.info("%s: %d lesions, %d Rim+ (%.1f s)", entry.subject, len(rows),
                 sum(r["rim"] for r in rows), dt)
    return record
