"""`rimscope evaluate`: patient-grouped cross-validation of models, statistics and a report.

Writes OUT/predictions.tsv (out-of-fold, per lesion, model and repeat), OUT/folds.tsv,
OUT/label_efficiency.tsv (if asked), OUT/results.json (numbers, config, seeds, versions),
OUT/results.md (the table) and OUT/report.html (self-contained).
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

log = logging.getLogger("rimscope")

PRED_COLUMNS = ["repeat", "fold", "variant", "model", "subject", "lesion_id", "y", "probability",
                "threshold", "call"]
LE_COLUMNS = ["fold", "n_subjects", "n_used", "pretrained", "subject", "lesion_id", "y", "probability",
              "threshold"]


def add_arguments(p) -> None:
    p.add_argument("--cohort", required=True, help="labelled cohort: manifest (.csv/.tsv) or BIDS folder")
    p.add_argument("--labels", required=True, help="TSV subject, lesion_id, rim")
    p.add_argument("--models", default="asymmetric,asymmetric-frodo,rimnet,qsm-only,concat,radiomics,rim-contrast",
                   help="comma-separated registry names (see `rimscope models`)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", required=True, help="output folder")
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
    p.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="training option for every fit (e.g. epochs=20); see `rimscope train`")
    p.add_argument("--truth", default=None,
                   help="simulator truth.json (default: beside the manifest if present) for FPR per hard-negative kind")
    p.add_argument("--bootstrap", type=int, default=1000, help="patient-bootstrap resamples")
    p.add_argument("--patch-size", type=int, default=32)
    p.add_argument("--cache-dir", default=None, help="patch cache (default OUT/.patch_cache)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", "-d", default="auto", help="auto|cpu|cuda")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")


def _sizes(text: str) -> list[int]:
    from ..errors import InputError

    out = []
    for tok in text.split(","):
        tok = tok.strip()
        if tok == "all":
            out.append(10 ** 6)
        elif tok.isdigit() and int(tok) > 0:
            out.append(int(tok))
        else:
            raise InputError(f"--sizes {text!r}: give positive integers or 'all', e.g. 4,8,16,all")
    return sorted(set(out))


def check_separate(labelled, unlabeled, path) -> None:
    """Pre-training must never see the labelled cohort's images (its test folds)."""
    from ..errors import InputError

    mine = {Path(e.qsm).resolve() for e in labelled}
    shared = [e for e in unlabeled if Path(e.qsm).resolve() in mine]
    if shared:
        raise InputError(f"the pre-training cohort shares {len(shared)} QSM image(s) with the labelled "
                         f"cohort (e.g. {shared[0].qsm}); give a separate unlabeled cohort", path)


def read_truth(path) -> tuple[dict, dict]:
    """Simulator truth.json -> ({(subject, lesion_id): hard-negative kind}, {(subject, id): true rim})."""
    import json

    from ..errors import InputError

    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read truth file ({exc}); give the simulator's truth.json", path) from None
    subjects = doc.get("subjects", doc)
    kinds, rim = {}, {}
    items = subjects.items() if isinstance(subjects, dict) else ((s.get("subject"), s) for s in subjects)
    for sid, sub in items:
        if not isinstance(sub, dict):
            continue
        lesions = sub.get("lesions", [])
        lesions = lesions.items() if isinstance(lesions, dict) else ((d.get("lesion_id", d.get("id")), d)
                                                                  for d in lesions)
        for lid, d in lesions:
            if lid is None or not isinstance(d, dict):
                continue
            key = (str(sid).removeprefix("sub-"), int(lid))
            kinds[key] = d.get("hard_negative") or "none"
            if "rim" in d or "true_rim" in d:
                rim[key] = int(d.get("true_rim", d.get("rim")))
    return kinds, rim


