"""What the ratings say: the labels TSV of the input contract, and agreement (Cohen's kappa).

Why here and not in the store: the store only keeps rows; turning them into labels (unsure
ratings left out, since a label is 0 or 1) and into agreement between raters and with the model
is the review's reading of those rows, shared by the API and `rimscope review --export`.
"""
from __future__ import annotations

import math
from itertools import combinations

from ..metrics import cohen_kappa
from ..runtime import write_tsv_atomic

LABEL_COLUMNS = ["subject", "lesion_id", "rim", "rater", "confidence"]
MODEL = "model"  # the pseudo-rater whose labels are the predictions' `rim` column


def label_rows(latest: list[dict]) -> list[dict]:
    """Current decided ratings as rows of the labels TSV (subject, lesion_id, rim, rater, confidence)."""
    rows = []
    for r in latest:
        if r["rating"] not in (0, 1):
            continue
        conf = r["confidence"]
        rows.append({"subject": r["subject"], "lesion_id": r["lesion_id"], "rim": r["rating"],
                     "rater": r["rater"], "confidence": "" if conf is None else f"{conf:.3g}"})
    return rows


def labels_tsv(latest: list[dict]) -> str:
    lines = ["\t".join(LABEL_COLUMNS)]
    lines += ["\t".join(str(row[c]) for c in LABEL_COLUMNS) for row in label_rows(latest)]
    return "\n".join(lines) + "\n"


def write_labels(latest: list[dict], path) -> int:
    """Write the labels TSV atomically; returns the number of labels written."""
    rows = label_rows(latest)
    write_tsv_atomic(path, rows, LABEL_COLUMNS)
    return len(rows)


def kappa(a: list[int], b: list[int]) -> float | None:
    """Cohen's kappa (rimscope.metrics), None where it is undefined (no items, or one class only
    on both sides)."""
    if not a:
        return None
    k = cohen_kappa(a, b, 0.5)
    return k if math.isfinite(k) else None


def agreement(latest: list[dict], model_labels: dict) -> list[dict]:
    """Kappa between every pair of raters, and of every rater with the model, on shared lesions.

    `model_labels` maps (subject, lesion_id) -> the model's 0/1 call. Unsure ratings are left out.
    """
    by_rater: dict[str, dict] = {}
    for r in latest:
        if r["rating"] in (0, 1):
            by_rater.setdefault(r["rater"], {})[(r["subject"], r["lesion_id"])] = r["rating"]
    raters = sorted(by_rater)
    out = []
    pairs = list(combinations(raters, 2)) + [(r, MODEL) for r in raters]
    for a, b in pairs:
        la = by_rater[a]
        lb = model_labels if b == MODEL else by_rater[b]
        keys = sorted(set(la) & set(lb))
        xa, xb = [la[k] for k in keys], [lb[k] for k in keys]
        same = sum(x == y for x, y in zip(xa, xb))
        out.append({"a": a, "b": b, "n": len(keys), "kappa": kappa(xa, xb),
                    "agreement": (same / len(keys)) if keys else None})
    return out
