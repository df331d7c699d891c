"""`rimscope models`: every model name with its description, and the shipped weights (name,
model, threshold, training data, sha256) so a user knows what `rimscope predict` will run."""
from __future__ import annotations

import json


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="print as JSON")


def run(args) -> int:
    from ..weights import shipped
    from ..errors import InputError
    from .card import read_card
    from .registry import MODELS

    models = [{"name": s.name, "kind": s.kind, "description": s.description} for s in MODELS.values()]
    weights = []
    for tag, folder in shipped().items():
        try:
            card = read_card(folder)
        except InputError:
            weights.append({"weights": tag, "model": "?", "threshold": None, "trained_on": "?", "n_train": None,
                            "val_pr_auc": None, "sha256": "", "path": str(folder)})
            continue
        tr = card.info.get("training", {})
        val = card.info.get("metrics", {}).get("validation", {})
        weights.append({"weights": tag, "model": card.name, "threshold": card.threshold,
                        "trained_on": tr.get("cohort", "?"), "n_train": tr.get("n_train"),
                        "val_pr_auc": val.get("pr_auc"), "sha256": card.weights_sha256[:12],
                        "path": str(folder)})
    if args.json:
        print(json.dumps({"models": models, "shipped": weights}, indent=2))
        return 0
    print("model\tkind\tdescription")
    for m in models:
        print(f"{m['name']}\t{m['kind']}\t{m['description']}")
    print("\nshipped weights\tmodel\tthreshold\ttrained on\tn_train\tval PR AUC\tsha256")
    if not weights:
        print("(none)")
    for w in weights:
        thr = "?" if w["threshold"] is None else f"{w['threshold']:.3g}"
        auc = "?" if w["val_pr_auc"] is None else f"{w['val_pr_auc']:.3f}"
        print(f"{w['weights']}\t{w['model']}\t{thr}\t{w['trained_on']}\t{w['n_train']}\t{auc}\t{w['sha256']}")
    return 0
