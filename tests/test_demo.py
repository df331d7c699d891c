"""`rimscope demo` (what `make demo` runs): the whole user path on a freshly simulated subject."""
from __future__ import annotations

import json

import pytest

from rimscope.cli import main as cli_main


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli_main(["demo", "-q", "-o", str(out), "--subjects", "2", "--seed", "5", "-d", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "roc_auc" in printed and "summary.tsv" in printed and "_report.html" in printed
    scores = json.loads((out / "demo_scores.json").read_text())
    truth = json.loads((out / "cohort" / "truth.json").read_text())
    lesions = [les for s in truth["subjects"].values() for les in s["lesions"]]
    # scored against the simulator's true rim status, and against the rater labels separately
    assert scores["against_truth"]["n"] == len(lesions)
    assert scores["against_truth"]["n_pos"] == sum(les["true_rim"] for les in lesions)
    assert scores["against_rater_labels"]["n_pos"] == sum(les["rim"] for les in lesions)
    assert (out / "predictions" / "run.json").exists()
    run = json.loads((out / "predictions" / "run.json").read_text())
    assert run["model"]["name"] == "asymmetric" and len(run["done"]) == 2
