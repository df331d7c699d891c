"""`rimscope benchmark`: the reproducible headline run, simulate → pre-train → evaluate all models.

One command, fixed seeds and a fixed profile, so anyone can rerun the numbers of BENCHMARK.md.
The full profile is sized to finish within 60 minutes on 2 CPU cores; `--quick` is the same
pipeline on a toy scale for CI (its numbers show the pipeline works, not how good a model is).
"""
from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from ..flags import add_output, add_set

log = logging.getLogger("rimscope")

ALL_MODELS = "asymmetric,asymmetric-frodo,rimnet,qsm-only,concat,radiomics,rim-contrast"
BASELINES = ("rimnet", "qsm-only", "concat", "radiomics", "rim-contrast", "asymmetric-frodo")

PROFILES = {
    # measured on 2 CPU cores (BENCHMARK.md): ~10 min simulation of 42 subjects, then
    # cross-validation (12 rows x 5 folds, <= 6 epochs each), pre-training and the label-efficiency
    # fits in ~25 min; about 35 min in all
    "full": {"subjects": 32, "unlabeled": 10, "folds": 5, "repeats": 1, "bootstrap": 1000,
             "sizes": "4,8,16,all", "train": ["epochs=6", "patience=3"], "pretrain": ["epochs=10"]},
    "quick": {"subjects": 8, "unlabeled": 2, "folds": 3, "repeats": 1, "bootstrap": 100,
              "sizes": "2,all", "train": ["epochs=1", "patience=1"], "pretrain": ["epochs=1"]},
}
TARGETS = {"roc_auc": 0.95, "sens_at_spec0.90": 0.90}


def add_arguments(p) -> None:
    add_output(p, "folder for cohorts, evaluation and benchmark.md", required=True, dest="out")
    p.add_argument("--quick", action="store_true", help="toy-scale run for CI (a few minutes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subjects", type=int, default=None, help="override the profile's labelled subjects")
    p.add_argument("--models", default=ALL_MODELS)
    add_set(p, help="extra training option for every fit (overrides the profile)")
    p.add_argument("--device", "-d", default="auto", help="auto|cpu|cuda")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")


def _simulate(out: Path, n: int, seed: int, labelled: bool, quiet: bool) -> Path:
    from ..simulate.command import simulate

    simulate(out=out, subjects=n, seed=seed, unlabeled=not labelled, montage=False, quiet=quiet)
    return out / "manifest.tsv"


def _feasible_folds(labels_tsv: Path, folds: int) -> int:
    """A toy cohort may hold fewer subjects with a Rim+ lesion than folds: use fewer, say so."""
    from ..cohort import read_labels

    pos = len({s for (s, _), r in read_labels(labels_tsv).items() if r == 1})
    if pos < folds:
        log.warning("only %d simulated subjects hold a Rim+ lesion: %d folds instead of %d", pos,
                    max(pos, 2), folds)
        return max(pos, 2)
    return folds


def _evaluate_kwargs(args, prof: dict, lab: Path, unl: Path | None, out: Path) -> dict:
    """The keyword arguments of rimscope.evaluate for this profile (checked before simulating)."""
    from ..train.options import parse_options

    kw = dict(cohort=lab, labels=lab.parent / "labels.tsv", out=out, models=args.models, folds=prof["folds"],
              repeats=prof["repeats"], bootstrap=prof["bootstrap"], seed=args.seed, device=args.device,
              ablations=True, label_efficiency=True, sizes=prof["sizes"],
              cache_dir=Path(args.out) / ".patch_cache", options=parse_options(prof["train"] + list(args.option)),
              threads=args.threads, quiet=args.quiet)
    if unl is not None:
        kw.update(pretrain_cohort=unl, pretrain_options=parse_options(prof["pretrain"]))
    return kw


def check_options(kw: dict) -> None:
    """Every evaluate option checked in a second, before the simulation takes minutes."""
    from ..train.options import parse_models, parse_pretrain_options, parse_training_options
    from .pipeline import parse_sizes

    for m in parse_models(kw["models"]):
        parse_training_options(kw["options"], m)
    parse_pretrain_options(kw.get("pretrain_options"))
    parse_sizes(kw["sizes"])


