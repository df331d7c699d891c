"""Shared run-time plumbing: logging to stderr, progress bars, devices, seeds, versions, atomic files.

Every stage needs the same few conventions (quiet flag, reproducible seeds, a record of versions,
files that are either complete or absent), so they live in one small place.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import random
import re
import signal
import socket
import sys
import time
from pathlib import Path

log = logging.getLogger("rimscope")
_QUIET = False


def setup_logging(verbosity: int = 0, quiet: bool = False) -> None:
    """-q: warnings only and no progress bars; -v: debug."""
    global _QUIET
    _QUIET = quiet
    level = logging.WARNING if quiet else (logging.DEBUG if verbosity > 0 else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname).1s rimscope: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def progress(iterable=None, **kwargs):
    """tqdm on stderr, silent under -q or when asked."""
    from tqdm import tqdm

    kwargs.setdefault("disable", _QUIET or kwargs.pop("quiet", False))
    kwargs.pop("quiet", None)
    return tqdm(iterable, file=sys.stderr, dynamic_ncols=True, leave=False, **kwargs)


def resolve_device(name: str = "auto") -> str:
    """auto|cpu|cuda|cuda:N, checked up front: 'auto' picks cuda when available; a GPU asked for
    but not visible is a user error (one line, exit 2), not a failure deep inside torch."""
    import re

    import torch

    from .errors import InputError

    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    m = re.fullmatch(r"cuda(?::(\d+))?", str(name))
    if name != "cpu" and not m:
        raise InputError(f"--device {name!r} is not one of auto, cpu, cuda, cuda:N")
    if m and not torch.cuda.is_available():
        raise InputError(f"--device {name} asked but no CUDA GPU is visible; use --device cpu or auto")
    if m and m.group(1) is not None and int(m.group(1)) >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise InputError(f"--device {name}: only {n} CUDA GPU{'s' if n > 1 else ''} visible "
                         f"(cuda:0{f'..cuda:{n - 1}' if n > 1 else ''}); pick one of them or use "
                         "--device cuda")
    return str(name)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def versions() -> dict:
    """Versions of what shapes a result, recorded in every file a run writes."""
    import nibabel
    import numpy
    import scipy

    from . import __version__

    out = {"rimscope": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
           "scipy": scipy.__version__, "nibabel": nibabel.__version__, "platform": platform.platform()}
    try:
        import torch

        out["torch"] = torch.__version__
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return out


TEMP_PREFIX = ".rimscope-tmp-"  # every temporary file rimscope writes starts with this
_TEMP_RE = re.compile(r"^\.rimscope-tmp-([0-9a-f]{8})-(\d+)-")
FOREIGN_TEMP_AGE_S = 3600  # a temp file of another machine this old has lost its writer
_cleaned: set = set()
# Fault injection for the kill tests (tests/test_harden_kill.py): RIMSCOPE_FAULT_KILL_AT=N makes
# the process send itself SIGKILL (or RIMSCOPE_FAULT_SIGNAL, e.g. TERM) just before the N-th
# fsync or rename of an atomic write (counted together, from 1). Unset in normal use.
_FAULT_AT = int(os.environ.get("RIMSCOPE_FAULT_KILL_AT", "0") or 0)
_fault_count = 0


def _fault_point() -> None:
    global _fault_count
    if _FAULT_AT:
        _fault_count += 1
        if _fault_count == _FAULT_AT:
            os.kill(os.getpid(), getattr(signal, "SIG" + os.environ.get("RIMSCOPE_FAULT_SIGNAL", "KILL")))


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def clean_stale_temps(folder) -> list[Path]:
    """Remove rimscope's temporary files in `folder` whose writer is gone: on this machine, its
    process no longer runs; from another machine (a shared cluster disk), older than an hour.
    Temp files of a run still writing (a concurrent shard) are left alone. Returns what went."""
    folder, removed, host, now = Path(folder), [], _host_tag(), time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        m = _TEMP_RE.match(e.name)
        if not m or not e.is_file(follow_symlinks=False):
            continue
        try:
            stale = (not _pid_alive(int(m.group(2))) if m.group(1) == host
                     else now - e.stat(follow_symlinks=False).st_mtime > FOREIGN_TEMP_AGE_S)
            if stale and int(m.group(2)) != os.getpid():
                os.unlink(e.path)
                removed.append(Path(e.path))
        except OSError:  # raced with its owner or another cleaner: nothing to do
            pass
    if removed:
        log.debug("removed %d stale temporary file(s) in %s", len(removed), folder)
    return removed


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename.

    A crash leaves either the old file or nothing, never a half-written one. The temporary name
    (`.rimscope-tmp-<host>-<pid>-<random>-<name>`) says whose it is, so the first write into a
    folder in a later run removes what a killed run left there (clean_stale_temps).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = str(path.parent.resolve())
    if folder not in _cleaned:
        _cleaned.add(folder)
        clean_stale_temps(folder)
    ext = "".join(path.suffixes)
    suffix = "-" + path.name + ("" if suffix is None or ext.endswith(suffix) else suffix)
    prefix = f"{TEMP_PREFIX}{_host_tag()}-{os.getpid()}-"
    while True:  # the name is known before the file exists: a signal anywhere leaves no orphan
        tmp = str(path.parent / f"{prefix}{os.urandom(4).hex()}{suffix}")
        _live_temps.add(tmp)
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # umask applies
            break
        except FileExistsError:
            _live_temps.discard(tmp)
        except OSError as exc:  # an unwritable folder: name the file being written
            _live_temps.discard(tmp)
            exc.filename = str(path)
            raise
    try:
        yield Path(tmp)
        _fault_point()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        _fault_point()
        os.replace(tmp, path)
    except OSError as exc:  # a full disk says nothing of where: name the file being written
        if exc.filename is None or str(exc.filename) == tmp:
            exc.filename = str(path)
        raise
    finally:
        _discard_temp(tmp)


_live_temps: set = set()  # this process's temp files not yet renamed or removed


def _discard_temp(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:  # renamed into place
        pass
    _live_temps.discard(tmp)


def discard_live_temps() -> None:
    """Remove every temp file this process still holds. An interrupt (SIGTERM, Ctrl-C) raises
    between any two bytecodes, also inside atomic_path's own clean-up; this sweep, run once the
    interruptible region has ended, is what makes "no temp file survives" hold everywhere."""
    for tmp in list(_live_temps):
        try:
            _discard_temp(tmp)
        except OSError:  # a read-only disk by now: the next run's clean_stale_temps removes it
            pass


def write_text_atomic(path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def write_json_atomic(path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def _jsonable(x):
    import numpy as np

    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x)}")


def write_tsv_atomic(path, rows: list[dict], columns: list[str] | None = None) -> None:
    """Rows of dicts to TSV; floats with 6 significant digits."""
    columns = columns or (list(rows[0].keys()) if rows else [])
    lines = ["\t".join(columns)]
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c, "")
            if v is None:  # an empty cell (e.g. rim columns of a lesion without a rim)
                v = ""
            elif isinstance(v, float):
                v = f"{v:.6g}"
            cells.append(str(v))
        lines.append("\t".join(cells))
    write_text_atomic(path, "\n".join(lines) + "\n")


def read_tsv(path) -> list[dict]:
    """TSV (or CSV by extension) to a list of dicts of strings."""
    import csv

    path = Path(path)
    delim = "," if path.suffix.lower() == ".csv" else "\t"
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return [dict(r) for r in csv.DictReader(fh, delimiter=delim)]
