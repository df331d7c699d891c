"""`rimscope pretrain` = `rimscope.pretrain(...)`: self-supervised cross-modal pre-training on a
cohort's lesions (labels, if any, are ignored) plus normal-appearing white-matter patches.
Writes OUT/encoder.pt and OUT/pretrain.json; pass OUT to `rimscope train --init OUT`."""
from __future__ import annotations

import logging

from ..flags import add_input, add_output, add_set

log = logging.getLogger("rimscope")


def add_arguments(p) -> None:
    add_input(p, "manifest (.csv/.tsv) or BIDS folder (unlabeled is fine)", required=True, dest="cohort")
    add_output(p, "folder for encoder.pt + pretrain.json", required=True, dest="out")
    p.add_argument("--model", default="asymmetric", choices=["asymmetric", "asymmetric-frodo"])
    p.add_argument("--epochs", type=int, default=None, help="epochs (default 30)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--wm-per-subject", type=int, default=20,
                   help="white-matter patches per subject, away from lesions (0: lesions only)")
    add_set(p, help="pre-training option (e.g. tau=0.2, objective=frodo-mse) or model.KEY=VALUE")
    p.add_argument("--cache-dir", default=None, help="patch cache (default OUT/.patch_cache)")
    p.add_argument("--device", "-d", default="auto", help="auto|cpu|cuda")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")


def run(args) -> int:
    from .options import parse_options

    res = pretrain(cohort=args.cohort, out=args.out, model=args.model, epochs=args.epochs, seed=args.seed,
                   wm_per_subject=args.wm_per_subject, options=parse_options(args.option),
                   cache_dir=args.cache_dir, device=args.device, threads=args.threads, quiet=args.quiet)
    h = res["history"][-1] if res["history"] else {}
    print(f"{args.out}/encoder.pt\tmodel={args.model}\tpatches={res['n_patches']}"
          f"\tcontrast={h.get('contrast', float('nan')):.3f}"
          f"\trecon={h.get('recon', float('nan')):.4f}\tspread={h.get('embedding_spread', float('nan')):.3f}")
    return 0


def pretrain(*, cohort, out, model: str = "asymmetric", epochs: int | None = None, seed: int = 0,
             wm_per_subject: int = 20, options: dict | None = None, cache_dir=None, device: str = "auto",
             threads: int | None = None, quiet: bool = False) -> dict:
    """Pre-train `model` on `cohort`'s lesions (+ white matter); writes OUT/encoder.pt and
    OUT/pretrain.json and returns the result of rimscope.train.pretrain.pretrain."""
    from pathlib import Path

    import numpy as np

    from ..cohort import load_cohort
    from ..errors import InputError
    from .data import load_lesion_data
    from .options import parse_choice, parse_pretrain_options, start_run
    from .pretrain import PRETRAINABLE
    from .pretrain import pretrain as run_pretrain
    from .wm_patches import cohort_wm_patches

    parse_choice("--model", model, PRETRAINABLE)
    if wm_per_subject < 0:
        raise InputError("--wm-per-subject must be >= 0")
    options, device = start_run(options, epochs, parse_pretrain_options, model, threads, device)
    out = Path(out)
    entries = load_cohort(cohort)
    data = load_lesion_data(entries, None, cache_dir=cache_dir or out / ".patch_cache", quiet=quiet)
    parts = [data.x]
    if wm_per_subject:
        parts.append(cohort_wm_patches(entries, wm_per_subject, seed=seed, quiet=quiet))
    x = np.concatenate(parts)
    log.info("pre-training %s on %d lesion + %d white-matter patches", model, len(data), len(x) - len(data))
    res = run_pretrain(x, options, seed=seed, device=device, quiet=quiet, out=out, model_name=model)
    return {**res, "n_patches": len(x)}
