"""`rimscope validate`: check a whole cohort before a long run, one line per subject."""
from __future__ import annotations

import sys

from .cohort import load_cohort
from .errors import InputError
from .io import load_subject
from .lesions import lesion_table


def add_arguments(p) -> None:
    p.add_argument("cohort", help="manifest (.csv/.tsv) or BIDS folder")
    p.add_argument("--qsm-units", choices=("ppm", "ppb"), default="ppm")


def run(args) -> int:
    entries = load_cohort(args.cohort)
    bad = 0
    print("subject\tlesions\tgrid\tvoxel_mm\torientation\tunits\tproblems")
    for e in entries:
        try:
            s = load_subject(subject_id=e.subject, qsm_units=args.qsm_units, **e.paths())
        except InputError as exc:
            bad += 1
            print(f"{e.subject}\t-\t-\t-\t-\t-\tUNUSABLE: {exc}")
            continue
        table = lesion_table(s.lesions, s.affine)
        flags = sorted({f for les in table for f in les.flags})
        info = s.info
        problems = "; ".join(s.warnings + ([f"lesions flagged: {', '.join(flags)}"] if flags else [])) or "ok"
        print(f"{e.subject}\t{len(table)}\t{'x'.join(map(str, info['shape']))}\t"
              f"{'x'.join(f'{z:g}' for z in info['zooms_mm'])}\t{info['orientation']}"
              f"{' oblique' if info['oblique'] else ''}\t{info['qsm_units']} (range "
              f"{info['qsm_robust_range']:.3g})\t{problems}")
    if bad:
        print(f"rimscope: {bad} of {len(entries)} subjects unusable", file=sys.stderr)
        return 2
    return 0