def check_targets(summary: dict, reference: str = "asymmetric") -> list[dict]:
    """The claims BENCHMARK.md must state as met or missed, never silently."""
    v = summary["variants"]
    out = []
    if reference not in v:
        return [{"claim": f"{reference} evaluated", "met": False, "value": None}]
    m = v[reference]["metrics"]
    for key, target in TARGETS.items():
        out.append({"claim": f"{reference} {key} ≥ {target}", "met": bool(m[key] >= target), "value": m[key]})
    for key in ("roc_auc", "pauc_fpr0.1"):
        others = {n: e["metrics"][key] for n, e in v.items() if e["model"] in BASELINES and n != reference}
        if others:
            best = max(others, key=others.get)
            out.append({"claim": f"{reference} ahead of every baseline on {key}",
                        "met": bool(all(m[key] > x for x in others.values())), "value": m[key],
                        "best_baseline": best, "best_baseline_value": others[best]})
    return out


def benchmark_markdown(command: str, prof_name: str, prof: dict, results: dict, targets: list[dict],
                       timings: dict) -> str:
    from .report import results_markdown

    lines = [f"# rimscope benchmark ({prof_name} profile)\n",
             f"Command: `{command}`\n",
             f"Profile: `{json.dumps(prof)}`; device `{results['device']}`; "
             f"torch threads {results.get('threads', '?')}.\n",
             "Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()) + "\n"]
    if prof_name == "quick":
        lines.append("**This is the --quick profile**: a toy cohort and 1 training epoch, to show the "
                     "pipeline runs end to end. Its numbers say nothing about model quality.\n")
    lines.append("## Targets\n")
    for t in targets:
        extra = (f" (best baseline {t['best_baseline']}: {t['best_baseline_value']:.3f})"
                 if "best_baseline" in t else "")
        val = "–" if t["value"] is None else f"{t['value']:.3f}"
        lines.append(f"- {'MET' if t['met'] else 'MISSED'}: {t['claim']} — {val}{extra}")
    lines.append("\n" + results_markdown(results).split("\n", 1)[1])
    return "\n".join(lines) + "\n"


def run(args) -> int:
    from ..runtime import write_json_atomic, write_text_atomic
    from .pipeline import evaluate

    prof_name = "quick" if args.quick else "full"
    prof = dict(PROFILES[prof_name])
    if args.subjects:
        prof["subjects"] = args.subjects
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    lab, unl, ev_out = out / "cohort" / "manifest.tsv", out / "unlabeled" / "manifest.tsv", out / "evaluate"
    kw = _evaluate_kwargs(args, prof, lab, unl, ev_out)
    check_options(kw)  # before simulating: a bad option fails in a second, not after it
    t0 = time.time()
    _simulate(lab.parent, prof["subjects"], args.seed, True, args.quiet)
    _simulate(unl.parent, prof["unlabeled"], args.seed + 1, False, args.quiet)
    timings["simulate"] = time.time() - t0
    prof["folds"] = kw["folds"] = _feasible_folds(lab.parent / "labels.tsv", prof["folds"])
    t1 = time.time()
    evaluate(**kw)
    timings["evaluate"] = time.time() - t1
    timings["total"] = time.time() - t0
    results = json.loads((ev_out / "results.json").read_text())
    import torch

    results["threads"] = torch.get_num_threads()
    targets = check_targets(results["summary"])
    command = ("rimscope " + " ".join(sys.argv[1:]) if sys.argv and "rimscope" in Path(sys.argv[0]).name
               else f"rimscope benchmark {'--quick ' if args.quick else ''}-o {out} (called from Python)")
    write_json_atomic(out / "benchmark.json", {"command": command, "profile": prof_name, "settings": prof,
                                               "evaluate_arguments": {k: str(v) if isinstance(v, Path) else v for k, v in kw.items()}, "timings_s": timings, "targets": targets})
    write_text_atomic(out / "benchmark.md", benchmark_markdown(command, prof_name, prof, results, targets, timings))
    log.info("benchmark (%s) done in %.0f s: %s", prof_name, timings["total"], out / "benchmark.md")
    return 0
