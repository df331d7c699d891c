"""The real CLI: `rimscope validate` on manifests, bad inputs -> exit 2, one line, no traceback."""
from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from conftest import tiny_subject, write_nii

from rimscope.cli import main


def _subject(folder, sid="01", **override):
    """Files of one subject; `override` role -> array, bytes (raw file content) or (array, affine)."""
    folder.mkdir(parents=True, exist_ok=True)
    qsm, flair, labels, _ = tiny_subject()
    arrays = {"qsm": qsm, "flair": flair, "lesions": (labels > 0).astype(np.uint8)}
    paths = {}
    for role, arr in arrays.items():
        p = folder / f"sub-{sid}_{role}.nii.gz"
        val = override.get(role, arr)
        if isinstance(val, bytes):
            p.write_bytes(val)
        elif isinstance(val, tuple):
            write_nii(p, val[0], val[1])
        else:
            write_nii(p, val, np.eye(4))
        paths[role] = p
    return paths


def _manifest(tmp_path, subjects: dict, name="cohort.tsv"):
    lines = ["subject\tqsm\tflair\tlesions"]
    for sid, p in subjects.items():
        lines.append("\t".join([sid] + [str(p[r].relative_to(tmp_path)) for r in ("qsm", "flair", "lesions")]))
    m = tmp_path / name
    m.write_text("\n".join(lines) + "\n")
    return m


def _run(argv, capsys):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_validate_good_cohort(tmp_path, capsys):
    m = _manifest(tmp_path, {"01": _subject(tmp_path / "a", "01"), "02": _subject(tmp_path / "b", "02")})
    rc, out, err = _run(["validate", "-i", m], capsys)
    assert rc == 0, err
    rows = [line.split("\t") for line in out.strip().splitlines()]
    assert rows[0] == ["subject", "lesions", "grid", "voxel_mm", "orientation", "units", "problems"]
    assert [r[0] for r in rows[1:]] == ["01", "02"]
    assert rows[1][1] == "4" and rows[1][2] == "40x44x36" and rows[1][4] == "RAS"
    assert rows[1][5].startswith("ppm")


