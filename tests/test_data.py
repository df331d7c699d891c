"""The embedded open_ms_data files are exactly the published ones (SHA256SUMS), all listed."""
from __future__ import annotations

import hashlib
from pathlib import Path

import rimscope

DATA = Path(rimscope.__file__).parent / "data" / "open_ms_data"


def _sums() -> dict[str, str]:
    out = {}
    for line in (DATA / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            out[name.strip().lstrip("*")] = digest
    return out


def test_checksums_match():
    sums = _sums()
    assert len(sums) >= 30 + 3 * 3 + 1  # 30 masks, 3 patients x (flair, t1, brainmask), licence
    bad = [name for name, digest in sums.items()
           if hashlib.sha256((DATA / name).read_bytes()).hexdigest() != digest]
    assert bad == []


def test_every_file_is_listed_and_attributed():
    listed = set(_sums())
    present = {p.relative_to(DATA).as_posix() for p in DATA.rglob("*") if p.is_file()}
    assert present - listed == {"SHA256SUMS", "README.md"}
    assert listed <= present
    readme = (DATA / "README.md").read_text()
    assert "CC-BY" in readme and "10.1007/s12021-017-9348-7" in readme