def run(args) -> int:
    import numpy as np
    import torch

    from ..cohort import load_cohort, read_labels
    from ..errors import InputError
    from ..models.registry import MODELS
    from ..patches import PatchConfig
    from ..runtime import resolve_device, seed_everything, versions, write_tsv_atomic
    from ..train.data import load_lesion_data, subset
    from ..train.options import parse_options
    from . import adapter, crossval, report, summarise
    from .splits import check_folds

    t0 = time.time()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in MODELS]
    if bad or not models:
        raise InputError(f"--models: unknown {bad}; choose from {', '.join(MODELS)}")
    if args.repeats < 1 or args.bootstrap < 0:
        raise InputError("--repeats must be >= 1 and --bootstrap >= 0")
    options = parse_options(args.option)
    pre_options = parse_options(args.pretrain_option)
    sizes = _sizes(args.sizes) if args.label_efficiency else []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = args.cache_dir or out / ".patch_cache"
    config = PatchConfig(size=args.patch_size)

    entries = load_cohort(args.cohort)
    labels = read_labels(args.labels)
    in_cohort = {e.subject for e in entries}
    lab_keys = [k for k in labels if k[0] in in_cohort]
    check_folds([labels[k] for k in lab_keys], [k[0] for k in lab_keys], args.folds)
    data = load_lesion_data(entries, labels, config, cache_dir=cache, quiet=args.quiet, labels_path=args.labels)
    data = subset(data, data.y >= 0)
    if len(data) == 0 or data.y.sum() == 0:
        raise InputError("no labelled Rim+ lesion in the cohort; check subject and lesion ids", args.labels)
    log.info("%d labelled lesions (%d Rim+) in %d subjects", len(data), int(data.y.sum()),
             len(set(data.subject.tolist())))

    inits = {}
    if args.pretrain_cohort:
        unl_entries = load_cohort(args.pretrain_cohort)
        check_separate(entries, unl_entries, args.pretrain_cohort)
        unl = load_lesion_data(unl_entries, None, config, cache_dir=cache, quiet=args.quiet).x
        if args.wm_per_subject > 0:
            from ..train.wm_patches import cohort_wm_patches

            unl = np.concatenate([unl, cohort_wm_patches(unl_entries, args.wm_per_subject, config,
                                                         seed=args.seed, quiet=args.quiet)])
        need = {m for m in models if m in crossval.PRETRAINABLE}
        if args.ablations or args.label_efficiency:
            need.add(crossval.REFERENCE)
        for m in sorted(need):
            log.info("pre-training %s on %d unlabeled patches (lesions + white matter)", m, len(unl))
            inits[m] = adapter.pretrain_init(m, unl, options=pre_options, seed=args.seed, device=device,
                                             quiet=args.quiet)
    variants = crossval.plan_variants(models, bool(inits), args.ablations)
    variants = [crossval.Variant(v.label, v.model, v.pretrained, {**options, **v.options}, v.note)
                for v in variants]

    def checkpoint(rows, _records):
        write_tsv_atomic(out / "predictions.tsv", rows, PRED_COLUMNS)

    rows, records = crossval.run_crossval(data, variants, folds=args.folds, repeats=args.repeats, seed=args.seed,
                                          inits=inits, device=device, quiet=args.quiet, on_fold=checkpoint)
    checkpoint(rows, records)
    write_tsv_atomic(out / "folds.tsv", records, list(records[0].keys()))
    le_rows = []
    if sizes:
        plain = [v for v in variants if v.model == crossval.REFERENCE and v.options == options]
        pre = next((v.label for v in plain if v.pretrained), None)
        scratch = next((v.label for v in plain if not v.pretrained), None)
        le_rows, have = (crossval.reuse_full_points(rows, records, pre, scratch, max(sizes))
                         if max(sizes) >= 10 ** 6 else ([], set()))
        le_rows += crossval.run_label_efficiency(data, sizes, folds=args.folds, seed=args.seed,
                                                 init=inits.get(crossval.REFERENCE), options=options,
                                                 device=device, quiet=args.quiet, skip=have)
        write_tsv_atomic(out / "label_efficiency.tsv", le_rows, LE_COLUMNS)

    kinds = rim = None
    truth = Path(args.truth) if args.truth else Path(args.cohort).parent / "truth.json"
    if args.truth or (Path(args.cohort).is_file() and truth.exists()):
        kinds, rim = read_truth(truth)
    summary = summarise.summarise(rows, n_boot=args.bootstrap, seed=args.seed, reference=crossval.REFERENCE,
                                  kinds=kinds, truth_rim=rim)
    results = {
        "command": "rimscope " + " ".join(sys.argv[1:]) if sys.argv and "rimscope" in sys.argv[0] else None,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"},
        "variants": [{"label": v.label, "model": v.model, "pretrained": v.pretrained, "options": v.options,
                      "note": v.note} for v in variants],
        "seeds": {"cv": args.seed, "fit": "seed + 100*repeat + fold", "bootstrap": args.seed},
        "versions": versions(), "device": device, "seconds": round(time.time() - t0, 1),
        "summary": summary,
        "label_efficiency": summarise.summarise_label_efficiency(le_rows, n_boot=min(args.bootstrap, 500),
                                                                 seed=args.seed) if le_rows else None,
        "folds": records,
    }
    report.write_results(out, results)
    ref = crossval.REFERENCE if any(v.label == crossval.REFERENCE for v in variants) else variants[0].label
    report.write_report(out, results, montage=report.montage_items(data, rows, ref))
    print(report.markdown_table(summary))
    log.info("wrote %s (results.json, results.md, report.html, predictions.tsv) in %.0f s", out,
             time.time() - t0)
    return 0
