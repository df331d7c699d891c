"""`rimscope train`: fine-tune a model on a labelled cohort.

Lesions are split by patient into training and an inner validation set (early stopping and the
operating threshold are chosen there, never on training lesions); the model folder gets
card.json + weights.pt, plus checkpoint.pt each epoch for `--resume`. Under
`torchrun --nproc_per_node N -m rimscope train ...` the same command trains with DDP.
"""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("rimscope")


def add_arguments(p) -> None:
    from ..models.registry import MODELS

    p.add_argument("--cohort", default=None, help="manifest (.csv/.tsv) or BIDS folder")
    p.add_argument("--labels", default=None, help="TSV subject, lesion_id, rim")
    p.add_argument("--engine", nargs="?", const="", default=None, metavar="CONFIG.json",
                   help="train on streamed lesion-engine examples instead of a cohort (optional config)")
    p.add_argument("--examples", type=int, default=200_000, help="--engine: examples in all")
    p.add_argument("--epoch-examples", type=int, default=4096, help="--engine: fresh examples per epoch")
    p.add_argument("--val-cohort", default=None, help="--engine: validate on this simulated cohort")
    p.add_argument("--val-labels", default=None, help="--engine: labels of --val-cohort")
    p.add_argument("--val-examples", type=int, default=1000, help="--engine: held-out engine examples "
                   "when no --val-cohort")
    p.add_argument("--chunk-repeats", type=int, default=1,
                   help="--engine: epochs each rendered chunk is trained on (fresh augmentation each time)")
    p.add_argument("--engine-workers", type=int, default=2, help="--engine: rendering processes")
    p.add_argument("--prevalence", type=float, default=0.10, help="--engine: real-world Rim+ share "
                   "the probabilities are calibrated to")
    p.add_argument("--model", default="asymmetric", choices=list(MODELS))
    p.add_argument("--init", default=None, help="pre-trained folder (rimscope pretrain --out) or a model folder")
    p.add_argument("--out", required=True, help="model folder to write (card.json, weights.pt, checkpoint.pt)")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (default 40; early stopping)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-frac", type=float, default=0.2, help="fraction of subjects for inner validation")
    p.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="training option (e.g. loss=logit-adjusted, batch_size=16) or model.KEY=VALUE")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--cache-dir", default=None, help="patch cache (default OUT/.patch_cache)")
    p.add_argument("--qsm-units", choices=("ppm", "ppb"), default="ppm")
    p.add_argument("--device", "-d", default="auto", help="auto|cpu|cuda")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")


def run(args) -> int:
    import numpy as np
    import torch

    from ..cohort import load_cohort, read_labels
    from ..errors import InputError
    from ..runtime import resolve_device, write_json_atomic
    from .data import inner_split, load_lesion_data, subset
    from .finetune import fit
    from .options import parse_options

    if args.engine is not None:
        from .engine_cli import run_engine

        return run_engine(args)
    if not args.cohort or not args.labels:
        raise InputError("rimscope train needs --cohort and --labels (or --engine)")
    if args.qsm_units != "ppm":
        raise InputError("--qsm-units ppb: convert the QSM maps to ppm first (divide by 1000); "
                         "training reads patches in ppm", args.cohort)
    if not 0.0 <= args.val_frac < 0.9:
        raise InputError(f"--val-frac {args.val_frac} must lie in [0, 0.9)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    options = parse_options(args.option)
    if args.epochs is not None:
        options["epochs"] = args.epochs
    out = Path(args.out)
    if out.exists() and (out / "card.json").exists() and not args.resume:
        log.warning("%s already holds a model; it will be replaced", out)
    entries = load_cohort(args.cohort)
    labels = read_labels(args.labels)
    data = load_lesion_data(entries, labels, cache_dir=args.cache_dir or out / ".patch_cache",
                            quiet=args.quiet, labels_path=args.labels)
    lab = subset(data, data.y >= 0)
    if len(lab) == 0:
        raise InputError("no lesion of the cohort is labelled; check subject ids and lesion ids", args.labels)
    tr, va = inner_split(lab, args.val_frac, args.seed)
    train, val = subset(lab, tr), (subset(lab, va) if va.any() else None)
    log.info("training %s on %d lesions (%d Rim+, %d subjects), validating on %d (%d Rim+, %d subjects)",
             args.model, len(train), int((train.y == 1).sum()), len(np.unique(train.subject)),
             0 if val is None else len(val), 0 if val is None else int((val.y == 1).sum()),
             0 if val is None else len(np.unique(val.subject)))
    if args.resume and not (out / "checkpoint.pt").exists():
        log.warning("--resume: no %s yet; starting from scratch", out / "checkpoint.pt")
    model = fit(args.model, train, val, init=args.init, options=options, seed=args.seed, device=device,
                quiet=args.quiet, out=out, resume=args.resume,
                describe={"cohort": str(args.cohort), "labels": str(args.labels),
                          "val_subjects": sorted(set(val.subject.tolist())) if val is not None else []})
    from . import distributed as ddp

    if ddp.is_main():
        write_json_atomic(out / "train_run.json", {
            "cohort": str(args.cohort), "labels": str(args.labels), "model": args.model, "seed": args.seed,
            "val_frac": args.val_frac, "val_subjects": sorted(set(val.subject.tolist())) if val is not None else [],
            "options": options, "device": device})
        m = model.card_extra.get("metrics", {}).get("validation", {})
        print(f"{out}/card.json\tmodel={model.name}\tthreshold={model.threshold:.4g}\t"
              f"val_pr_auc={m.get('pr_auc', float('nan')):.3f}\tval_roc_auc={m.get('roc_auc', float('nan')):.3f}")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0
