"""`rimscope validate -i COHORT`: check a whole cohort before a long run, one line per subject.

Every subject is tried, so one run lists every problem of the cohort; a subject that cannot be
used makes the exit code 2, and its line (and one line on stderr) names the file and the fix.
"""
from __future__ import annotations

import argparse
import logging
import sys

from .cohort import check_labels, discover, read_labels
from .errors import InputError
from .flags import add_input, deprecated
from .lesions import lesion_table
from .phase import load_inputs

log = logging.getLogger("rimscope")
COLUMNS = ("subject", "lesions", "grid", "voxel_mm", "orientation", "units", "problems")


def add_arguments(p) -> None:
    add_input(p, "manifest (.csv/.tsv: subject,qsm,flair,lesions[,brainmask]) or BIDS folder")
    p.add_argument("cohort", nargs="?", help=argparse.SUPPRESS)  # deprecated positional form
    p.add_argument("--subjects", nargs="+", metavar="LABEL", help="check only these subjects (sub- optional)")
    p.add_argument("--sessions", nargs="+", metavar="LABEL", help="check only these sessions (ses- optional)")
    p.add_argument("--qsm-units", choices=("ppm", "ppb"), default="ppm",
                   help="units of the QSM maps (default ppm)")
    p.add_argument("--labels", default=None,
                   help="labels TSV (subject, lesion_id, rim) to check against the lesions found")
    p.add_argument("--lesion-label", type=int, default=None, metavar="N",
                   help="lesion maps are label maps: take label N as the lesion mask (e.g. 99 for "
                        "SAMSEG's segmentation)")
    from .inference.cli import add_phase_arguments

    add_phase_arguments(p, single=False)


def _line(cells) -> str:
    return "\t".join(str(c).replace("\t", " ") for c in cells)


def subject_line(subject) -> tuple[list, set]:
    """The table cells of one loaded subject, and its lesion ids."""
    table = lesion_table(subject.lesions, subject.affine)
    flags = sorted({f for les in table for f in les.flags})
    info = subject.info
    problems = list(subject.warnings)
    if flags:
        problems.append("lesions flagged: " + ", ".join(
            f"{f} ({sum(f in les.flags for les in table)})" for f in flags))
    units = (f"{info['qsm_units']} (looks like {info['units_guess']}; robust range "
             f"{info['qsm_robust_range']:.3g} ppm)") if "qsm_units" in info else "no QSM"
    if "phase" in info:
        ph = info["phase"]
        units += (f"; phase {ph['units']} (robust range {ph['robust_range_ppm']:.3g} ppm), sign "
                  f"{ph['sign_used']:+d} used ({ph['sign_given']} given, detected {ph['sign_detected']:+d}, "
                  f"confidence {ph['sign_confidence']:.2f}){', filtered' if ph['filtered'] else ''}")
    cells = [subject.id, len(table), "x".join(map(str, info["shape"])),
             "x".join(f"{z:g}" for z in info["zooms_mm"]),
             info["orientation"] + (" oblique" if info["oblique"] else ""), units,
             "; ".join(problems) or "ok"]
    return cells, {les.id for les in table}


def run(args) -> int:
    problems: list = []
    if args.cohort and not args.input:
        deprecated("validate COHORT", "validate -i COHORT")
    source = args.input or args.cohort
    if not source:
        raise InputError("give the cohort to check: rimscope validate -i MANIFEST|BIDS_DIR")
    entries = discover(source, subjects=args.subjects, sessions=args.sessions, problems=problems)
    labels = read_labels(args.labels) if args.labels else None
    failures = list(problems)
    print(_line(COLUMNS))
    ids = {}
    for e in entries:
        try:
            s = load_inputs(e.inputs(), None, {"phase_units": args.phase_units, "te_ms": args.te_ms,
                            "field_t": args.field_t, "phase_sign": args.phase_sign,
                            "phase_filtered": args.phase_filtered}, subject_id=e.subject,
                            qsm_units=args.qsm_units, lesion_label=args.lesion_label)
        except InputError as err:
            failures.append((e.subject, err))
            print(_line([e.subject, "-", "-", "-", "-", "-", f"UNUSABLE: {err}"]), flush=True)
            continue
        cells, ids[e.subject] = subject_line(s)
        print(_line(cells), flush=True)
        del s
    for sid, err in problems:  # subjects whose files are missing: listed after the others
        print(_line([sid, "-", "-", "-", "-", "-", f"UNUSABLE: {err}"]))
    for sid, err in failures:
        print(f"rimscope: error: {err} (subject {sid})", file=sys.stderr)
    if labels is not None:
        failed = {sid for sid, _ in failures}
        known = {k: y for k, y in labels.items() if k[0] not in failed}
        check_labels(known, ids, args.labels)
        log.info("labels: %d labelled lesions, all found", len(known))
    if failures:
        total = len(entries) + len(problems)
        if total > 1:
            print(f"rimscope: {len(failures)} of {total} subjects unusable", file=sys.stderr)
        return 2
    return 0
