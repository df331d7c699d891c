"""`rimscope pretrain`: self-supervised cross-modal pre-training on a cohort's lesions (labels,
if any, are ignored) plus normal-appearing white-matter patches. Writes OUT/encoder.pt and
OUT/pretrain.json; pass OUT to `rimscope train --init OUT`."""
from __future__ import annotations

import logging

log = logging.getLogger("rimscope")


def add_arguments(p) -> None:
    p.add_argument("--cohort", required=True, help="manifest (.csv/.tsv) or BIDS folder (unlabeled is fine)")
    p.add_argument("--out", required=True, help="folder for encoder.pt + pretrain.json")
    p.add_argument("--model", default="asymmetric", choices=["asymmetric", "asymmetric-frodo"])
    p.add_argument("--epochs", type=int, default=None, help="epochs (default 30)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--wm-per-subject", type=int, default=20,
                   help="white-matter patches per subject, away from lesions (0: lesions only)")
    p.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="pre-training option (e.g. tau=0.2, objective=frodo-mse) or model.KEY=VALUE")
    p.add_argument("--cache-dir", default=None, help="patch cache (default OUT/.patch_cache)")
    p.add_argument("--device", "-d", default="auto", help="auto|cpu|cuda")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")


def run(args) -> int:
    from pathlib import Path

    import numpy as np
    import torch

    from ..cohort import load_cohort
    from ..errors import InputError
    from ..runtime import resolve_device
    from .data import load_lesion_data
    from .options import parse_options
    from .pretrain import pretrain
    from .wm_patches import cohort_wm_patches

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.wm_per_subject < 0:
        raise InputError("--wm-per-subject must be >= 0")
    device = resolve_device(args.device)
    options = parse_options(args.option)
    if args.epochs is not None:
        options["epochs"] = args.epochs
    out = Path(args.out)
    entries = load_cohort(args.cohort)
    data = load_lesion_data(entries, None, cache_dir=args.cache_dir or out / ".patch_cache", quiet=args.quiet)
    parts = [data.x]
    if args.wm_per_subject:
        parts.append(cohort_wm_patches(entries, args.wm_per_subject, seed=args.seed, quiet=args.quiet))
    x = np.concatenate(parts)
    log.info("pre-training %s on %d lesion + %d white-matter patches", args.model, len(data), len(x) - len(data))
    res = pretrain(x, options, seed=args.seed, device=device, quiet=args.quiet, out=out, model_name=args.model)
    h = res["history"][-1] if res["history"] else {}
    print(f"{out}/encoder.pt\tmodel={args.model}\tpatches={len(x)}\tcontrast={h.get('contrast', float('nan')):.3f}"
          f"\trecon={h.get('recon', float('nan')):.4f}\tspread={h.get('embedding_spread', float('nan')):.3f}")
    return 0
