"""`rimscope simulate`: write a simulated cohort, or (`--check DIR`) print how hard a cohort is."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from ..errors import InputError

log = logging.getLogger("rimscope")


def add_arguments(p) -> None:
    p.add_argument("--out", help="folder for the cohort (created; a rerun skips finished subjects)")
    p.add_argument("--subjects", type=int, default=40, help="number of subjects (default 40)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--config", help="JSON file overriding simulator parameters by name")
    p.add_argument("--preset", help="named acquisition shift (rimscope.simulate.presets): default, lps-oblique, "
                   "aniso-1.5, aniso-2, flair-grid, tkd-noisy, strong-reg, rim-outside, mask-eroded, "
                   "mask-dilated; --config keys override it")
    p.add_argument("--unlabeled", action="store_true", help="no labels.tsv (pre-training cohorts)")
    p.add_argument("--no-montage", action="store_true", help="skip montage.png")
    p.add_argument("--check", metavar="DIR", help="print the difficulty figures of an existing cohort")
    p.add_argument("--json", action="store_true", help="with --check: print the figures as JSON")
    p.add_argument("--print-config", action="store_true", help="print the default config as JSON and exit")


def run(args) -> int:
    from .config import load_config

    if args.preset:
        from .presets import preset_config

        cfg = preset_config(args.preset, args.config)
    else:
        cfg = load_config(args.config)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    if args.check:
        from .difficulty import format_report, measure

        m = measure(args.check, quiet=args.quiet)
        print(json.dumps(m, indent=2) if args.json else format_report(m))
        return 0
    if not args.out:
        raise InputError("give --out DIR (where to write the cohort) or --check DIR")
    if args.subjects < 1:
        raise InputError(f"--subjects {args.subjects}: give at least 1")
    from .cohort_writer import simulate_cohort

    cohort = simulate_cohort(Path(args.out), args.subjects, args.seed, cfg, labelled=not args.unlabeled,
                             quiet=args.quiet, montage=False if args.no_montage else None,
                             command="rimscope " + " ".join(sys.argv[1:]), preset=args.preset)
    n = sum(len(s["lesions"]) for s in cohort["subjects"].values())
    log.info("wrote %d subjects, %d lesions to %s", len(cohort["subjects"]), n, args.out)
    return 0
