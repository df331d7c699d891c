"""`rimscope evaluate` end to end on a tiny on-disk cohort with the classical models, and its
one-line user errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import write_cohort

from rimscope.cli import main


def _cohort(root, n=8, seed0=0):
    rng = np.random.default_rng(seed0)

    def rims(k):
        r = rng.random(4) < 0.3
        r[(k - seed0) % 4] = True  # each subject holds a Rim+ lesion, at varying ids
        return r.astype(int)

    manifest, labels, _ = write_cohort(root, n, seed0=seed0, sid=lambda k: f"s{k:02d}", rims=rims, shell_ppm=0.06)
    return manifest, labels


def test_evaluate_classical_models_end_to_end(tmp_path, capsys):
    m, lab = _cohort(tmp_path / "c")
    out = tmp_path / "ev"
    rc = main(["evaluate", "-q", "-i", str(m), "--labels", str(lab), "--models", "rim-contrast,radiomics",
               "--folds", "4", "--repeats", "2", "-o", str(out), "--bootstrap", "50", "--patch-size", "16",
               "--device", "cpu"])
    assert rc == 0
    for f in ("predictions.tsv", "folds.tsv", "results.json", "results.md", "report.html"):
        assert (out / f).exists(), f
    res = json.loads((out / "results.json").read_text())
    assert res["versions"]["rimscope"] and res["config"]["seed"] == 0
    s = res["summary"]
    assert s["n_lesions"] == 32 and set(s["variants"]) == {"rim-contrast", "radiomics"}
    preds = (out / "predictions.tsv").read_text().splitlines()
    assert len(preds) == 1 + 32 * 2 * 2
    # the rim shell is a clear signal: the rule-based model must find it out of fold
    assert s["variants"]["rim-contrast"]["metrics"]["roc_auc"] > 0.8
    assert "| rim-contrast |" in capsys.readouterr().out


def test_evaluate_user_errors(tmp_path, capsys):
    m, lab = _cohort(tmp_path / "c", n=3)
    rc = main(["evaluate", "-q", "-i", str(m), "--labels", str(lab), "--models", "rim-contrast",
               "--folds", "5", "-o", str(tmp_path / "o"), "--patch-size", "16"])
    err = capsys.readouterr().err
    assert rc == 2 and "--folds" in err and len(err.strip().splitlines()) == 1
    rc = main(["evaluate", "-q", "-i", str(m), "--labels", str(lab), "--models", "nope",
               "-o", str(tmp_path / "o")])
    assert rc == 2 and "nope" in capsys.readouterr().err
    rc = main(["evaluate", "-q", "-i", str(m), "--labels", str(lab), "--models", "rim-contrast",
               "--folds", "2", "--pretrain-cohort", str(m), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "separate unlabeled cohort" in err


@pytest.mark.slow
def test_evaluate_with_pretraining_ablations_and_label_efficiency(tmp_path):
    """The method's whole protocol on a tiny cohort (1 epoch, 16^3 patches): plumbing, not quality."""
    m, lab = _cohort(tmp_path / "c", n=6)
    unl, _ = _cohort(tmp_path / "u", n=2, seed0=50)
    out = tmp_path / "ev"
    rc = main(["evaluate", "-q", "-i", str(m), "--labels", str(lab), "--models", "asymmetric",
               "--folds", "2", "-o", str(out), "--bootstrap", "30", "--patch-size", "16", "--device", "cpu",
               "--pretrain-cohort", str(unl), "--pretrain-option", "epochs=1", "--pretrain-option", "batch_size=8",
               "--wm-per-subject", "4", "--ablations", "--label-efficiency", "--sizes", "2,all",
               "--set", "epochs=1", "--set", "batch_size=8"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    v = {x["label"]: x for x in res["variants"]}
    assert v["asymmetric"]["pretrained"] and not v["asymmetric w/o pre-training"]["pretrained"]
    assert v["asymmetric w/o contrastive"]["options"]["supcon"] is False
    assert v["rimnet"]["note"].startswith("ablation")
    d = res["summary"]["variants"]["rimnet"]["delong_vs_reference"]
    assert d["reference"] == "asymmetric" and 0 <= d["p_median"] <= 1
    le = {(p["n_subjects"], p["pretrained"]) for p in res["label_efficiency"]}
    assert le == {(2, False), (2, True), (10 ** 6, False), (10 ** 6, True)}
