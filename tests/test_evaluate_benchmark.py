"""`rimscope benchmark`: target checks and (slow) the --quick pipeline end to end."""
from __future__ import annotations

import argparse
import json

import pytest

from rimscope.cli import main
from rimscope.errors import InputError
from rimscope.evaluate.benchmark import PROFILES, _evaluate_kwargs, check_options, check_targets


def _summary(asym, frodo, radiomics):
    mk = lambda model, auc, pauc, sens: {"model": model, "metrics": {  # noqa: E731
        "roc_auc": auc, "pauc_fpr0.1": pauc, "sens_at_spec0.90": sens}}
    return {"variants": {"asymmetric": mk("asymmetric", *asym), "asymmetric-frodo": mk("asymmetric-frodo", *frodo),
                         "radiomics": mk("radiomics", *radiomics),
                         "asymmetric w/o pre-training": mk("asymmetric", 0.99, 0.99, 0.99)}}


def test_check_targets_reports_met_and_missed():
    met = {t["claim"]: t["met"] for t in check_targets(_summary((0.96, 0.9, 0.92), (0.9, 0.8, 0.8), (0.85, 0.7, 0.7)))}
    assert all(met.values()) and len(met) == 4  # ablation rows are not baselines
    t = check_targets(_summary((0.93, 0.85, 0.92), (0.94, 0.8, 0.8), (0.85, 0.9, 0.7)))
    by = {x["claim"]: x for x in t}
    assert not by["asymmetric roc_auc ≥ 0.95"]["met"] and by["asymmetric sens_at_spec0.90 ≥ 0.9"]["met"]
    assert by["asymmetric ahead of every baseline on roc_auc"]["best_baseline"] == "asymmetric-frodo"
    assert not by["asymmetric ahead of every baseline on pauc_fpr0.1"]["met"]


@pytest.mark.parametrize("profile", ["quick", "full"])
def test_benchmark_drives_evaluate_with_valid_arguments(tmp_path, profile):
    ns = argparse.Namespace(models="asymmetric,rim-contrast", seed=3, device="cpu", out=str(tmp_path),
                            option=["lr=0.002"], threads=2, quiet=True)
    kw = _evaluate_kwargs(ns, PROFILES[profile], tmp_path / "c" / "manifest.tsv", tmp_path / "u" / "manifest.tsv",
                          tmp_path / "ev")
    check_options(kw)
    assert kw["quiet"] and kw["ablations"] and kw["label_efficiency"] and kw["seed"] == 3 and kw["threads"] == 2
    assert kw["folds"] == PROFILES[profile]["folds"] and kw["options"]["lr"] == 0.002  # user options win
    assert kw["pretrain_cohort"] == tmp_path / "u" / "manifest.tsv"
    ns.option = ["threshold_rule=abc"]
    with pytest.raises(InputError, match="threshold_rule"):
        check_options(_evaluate_kwargs(ns, PROFILES[profile], tmp_path / "c" / "manifest.tsv", None, tmp_path / "ev"))


@pytest.mark.slow
def test_benchmark_quick_end_to_end(tmp_path):
    out = tmp_path / "bench"
    assert main(["benchmark", "-q", "--quick", "-o", str(out), "--device", "cpu", "--threads", "1"]) == 0
    md = (out / "benchmark.md").read_text()
    assert "quick profile" in md and "| asymmetric |" in md and "| asymmetric-frodo |" in md
    assert "MET" in md or "MISSED" in md
    res = json.loads((out / "evaluate" / "results.json").read_text())
    rows = set(res["summary"]["variants"])
    assert {"asymmetric", "asymmetric-frodo", "rimnet", "radiomics", "rim-contrast"} <= rows
    assert "asymmetric w/o pre-training" in rows and "asymmetric w/o contrastive" in rows
    assert res["label_efficiency"] and (out / "evaluate" / "report.html").stat().st_size > 10000
    bench = json.loads((out / "benchmark.json").read_text())
    assert bench["profile"] == "quick" and bench["timings_s"]["total"] > 0 and bench["targets"]
