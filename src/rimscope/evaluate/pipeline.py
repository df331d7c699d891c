"""`rimscope.evaluate(...)`: patient-grouped cross-validation of models, statistics and a report.

Writes OUT/predictions.tsv (out-of-fold, per lesion, model and repeat), OUT/folds.tsv,
OUT/label_efficiency.tsv (if asked), OUT/results.json (numbers, config, seeds, versions),
OUT/results.md (the table) and OUT/report.html (self-contained). Every option is checked before
any image is read or any model trained.
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

log = logging.getLogger("rimscope")

ALL_MODELS = "asymmetric,asymmetric-frodo,rimnet,qsm-only,concat,radiomics,rim-contrast"
PRED_COLUMNS = ["repeat", "fold", "variant", "model", "subject", "lesion_id", "y", "probability",
                "threshold", "call"]
LE_COLUMNS = ["fold", "n_subjects", "n_used", "pretrained", "subject", "lesion_id", "y", "probability",
              "threshold"]


def parse_sizes(text, allow_all: bool = True) -> list[int]:
    """`--sizes 4,8,16[,all]` -> sorted labelled-subject counts ('all': every subject, where the
    cohort is given; `allow_all=False` where the command would have to simulate them)."""
    from ..errors import InputError

    out = []
    for tok in str(text).split(","):
        tok = tok.strip()
        if tok == "all" and allow_all:
            out.append(10 ** 6)
        elif tok.isdigit() and int(tok) > 0:
            out.append(int(tok))
        elif tok:
            out = []
            break
    if not out:
        raise InputError(f"--sizes {text!r}: give positive integers" + (" or 'all', e.g. 4,8,16,all"
                                                                       if allow_all else ", e.g. 2,4,8,16"))
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


def evaluate(*, cohort, labels, out, models=ALL_MODELS, folds: int = 5, repeats: int = 1,
             pretrain_cohort=None, wm_per_subject: int = 20, pretrain_options: dict | None = None,
             label_efficiency: bool = False, sizes: str = "4,8,16,all", ablations: bool = False,
             options: dict | None = None, truth=None, bootstrap: int = 1000, patch_size: int = 32,
             cache_dir=None, seed: int = 0, device: str = "auto", threads: int | None = None,
             quiet: bool = False) -> dict:
    """Cross-validate `models` on the labelled `cohort`; returns results.json's content.
    `options` / `pretrain_options`: training / pre-training options as dicts."""
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in locals().items()}
    import numpy as np
    import torch

    from ..cohort import load_cohort, read_labels
    from ..errors import InputError
    from ..patches import PatchConfig
    from ..runtime import resolve_device, seed_everything, versions, write_tsv_atomic
    from ..train.data import load_lesion_data, subset
    from ..train.options import parse_models, parse_pretrain_options, parse_training_options
    from . import adapter, crossval, report, summarise
    from .splits import check_folds

    t0 = time.time()
    models = parse_models(models)  # every option checked before any image is read
    if repeats < 1 or bootstrap < 0:
        raise InputError("--repeats must be >= 1 and --bootstrap >= 0")
    options = dict(options or {})
    pre_options = dict(pretrain_options or {})
    for m in models:
        parse_training_options(options, m)
    if pretrain_cohort:
        parse_pretrain_options(pre_options)
    sizes = parse_sizes(sizes) if label_efficiency else []
    device = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    seed_everything(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = cache_dir or out / ".patch_cache"
    config = PatchConfig(size=patch_size)

    entries = load_cohort(cohort)
    label_map = read_labels(labels)
    in_cohort = {e.subject for e in entries}
    lab_keys = [k for k in label_map if k[0] in in_cohort]
    check_folds([label_map[k] for k in lab_keys], [k[0] for k in lab_keys], folds)
    data = load_lesion_data(entries, label_map, config, cache_dir=cache, quiet=quiet, labels_path=labels)
    data = subset(data, data.y >= 0)
    if len(data) == 0 or data.y.sum() == 0:
        raise InputError("no labelled Rim+ lesion in the cohort; check subject and lesion ids", labels)
    log.info("%d labelled lesions (%d Rim+) in %d subjects", len(data), int(data.y.sum()),
             len(set(data.subject.tolist())))

    inits = {}
    if pretrain_cohort:
        unl_entries = load_cohort(pretrain_cohort)
        check_separate(entries, unl_entries, pretrain_cohort)
        unl = load_lesion_data(unl_entries, None, config, cache_dir=cache, quiet=quiet).x
        if wm_per_subject > 0:
            from ..train.wm_patches import cohort_wm_patches

            unl = np.concatenate([unl, cohort_wm_patches(unl_entries, wm_per_subject, config,
                                                         seed=seed, quiet=quiet)])
        need = {m for m in models if m in crossval.PRETRAINABLE}
        if ablations or label_efficiency:
            need.add(crossval.REFERENCE)
        for m in sorted(need):
            log.info("pre-training %s on %d unlabeled patches (lesions + white matter)", m, len(unl))
            inits[m] = adapter.pretrain_init(m, unl, options=pre_options, seed=seed, device=device,
                                             quiet=quiet)
    variants = crossval.plan_variants(models, bool(inits), ablations)
    variants = [crossval.Variant(v.label, v.model, v.pretrained, {**options, **v.options}, v.note)
                for v in variants]

    def checkpoint(rows, _records):
        write_tsv_atomic(out / "predictions.tsv", rows, PRED_COLUMNS)

    rows, records = crossval.run_crossval(data, variants, folds=folds, repeats=repeats, seed=seed,
                                          inits=inits, device=device, quiet=quiet, on_fold=checkpoint)
    checkpoint(rows, records)
    write_tsv_atomic(out / "folds.tsv", records, list(records[0].keys()))
    le_rows = []
    if sizes:
        plain = [v for v in variants if v.model == crossval.REFERENCE and v.options == options]
        pre = next((v.label for v in plain if v.pretrained), None)
        scratch = next((v.label for v in plain if not v.pretrained), None)
        le_rows, have = (crossval.reuse_full_points(rows, records, pre, scratch, max(sizes))
                         if max(sizes) >= 10 ** 6 else ([], set()))
        le_rows += crossval.run_label_efficiency(data, sizes, folds=folds, seed=seed,
                                                 init=inits.get(crossval.REFERENCE), options=options,
                                                 device=device, quiet=quiet, skip=have)
        write_tsv_atomic(out / "label_efficiency.tsv", le_rows, LE_COLUMNS)

    kinds = rim = None
    truth_path = Path(truth) if truth else Path(cohort).parent / "truth.json"
    if truth or (Path(cohort).is_file() and truth_path.exists()):
        kinds, rim = read_truth(truth_path)
    summary = summarise.summarise(rows, n_boot=bootstrap, seed=seed, reference=crossval.REFERENCE,
                                  kinds=kinds, truth_rim=rim)
    results = {
        "command": "rimscope " + " ".join(sys.argv[1:]) if sys.argv and "rimscope" in sys.argv[0] else None,
        "config": settings,
        "variants": [{"label": v.label, "model": v.model, "pretrained": v.pretrained, "options": v.options,
                      "note": v.note} for v in variants],
        "seeds": {"cv": seed, "fit": "seed + 100*repeat + fold", "bootstrap": seed},
        "versions": versions(), "device": device, "seconds": round(time.time() - t0, 1),
        "summary": summary,
        "label_efficiency": summarise.summarise_label_efficiency(le_rows, n_boot=min(bootstrap, 500),
                                                                 seed=seed) if le_rows else None,
        "folds": records,
    }
    report.write_results(out, results)
    ref = crossval.REFERENCE if any(v.label == crossval.REFERENCE for v in variants) else variants[0].label
    report.write_report(out, results, montage=report.montage_items(data, rows, ref))
    log.info("wrote %s (results.json, results.md, report.html, predictions.tsv) in %.0f s", out,
             time.time() - t0)
    return results
