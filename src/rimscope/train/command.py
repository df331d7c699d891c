"""`rimscope train` = `rimscope.train(...)`: fine-tune a model on a labelled cohort.

Lesions are split by patient into training and an inner validation set (early stopping and the
operating threshold are chosen there, never on training lesions); the model folder gets
card.json + weights.pt, plus checkpoint.pt each epoch for `--resume`. Under
`torchrun --nproc_per_node N -m rimscope train ...` the same command trains with DDP.
Every option is checked before any image is read.
"""
from __future__ import annotations

import logging
from pathlib import Path

from ..flags import add_input, add_output, add_set

log = logging.getLogger("rimscope")


def add_arguments(p) -> None:
    from ..models.registry import MODELS

    add_input(p, "manifest (.csv/.tsv) or BIDS folder", dest="cohort")
    p.add_argument("--labels", default=None, help="TSV subject, lesion_id, rim")
    from .engine_command import add_arguments as add_engine_arguments

    add_engine_arguments(p)
    p.add_argument("--model", default="asymmetric", choices=list(MODELS))
    p.add_argument("--init", default=None, help="pre-trained folder (rimscope pretrain -o) or a model folder")
    add_output(p, "model folder to write (card.json, weights.pt, checkpoint.pt)", required=True, dest="out")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (default 40; early stopping)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-frac", type=float, default=0.2, help="fraction of subjects for inner validation")
    add_set(p, help="training option (e.g. loss=logit-adjusted, batch_size=16) or model.KEY=VALUE")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--cache-dir", default=None, help="patch cache (default OUT/.patch_cache)")
    p.add_argument("--qsm-units", choices=("ppm", "ppb"), default="ppm")
    p.add_argument("--device", "-d", default="auto", help="auto|cpu|cuda|cuda:N")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")


def run(args) -> int:
    from .options import parse_options

    if args.engine is not None:  # `rimscope.train_engine`, its own function (train.engine_command)
        from .engine_command import run as run_engine

        return run_engine(args)

    model = train(cohort=args.cohort, labels=args.labels, out=args.out, model=args.model, init=args.init,
                  epochs=args.epochs, seed=args.seed, val_frac=args.val_frac, options=parse_options(args.option),
                  resume=args.resume, cache_dir=args.cache_dir, qsm_units=args.qsm_units, device=args.device,
                  threads=args.threads, quiet=args.quiet)
    from . import distributed as ddp

    if ddp.is_main():
        m = model.card_extra.get("metrics", {}).get("validation", {})
        print(f"{args.out}/card.json\tmodel={model.name}\tthreshold={model.threshold:.4g}\t"
              f"val_pr_auc={m.get('pr_auc', float('nan')):.3f}\tval_roc_auc={m.get('roc_auc', float('nan')):.3f}")
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


def train(*, cohort, labels, out, model: str = "asymmetric", init=None, epochs: int | None = None,
          seed: int = 0, val_frac: float = 0.2, options: dict | None = None, resume: bool = False,
          cache_dir=None, qsm_units: str = "ppm", device: str = "auto", threads: int | None = None,
          quiet: bool = False):
    """Fine-tune `model` on the labelled lesions of `cohort`; writes OUT (card.json, weights.pt,
    train_run.json) and returns the fitted RimModel. `options`: training options as a dict."""
    import numpy as np

    from ..cohort import load_cohort, read_labels
    from ..errors import InputError
    from ..models.registry import spec
    from ..runtime import write_json_atomic
    from . import distributed as ddp
    from .data import inner_split, load_lesion_data, subset
    from .finetune import fit
    from .options import parse_choice, parse_training_options, start_run

    if not cohort or not labels:
        raise InputError("rimscope train needs -i/--input COHORT and --labels (or --engine)")
    spec(model)
    parse_choice("--qsm-units", qsm_units, ("ppm", "ppb"))
    if qsm_units != "ppm":
        raise InputError("--qsm-units ppb: convert the QSM maps to ppm first (divide by 1000); "
                         "training reads patches in ppm", cohort)
    if not 0.0 <= val_frac < 0.9:
        raise InputError(f"--val-frac {val_frac} must lie in [0, 0.9)")
    options, device = start_run(options, epochs, parse_training_options, model, threads, device)
    out = Path(out)
    if out.exists() and (out / "card.json").exists() and not resume:
        log.warning("%s already holds a model; it will be replaced", out)
    entries = load_cohort(cohort)
    label_map = read_labels(labels)
    data = load_lesion_data(entries, label_map, cache_dir=cache_dir or out / ".patch_cache",
                            quiet=quiet, labels_path=labels)
    lab = subset(data, data.y >= 0)
    if len(lab) == 0:
        raise InputError("no lesion of the cohort is labelled; check subject ids and lesion ids", labels)
    tr, va = inner_split(lab, val_frac, seed)
    train_part, val = subset(lab, tr), (subset(lab, va) if va.any() else None)
    log.info("training %s on %d lesions (%d Rim+, %d subjects), validating on %d (%d Rim+, %d subjects)",
             model, len(train_part), int((train_part.y == 1).sum()), len(np.unique(train_part.subject)),
             0 if val is None else len(val), 0 if val is None else int((val.y == 1).sum()),
             0 if val is None else len(np.unique(val.subject)))
    if resume and not (out / "checkpoint.pt").exists():
        log.warning("--resume: no %s yet; starting from scratch", out / "checkpoint.pt")
    val_subjects = sorted(set(val.subject.tolist())) if val is not None else []
    fitted = fit(model, train_part, val, init=init, options=options, seed=seed, device=device, quiet=quiet,
                 out=out, resume=resume,
                 describe={"cohort": str(cohort), "labels": str(labels), "val_subjects": val_subjects})
    if ddp.is_main():
        write_json_atomic(out / "train_run.json", {
            "cohort": str(cohort), "labels": str(labels), "model": model, "seed": seed, "val_frac": val_frac,
            "val_subjects": val_subjects, "options": options, "device": device})
    return fitted
