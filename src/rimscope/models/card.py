"""Model files, and the only code that reads or writes them: `weights.pt` (a plain dict of
tensors) + `card.json` (what the model is, how it was made, its sha256).

`read_card` validates every field before anything else is read (like nnU-Net's plans handler:
typed accessors over a checked file, not a dict passed around), so a hand-edited or tampered card
is refused in one line naming the card and the field. Loading never unpickles code:
`torch.load(..., weights_only=True)` only, the weights must sit inside the model folder, and the
card's sha256 must match, so a truncated download or a swapped file is refused instead of
producing silent nonsense probabilities.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from ..errors import InputError
from ..patches import PatchConfig
from ..runtime import atomic_path, versions, write_json_atomic
from .registry import MODELS, build, is_neural, spec

CARD_VERSION = 1
RECORDS = ("training", "metrics", "pretraining")  # sections a trained model carries into its card


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Card:
    """A checked card.json: every accessor is typed and was validated by `read_card`."""

    path: Path  # the card.json itself
    name: str
    config: dict
    threshold: float
    rim_threshold: float  # voxel head's rim threshold (0.5 when the card has none)
    calibration: tuple  # (scale, shift) on the logit; (1, 0) for classical models
    patch: PatchConfig
    weights: Path  # resolved, inside the model folder
    weights_sha256: str
    info: dict = field(default_factory=dict)  # everything else: training, metrics, description...

    @property
    def kind(self) -> str:
        return spec(self.name).kind

    @property
    def records(self) -> dict:
        """The training record sections (training, metrics, pretraining) present in the card."""
        return {k: self.info[k] for k in RECORDS if k in self.info}


def save_model(model, directory, extra: dict | None = None) -> Path:
    """Write dir/weights.pt then dir/card.json (both atomic); returns the card path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / "weights.pt", suffix=".pt") as tmp:
        torch.save(model.state_dict(), tmp)
    neural = is_neural(model.name)
    card = {
        "card_version": CARD_VERSION,
        "name": model.name,
        "kind": spec(model.name).kind,
        "config": model.config,
        "threshold": float(model.threshold),
        **({"rim_threshold": float(model.rim_threshold)} if model.has_voxel_head else {}),
        **({"calibration": [float(v) for v in model.calibration]} if neural else {}),
        "patch": model.patch_config.to_dict(),
        "weights": "weights.pt",
        "weights_sha256": sha256_file(directory / "weights.pt"),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        **model.card_extra,
        **(extra or {}),
    }
    write_json_atomic(directory / "card.json", card)
    return directory / "card.json"


# ---------------------------------------------------------------- reading and checking

