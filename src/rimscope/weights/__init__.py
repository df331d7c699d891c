"""Models shipped with the package: one folder each with card.json + weights.pt."""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def shipped() -> dict[str, Path]:
    """{name: folder} of every shipped model."""
    return {d.name: d for d in sorted(HERE.iterdir()) if (d / "card.json").is_file()}
