"""`rimscope predict`: the command line over the batch (rimscope.inference.batch).

The single-subject Python API is `rimscope.predict` (rimscope.inference.api.predict_subject).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ..cohort import discover
from ..runtime import resolve_device, versions, write_json_atomic
from .api import check_inputs, model_for_inputs, phase_options, resolve_model_card
from .batch import BatchOptions, run_batch
from .batch import shard as batch_shard
from .outputs import write_summary


def add_arguments(p) -> None:
    p.add_argument("-i", "--input", help="subject folder, manifest (.csv/.tsv) or BIDS folder")
    p.add_argument("-o", "--output", required=True, help="output folder")
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
    p.add_argument("--qsm-units", choices=("ppm", "ppb"), default="ppm")
    p.add_argument("--lesion-label", type=int, default=None, metavar="N",
                   help="lesion maps are label maps: take label N as the lesion mask (e.g. 99 for "
                        "SAMSEG's segmentation)")
    p.add_argument("--b0-dir", type=float, nargs=3, metavar=("X", "Y", "Z"), default=None,
                   help="B0 direction in world coordinates (default: scanner z)")
    add_phase_arguments(p)


def add_phase_arguments(p, single: bool = True) -> None:
    """The phase input options (rimscope.phase), for one subject and for cohorts (column phase)."""
    if single:
        p.add_argument("--phase", help="single subject: unwrapped, background-removed phase (local "
                       "field), with or instead of --qsm; without --qsm the phase model is used")
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
    record = predict_cohort(input=args.input, output=args.output, model=args.model, device=args.device,
                            report=args.report, shard=args.shard, qsm=args.qsm, flair=args.flair,
                            lesions=args.lesions, brainmask=args.brainmask, subject=args.subject,
                            qsm_units=args.qsm_units, b0_dir=args.b0_dir, lesion_label=args.lesion_label,
                            quiet=args.quiet, phase=args.phase, phase_units=args.phase_units,
                            te_ms=args.te_ms, field_t=args.field_t, phase_sign=args.phase_sign,
                            phase_filtered=args.phase_filtered)
    if record["nothing_written"]:  # each error once, on one line; OUT left as it was
        for f in record["failures"]:
            print(f"rimscope: error: {' '.join(f['error'].split())}", file=sys.stderr)
        return 2
    summary, n_fail = record["summary"], len(record["failures"])
    print(f"rimscope: {len(record['done'])} subjects rated, {len(record['skipped'])} already done, "
          f"{n_fail} failed; {sum(r['n_rim'] for r in summary)} Rim+ of "
          f"{sum(r['n_lesions'] for r in summary)} lesions. Results: {Path(args.output).resolve()}/summary.tsv",
          file=sys.stderr)
    for f in record["failures"]:
        print(f"rimscope: failed: {f['subject']}: {f['error']}", file=sys.stderr)
    return 2 if n_fail else 0


def predict_cohort(*, output, input=None, model=None, device: str = "auto", report: bool = False,
                   shard: str | None = None, qsm=None, flair=None, lesions=None, brainmask=None,
                   subject: str | None = None, qsm_units: str = "ppm", b0_dir=None,
                   lesion_label: int | None = None, quiet: bool = False, phase=None,
                   phase_units: str | None = None, te_ms: float | None = None,
                   field_t: float | None = None, phase_sign="auto", phase_filtered: bool = False) -> dict:
    """`rimscope predict` as a function: rate every subject of `input` (subject folder, manifest,
    BIDS) or of the single subject qsm/flair/lesions; writes OUT and returns the run record
    (with the rebuilt summary under "summary"; "nothing_written" when no subject succeeded, in
    which case OUT is left as it was). The input picks the model (api.model_for_inputs): phase
    only -> the phase model; a model must read what the subjects have (api.check_inputs)."""
    arguments = {k: (str(v) if isinstance(v, Path) else v) for k, v in locals().items()}
    t0 = time.perf_counter()
    entries = batch_shard(discover(input, qsm=qsm, flair=flair, lesions=lesions, brainmask=brainmask,
                                   subject=subject, phase=phase), shard)
    device = resolve_device(device)
    net, card = resolve_model_card(model_for_inputs(model, entries), device)
    check_inputs(net, entries)
    out = Path(output)
    phase_opts = (phase_options(phase_units, te_ms, field_t, phase_sign, phase_filtered, b0_dir)
                  if net.patch_config.source == "phase" else None)
    options = BatchOptions(report=report, qsm_units=qsm_units, b0_dir=tuple(b0_dir) if b0_dir else None,
                           lesion_label=lesion_label, quiet=quiet, phase=phase_opts)
    existed = out.exists()
    record = run_batch(entries, out, net, device, options, card)
    if record["failures"] and not (record["done"] or record["skipped"]):
        # nothing usable: nothing written (no empty summary, no run record)
        if not existed:
            try:
                out.rmdir()
            except OSError:
                pass
        return {**record, "summary": [], "nothing_written": True}
    summary = write_summary(out)
    run_name = "run.json" if not shard else f"run_shard-{shard.replace('/', 'of')}.json"
    write_json_atomic(out / run_name, {
        "command": "predict", "argv": sys.argv, "arguments": arguments,
        "versions": versions(), "device": device,
        "model": {"name": net.name, "path": str(card.path.parent) if card else None,
                  "sha256": card.weights_sha256 if card else None, "threshold": net.threshold,
                  "source": net.patch_config.source},
        "n_subjects": len(entries), **record, "total_seconds": round(time.perf_counter() - t0, 3)})
    return {**record, "summary": summary, "nothing_written": False}