def _number(value, what: str, lo: float, hi: float, integer: bool = False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and lo <= value <= hi and (not integer or float(value).is_integer())
    if not ok:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{what} must be {kind} in [{lo:g}, {hi:g}], got {value!r}")
    return int(value) if integer else float(value)


def _like(default, value, what: str):
    """`value` must have the type (and, for lists, the length) of the option's default."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{what} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        return _number(value, what, 1, 1e6, integer=True)
    if isinstance(default, float):
        return _number(value, what, 0, 1e6)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ValueError(f"{what} must be a string, got {value!r}")
        return value
    if isinstance(default, (list, tuple)):
        if not isinstance(value, list) or len(value) != len(default):
            raise ValueError(f"{what} must be a list of {len(default)} values like {list(default)}, got {value!r}")
        return [_like(d, v, f"{what}[{i}]") for i, (d, v) in enumerate(zip(default, value))]
    return value


def _config(name: str, config) -> dict:
    if not isinstance(config, dict):
        raise ValueError(f"config must be an object of {name} options, got {type(config).__name__}")
    defaults = spec(name).defaults
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise ValueError(f"config holds unknown {name} option(s) {unknown}")
    return {k: _like(defaults[k], v, f"config.{k}") for k, v in config.items()}


def _patch(d) -> PatchConfig:
    if not isinstance(d, dict):
        raise ValueError(f"patch must be an object (size, spacing_mm, b0_dir), got {d!r}")
    b0 = d.get("b0_dir", [0.0, 0.0, 1.0])
    if not isinstance(b0, list) or len(b0) != 3:
        raise ValueError(f"patch.b0_dir must be 3 numbers, got {b0!r}")
    b0 = [_number(v, "patch.b0_dir", -1e6, 1e6) for v in b0]
    if not any(b0):
        raise ValueError("patch.b0_dir must not be zero")
    source = d.get("source", "qsm")
    if source not in ("qsm", "phase"):
        raise ValueError(f"patch.source must be qsm or phase, got {source!r}")
    return PatchConfig(size=_number(d.get("size"), "patch.size", 4, 256, integer=True),
                       spacing_mm=_number(d.get("spacing_mm"), "patch.spacing_mm", 0.05, 10),
                       b0_dir=tuple(b0), source=source)


def _weights(folder: Path, ref) -> Path:
    if not isinstance(ref, str) or not ref or Path(ref).is_absolute():
        raise ValueError(f"weights must name a file inside the model folder, got {ref!r}")
    path = (folder / ref).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise ValueError(f"weights {ref!r} points outside the model folder; keep weights.pt beside card.json")
    return path


def _check(card: dict, card_path: Path) -> Card:
    """Every field, typed; ValueError names the field."""
    name = card.get("name")
    if name not in MODELS:
        raise ValueError(f"name {name!r} is not a rimscope model ({', '.join(MODELS)})")
    cal = card.get("calibration", [1.0, 0.0])
    if not isinstance(cal, list) or len(cal) != 2:
        raise ValueError(f"calibration must be [scale, shift], got {cal!r}")
    sha = card.get("weights_sha256")
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        raise ValueError(f"weights_sha256 must be 64 hex digits, got {sha!r}")
    return Card(path=card_path, name=name, config=_config(name, card.get("config")),
                threshold=_number(card.get("threshold", 0.5), "threshold", 0, 1),
                rim_threshold=_number(card.get("rim_threshold", 0.5), "rim_threshold", 0, 1),
                calibration=tuple(_number(v, "calibration", -1e6, 1e6) for v in cal),
                patch=_patch(card.get("patch", PatchConfig().to_dict())),
                weights=_weights(card_path.parent, card.get("weights", "weights.pt")),
                weights_sha256=sha, info={k: v for k, v in card.items() if k not in (
                    "name", "config", "threshold", "rim_threshold", "calibration", "patch", "weights", "weights_sha256")})


def read_card(path) -> Card:
    """The checked card of a model folder (or of card.json itself); InputError on any bad field."""
    path = Path(path)
    card_path = path / "card.json" if path.is_dir() else path
    if not card_path.exists():
        raise InputError("no model card here; give a folder with card.json (from `rimscope train`) "
                         "or the card itself", card_path)
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"model card is not valid JSON ({exc}); re-save or re-download the model",
                         card_path) from None
    if not isinstance(card, dict):
        raise InputError("model card is not a JSON object; it was not written by rimscope", card_path)
    for key in ("name", "config", "weights_sha256"):
        if key not in card:
            raise InputError(f"model card lacks {key!r}; it was not written by rimscope", card_path)
    try:
        return _check(card, card_path)
    except ValueError as exc:
        raise InputError(f"bad model card field: {exc}; re-save or re-download the model", card_path) from None


def load_card_model(path, device: str = "cpu"):
    """(model, card) from a model folder or card.json: card checked first, then the weights'
    sha256, then tensors only."""
    card = read_card(path)
    weights = card.weights
    if not weights.is_file():
        raise InputError("model weights missing; weights.pt must sit beside card.json", weights)
    digest = sha256_file(weights)
    if digest != card.weights_sha256:
        raise InputError(f"weights do not match their card (sha256 {digest[:12]}... != "
                         f"{card.weights_sha256[:12]}...): the file is corrupted or from another "
                         "model; re-download or retrain it", weights)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to replace
        raise InputError(f"cannot read weights ({type(exc).__name__}); re-download or retrain",
                         weights) from None
    try:
        model = build(card.name, **card.config)
    except (ValueError, TypeError) as exc:  # a value of the right type the network cannot take
        raise InputError(f"bad model card field: config ({exc}); re-save or re-download the model",
                         card.path) from None
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise InputError(f"weights do not fit model {card.name!r} ({str(exc)[:120]}); the card "
                         "and weights come from different models", weights) from None
    model.threshold, model.rim_threshold = card.threshold, card.rim_threshold
    if is_neural(card.name):
        model.calibration = card.calibration
        model.net.to(device).eval()
    model.patch_config = card.patch
    model.card_extra = card.records
    return model, card


def load_model(path, device: str = "cpu"):
    """A model from its folder (or card.json); see load_card_model."""
    return load_card_model(path, device)[0]
