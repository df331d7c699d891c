"""Kill a real `rimscope predict` at each atomic write (fsync or rename), rerun, and find no stray
temporary file and outputs identical to an uninterrupted run; SIGTERM handled like Ctrl-C.

The kill comes from the process itself (rimscope.runtime's RIMSCOPE_FAULT_KILL_AT hook), so
every write is hit exactly, whatever the machine's speed.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest
from conftest import predict_inputs

from rimscope.inference.outputs import IMAGE_ENDS, STAMP, stamp_path
from rimscope.runtime import TEMP_PREFIX

# one subject: its images/tables + stamp, then dataset_description + .bidsignore + summary + the run
# record (runs/ and run.json); 2 points (fsync, rename) each
PER_SUBJECT = 2 * (len(IMAGE_ENDS) + 1)
N_POINTS = PER_SUBJECT + 2 * 5


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    lines = predict_inputs(root)
    (root / "one.tsv").write_text("\n".join(lines[:2]) + "\n")
    (root / "two.tsv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def ref(setup):
    ref = setup / "ref"
    assert _predict(setup, "one.tsv", ref).returncode == 0
    return ref


def _predict(root, manifest, out, **env):
    cmd = [sys.executable, "-m", "rimscope", "predict", "-q", "-i", str(root / manifest), "-o",
           str(out), "-m", str(root / "model"), "-d", "cpu"]
    return subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1", **env},
                          capture_output=True, text=True, timeout=300)


def _temps(out):
    return [p for p in out.rglob(TEMP_PREFIX + "*")]


def _outputs(out):
    """Everything a run leaves that should not depend on being interrupted (the run record has
    timings; the stamp has the subject's seconds)."""
    got = {}
    for p in sorted(out.rglob("*")):
        if not p.is_file() or p.name == "run.json" or p.name.endswith(STAMP) or p.parent.name == "runs":
            continue
        k = p.relative_to(out).as_posix()
        got[k] = (np.asanyarray(nib.load(str(p)).dataobj).tobytes() if k.endswith(".nii.gz")
                  else p.read_bytes())
    return got


def _kill_and_rerun(root, ref, tmp_path, n):
    out = root / tmp_path.name  # beside ref: the sidecars' relative Sources agree
    r = _predict(root, "one.tsv", out, RIMSCOPE_FAULT_KILL_AT=str(n))
    assert r.returncode == -signal.SIGKILL, (n, r.stderr)
    left = _temps(out)
    r = _predict(root, "one.tsv", out)
    assert r.returncode == 0, r.stderr
    assert _temps(out) == []
    assert _outputs(out) == _outputs(ref)
    assert stamp_path(out, "01").exists()
    return left


@pytest.mark.slow
def test_kill_before_the_stamp_rename_leaves_a_temp_file_that_the_rerun_removes(setup, ref, tmp_path):
    left = _kill_and_rerun(setup, ref, tmp_path, PER_SUBJECT)  # before the stamp's rename
    assert [p.name.endswith(STAMP) for p in left] == [True]


@pytest.mark.slow
@pytest.mark.parametrize("n", range(1, N_POINTS + 1))
def test_kill_at_every_write_then_rerun(setup, ref, tmp_path, n):
    left = _kill_and_rerun(setup, ref, tmp_path, n)
    assert len(left) == 1  # killed with its temporary file in place: the test is not vacuous


def test_sigterm_exits_143_and_leaves_no_temp_or_unstamped_folder(setup, tmp_path):
    """SIGTERM in the middle of the second subject's writes (via the hook: exactly there)."""
    root = setup
    out = tmp_path / "out"
    r = _predict(root, "two.tsv", out, RIMSCOPE_FAULT_KILL_AT=str(PER_SUBJECT + 3),
                 RIMSCOPE_FAULT_SIGNAL="TERM")
    assert r.returncode == 143, r.stderr
    assert r.stderr.strip().splitlines() == [
        "rimscope: terminated (SIGTERM); finished work is kept, rerun the same command to go on"]
    assert _temps(out) == []
    assert sorted(p.name for p in out.iterdir()) == ["sub-01"]
    assert stamp_path(out, "01").exists()


@pytest.mark.slow
def test_sigterm_from_outside(setup, tmp_path):
    """A real scheduler's SIGTERM, from another process, at whatever moment it lands."""
    root = setup
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "rimscope", "predict", "-q", "-i", str(root / "two.tsv"), "-o",
           str(out), "-m", str(root / "model"), "-d", "cpu"]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "sub-01").exists():
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (143, 0), err  # 0: it finished before the signal landed
    assert "Traceback" not in err
    assert _temps(out) == []
    for d in out.glob("sub-*"):
        assert stamp_path(out, d.name.removeprefix("sub-")).exists(), d


