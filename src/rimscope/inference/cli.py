"""`rimscope predict`: the command line over the batch (rimscope.inference.batch).

The single-subject Python API is `rimscope.predict` (rimscope.inference.api.predict_subject).
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from ..cohort import discover
from ..errors import InputError
from ..flags import add_input, add_output
from ..runtime import resolve_device, versions, write_json_atomic
from .api import check_inputs, phase_options, resolve_model_card
from .batch import BatchOptions, run_batch
from .batch import shard as batch_shard
from .outputs import summary_rows, write_description, write_summary
from .rims import rim_method


def add_arguments(p) -> None:
    add_input(p, "subject folder, manifest (.csv/.tsv) or BIDS folder")
    add_output(p, "output folder (a BIDS derivatives dataset)", required=True)
    p.add_argument("-m", "--model", default=None, help="shipped model name or folder with card.json "
                   "(default: the shipped default model)")
    p.add_argument("-d", "--device", default="auto", help="auto|cpu|cuda|cuda:N")
    p.add_argument("--report", action="store_true", help="write a per-subject HTML report")
    p.add_argument("--shard", default=None, help="i/n: process every n-th subject from the i-th")
    p.add_argument("--qsm", help="single subject: QSM map (ppm)")
    p.add_argument("--flair", help="single subject: FLAIR")
    p.add_argument("--lesions", help="single subject: lesion mask or instance map")
    p.add_argument("--brainmask", help="single subject: brain mask (optional)")
    p.add_argument("--subject", help="single subject: its id (default from the QSM file name)")
    p.add_argument("--session", help="single subject: its session, where the file name gives none")
    p.add_argument("--subjects", nargs="+", metavar="LABEL", help="rate only these subjects (sub- optional)")
    p.add_argument("--sessions", nargs="+", metavar="LABEL", help="rate only these sessions (ses- optional)")
    p.add_argument("--qsm-units", choices=("ppm", "ppb"), default="ppm")
    p.add_argument("--lesion-label", type=int, default=None, metavar="N",
                   help="lesion maps are label maps: take label N as the lesion mask (e.g. 99 for "
                        "SAMSEG's segmentation)")
    p.add_argument("--bids-app", choices=("participant", "group"), default=None,
                   help="BIDS App level (also: rimscope BIDS_DIR OUT_DIR participant|group); participant: "
                   "no summary.tsv (jobs share OUT); group: summary.tsv of every finished participant")
    p.add_argument("--b0-dir", type=float, nargs=3, metavar=("X", "Y", "Z"), default=None,
                   help="B0 direction in world coordinates (default: scanner z)")
    add_phase_arguments(p)


def add_phase_arguments(p, single: bool = True) -> None:
    """The phase input options (rimscope.phase), for one subject and for cohorts (column phase)."""
    if single:
        p.add_argument("--phase", help="single subject: unwrapped, background-removed phase (local "
                       "field), with or instead of --qsm; without --qsm the model reads its TKD inversion "
                       "(a phase model, -m, reads the field)")
    p.add_argument("--phase-units", choices=("ppm", "hz", "rad"), default=None,
                   help="units of the phase maps (default: the sidecar's Units, else ppm)")
    p.add_argument("--te-ms", type=float, default=None, help="echo time of a phase in rad (ms; "
                   "default from the BIDS sidecar)")
    p.add_argument("--field-t", type=float, default=None, help="field strength for phase in hz/rad "
                   "(tesla; default from the BIDS sidecar)")
    p.add_argument("--phase-sign", choices=("auto", "+1", "-1"), default="auto",
                   help="sign convention of the phase: auto (detected from the data, flipped with a "
                        "warning when inverted), +1 as given, -1 inverted")
    p.add_argument("--phase-filtered", action="store_true", help="the phase is high-pass filtered "
                   "(homodyne/SWI): accepted, recorded and warned (outside the model's validated domain)")


def run(args) -> int:
    if args.bids_app == "group":
        rows = write_summary(Path(args.output))
        if not rows:
            raise InputError("no finished participant in OUT; run the participant level first", args.output)
        print(f"rimscope: group: {len(rows)} participants, {sum(int(r['n_rim']) for r in rows)} Rim+ of "
              f"{sum(int(r['n_lesions']) for r in rows)} lesions. Results: {Path(args.output).resolve()}/summary.tsv",
              file=sys.stderr)
        return 0
    record = predict_cohort(input=args.input, output=args.output, model=args.model, device=args.device,
                            report=args.report, shard=args.shard, qsm=args.qsm, flair=args.flair,
                            lesions=args.lesions, brainmask=args.brainmask, subject=args.subject,
                            session=args.session, subjects=args.subjects, sessions=args.sessions,
                            qsm_units=args.qsm_units, b0_dir=args.b0_dir, lesion_label=args.lesion_label,
                            quiet=args.quiet, summary=args.bids_app != "participant", phase=args.phase,
                            phase_units=args.phase_units, te_ms=args.te_ms, field_t=args.field_t,
                            phase_sign=args.phase_sign, phase_filtered=args.phase_filtered)
    if record["nothing_written"]:  # each error once, on one line; OUT left as it was
        for f in record["failures"]:
            print(f"rimscope: error: {' '.join(f['error'].split())}", file=sys.stderr)
        return 2
    summary, n_fail = [r for r in record["summary"] if r["status"] == "ok"], len(record["failures"])
    print(f"rimscope: {len(record['done'])} subjects rated, {len(record['skipped'])} already done, "
          f"{n_fail} failed; {sum(r['n_rim'] for r in summary)} Rim+ of "
          f"{sum(r['n_lesions'] for r in summary)} lesions. Results: {Path(args.output).resolve()}/summary.tsv",
          file=sys.stderr)
    for f in record["failures"]:
        print(f"rimscope: failed: {f['subject']}: {f['error']}", file=sys.stderr)
    return 2 if n_fail else 0


def predict_cohort(*, output, input=None, model=None, device: str = "auto", report: bool = False,
                   shard: str | None = None, qsm=None, flair=None, lesions=None, brainmask=None,
                   subject: str | None = None, session: str | None = None, subjects=None, sessions=None,
                   qsm_units: str = "ppm", b0_dir=None, lesion_label: int | None = None,
                   quiet: bool = False, summary: bool = True, phase=None,
                   phase_units: str | None = None, te_ms: float | None = None,
                   field_t: float | None = None, phase_sign="auto", phase_filtered: bool = False) -> dict:
    """`rimscope predict` as a function: rate every subject of `input` (subject folder, manifest,
    BIDS; `subjects`/`sessions` keep those labels) or of the single subject qsm/flair/lesions;
    writes OUT (a BIDS derivatives dataset) and returns the run record (with this run's
    summary under "summary"). A subject with a discovery problem is a failure; the others run.
    `summary=False` (the BIDS App participant level) leaves summary.tsv to the group level.
    "nothing_written" when no subject succeeded, in which case OUT is left as it was. The input
    picks nothing: the shipped QSM model reads a phase-only subject's TKD inversion of its field
    (rimscope.phase); a phase model (-m) needs a phase image for every subject (api.check_inputs)."""
    arguments = {k: (str(v) if isinstance(v, Path) else v) for k, v in locals().items()}
    t0 = time.perf_counter()
    started = datetime.now(timezone.utc)
    problems: list = []
    entries = batch_shard(discover(input, qsm=qsm, flair=flair, lesions=lesions, brainmask=brainmask,
                                   subject=subject, session=session, subjects=subjects, sessions=sessions,
                                   problems=problems, phase=phase), shard)
    device = resolve_device(device)
    net, card = resolve_model_card(model, device)
    check_inputs(net, entries)
    out = Path(output)
    reads_phase = net.patch_config.source == "phase" or any(e.qsm is None for e in entries)
    phase_opts = (phase_options(phase_units, te_ms, field_t, phase_sign, phase_filtered, b0_dir)
                  if reads_phase else None)
    sha = card.weights_sha256 if card else None
    options = BatchOptions(report=report, qsm_units=qsm_units, b0_dir=tuple(b0_dir) if b0_dir else None,
                           lesion_label=lesion_label, quiet=quiet, phase=phase_opts)
    existed = out.exists()
    record = run_batch(entries, out, net, device, options, card)
    for sid, err in problems:  # listed with the other failures, once, at the end
        record["failures"].append({"subject": sid, "error": str(err)})
    if record["failures"] and not (record["done"] or record["skipped"]):
        # nothing usable: nothing written (no description, no empty summary, no run record)
        if not existed:
            try:
                out.rmdir()
            except OSError:
                pass
        return {**record, "summary": [], "nothing_written": True}
    bids_root = next((e.bids_root for e in entries if e.bids_root is not None), None)
    write_description(out, net.name, sha, __version__, bids_root)
    failed = {f["subject"]: f["error"] for f in record["failures"]}
    # summary.tsv: this run's subjects only; shards and BIDS App participant jobs share OUT, so
    # they leave it to a whole-cohort run or the group level
    rows = (write_summary if summary and not shard else summary_rows)(
        out, record["done"] + record["skipped"], failed)
    run = {"command": "predict", "version": __version__, "argv": sys.argv, "arguments": arguments,
           "started_utc": started.isoformat(timespec="seconds"), "versions": versions(), "device": device,
           "model": {"name": net.name, "path": str(card.path.parent) if card else None,
                     "sha256": sha, "threshold": net.threshold, "source": net.patch_config.source},
           "rim_segmentation": rim_method(net),
           "n_subjects": len(entries) + len(problems), **record,
           "total_seconds": round(time.perf_counter() - t0, 3)}
    write_run_record(out, run, started, "run.json" if not shard else f"run_shard-{shard.replace('/', 'of')}.json")
    return {**record, "summary": rows, "nothing_written": False}


def write_run_record(out: Path, run: dict, started: datetime, latest: str) -> Path:
    """runs/<UTC timestamp>-<short hash>.json, never overwritten by a later run, and a copy as
    the latest run (`latest`: run.json, or run_shard-XofN.json)."""
    text = json.dumps(run, sort_keys=True, default=str)
    name = f"{started.strftime('%Y%m%dT%H%M%S%fZ')}-{hashlib.sha256(text.encode()).hexdigest()[:8]}.json"
    path = out / "runs" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, run)
    write_json_atomic(out / latest, run)
    return path
