"""`rimscope demo` (what `make demo` runs): the whole user path on data nobody trained on.

Simulates a small cohort with seeds the shipped model never saw, rates it with the shipped
model exactly as a user would (`rimscope predict`), scores the calls against the simulator's
truth and prints where the results and the reports are.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from .cohort import read_labels
from .flags import add_output
from .runtime import read_tsv, write_json_atomic

DEMO_SEED = 20261127  # never used for training the shipped model (see its card)


def add_arguments(p) -> None:
    add_output(p, "output folder (default: ./demo_out)", default="demo_out")
    p.add_argument("--subjects", type=int, default=4)
    p.add_argument("--seed", type=int, default=DEMO_SEED)
    p.add_argument("-m", "--model", default=None, help="model (default: the shipped default)")
    p.add_argument("-d", "--device", default="auto")


def _truth(cohort: Path) -> dict:
    """{(subject, lesion_id): true rim (coverage >= 2/3), not the rater label} from truth.json."""
    t = json.loads((cohort / "truth.json").read_text())
    out = {}
    for sid, s in t["subjects"].items():
        for les in s["lesions"]:
            out[(sid, int(les["lesion_id"]))] = int(les["true_rim"])
    return out


def score(pred_dir: Path, labels: dict) -> dict:
    """Lesion-level figures of the predictions against a {(subject, id): 0/1} reference."""
    from .metrics import lesion_metrics

    threshold = json.loads((pred_dir / "run.json").read_text())["model"]["threshold"]
    y, p = [], []
    from .inference.outputs import finished, find_lesions_tsv

    for sid in finished(pred_dir):
        for row in read_tsv(find_lesions_tsv(pred_dir, sid)):
            key = (sid, int(row["lesion_id"]))
            if key in labels:
                y.append(labels[key])
                p.append(float(row["rim_probability"]))
    y, p = np.array(y), np.array(p)
    return {"n": int(y.size), "n_pos": int(y.sum()), "threshold": threshold,
            **lesion_metrics(y, p, threshold)}


def run(args) -> int:
    from .inference.cli import predict_cohort
    from .simulate.command import simulate

    t0 = time.perf_counter()
    out = Path(args.output)
    cohort = out / "cohort"
    print(f"rimscope demo: simulating {args.subjects} held-out subjects (seed {args.seed}) ...",
          file=sys.stderr)
    simulate(out=cohort, subjects=args.subjects, seed=args.seed, quiet=args.quiet)
    pred = out / "predictions"
    print("rimscope demo: rating every lesion with the shipped model ...", file=sys.stderr)
    record = predict_cohort(input=cohort / "manifest.tsv", output=pred, model=args.model, report=True,
                            device=args.device, quiet=args.quiet)
    if record["failures"]:
        for f in record["failures"]:
            print(f"rimscope: failed: {f['subject']}: {f['error']}", file=sys.stderr)
        return 2
    truth = score(pred, _truth(cohort))
    rater = score(pred, read_labels(cohort / "labels.tsv"))
    figures = {"against_truth": truth, "against_rater_labels": rater,
               "seconds": round(time.perf_counter() - t0, 1)}
    write_json_atomic(out / "demo_scores.json", figures)
    reports = sorted(pred.glob("sub-*/sub-*_report.html"))
    print("\nrimscope demo — held-out simulated cohort, shipped default model")
    print(f"  lesions scored         {truth['n']} ({truth['n_pos']} Rim+ by simulator truth)")
    for k in ("roc_auc", "pr_auc", "sensitivity", "specificity", "f1"):
        print(f"  {k:<22} {truth[k]:.3f}   (vs rater labels: {rater[k]:.3f})")
    print(f"  time                   {figures['seconds']:.0f} s")
    print(f"\n  results:  {(pred / 'summary.tsv').resolve()}")
    print(f"  reports:  {reports[0].resolve() if reports else '-'}" + (f" (+{len(reports) - 1} more)" if len(reports) > 1 else ""))
    print(f"  scores:   {(out / 'demo_scores.json').resolve()}")
    return 0
