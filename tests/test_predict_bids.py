"""predict on QSMxT-shaped BIDS input: OUT is a BIDS derivatives dataset, one record per run, a
batch that goes on past a subject with a discovery problem, sessions kept apart."""
from __future__ import annotations

import json

from conftest import write_qsmxt_dataset
from test_predict import model_dir, write_subject  # noqa: F401  (the shared fixture)

from rimscope.cli import main as cli_main
from rimscope.inference.outputs import find_lesions_tsv, lesions_tsv, stamp_path, subject_dir
from rimscope.runtime import read_tsv


def _predict(*args):
    return cli_main(["predict", "-q", "-d", "cpu", *map(str, args)])


def test_bids_derivatives_out(tmp_path, model_dir):  # noqa: F811
    root = write_qsmxt_dataset(tmp_path / "bids", {"01": ["pre", "post"], "02": [(None, "run-2")]})
    out = tmp_path / "out"
    assert _predict("-i", root, "-o", out, "-m", model_dir, "--report") == 0
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["BIDSVersion"]
    gen = desc["GeneratedBy"][0]
    sha = json.loads((model_dir / "card.json").read_text())["weights_sha256"]
    assert gen["Name"] == "rimscope" and gen["Version"] and "asymmetric" in gen["Description"] and sha in gen["Description"]
    assert desc["SourceDatasets"][0]["URL"].startswith("file://")
    anat = out / "sub-01" / "ses-pre" / "anat"
    names = sorted(p.name for p in anat.iterdir() if not p.name.startswith("."))
    assert names == ["sub-01_ses-pre_desc-rim_dseg.json", "sub-01_ses-pre_desc-rim_dseg.nii.gz",
                     "sub-01_ses-pre_desc-rim_dseg.tsv", "sub-01_ses-pre_desc-rim_probseg.json",
                     "sub-01_ses-pre_desc-rim_probseg.nii.gz", "sub-01_ses-pre_lesions.json",
                     "sub-01_ses-pre_lesions.tsv"]
    side = json.loads((anat / "sub-01_ses-pre_desc-rim_probseg.json").read_text())
    assert "bids:raw:derivatives/qsmxt/sub-01/ses-pre/anat/sub-01_ses-pre_Chimap.nii" in side["Sources"]
    assert "bids:raw:sub-01/ses-pre/anat/sub-01_ses-pre_FLAIR.nii.gz" in side["Sources"] and side["Description"]
    cols = json.loads((anat / "sub-01_ses-pre_lesions.json").read_text())
    assert cols["volume_mm3"]["Units"] == "mm^3" and set(read_tsv(anat / "sub-01_ses-pre_lesions.tsv")[0]) <= set(cols)
    assert (out / "sub-01" / "sub-01_ses-pre_report.html").exists()
    assert (out / "sub-02" / "anat" / "sub-02_run-2_desc-rim_probseg.nii.gz").exists()
    assert "*_report.html" in (out / ".bidsignore").read_text()
    run = json.loads((out / "run.json").read_text())
    assert "main (two-pass) map" in run["inputs"]["01_ses-pre"]["why"]["qsm"]
    assert run["inputs"]["02_run-2"]["files"]["qsm"].endswith("sub-02_run-2_Chimap.nii")


def test_bad_subject_listed_the_others_run_summary_of_this_run(tmp_path, model_dir):  # noqa: F811
    root = write_qsmxt_dataset(tmp_path / "bids", {"01": [None], "02": [None], "03": [None]})
    out = tmp_path / "out"
    assert _predict("-i", root, "-o", out, "-m", model_dir, "--subjects", "01") == 0
    assert [r["subject"] for r in read_tsv(out / "summary.tsv")] == ["01"]
    d = root / "derivatives" / "qsmxt" / "sub-02" / "anat"
    (d / "sub-02_Chimap.nii.gz").write_bytes((d / "sub-02_Chimap.nii").read_bytes())  # two main maps
    assert _predict("-i", root, "-o", out, "-m", model_dir, "--subjects", "02", "03") == 2
    summary = {r["subject"]: r["status"] for r in read_tsv(out / "summary.tsv")}
    assert summary == {"03": "ok", "02": "failed"}  # 01 (an earlier run's) is not shown as current
    run = json.loads((out / "run.json").read_text())
    assert run["done"] == ["03"] and "two main Chimaps" in run["failures"][0]["error"]
    records = sorted((out / "runs").glob("*.json"))
    assert len(records) == 2  # the first run's record is kept
    first = json.loads(records[0].read_text())
    assert first["done"] == ["01"] and first["model"]["sha256"] and first["arguments"]["subjects"] == ["01"]
    assert {"versions", "device", "timings_s", "warnings", "failures", "inputs", "version"} <= set(first)


def test_single_subject_sessions_never_overwrite(tmp_path, model_dir):  # noqa: F811
    out = tmp_path / "out"
    for ses, seed in (("pre", 0), ("post", 1)):
        p = write_subject(tmp_path / ses, seed=seed, name="01")
        assert _predict("--qsm", p["qsm"], "--flair", p["flair"], "--lesions", p["lesions"], "--session", ses,
                        "-o", out, "-m", model_dir) == 0
    pre, post = (read_tsv(lesions_tsv(out, f"01_ses-{s}")) for s in ("pre", "post"))
    assert pre != post and stamp_path(out, "01_ses-pre").exists()
    assert subject_dir(out, "01_ses-post") == out / "sub-01" / "ses-post" / "anat"
    # the session from the folder name, without --session
    p = write_subject(tmp_path / "x" / "ses-mid", seed=2, name="01")
    assert _predict("--qsm", p["qsm"], "--flair", p["flair"], "--lesions", p["lesions"], "-o", out, "-m", model_dir) == 0
    assert lesions_tsv(out, "01_ses-mid").exists()


def test_old_flat_outputs_still_read(tmp_path):
    old = tmp_path / "sub-01" / "sub-01_lesions.tsv"
    old.parent.mkdir()
    old.write_text("lesion_id\trim_probability\trim\n1\t0.5\t1\n")
    assert find_lesions_tsv(tmp_path, "01") == old
    assert find_lesions_tsv(tmp_path, "02") == lesions_tsv(tmp_path, "02")


def test_entity_order_of_output_names():
    from rimscope.inference.outputs import prefix

    assert prefix("01_run-2_ses-b_acq-x") == "sub-01_ses-b_acq-x_run-2"
    assert prefix("sub-01") == "sub-01"
