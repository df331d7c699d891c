"""The transfer bench: its rule, calibration and threshold arithmetic on known inputs, and the
command end to end on a tiny cohort (rules and a saved model folder), with and without ../shared."""
from __future__ import annotations

import json
import math
import textwrap

import numpy as np
import pytest
from scipy import ndimage

from rimscope.evaluate import transfer as T
from rimscope.evaluate import transfer_bench as TB

TINY = {"crop_mm": 48, "model_mm": 1.0, "voxel_mm": [0.9, 1.0], "n_veins": [2, 4], "n_medullary": [2, 4],
        "lesions_median": 12, "p_subject_rim_free": 0.0, "p_rim_base": 0.4, "montage": False}


def _patch(shell=0.04, far=-0.01, zero_half=False, s=24):
    x = np.zeros((1, 4, s, s, s), np.float32)
    idx = np.indices((s, s, s)).transpose(1, 2, 3, 0)
    m = np.linalg.norm(idx - (s - 1) / 2, axis=-1) <= 4
    steps = ndimage.distance_transform_cdt(~m, metric="taxicab")
    q = np.where(m, 0.02, np.where(steps <= 2, shell, far)).astype(np.float32)
    if zero_half:  # outside the brain: exactly 0, must be left out
        q[:, :, : s // 2] = np.where(m[:, :, : s // 2], q[:, :, : s // 2], 0.0)
    x[0, 0], x[0, 2] = q, m
    return x


def test_shell_minus_surround_rule_on_a_known_patch():
    assert T.shell_minus_surround(_patch())[0] == pytest.approx(0.05, abs=1e-6)
    assert T.shell_minus_surround(_patch(zero_half=True))[0] == pytest.approx(0.05, abs=1e-6)
    assert T.shell_minus_surround(_patch(shell=-0.01))[0] == pytest.approx(0.0, abs=1e-6)


def test_ece_and_sensitive_threshold_on_known_inputs():
    assert T.ece([0, 1, 1, 1], [0.05, 0.05, 0.95, 0.95]) == pytest.approx(0.5 * 0.45 + 0.5 * 0.05)
    assert T.ece([0] * 5, [0.9] * 5) == pytest.approx(0.9)
    assert T.ece([0] * 9 + [1], [0.1] * 10) == pytest.approx(0.0)
    y, s = [1, 1, 1, 1, 0], [0.9, 0.8, 0.7, 0.1, 0.5]
    assert T.sensitive_threshold(y, s, 0.9) == 0.1
    assert T.sensitive_threshold(y, s, 0.75) == 0.7
    assert math.isnan(T.sensitive_threshold([0, 0], [0.1, 0.2]))


def _scorers():
    from rimscope.patches import PatchConfig

    return [T.Scorer("m", None, 0.5, True, PatchConfig()), T.Scorer(T.RULE, None, 0.03, False, PatchConfig())]


def test_cohort_metrics_on_known_scores():
    rng = np.random.default_rng(0)
    subjects = np.repeat([f"s{i}" for i in range(12)], 10)
    y = (rng.random(120) < 0.3).astype(int)
    perfect = np.where(y == 1, 0.8, 0.2) + rng.uniform(-0.05, 0.05, 120)
    rule = y * 0.02 + rng.normal(0, 0.02, 120)
    sc = {"y": y, "subjects": list(subjects), "scores": {"m": perfect, T.RULE: rule}}
    m = T.cohort_metrics(sc, _scorers(), {"m": 0.7, T.RULE: 0.0}, n_boot=200)
    a = m["m"]
    assert a["roc_auc"] == 1.0 and a["pr_auc"] == 1.0 and a["sens_at_spec0.90"] == 1.0
    assert a["sensitivity"] == 1.0 and a["specificity"] == 1.0
    assert a["sensitivity_at_sens_threshold"] == 1.0 and a["specificity_at_sens_threshold"] == 1.0
    assert a["ece"] == pytest.approx(np.mean(np.abs(perfect - y)), abs=0.02)  # every bin one-class
    from rimscope.metrics import roc_auc

    r_auc = roc_auc(y, rule)
    assert r_auc < 0.95 and a["roc_auc_minus_rule"] == pytest.approx(1 - r_auc)
    assert a["delong_p_vs_rule"] < 0.05 and math.isnan(a["delong_p_vs_first"])
    ci = a["ci95"]["roc_auc_minus_rule"]
    assert ci["lo"] <= 1 - r_auc <= ci["hi"] and ci["n"] >= 20
    r = m[T.RULE]
    assert math.isnan(r["ece"]) and r["reliability"] is None and r["roc_auc_minus_rule"] == 0.0
    assert r["delong_p_vs_first"] == pytest.approx(a["delong_p_vs_rule"])
    lo, hi = r["ci95"]["roc_auc"]["lo"], r["ci95"]["roc_auc"]["hi"]
    assert lo < r_auc < hi


def _fake_gen(tmp_path, source):
    """A stand-in for ../shared/foreign/gen.py: copies a cohort into its layout (manifest.csv,
    labels.tsv as truth, b0_dir.txt)."""
    gen = tmp_path / "fake_gen.py"
    gen.write_text(textwrap.dedent(f"""
        import argparse, csv, json, shutil, pathlib
        ap = argparse.ArgumentParser()
        for a in ("--out", "--subjects", "--seed", "--variant"):
            ap.add_argument(a)
        a = ap.parse_args()
        src, out = pathlib.Path({str(source)!r}), pathlib.Path(a.out)
        shutil.copytree(src / "sub-001", out / "sub-f001")
        t = json.loads((src / "truth.json").read_text())["subjects"]["001"]
        (out / "manifest.csv").write_text("subject,qsm,flair,lesions\\n" + "f001," + ",".join(
            "sub-f001/anat/sub-001_" + r for r in ("Chimap.nii.gz", "FLAIR.nii.gz", "desc-lesions_dseg.nii.gz")) + "\\n")
        (out / "labels.tsv").write_text("subject\\tlesion_id\\trim\\n" + "".join(
            f"f001\\t{{l['lesion_id']}}\\t{{l['true_rim']}}\\n" for l in t["lesions"]))
        (out / "truth.json").write_text(json.dumps({{"generator": "fake", "subjects": {{}}}}))
        (out / "b0_dir.txt").write_text("0.1 0.0 0.995\\n")
    """))
    return gen


def test_transfer_command_end_to_end_without_shared(tmp_path, monkeypatch, caplog):
    from rimscope.cli import main
    from rimscope.models.registry import build

    monkeypatch.setattr(TB, "_foreign_candidates", lambda: [tmp_path / "no" / "gen.py"])
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    folder = tmp_path / "rc_model"
    from rimscope.models.card import save_model

    save_model(build("rim-contrast"), folder)
    out = tmp_path / "bench"
    argv = ["transfer", "-o", str(out), "--models", f"rc={folder}", "--presets", "default,rim-outside",
            "--subjects", "2", "--config", str(cfg), "--bootstrap", "50", "--device", "cpu", "-q"]
    assert main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["models"] == ["rc", "rim-contrast", T.RULE] and res["settings"]["foreign"] is None
    assert "foreign rows skipped" in res["foreign_note"] and "gen.py" in res["foreign_note"]
    assert [c["name"] for c in res["cohorts"]] == ["default", "rim-outside"]
    truth = json.loads((out / "cohorts" / "rim-outside-seed7000" / "truth.json").read_text())
    assert truth["preset"] == "rim-outside"
    n_true = sum(les["true_rim"] for s in truth["subjects"].values() for les in s["lesions"])
    c = res["cohorts"][1]
    assert c["n_rim"] == n_true and c["n_lesions"] == sum(len(s["lesions"]) for s in truth["subjects"].values())
    # the saved rim-contrast and the built-in one score the same lesions the same way
    assert c["metrics"]["rc"]["roc_auc"] == c["metrics"]["rim-contrast"]["roc_auc"]
    assert c["metrics"]["rim-contrast"]["delong_p_vs_first"] == 1.0
    md = (out / "results.md").read_text()
    assert md.count("| default |") == 3 and md.count("| rim-outside |") == 3 and "foreign rows skipped" in md
    assert (out / "figures" / "reliability_default.png").stat().st_size > 1000
    # every lesion's call is written, and the table's ROC AUC is computed from exactly those
    from rimscope.metrics import roc_auc
    from rimscope.runtime import read_tsv

    rows = read_tsv(out / "scores" / "rim-outside.tsv")
    assert len(rows) == c["n_lesions"] and sum(int(r["truth"]) for r in rows) == n_true
    assert {(r["subject"], int(r["lesion_id"])) for r in rows} == {
        (sid, int(les["lesion_id"])) for sid, s in truth["subjects"].items() for les in s["lesions"]}
    auc = roc_auc(np.array([int(r["truth"]) for r in rows]), np.array([float(r["rc"]) for r in rows]))
    assert abs(auc - c["metrics"]["rc"]["roc_auc"]) < 1e-9
    # a rerun simulates nothing
    assert main(argv) == 0
    res2 = json.loads((out / "results.json").read_text())
    assert all(c["seconds_make"] == 0.0 for c in res2["cohorts"])
    assert res2["cohorts"][1]["metrics"]["rc"]["roc_auc"] == c["metrics"]["rc"]["roc_auc"]


def test_transfer_foreign_rows_use_labels_and_b0_dir(tmp_path):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    res = TB.transfer(tmp_path / "b", models={}, presets="default", subjects=1, config=cfg, n_boot=20,
                      device="cpu", quiet=True, foreign=False)
    src = tmp_path / "b" / "cohorts" / "default-seed7000"
    gen = _fake_gen(tmp_path, src)
    res = TB.transfer(tmp_path / "b", models={}, presets="default", subjects=1, config=cfg, n_boot=20,
                      device="cpu", quiet=True, foreign=str(gen), foreign_subjects=1)
    names = [c["name"] for c in res["cohorts"]]
    assert names == ["default"] + [f"foreign:{v}" for v, _ in TB.FOREIGN]
    f = res["cohorts"][1]
    assert f["kind"] == "foreign" and f["b0_dir"] == [0.1, 0.0, 0.995]
    assert f["n_lesions"] == res["cohorts"][0]["n_lesions"] and f["n_rim"] == res["cohorts"][0]["n_rim"]
    assert "foreign (test bench only)" in (tmp_path / "b" / "results.md").read_text()
    with pytest.raises(Exception, match="foreign generator not found"):
        TB.find_foreign(tmp_path / "missing.py")
