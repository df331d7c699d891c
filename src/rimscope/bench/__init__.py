"""`rimscope bench TARGET`: speed and memory figures, printed, for the targets the issues set.

Benchmarks print numbers instead of asserting them in unit tests: timings depend on the machine.
The rule for where they live: a bench measures a stage from outside, by running it (often with
pieces of several stages: the predict bench builds models and synthetic subjects), so every bench
is here, on the top floor, which may import any stage and is imported by none; what a stage
*writes* (reports, montages) lives in that stage. Each target is imported only when asked for.
"""
from __future__ import annotations

import importlib

from ..flags import add_output

TARGETS = {
    "io": ("rimscope.bench.io", "load+validate a 256x256x176 subject, patches of 50 lesions"),
    "simulate": ("rimscope.bench.simulate", "time and peak memory per simulated subject; difficulty"),
    "engine": ("rimscope.bench.engine", "lesion-engine examples/s (1 and 2 workers), peak memory"),
    "models": ("rimscope.bench.models", "parameters, inference lesions/s, s per epoch, every model"),
    "predict": ("rimscope.bench.predict", "end-to-end seconds and peak memory per subject"),
}


def add_arguments(p) -> None:
    p.add_argument("target", choices=sorted(TARGETS), help="; ".join(f"{k}: {v[1]}" for k, v in TARGETS.items()))
    p.add_argument("--device", "-d", default="auto", help="auto|cpu|cuda (where a network runs)")
    p.add_argument("--repeats", type=int, default=3)
    add_output(p, "folder for temporary files (default: a temp dir)", dest="out", default=None)


def run(args) -> int:
    module = importlib.import_module(TARGETS[args.target][0])
    return int(module.run(args) or 0)
