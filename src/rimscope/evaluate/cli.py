"""`rimscope evaluate`: the command line over `rimscope.evaluate(...)` (evaluate.pipeline)."""
from __future__ import annotations

from .pipeline import ALL_MODELS
from ..flags import add_input, add_output, add_set


def add_arguments(p) -> None:
    add_input(p, "labelled cohort: manifest (.csv/.tsv) or BIDS folder", required=True, dest="cohort")
    p.add_argument("--labels", required=True, help="TSV subject, lesion_id, rim")
    p.add_argument("--models", default=ALL_MODELS,
                   help="comma-separated registry names (see `rimscope models`)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=1)
    add_output(p, "output folder", required=True, dest="out")
    p.add_argument("--pretrain-cohort", default=None,
                   help="separate UNLABELED cohort for self-supervised pre-training (never the labelled one)")
    p.add_argument("--wm-per-subject", type=int, default=20,
                   help="white-matter patches per unlabeled subject added to pre-training (0: lesions only)")
    p.add_argument("--pretrain-option", action="append", default=[], metavar="KEY=VALUE",
                   help="pre-training option (see `rimscope pretrain`)")
    p.add_argument("--label-efficiency", action="store_true",
                   help="AUC vs number of labelled training subjects, with/without pre-training")
    p.add_argument("--sizes", default="4,8,16,all", help="label-efficiency subject counts")
    p.add_argument("--ablations", action="store_true",
                   help="add asymmetric w/o pre-training, w/o contrastive term, and rimnet (symmetric fusion)")
    add_set(p, help="training option for every fit (e.g. epochs=20); see `rimscope train`")
    p.add_argument("--truth", default=None,
                   help="simulator truth.json (default: beside the manifest if present) for FPR per hard-negative kind")
    p.add_argument("--bootstrap", type=int, default=1000, help="patient-bootstrap resamples")
    p.add_argument("--patch-size", type=int, default=32)
    p.add_argument("--cache-dir", default=None, help="patch cache (default OUT/.patch_cache)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", "-d", default="auto", help="auto|cpu|cuda")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")


def run(args) -> int:
    from ..train.options import parse_options
    from .pipeline import evaluate

    results = evaluate(
        cohort=args.cohort, labels=args.labels, out=args.out, models=args.models, folds=args.folds,
        repeats=args.repeats, pretrain_cohort=args.pretrain_cohort, wm_per_subject=args.wm_per_subject,
        pretrain_options=parse_options(args.pretrain_option), label_efficiency=args.label_efficiency,
        sizes=args.sizes, ablations=args.ablations, options=parse_options(args.option), truth=args.truth,
        bootstrap=args.bootstrap, patch_size=args.patch_size, cache_dir=args.cache_dir, seed=args.seed,
        device=args.device, threads=args.threads, quiet=args.quiet)
    from .report import markdown_table

    print(markdown_table(results["summary"]))
    return 0