def _bad(kind, tmp_path):
    qsm, flair, labels, _ = tiny_subject()
    good = _subject(tmp_path / "ok", "00")
    raw_flair = good["flair"].read_bytes()
    shifted = np.eye(4)
    shifted[:3, 3] = [0, 0, 30]
    override, role = {
        "unreadable": ({"flair": b"not a nifti at all" * 10}, "flair"),
        "truncated": ({"flair": raw_flair[: len(raw_flair) // 2]}, "flair"),
        "nan": ({"qsm": np.where(labels > 0, np.nan, qsm).astype(np.float32)}, "qsm"),
        "inf": ({"flair": np.where(labels > 0, np.inf, flair).astype(np.float32)}, "flair"),
        "4d": ({"qsm": np.stack([qsm, qsm], -1)}, "qsm"),
        "empty": ({"lesions": np.zeros_like(labels, dtype=np.uint8)}, "lesions"),
        "nonint": ({"lesions": (labels > 0) * np.float32(0.6)}, "lesions"),
        "ppb": ({"qsm": qsm * 1000}, "qsm"),
        "grids": ({"lesions": ((labels > 0).astype(np.uint8), shifted)}, "lesions"),
    }[kind]
    return _subject(tmp_path / kind, "01", **override), role


KINDS = {"unreadable": "cannot read", "truncated": "cannot read", "nan": "NaN/Inf", "inf": "NaN/Inf",
         "4d": "4D", "empty": "empty", "nonint": "non-integer", "ppb": "--qsm-units ppb",
         "grids": "cannot be put in one space"}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_bad_input_exits_2_with_one_line_naming_the_file(tmp_path, capsys, kind):
    paths, role = _bad(kind, tmp_path)
    good = _subject(tmp_path / "good", "02")
    m = _manifest(tmp_path, {"01": paths, "02": good})
    rc, out, err = _run(["validate", "-i", m], capsys)
    assert rc == 2
    assert "Traceback" not in err + out
    errors = [line for line in err.splitlines() if line.startswith("rimscope: error:")]
    assert len(errors) == 1, err
    assert str(paths[role]) in errors[0] and KINDS[kind] in errors[0]
    rows = {line.split("\t")[0]: line for line in out.splitlines()[1:]}
    assert "UNUSABLE" in rows["01"] and str(paths[role]) in rows["01"]
    assert "UNUSABLE" not in rows["02"]  # validate keeps going over the others
    if kind == "ppb":
        alone = _manifest(tmp_path, {"01": paths}, name="ppb.tsv")
        rc, out, err = _run(["validate", "-i", alone, "--qsm-units", "ppb"], capsys)
        assert rc == 0, err
        assert "ppb (looks like ppb" in out


@pytest.mark.parametrize("text,match", [
    ("subject\tqsm\tflair\tlesions\n01\tok/sub-00_qsm.nii.gz\tok/sub-00_flair.nii.gz\tok/sub-00_lesions.nii.gz\n"
     "01\tok/sub-00_qsm.nii.gz\tok/sub-00_flair.nii.gz\tok/sub-00_lesions.nii.gz\n", "appears twice"),
    ("subject\tqsm\tflair\n01\tok/sub-00_qsm.nii.gz\tok/sub-00_flair.nii.gz\n", "lacks column(s) lesions"),
])
def test_cohort_errors_exit_2_one_line(tmp_path, capsys, text, match):
    _subject(tmp_path / "ok", "00")
    m = tmp_path / "cohort.tsv"
    m.write_text(text)
    rc, out, err = _run(["validate", "-i", m], capsys)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"rimscope: error: {m}: ") and match in err


def test_missing_file_and_labels_checked(tmp_path, capsys):
    good = _subject(tmp_path / "a", "01")
    m = _manifest(tmp_path, {"01": good})
    with open(m, "a") as fh:
        fh.write("02\ta/nope.nii.gz\ta/sub-01_flair.nii.gz\ta/sub-01_lesions.nii.gz\n")
    rc, out, err = _run(["validate", "-i", m], capsys)
    assert rc == 2 and "nope.nii.gz" in err and "Traceback" not in err
    assert "UNUSABLE" in out and out.count("\n") == 3
    m1 = _manifest(tmp_path, {"01": good}, name="one.tsv")
    labels = tmp_path / "labels.tsv"
    labels.write_text("subject\tlesion_id\trim\n01\t1\t1\n01\t4\t0\n")
    assert _run(["validate", "-i", m1, "--labels", labels], capsys)[0] == 0
    labels.write_text("subject\tlesion_id\trim\n01\t1\t1\n01\t9\t0\n")
    rc, out, err = _run(["validate", "-i", m1, "--labels", labels], capsys)
    assert rc == 2 and "lesion 9 of subject 01, which does not exist" in err
    assert err.count("\n") == 1 and str(labels) in err


def test_bids_folder_validates(tmp_path, capsys):
    root = tmp_path / "bids"
    p = _subject(tmp_path / "src", "01")
    anat = root / "sub-01" / "anat"
    der = root / "derivatives" / "seg" / "sub-01" / "anat"
    anat.mkdir(parents=True)
    der.mkdir(parents=True)
    (anat / "sub-01_Chimap.nii.gz").write_bytes(p["qsm"].read_bytes())
    (anat / "sub-01_FLAIR.nii.gz").write_bytes(p["flair"].read_bytes())
    (der / "sub-01_desc-lesions_mask.nii.gz").write_bytes(p["lesions"].read_bytes())
    rc, out, err = _run(["-q", "validate", "-i", root], capsys)
    assert rc == 0, err
    assert out.splitlines()[1].startswith("01\t4\t")


def test_real_subprocess_no_traceback(tmp_path):
    paths, role = _bad("truncated", tmp_path)
    m = _manifest(tmp_path, {"01": paths})
    r = subprocess.run([sys.executable, "-m", "rimscope", "validate", "-i", str(m)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(paths["flair"]) in lines[0] and "cannot read" in lines[0]


def test_written_outputs_are_not_private(tmp_path):
    """atomic writes go through mkstemp (0600); outputs must get the usual permissions."""
    from rimscope.io import save_atomic

    import os

    out = tmp_path / "o.nii.gz"
    old = os.umask(0o022)
    try:
        save_atomic(nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)), out)
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644


def test_bench_io_pieces_on_a_small_subject(tmp_path):
    from rimscope.bench import io as bench_io

    paths = bench_io.synthetic_subject(tmp_path, shape=(64, 64, 48), n_lesions=6)
    res = bench_io.measure(paths, repeats=1)
    assert res["n_lesions"] == 6  # six separate components found again by the loader
    assert len(res["load_subject"]) == 1 and res["load_subject"][0] > 0


def test_peak_rss_measures_a_known_allocation_in_megabytes():
    """The bench's peak memory sees a 300 MB array as about 300 MB (not kB, not bytes, not constant).

    Measured in a grandchild started by a small launcher: Linux carries a process's peak RSS
    across fork + exec, so a child of this (large) test process would start at our peak."""
    import subprocess
    import sys

    def peak(mb: int) -> float:
        code = ("import numpy as np; from rimscope.bench.io import peak_rss_mb; "
                f"a = np.ones({mb} * 2**20 // 8); print(peak_rss_mb())")
        launcher = f"import subprocess, sys; sys.exit(subprocess.run([sys.executable, '-c', {code!r}]).returncode)"
        r = subprocess.run([sys.executable, "-c", launcher], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-500:]
        return float(r.stdout)

    grown = peak(300) - peak(0)
    assert 250 < grown < 400, grown


@pytest.mark.slow
def test_bench_io_full_size(tmp_path, capsys):
    rc, out, err = _run(["bench", "io", "--repeats", "1", "-o", tmp_path], capsys)
    assert rc == 0, err
    assert "256x256x176, 50 lesions" in out
    assert "load_subject" in out and "extract_patches" in out and "peak RSS" in out