def test_sigterm_inside_a_finalizer_still_terminates(capsys):
    """A SIGTERM landing in a __del__ (nibabel has some) is not lost as 'Exception ignored': it
    is raised again once the finalizer is done."""
    from rimscope.cli import Terminated, sigterm_as_interrupt

    class Finalised:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            sum(range(1000))  # the handler runs here, inside the finalizer

    with pytest.raises(Terminated):
        with sigterm_as_interrupt():
            x = Finalised()
            del x
            deadline = time.time() + 10
            while time.time() < deadline:
                sum(range(1000))
    assert "Exception ignored" not in capsys.readouterr().err


def test_an_interrupt_inside_the_temp_clean_up_still_leaves_no_temp(tmp_path, monkeypatch):
    """The CI case: a SIGTERM from outside landed inside atomic_path's own clean-up, after the body
    had raised, and the temp file stayed. Whatever bytecode it lands on, the temp goes."""
    from rimscope import runtime
    from rimscope.cli import Terminated, sigterm_as_interrupt
    from rimscope.runtime import atomic_path

    real_unlink, calls = os.unlink, []

    def unlink_cut_once(path, *a, **k):  # the second interrupt arrives just before the unlink
        calls.append(path)
        if len(calls) == 1:
            raise Terminated()
        return real_unlink(path, *a, **k)

    with pytest.raises(Terminated):
        with sigterm_as_interrupt():
            with atomic_path(tmp_path / "a.nii.gz") as tmp:
                tmp.write_bytes(b"half")
                monkeypatch.setattr(runtime.os, "unlink", unlink_cut_once)
                raise Terminated()
    assert len(calls) == 2  # the cut clean-up, then the sweep
    assert list(tmp_path.iterdir()) == []


def test_a_signal_the_moment_the_temp_file_exists_leaves_nothing(tmp_path, monkeypatch):
    """SIGTERM landing right after the temp file is created: its name was registered first.

    The signal is sent to the process, so any thread may take it (CI runs this after tests that
    leave torch threads): nothing here may rely on which thread's mask holds it."""
    from rimscope import runtime
    from rimscope.cli import Terminated, sigterm_as_interrupt

    real_open = os.open

    def open_signalled(file, flags, *a, **k):
        fd = real_open(file, flags, *a, **k)
        if str(file).endswith("-b.tsv"):
            os.kill(os.getpid(), signal.SIGTERM)  # lands once the file exists
        return fd

    with pytest.raises(Terminated):
        with sigterm_as_interrupt():
            monkeypatch.setattr(runtime.os, "open", open_signalled)
            with runtime.atomic_path(tmp_path / "b.tsv") as tmp:
                for _ in range(10**6):  # a signal taken by another thread is raised here at the latest
                    pass
                tmp.write_text("never")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_folder_names_the_output_and_leaves_no_registered_temp(tmp_path):
    from rimscope import runtime

    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(PermissionError) as info:
            with runtime.atomic_path(folder / "x.tsv") as tmp:
                tmp.write_text("x")
        assert info.value.filename == str(folder / "x.tsv")
        assert not [t for t in runtime._live_temps if t.startswith(str(folder))]
    finally:
        folder.chmod(0o700)
