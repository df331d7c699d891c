"""A corpus of bad inputs, each written tiny by a fixture, through the real CLI in a subprocess.

Every case must end the same way: exit code 2, exactly one line on stderr that names the bad file
(or the manifest), no traceback, no numpy warning, and nothing written into OUT.
"""
from __future__ import annotations

import gzip
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from conftest import centred_affine, save_untrained_model, tiny_subject, write_nii

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}


def _bad_arrays():
    qsm, flair, labels, _ = tiny_subject()
    return qsm, flair, (labels > 0).astype(np.uint8)


def _case(folder, kind):
    """Write one subject with one defect; returns (manifest, the path the error must name)."""
    folder.mkdir(parents=True)
    qsm, flair, les = _bad_arrays()
    arrays = {"qsm": qsm, "flair": flair, "lesions": les}
    paths = {r: folder / f"sub-01_{r}.nii.gz" for r in arrays}
    named, sid, special, affine = None, "01", {}, np.eye(4)
    if kind == "nan":
        arrays["qsm"] = qsm.copy()
        arrays["qsm"][20, 20, 18] = np.nan
        named = "qsm"
    elif kind == "inf":
        arrays["qsm"] = qsm.copy()
        arrays["qsm"][20, 20, 18], arrays["qsm"][21, 20, 18] = np.inf, -np.inf
        named = "qsm"
    elif kind == "4d":
        arrays["qsm"] = np.stack([qsm] * 3, axis=-1)
        named = "qsm"
    elif kind == "ppb":
        arrays["qsm"] = qsm * 1000
        named = "qsm"
    elif kind == "empty_mask":
        arrays["lesions"] = np.zeros_like(les)
        named = "lesions"
    elif kind == "float_labels":
        arrays["lesions"] = les.astype(np.float32) * 0.5
        named = "lesions"
    elif kind == "truncated":
        named = "flair"
        buf = gzip.compress(nib.Nifti1Image(flair, np.eye(4)).to_bytes())
        special["flair"] = buf[: len(buf) // 2]
    elif kind == "text":
        named = "lesions"
        special["lesions"] = b"this is not an image\n"
    elif kind == "no_affine_other_grid":
        named = "lesions"
        # QSM and FLAIR centred on the world origin, as nibabel's guess for the mask is: the mask
        # would land inside the field of view (mirrored) and be rated if it were not refused
        affine = centred_affine(qsm.shape)
        small = les[::2, ::2, ::2].copy()
        img = nib.Nifti1Image(small, None)  # no affine: qform and sform codes 0
        img.header["qform_code"], img.header["sform_code"] = 0, 0
        img.header.set_zooms((2.0, 2.0, 2.0))
        special["lesions"] = img
    elif kind == "traversal":
        sid = "../../evil"
    else:  # pragma: no cover
        raise ValueError(kind)
    for role, arr in arrays.items():
        val = special.get(role)
        if isinstance(val, bytes):
            paths[role].write_bytes(val)
        elif val is not None:
            nib.save(val, str(paths[role]))
        else:
            write_nii(paths[role], arr, affine)
    manifest = folder / "cohort.tsv"
    manifest.write_text("subject\tqsm\tflair\tlesions\n" + "\t".join(
        [sid] + [paths[r].name for r in ("qsm", "flair", "lesions")]) + "\n")
    return manifest, (paths[named] if named else manifest)


CASES = ["nan", "inf", "4d", "ppb", "empty_mask", "float_labels", "truncated", "text",
         "no_affine_other_grid", "traversal"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return {k: _case(root / k, k) for k in CASES}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_untrained_model(tmp_path_factory.mktemp("model"))


def _cli(*argv, timeout=300):
    r = subprocess.run([sys.executable, "-m", "rimscope", *map(str, argv)], capture_output=True,
                       text=True, env=ENV, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def _assert_one_clean_line(rc, err, named):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, err
    assert "Traceback" not in err and "Warning" not in err, err
    assert len(lines) == 1, err
    assert str(named) in lines[0] and lines[0].startswith("rimscope: error: "), lines[0]


@pytest.mark.parametrize("kind", CASES)
def test_validate_refuses_each_bad_case_in_one_line(corpus, kind):
    manifest, named = corpus[kind]
    rc, out, err = _cli("validate", "-i", manifest)
    _assert_one_clean_line(rc, err, named)
    assert "UNUSABLE" in out


def _files(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize("kind", CASES)
def test_predict_refuses_each_bad_case_and_writes_nothing(corpus, model_dir, tmp_path, kind):
    manifest, named = corpus[kind]
    out = tmp_path / "out"
    rc, _, err = _cli("predict", "-q", "-i", manifest, "-o", out, "-m", model_dir, "-d", "cpu")
    _assert_one_clean_line(rc, err, named)
    assert _files(out) == []
    assert not (manifest.parent.parent / "evil").exists()


def test_predict_on_the_whole_corpus_lists_each_failure_once(corpus, model_dir, tmp_path):
    """All bad subjects in one batch (one process, so it stays fast): one line each, naming its
    file; nothing usable, so nothing written. (A bad manifest row stops predict before any
    subject, as a missing file does: the traversal case is the per-case test's.)"""
    kinds = [k for k in CASES if k != "traversal"]
    root = tmp_path / "all"
    root.mkdir()
    lines = ["subject\tqsm\tflair\tlesions"]
    for i, kind in enumerate(kinds):
        manifest, _ = corpus[kind]
        sid, *files = manifest.read_text().splitlines()[1].split("\t")
        sid = f"{i:02d}"
        lines.append("\t".join([sid] + [str(manifest.parent / f) for f in files]))
    m = root / "cohort.tsv"
    m.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    rc, _, err = _cli("predict", "-q", "-i", m, "-o", out, "-m", model_dir, "-d", "cpu")
    got = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and "Traceback" not in err and "Warning" not in err, err
    assert len(got) == len(kinds), err
    for kind in kinds:
        assert sum(str(corpus[kind][1]) in ln for ln in got) == 1, (kind, err)
    assert _files(out) == []
