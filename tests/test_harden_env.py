"""The user's environment failing (OUT a file, read-only, full) is a user error: exit 2, one line
naming the path, nothing half-written; a rerun whose inputs now fail drops the old result."""
from __future__ import annotations

import errno
import os
import subprocess
import uuid

import pytest
from conftest import predict_inputs

from rimscope.cli import main as cli_main
from rimscope.inference.outputs import stamp_path
from rimscope.runtime import read_tsv


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("env")
    lines = predict_inputs(root)
    (root / "cohort.tsv").write_text("\n".join(lines) + "\n")
    return root


def _predict(cohort, out, capsys):
    rc = cli_main(["predict", "-q", "-i", str(cohort / "cohort.tsv"), "-o", str(out), "-m",
                   str(cohort / "model"), "-d", "cpu"])
    return rc, capsys.readouterr().err.strip().splitlines()


def _no_half_written(out):
    assert not list(out.rglob(".*tmp*")) if out.is_dir() else True
    for d in (out.glob("sub-*") if out.is_dir() else []):
        assert stamp_path(out, d.name.removeprefix("sub-")).exists(), f"{d} has no stamp"


def test_out_is_a_file(cohort, tmp_path, capsys):
    out = tmp_path / "out"
    out.write_text("not a folder")
    rc, err = _predict(cohort, out, capsys)
    assert rc == 2 and len(err) == 1 and str(out) in err[0] and "internal error" not in err[0], err
    rc, err = _predict(cohort, out / "x", capsys)
    assert rc == 2 and len(err) == 1 and str(out / "x") in err[0] and "not a folder" in err[0], err


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT])
@pytest.mark.parametrize("at", [1, 5])
def test_disk_errors_mid_run_exit_2_naming_the_file(cohort, tmp_path, capsys, monkeypatch, code, at):
    """The disk fails at the at-th fsync (the 5th is the first subject's stamp): one line naming
    the file being written, no subject folder without its stamp, no temporary file."""
    import rimscope.runtime as rt

    calls = {"n": 0}
    real = os.fsync

    def failing(fd):
        calls["n"] += 1
        if calls["n"] >= at:
            raise OSError(code, os.strerror(code))
        return real(fd)

    monkeypatch.setattr(rt.os, "fsync", failing)
    out = tmp_path / "out"
    rc, err = _predict(cohort, out, capsys)
    assert rc == 2 and len(err) == 1, err
    assert "internal error" not in err[0] and os.strerror(code) in err[0], err
    assert str(out / "sub-01") in err[0], err  # the file it was writing when the disk failed
    _no_half_written(out)


def _mount_tmpfs(path, options):
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    return path


@pytest.mark.parametrize("options,words", [("size=12k", "No space left"),
                                           ("size=1m,ro", "Read-only file system")])
def test_real_small_or_read_only_disk(cohort, tmp_path, capsys, options, words):
    mnt = _mount_tmpfs(tmp_path / f"mnt-{uuid.uuid4().hex[:6]}", options)
    try:
        out = mnt / "out"
        rc, err = _predict(cohort, out, capsys)
        assert rc == 2 and len(err) == 1 and words in err[0] and str(out) in err[0], err
        assert "internal error" not in err[0]
        _no_half_written(out)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_rerun_with_inputs_that_now_fail_drops_the_old_result(cohort, tmp_path, capsys):
    import shutil

    src = tmp_path / "c"
    shutil.copytree(cohort, src)
    out = tmp_path / "out"
    rc, _ = _predict(src, out, capsys)
    assert rc == 0 and [r["subject"] for r in read_tsv(out / "summary.tsv")] == ["01", "02"]
    (src / "sub-02_flair.nii.gz").write_bytes(b"now broken")
    rc, err = _predict(src, out, capsys)
    assert rc == 2 and any("sub-02_flair" in ln for ln in err), err
    assert [(r["subject"], r["status"]) for r in read_tsv(out / "summary.tsv")] == [("01", "ok"), ("02", "failed")]
    assert not (out / "sub-02").exists()
