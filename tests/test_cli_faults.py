"""Small command-line faults: a closed pipe, a GPU that is not there, a typo'd command."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rimscope.cli import main as cli_main
from rimscope.errors import InputError
from rimscope.runtime import resolve_device


def test_closed_pipe_ends_quietly():
    """`rimscope models | head -0`: the reader is gone before anything is written."""
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([sys.executable, "-m", "rimscope", "models"], stdout=w,
                           stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(w)
    assert "BrokenPipe" not in p.stderr and "Traceback" not in p.stderr and "Exception" not in p.stderr
    assert p.returncode == 1


@pytest.mark.parametrize("n_gpus", [0, 1, 2])
def test_device_strings_checked_up_front(monkeypatch, n_gpus):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: n_gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n_gpus)
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if n_gpus else "cpu")
    for bad in ("gpu", "cuda:", "cuda:x", "cuda1", "CUDA"):
        with pytest.raises(InputError, match="auto, cpu, cuda, cuda:N"):
            resolve_device(bad)
    for i in range(3):
        if i < n_gpus:
            assert resolve_device(f"cuda:{i}") == f"cuda:{i}"
        else:
            with pytest.raises(InputError) as exc:
                resolve_device(f"cuda:{i}")
            assert f"cuda:{i}" in str(exc.value) and "\n" not in str(exc.value)
    if n_gpus:
        assert resolve_device("cuda") == "cuda"
    else:
        with pytest.raises(InputError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_cuda_index_on_the_command_line_is_a_user_error(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    files = []
    for name in ("q.nii.gz", "f.nii.gz", "l.nii.gz"):  # only their existence is checked first
        (tmp_path / name).write_bytes(b"")
        files.append(str(tmp_path / name))
    code = cli_main(["predict", "--qsm", files[0], "--flair", files[1], "--lesions", files[2],
                     "-o", str(tmp_path / "out"), "-d", "cuda:1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "cuda:1" in err[0] and "no CUDA GPU" in err[0] and "internal error" not in err[0]


@pytest.mark.parametrize("typo,near", [("predcit", "predict"), ("valdiate", "validate"),
                                       ("simulte", "simulate")])
def test_typo_names_the_nearest_command(capsys, typo, near):
    assert cli_main([typo, "-i", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"did you mean {near!r}" in err[0]


def test_unknown_command_far_from_any():
    assert cli_main(["zzzzzz"]) == 2
