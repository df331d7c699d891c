"""Shared run-time plumbing: logging to stderr, progress bars, devices, seeds, versions, atomic files.

Every stage needs the same few conventions (quiet flag, reproducible seeds, a record of versions,
files that are either complete or absent), so they live in one small place.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import random
import sys
import tempfile
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


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename.

    A crash leaves either the old file or nothing, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix is not None else "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
            if isinstance(v, float):
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
