"""`rimscope train --engine [CONFIG.json]` = `rimscope.train_engine(...)`: streaming
lesion-engine training, the sibling of cohort training (`train.command`).

Kept apart from cohort training so each reads as one recipe; the exact command, the engine config
and seed go into the card, so the shipped model can be rebuilt by one command.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

log = logging.getLogger("rimscope")


def add_arguments(p) -> None:
    """The --engine flags of `rimscope train` (train.command adds the shared ones)."""
    p.add_argument("--engine", nargs="?", const="", default=None, metavar="CONFIG.json",
                   help="train on streamed lesion-engine examples instead of a cohort (optional config)")
    p.add_argument("--examples", type=int, default=200_000, help="--engine: examples in all")
    p.add_argument("--epoch-examples", type=int, default=2048, help="--engine: fresh examples per epoch "
                   "(a chunk holds 0.59 MB per example, about twice over while the next one arrives)")
    p.add_argument("--val-cohort", default=None, help="--engine: validate on this simulated cohort")
    p.add_argument("--val-labels", default=None, help="--engine: labels of --val-cohort")
    p.add_argument("--val-examples", type=int, default=1000, help="--engine: held-out engine examples "
                   "when no --val-cohort")
    p.add_argument("--chunk-repeats", type=int, default=1,
                   help="--engine: epochs each rendered chunk is trained on (fresh augmentation each time)")
    p.add_argument("--engine-workers", type=int, default=2, help="--engine: rendering processes")
    p.add_argument("--prevalence", type=float, default=0.10, help="--engine: real-world Rim+ share "
                   "the probabilities are calibrated to")
    p.add_argument("--source", choices=("qsm", "phase"), default="qsm", help="--engine: what channel 0 "
                   "reads: qsm, or phase (the engine's local field; a phase model for --phase input)")


def run(args) -> int:
    """`rimscope train --engine ...`: the command line over train_engine."""
    import torch

    from ..errors import InputError
    from . import distributed as ddp
    from .options import parse_options

    if args.cohort or args.labels:
        raise InputError("--engine trains on streamed examples: give --val-cohort/--val-labels for a "
                         "validation cohort, not -i/--input and --labels")
    if args.epochs is not None:
        raise InputError("--engine: the epochs follow from --examples / --epoch-examples; drop --epochs")
    command = "rimscope " + " ".join(sys.argv[1:]) if sys.argv and "rimscope" in sys.argv[0] else None
    model = train_engine(out=args.out, engine=args.engine or None, model=args.model, init=args.init,
                         seed=args.seed, examples=args.examples, epoch_examples=args.epoch_examples,
                         val_cohort=args.val_cohort, val_labels=args.val_labels,
                         val_examples=args.val_examples, chunk_repeats=args.chunk_repeats,
                         engine_workers=args.engine_workers, prevalence=args.prevalence,
                         options=parse_options(args.option), resume=args.resume, cache_dir=args.cache_dir,
                         device=args.device, threads=args.threads, quiet=args.quiet, command=command,
                         source=args.source)
    if ddp.is_main():
        rec = model.card_extra["training"]
        m = model.card_extra.get("metrics", {}).get("validation", {})
        print(f"{args.out}/card.json\tmodel={model.name}\tthreshold={model.threshold:.4g}\t"
              f"examples_seen={rec.get('examples_seen')}\tval_pr_auc={m.get('pr_auc', float('nan')):.3f}\t"
              f"val_roc_auc={m.get('roc_auc', float('nan')):.3f}")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


def train_engine(*, out, engine=None, model: str = "asymmetric", init=None, seed: int = 0,
                 examples: int = 200_000, epoch_examples: int = 2048, val_cohort=None, val_labels=None,
                 val_examples: int = 1000, chunk_repeats: int = 1, engine_workers: int = 2,
                 prevalence: float = 0.10, options: dict | None = None, resume: bool = False,
                 cache_dir=None, device: str = "auto", threads: int | None = None, quiet: bool = False,
                 command: str | None = None, source: str = "qsm"):
    """Train `model` on streamed lesion-engine examples (`engine`: a JSON config or None for the
    defaults), validating on `val_cohort`/`val_labels` or on held-out engine examples; writes OUT
    (card.json, weights.pt, train_run.json) and returns the fitted RimModel. `source` "phase" trains
    a phase model on the engine's local field patches (its card's patch.source is "phase")."""
    from ..errors import InputError
    from ..models.registry import spec
    from ..runtime import write_json_atomic
    from ..simulate.engine_config import load_engine_config
    from . import distributed as ddp
    from .engine_data import train_on_engine
    from .options import parse_training_options, start_run

    spec(model)
    config = load_engine_config(engine or None)
    if bool(val_cohort) != bool(val_labels):
        raise InputError("--val-cohort and --val-labels go together")
    if source == "phase":  # the field is read less its patch median; an offset jitter would undo that
        options = {"offset_ppm": 0.0, **(options or {})}
    options, device = start_run(options, None, parse_training_options, model, threads, device)
    out = Path(out)
    val = None
    if val_cohort:
        from ..cohort import load_cohort, read_labels
        from ..patches import PatchConfig
        from .cohort_rim_truth import cohort_rim_truth
        from .data import load_lesion_data, subset

        entries, patch = load_cohort(val_cohort), PatchConfig(source=source)
        data = load_lesion_data(entries, read_labels(val_labels), patch,
                                cache_dir=cache_dir or out / ".patch_cache", quiet=quiet, labels_path=val_labels)
        if (options.get("model") or {}).get("rim_head"):  # a voxel head is judged on its rim truth
            data.rim = cohort_rim_truth(entries, data, patch)
        val = subset(data, data.y >= 0)
    describe = {"engine": str(engine) if engine else "defaults", "command": command,
                "val_cohort": None if val_cohort is None else str(val_cohort),
                "val_labels": None if val_labels is None else str(val_labels)}
    fitted = train_on_engine(model, config, seed=seed, examples=examples, epoch_examples=epoch_examples,
                             val=val, val_examples=val_examples, options=options, init=init, device=device,
                             out=out, resume=resume, quiet=quiet, workers=engine_workers,
                             prevalence=prevalence, describe=describe, repeats=chunk_repeats, source=source)
    if ddp.is_main():
        rec = fitted.card_extra["training"]
        write_json_atomic(out / "train_run.json", {
            "engine": describe["engine"], "model": model, "seed": seed,
            "examples": examples, "epoch_examples": epoch_examples,
            "examples_seen": rec.get("examples_seen"), "unique_examples": rec.get("unique_examples"),
            "chunk_repeats": chunk_repeats, "val_cohort": describe["val_cohort"], "source": source,
            "options": options, "device": device, "command": command})
    return fitted
