"""`rimscope train --engine [CONFIG.json]`: the command-line side of streaming engine training.

Kept apart from train_cli (cohort training) so each reads as one recipe; the exact command, the
engine config and seed go into the card, so the shipped model can be rebuilt by one command.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

log = logging.getLogger("rimscope")


def run_engine(args) -> int:
    import torch

    from ..errors import InputError
    from ..runtime import resolve_device, write_json_atomic
    from ..simulate.engine_config import load_engine_config
    from .engine_data import train_on_engine
    from .options import parse_options

    config = load_engine_config(args.engine or None)
    if args.cohort or args.labels:
        raise InputError("--engine trains on streamed examples: give --val-cohort/--val-labels for a "
                         "validation cohort, not --cohort/--labels")
    if bool(args.val_cohort) != bool(args.val_labels):
        raise InputError("--val-cohort and --val-labels go together")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    options = parse_options(args.option)
    if args.epochs is not None:
        raise InputError("--engine: the epochs follow from --examples / --epoch-examples; drop --epochs")
    out = Path(args.out)
    val = None
    if args.val_cohort:
        from ..cohort import load_cohort, read_labels
        from .data import load_lesion_data, subset

        data = load_lesion_data(load_cohort(args.val_cohort), read_labels(args.val_labels),
                                cache_dir=args.cache_dir or out / ".patch_cache", quiet=args.quiet,
                                labels_path=args.val_labels)
        val = subset(data, data.y >= 0)
    command = "rimscope " + " ".join(sys.argv[1:]) if sys.argv and "rimscope" in sys.argv[0] else None
    describe = {"engine": args.engine or "defaults", "command": command,
                "val_cohort": args.val_cohort, "val_labels": args.val_labels}
    model = train_on_engine(args.model, config, seed=args.seed, examples=args.examples,
                            epoch_examples=args.epoch_examples, val=val, val_examples=args.val_examples,
                            options=options, init=args.init, device=device, out=out, resume=args.resume,
                            quiet=args.quiet, workers=args.engine_workers, prevalence=args.prevalence,
                            describe=describe, repeats=args.chunk_repeats)
    from . import distributed as ddp

    if ddp.is_main():
        rec = model.card_extra["training"]
        write_json_atomic(out / "train_run.json", {
            "engine": args.engine or "defaults", "model": args.model, "seed": args.seed,
            "examples": args.examples, "epoch_examples": args.epoch_examples,
            "examples_seen": rec.get("examples_seen"), "unique_examples": rec.get("unique_examples"),
            "chunk_repeats": args.chunk_repeats, "val_cohort": args.val_cohort,
            "options": options, "device": device, "command": command})
        m = model.card_extra.get("metrics", {}).get("validation", {})
        print(f"{out}/card.json\tmodel={model.name}\tthreshold={model.threshold:.4g}\t"
              f"examples_seen={rec.get('examples_seen')}\tval_pr_auc={m.get('pr_auc', float('nan')):.3f}\t"
              f"val_roc_auc={m.get('roc_auc', float('nan')):.3f}")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0
