"""`rimscope transfer`: the domain-shift bench — simulate one cohort per acquisition preset (and,
where ../shared/foreign/gen.py exists, the foreign bench's variants), score every model against
the truth, write results.json, results.md (the BENCHMARK.md table), reliability diagrams and
scores/<cohort>.tsv (every lesion: truth and each model's score).
`--fine-tune PRESET` adds the label-efficiency curve on that preset (evaluate.finetune_curve):
its own training and test cohorts, simulated with seeds away from the table's.

Cohorts are cached in OUT (a rerun with the same settings simulates nothing), so adding a model
to the table costs only its scoring. The foreign cohorts are a test bench only: never train or
tune on them; a clone without ../shared runs the simulated rows and says how the others are made.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("rimscope")

SEED = 7000  # away from the seeds the shipped model was trained on (0, 1000)
FOREIGN = (("base", 1), ("thick", 2), ("tilted", 3), ("lpi_oblique", 4))
FOREIGN_HOW = ("python ../shared/foreign/gen.py --out DIR --subjects N --seed S --variant V for (V, S) in "
               "base 1, thick 2, tilted 3, lpi_oblique 4 (tilted: its DIR/b0_dir.txt is used)")


def parse_models(text: str | None) -> dict:
    """'a=FOLDER,b=FOLDER' (or a shipped name alone); None: the shipped default; 'none': rules only."""
    from ..errors import InputError

    if text is None:
        return {"default": "default"}
    if text.strip().lower() == "none":
        return {}
    out = {}
    for tok in (t.strip() for t in text.split(",") if t.strip()):
        name, _, src = tok.partition("=")
        name, src = (name, src) if src else (Path(name).name or name, name)
        if name in out:
            raise InputError(f"--models: name {name!r} given twice; name them a=FOLDER,b=FOLDER")
        out[name] = src
    return out


def _foreign_candidates() -> list[Path]:
    repo = Path(__file__).resolve().parents[3]
    return [repo / ".." / "shared" / "foreign" / "gen.py", Path.cwd() / ".." / "shared" / "foreign" / "gen.py"]


def find_foreign(foreign):
    """gen.py to use, or None: False skips; a path must exist; None looks beside the repository."""
    from ..errors import InputError

    if foreign is False or str(foreign).lower() == "none":
        return None
    if foreign is not None:
        p = Path(foreign)
        if not p.is_file():
            raise InputError("foreign generator not found; give the path of ../shared/foreign/gen.py "
                             "or --foreign none", p)
        return p
    for cand in _foreign_candidates():
        if cand.is_file():
            return cand.resolve()
    return None


def _simulated(folder: Path, preset: str, n: int, seed: int, quiet: bool, config=None) -> float:
    """Simulate a preset cohort unless the folder already holds it; seconds spent."""
    from ..simulate.cohort_writer import simulate_cohort
    from ..simulate.presets import preset_config

    cfg = preset_config(preset, config)
    truth = folder / "truth.json"
    if truth.exists():
        have = json.loads(truth.read_text(encoding="utf-8"))
        if (have.get("seed"), have.get("n_subjects"), have.get("config")) == \
                (seed, n, json.loads(json.dumps(cfg.to_dict()))):
            return 0.0
    t0 = time.perf_counter()
    simulate_cohort(folder, n, seed, cfg, quiet=quiet, montage=False, preset=preset,
                    command=f"rimscope simulate --preset {preset} -o {folder} --subjects {n} --seed {seed}")
    return time.perf_counter() - t0


def _foreign(gen: Path, folder: Path, variant: str, seed: int, n: int) -> float:
    """Generate a foreign cohort with the current python unless the folder holds it already."""
    stamp = {"variant": variant, "seed": seed, "subjects": n,
             "gen_sha256": hashlib.sha256(gen.read_bytes()).hexdigest()}
    marker = folder / ".rimscope-foreign.json"
    if marker.exists() and json.loads(marker.read_text()) == stamp:
        return 0.0
    if folder.exists():  # an unfinished or other-settings cohort in our own OUT: remake it
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    cmd = [sys.executable, str(gen), "--out", str(folder), "--subjects", str(n), "--seed", str(seed),
           "--variant", variant]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"foreign gen.py {variant} failed: {r.stderr.strip().splitlines()[-1:]}")
    log.debug(r.stdout)
    from ..runtime import write_json_atomic

    write_json_atomic(marker, stamp)
    return time.perf_counter() - t0


def transfer(out, models: dict | None = None, presets="all", subjects: int = 8, seed: int = SEED,
             foreign=None, foreign_subjects: int = 6, n_boot: int = 1000, device: str = "auto",
             quiet: bool = False, command: str | None = None, config=None) -> dict:
    """Simulate (cached), score and tabulate; returns the results dict also written to OUT."""
    from ..errors import InputError
    from ..patches import PatchCache
    from ..runtime import resolve_device, versions, write_json_atomic, write_text_atomic, write_tsv_atomic
    from ..simulate.presets import parse
    from . import transfer as T

    if subjects < 1 or foreign_subjects < 1:
        raise InputError("--subjects and --foreign-subjects must be at least 1")
    out = Path(out)
    device = resolve_device(device)
    names = parse(presets) if isinstance(presets, str) else list(presets)
    scorers = T.make_scorers({"default": "default"} if models is None else models, device)  # fail fast
    gen = find_foreign(foreign)
    plan = [(p, out / "cohorts" / f"{p}-seed{seed}", "simulated", seed) for p in names]
    if gen is not None:
        plan += [(f"foreign:{v}", out / "foreign" / f"{v}-seed{s}", "foreign", s) for v, s in FOREIGN]
    else:
        log.warning("foreign rows skipped (no ../shared/foreign/gen.py); they are made by %s", FOREIGN_HOW)
    cache = PatchCache(out / ".patch_cache")
    cohorts, scored = [], {}
    for name, folder, kind, s in plan:
        t_make = (_simulated(folder, name, subjects, s, quiet, config) if kind == "simulated"
                  else _foreign(gen, folder, name.split(":", 1)[1], s, foreign_subjects))
        t0 = time.perf_counter()
        scored[name] = T.score_cohort(folder, scorers, cache, quiet=quiet)
        sc = scored[name]
        cohorts.append({"name": name, "kind": kind, "folder": str(folder), "seed": s,
                        "n_subjects": len(set(sc["subjects"])), "n_lesions": int(sc["y"].size),
                        "n_rim": int(sc["y"].sum()), "b0_dir": sc["b0_dir"], "missing_lesions": sc["missing"],
                        "seconds_make": round(t_make, 1), "seconds_score": round(time.perf_counter() - t0, 1)})
        log.info("%s: %d lesions (%d Rim+), made in %.0f s, scored in %.0f s", name, cohorts[-1]["n_lesions"],
                 cohorts[-1]["n_rim"], t_make, cohorts[-1]["seconds_score"])
    ref = scored.get("default")
    sens_t = {s.name: T.sensitive_threshold(ref["y"], ref["scores"][s.name]) for s in scorers} if ref else {}
    for c in cohorts:
        c["metrics"] = T.cohort_metrics(scored[c["name"]], scorers, sens_t, n_boot=n_boot, seed=seed)
        safe = c["name"].replace(":", "-")
        T.reliability_figure(c["name"], c["metrics"], out / "figures" / f"reliability_{safe}.png")
        write_tsv_atomic(out / "scores" / f"{safe}.tsv", T.score_rows(scored[c["name"]]))  # every call, checkable
    results = {
        "command": command or "transfer() from Python", "settings": {
            "presets": names, "config_overrides": str(config) if config else None, "subjects": subjects, "seed": seed, "foreign": str(gen) if gen else None,
            "foreign_subjects": foreign_subjects, "bootstrap": n_boot, "device": device,
            "sens_threshold_rule": (f"highest threshold with sensitivity >= {T.SENS_TARGET} on the 'default' "
                                    "cohort's truth, applied unchanged to every cohort (in-sample on 'default')"
                                    if ref else "not computed: the 'default' preset was not run")},
        "foreign_note": (f"foreign (test bench only): {FOREIGN_HOW}" if gen else
                         f"foreign rows skipped: no ../shared/foreign/gen.py; they are made by {FOREIGN_HOW}"),
        "models": [s.name for s in scorers],
        "scorers": [{"name": s.name, "source": s.source, "threshold": s.threshold, "probabilistic": s.probabilistic,
                     "patch": s.patch.to_dict(), **s.info} for s in scorers],
        "versions": versions(), "cohorts": cohorts}
    write_json_atomic(out / "results.json", results)
    head = (f"Command: `{results['command']}`. Truth: simulator true rim / foreign labels.tsv. "
            f"Seed {seed}, {subjects} subjects per preset, {n_boot} patient-bootstrap resamples. "
            f"sens-t: {results['settings']['sens_threshold_rule']}. {results['foreign_note']}.\n\n")
    write_text_atomic(out / "results.md", head + T.results_markdown(results))
    return results


FINE_TUNE_SEEDS = (1100, 1200)  # train / test cohort seeds of --fine-tune, added to --seed


def fine_tune_bench(out, preset: str, *, sizes="2,4,8,16", draws: int = 2, starts="shipped,scratch,pretrained",
                    subjects: int = 8, seed: int = SEED, config=None, base="default", options=None,
                    device: str = "auto", quiet: bool = False, command: str | None = None,
                    n_boot: int = 500) -> dict:
    """Simulate (cached) a training cohort of max(sizes) subjects and a test cohort of `subjects`
    for `preset`, then the label-efficiency curve into OUT/fine_tune-PRESET/."""
    from ..runtime import resolve_device
    from ..simulate.presets import parse
    from . import finetune_curve as FC

    preset = parse(preset)[0]
    sizes, starts = FC.parse_sizes(sizes), FC.parse_starts(starts)
    out = Path(out)
    device = resolve_device(device)
    s_train, s_test = (seed + k for k in FINE_TUNE_SEEDS)
    train_dir = out / "cohorts" / f"{preset}-train-seed{s_train}"
    test_dir = out / "cohorts" / f"{preset}-test-seed{s_test}"
    _simulated(train_dir, preset, max(sizes), s_train, quiet, config)
    _simulated(test_dir, preset, subjects, s_test, quiet, config)
    return FC.finetune_curve(train_dir, test_dir, out / f"fine_tune-{preset}", sizes=sizes, draws=draws,
                             starts=starts, base=base, options=options, seed=seed, n_boot=n_boot,
                             device=device, quiet=quiet, command=command)


def add_arguments(p) -> None:
    from ..flags import add_output, add_set

    add_output(p, "folder for cohorts (cached), results.json/.md, figures/, scores/", required=True, dest="out")
    p.add_argument("--models", default=None,
                   help="NAME=FOLDER,... model folders (card.json + weights.pt) or shipped names; the first is "
                        "DeLong's reference; default: the shipped default; 'none': the two rules only")
    p.add_argument("--presets", default="all",
                   help="all, a comma-separated list of simulate presets, or none (only --fine-tune)")
    p.add_argument("--subjects", type=int, default=8, help="subjects per preset cohort (default 8)")
    p.add_argument("--seed", type=int, default=SEED, help=f"simulation seed of every preset (default {SEED})")
    p.add_argument("--foreign", default=None, help="path of ../shared/foreign/gen.py (default: looked for "
                   "beside the repository), or 'none' to skip the foreign rows")
    p.add_argument("--foreign-subjects", type=int, default=6, help="subjects per foreign variant (default 6)")
    p.add_argument("--config", default=None, help="JSON simulator overrides applied on top of every preset")
    p.add_argument("--bootstrap", type=int, default=1000, help="patient-bootstrap resamples")
    p.add_argument("--device", "-d", default="auto", help="auto|cpu|cuda")
    g = p.add_argument_group("label efficiency (--fine-tune)")
    g.add_argument("--fine-tune", default=None, metavar="PRESET",
                   help="fine-tune on 2..16 labelled subjects of this preset and score its own test cohort "
                        "(--subjects subjects): from the shipped model, from scratch, from pre-training")
    g.add_argument("--sizes", default="2,4,8,16", help="labelled training subjects per point (default 2,4,8,16)")
    g.add_argument("--draws", type=int, default=2, help="random draws of training subjects per size (default 2)")
    g.add_argument("--starts", default="shipped,scratch,pretrained", help="starting points to compare")
    g.add_argument("--base", default="default", help="shipped model name or model folder the curve starts from")
    add_set(p, help="training option of every fine-tuning fit (e.g. epochs=20); see `rimscope train`")


def run(args) -> int:
    from ..train.options import parse_options, parse_training_options

    command = "rimscope " + " ".join(sys.argv[1:])
    options = parse_options(args.option)
    if args.fine_tune:  # every option checked before hours of simulation and scoring
        from . import finetune_curve as FC
        from ..models.card import read_card
        from ..simulate.presets import parse
        from ..weights import shipped

        parse(args.fine_tune), FC.parse_sizes(args.sizes), FC.parse_starts(args.starts)
        base = read_card(shipped().get(str(args.base), Path(args.base)))  # a bad --base, too, before any work
        parse_training_options(options, base.name)  # the options of the model the curve fine-tunes
    if args.presets.strip().lower() != "none":
        res = transfer(args.out, parse_models(args.models), args.presets, args.subjects, args.seed, args.foreign,
                       args.foreign_subjects, args.bootstrap, args.device, args.quiet, command=command,
                       config=args.config)
        log.info("transfer bench: %d cohorts x %d models -> %s", len(res["cohorts"]), len(res["models"]),
                 Path(args.out) / "results.md")
    if args.fine_tune:
        fine_tune_bench(args.out, args.fine_tune, sizes=args.sizes, draws=args.draws, starts=args.starts,
                        subjects=args.subjects, seed=args.seed, config=args.config, base=args.base,
                        options=options, device=args.device, quiet=args.quiet, command=command,
                        n_boot=min(args.bootstrap, 500))
        log.info("label-efficiency curve -> %s", Path(args.out) / f"fine_tune-{args.fine_tune}" / "finetune_curve.md")
    elif args.presets.strip().lower() == "none":
        from ..errors import InputError

        raise InputError("--presets none leaves nothing to do without --fine-tune PRESET")
    return 0
