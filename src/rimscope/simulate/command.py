"""`rimscope simulate` = `rimscope.simulate(...)`: write a simulated cohort, or (`--check DIR`)
print how hard a cohort is."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from ..errors import InputError
from ..flags import add_output

log = logging.getLogger("rimscope")


def add_arguments(p) -> None:
    add_output(p, "folder for the cohort (created; a rerun skips finished subjects)", dest="out")
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
        raise InputError("give -o DIR (where to write the cohort) or --check DIR")
    simulate(out=args.out, subjects=args.subjects, seed=args.seed, config=args.config,
             preset=args.preset, unlabeled=args.unlabeled, montage=False if args.no_montage else None,
             quiet=args.quiet, command="rimscope " + " ".join(sys.argv[1:]))
    return 0


def simulate(*, out, subjects: int = 40, seed: int = 0, config=None, preset: str | None = None,
             unlabeled: bool = False, montage: bool | None = None, quiet: bool = False,
             command: str | None = None) -> dict:
    """Write a simulated cohort to `out` (manifest.tsv, labels.tsv unless `unlabeled`, truth.json,
    images); a rerun skips finished subjects. `config`: a JSON file or None (the defaults);
    `preset`: a named acquisition shift (simulate.presets; `config` keys override it), recorded
    in truth.json; `montage` None: the config's choice. Returns the cohort record (truth per
    subject)."""
    from .config import load_config

    if subjects < 1:
        raise InputError(f"--subjects {subjects}: give at least 1")
    if preset:
        from .presets import preset_config

        cfg = preset_config(preset, config)
    else:
        cfg = load_config(config)
    from .cohort_writer import simulate_cohort

    command = command or (f"rimscope simulate -o {out} --subjects {subjects} --seed {seed}"
                          + (f" --preset {preset}" if preset else "") + ("" if not unlabeled else " --unlabeled"))
    cohort = simulate_cohort(Path(out), subjects, seed, cfg, labelled=not unlabeled, quiet=quiet,
                             montage=montage, command=command, preset=preset)
    n = sum(len(s["lesions"]) for s in cohort["subjects"].values())
    log.info("wrote %d subjects, %d lesions to %s", len(cohort["subjects"]), n, out)
    return cohort
