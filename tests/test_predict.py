"""predict: outputs on the original grid for any orientation, resumable batches, bad weights."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import save_untrained_model, write_manifest, write_tiny_subject
from rimscope.cli import main as cli_main
from rimscope.inference.outputs import lesions_tsv, report_path, subject_dir

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """An untrained but deterministic asymmetric model, saved and reloaded like a shipped one."""
    return save_untrained_model(tmp_path_factory.mktemp("model"))


def write_subject(d, codes="RAS", rot=0.0, seed=0, name="01"):
    return write_tiny_subject(d, name, seed, codes=codes, rot_deg=rot, prefix=f"sub-{name}", brainmask=True,
                              qform_code=1, sform_code=2, lesions_dtype=np.int16)


def manifest(d, subjects):
    return write_manifest(d, subjects)


def read_rows(path):
    from rimscope.runtime import read_tsv

    return read_tsv(path)


@pytest.mark.parametrize("codes,rot", [("LPS", 0.0), ("RAS", 17.0), ("PIL", 0.0)])
def test_outputs_on_original_grid(tmp_path, model_dir, codes, rot):
    (tmp_path / "ref").mkdir()
    ref = write_subject(tmp_path / "ref", "RAS")
    p = write_subject(tmp_path, codes, rot)
    out = tmp_path / "out"
    rc = cli_main(["predict", "-q", "--qsm", str(p["qsm"]), "--flair", str(p["flair"]),
                   "--lesions", str(p["lesions"]), "--brainmask", str(p["brainmask"]),
                   "--subject", "01", "-o", str(out), "-m", str(model_dir), "-d", "cpu"])
    assert rc == 0
    src = nib.load(str(p["qsm"]))
    for kind, dtype in (("probseg", np.float32), ("dseg", np.uint8)):
        img = nib.load(str(subject_dir(out, "01") / f"sub-01_desc-rim_{kind}.nii.gz"))
        assert img.shape == src.shape
        np.testing.assert_allclose(img.affine, src.affine, atol=1e-5)
        assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 2
        data = np.asanyarray(img.dataobj)
        assert data.dtype == dtype
        les = np.asanyarray(nib.load(str(p["lesions"])).dataobj)
        # painted exactly on the lesion voxels of the input grid
        assert np.array_equal(data > 0, les > 0) or kind == "probseg"
        if kind == "dseg":
            assert set(np.unique(data)) <= {0, 1, 2}
    rows = read_rows(lesions_tsv(out, "01"))
    assert len(rows) == 4
    # centroids in world mm agree with the RAS version of the same data
    out_ref = tmp_path / "out_ref"
    assert cli_main(["predict", "-q", "--qsm", str(ref["qsm"]), "--flair", str(ref["flair"]),
                     "--lesions", str(ref["lesions"]), "--subject", "01", "-o", str(out_ref),
                     "-m", str(model_dir), "-d", "cpu"]) == 0
    rows_ref = read_rows(lesions_tsv(out_ref, "01"))
    if rot == 0.0:
        for a, b in zip(sorted(rows, key=lambda r: float(r["x_mm"])), sorted(rows_ref, key=lambda r: float(r["x_mm"]))):
            assert abs(float(a["x_mm"]) - float(b["x_mm"])) < 1e-3
            assert abs(float(a["rim_probability"]) - float(b["rim_probability"])) < 1e-3
    summary = read_rows(out / "summary.tsv")
    assert summary[0]["subject"] == "01" and int(summary[0]["n_lesions"]) == 4
    expected = sum(float(r["rim_probability"]) for r in rows)
    assert abs(float(summary[0]["expected_n_rim"]) - expected) < 0.01
    run = json.loads((out / "run.json").read_text())
    assert run["done"] == ["01"] and "versions" in run and run["model"]["name"] == "asymmetric"


def test_python_api(tmp_path, model_dir):
    import rimscope

    p = write_subject(tmp_path)
    rows = rimscope.predict(str(p["qsm"]), nib.load(str(p["flair"])), str(p["lesions"]),
                            model=str(model_dir), device="cpu")
    assert [r["lesion_id"] for r in rows] == [1, 2, 3, 4]  # iterable as the old list of dicts
    assert all(0.0 <= r["rim_probability"] <= 1.0 for r in rows)
    assert len(rows) == 4 and rows[0] == rows.records[0]
    src = nib.load(str(p["qsm"]))
    prob = rows.images["probseg"]
    assert prob.shape == src.shape and np.allclose(prob.affine, src.affine, atol=1e-5)
    les = np.asanyarray(nib.load(str(p["lesions"])).dataobj)
    got = {int(v): float(np.asanyarray(prob.dataobj)[les == v].max()) for v in np.unique(les) if v}
    assert got == pytest.approx({r["lesion_id"]: r["rim_probability"] for r in rows}, abs=1e-4)
    assert set(np.unique(np.asanyarray(rows.images["dseg"].dataobj))) <= {0, 1, 2}
    assert isinstance(rows.warnings, list)
    try:
        import pandas  # noqa: F401
        assert list(rows.table["lesion_id"]) == [1, 2, 3, 4]
    except ImportError:
        assert rows.table == rows.records


def test_batch_goes_on_and_lists_failures(tmp_path, model_dir):
    good = write_subject(tmp_path, name="01")
    bad = write_subject(tmp_path, name="02", seed=1)
    q = nib.load(str(bad["qsm"]))
    arr = np.asanyarray(q.dataobj).copy()
    arr[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(arr, q.affine, q.header), str(bad["qsm"]))
    m = manifest(tmp_path, {"01": good, "02": bad})
    out = tmp_path / "out"
    rc = cli_main(["predict", "-q", "-i", str(m), "-o", str(out), "-m", str(model_dir), "-d", "cpu"])
    assert rc == 2
    run = json.loads((out / "run.json").read_text())
    assert run["done"] == ["01"] and run["failures"][0]["subject"] == "02"
    assert "NaN" in run["failures"][0]["error"]
    assert not (out / "sub-02").exists() or not list((out / "sub-02").glob("*.nii.gz"))


def _outputs(out):
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("sub-*/**/*"))
            if p.is_file() and not p.name.startswith(".")}


@pytest.mark.slow
def test_kill_and_rerun_gives_identical_outputs(tmp_path, model_dir):
    subjects = {f"{i:02d}": write_subject(tmp_path, name=f"{i:02d}", seed=i) for i in range(1, 7)}
    m = manifest(tmp_path, subjects)
    ref = tmp_path / "ref"
    assert cli_main(["predict", "-q", "-i", str(m), "-o", str(ref), "-m", str(model_dir), "-d", "cpu"]) == 0
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "rimscope", "predict", "-q", "-i", str(m), "-o", str(out), "-m",
           str(model_dir), "-d", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.rglob(".sub-*.rimscope-done.json"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # the kill must land inside the run, or the rerun below tests nothing
    assert proc.returncode == -signal.SIGKILL
    n_done_at_kill = len(list(out.rglob(".sub-*.rimscope-done.json")))
    assert 2 <= n_done_at_kill < len(subjects)
    assert subprocess.run(cmd, env=env).returncode == 0
    run = json.loads((out / "run.json").read_text())
    assert len(run["skipped"]) == n_done_at_kill and len(run["done"]) == len(subjects) - n_done_at_kill
    assert not list(out.rglob(".rimscope-tmp-*"))
    a, b = _outputs(ref), _outputs(out)
    assert a.keys() == b.keys()
    for k in a:
        if k.endswith(".nii.gz"):
            assert np.array_equal(np.asanyarray(nib.load(str(ref / k)).dataobj),
                                  np.asanyarray(nib.load(str(out / k)).dataobj)), k
        else:
            assert a[k] == b[k], k


def test_rerun_skips_done(tmp_path, model_dir):
    p = write_subject(tmp_path)
    m = manifest(tmp_path, {"01": p})
    out = tmp_path / "out"
    args = ["predict", "-q", "-i", str(m), "-o", str(out), "-m", str(model_dir), "-d", "cpu"]
    assert cli_main(args) == 0
    assert cli_main(args) == 0
    assert json.loads((out / "run.json").read_text())["skipped"] == ["01"]


def test_shards_partition_the_cohort(tmp_path, model_dir):
    subjects = {f"{i:02d}": write_subject(tmp_path, name=f"{i:02d}", seed=i) for i in range(1, 4)}
    m = manifest(tmp_path, subjects)
    out = tmp_path / "out"
    for i in (1, 2):
        assert cli_main(["predict", "-q", "-i", str(m), "-o", str(out), "-m", str(model_dir), "-d", "cpu",
                         "--shard", f"{i}/2"]) == 0
    assert not (out / "summary.tsv").exists()  # shards share OUT: the summary is a whole-cohort run's
    assert cli_main(["predict", "-q", "-i", str(m), "-o", str(out), "-m", str(model_dir), "-d", "cpu"]) == 0
    assert json.loads((out / "run.json").read_text())["skipped"] == ["01", "02", "03"]
    assert sorted(r["subject"] for r in read_rows(out / "summary.tsv")) == ["01", "02", "03"]
    assert cli_main(["predict", "-q", "-i", str(m), "-o", str(out), "--shard", "3/2"]) == 2


def test_corrupted_or_mismatched_weights(tmp_path, model_dir, capsys):
    import shutil

    p = write_subject(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    w = broken / "weights.pt"
    w.write_bytes(w.read_bytes()[: len(w.read_bytes()) // 2])
    args = ["predict", "-q", "--qsm", str(p["qsm"]), "--flair", str(p["flair"]), "--lesions",
            str(p["lesions"]), "-o", str(tmp_path / "o"), "-d", "cpu", "-m"]
    assert cli_main(args + [str(broken)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "weights.pt" in err[0] and "Traceback" not in err[0]
    # weights of another architecture under a card that claims asymmetric
    other = tmp_path / "other"
    from rimscope.models.card import save_model
    from rimscope.models.registry import build

    save_model(build("rimnet"), other)
    card = json.loads((broken / "card.json").read_text())
    shutil.copy(other / "weights.pt", broken / "weights.pt")
    import hashlib

    card["weights_sha256"] = hashlib.sha256((broken / "weights.pt").read_bytes()).hexdigest()
    (broken / "card.json").write_text(json.dumps(card))
    assert cli_main(args + [str(broken)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert not (tmp_path / "o" / "sub-01").exists()


def test_report_is_self_contained(tmp_path, model_dir):
    p = write_subject(tmp_path)
    out = tmp_path / "out"
    assert cli_main(["predict", "-q", "--qsm", str(p["qsm"]), "--flair", str(p["flair"]), "--lesions",
                     str(p["lesions"]), "--subject", "01", "-o", str(out), "-m", str(model_dir),
                     "-d", "cpu", "--report"]) == 0
    html = report_path(out, "01").read_text()
    assert html.count('class="card ') == 4  # one card per lesion, its pictures inline
    assert html.count("data:image/png;base64,") >= 4 * 2
    assert "http://" not in html and "https://" not in html


@pytest.mark.parametrize("field,value", [
    ("config.widths", [16]), ("config", "asymmetric"), ("threshold", "abc"), ("rim_threshold", 1.5), ("patch.size", -1),
    ("weights", "../other/weights.pt"), ("weights", "/etc/passwd"), ("config.flair_stem", "huge")])
def test_tampered_card_is_refused_naming_card_and_field(tmp_path, model_dir, capsys, field, value):
    """Issue 16 item 5: a bad card field is a user-side error (exit 2, one line, card and field
    named) found before the weights are read; weights outside the model folder are never read."""
    import shutil

    p = write_subject(tmp_path)
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    card = json.loads((bad / "card.json").read_text())
    top, _, sub = field.partition(".")
    if sub:
        card[top][sub] = value
    else:
        card[top] = value
    (bad / "card.json").write_text(json.dumps(card))
    out = tmp_path / "o"
    rc = cli_main(["predict", "-q", "--qsm", str(p["qsm"]), "--flair", str(p["flair"]), "--lesions",
                   str(p["lesions"]), "-o", str(out), "-d", "cpu", "-m", str(bad)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert str(bad / "card.json") in err[0] and top in err[0] and "Traceback" not in err[0]
    assert not out.exists()
