"""Training and pre-training options: parsed from `--option key=value` and checked before any
work starts (TorchIO's `parse_*` way), so a bad value fails in a second with the option named,
not after an hour of training.

`--option` values are JSON where they parse (numbers, booleans, lists), strings otherwise;
`model.key=value` goes to the model's own options (checked by the model registry).
"""
from __future__ import annotations

import json
import math

from ..errors import InputError

TRAIN_DEFAULTS = {
    "epochs": 40, "batch_size": 32, "lr": 1e-3, "weight_decay": 1e-4, "warmup_epochs": 1,
    "loss": "focal", "gamma": 2.0, "sampler": "balanced", "supcon": True, "supcon_tau": 0.1,
    "supcon_init": 0.1, "augment": True, "offset_ppm": 0.01, "patience": 10,
    "threshold_rule": "f1", "min_sensitivity": 0.9, "rim_probe": True, "model": {},
    "rim_loss_weight": 1.0,  # the voxel rim loss (models with rim_head, data with rim truth)
    "max_minutes": 0.0,  # stop after the epoch that passes this wall time (0: no limit)
}
TRAIN_CHOICES = {"loss": ("focal", "logit-adjusted", "bce"), "sampler": ("balanced", "sqrt", "natural"),
                 "threshold_rule": ("f1", "sensitivity")}
PRETRAIN_DEFAULTS = {"epochs": 30, "batch_size": 64, "lr": 1e-3, "weight_decay": 1e-4, "tau": 0.1,
                     "mask_ratio": 0.5, "block": 4, "recon_weight": 1.0, "objective": "infonce",
                     "augment": True, "model": {}}
PRETRAIN_CHOICES = {"objective": ("infonce", "frodo-mse")}
UNIT_INTERVAL = ("min_sensitivity", "mask_ratio")


def parse_options(items) -> dict:
    """`["key=value", ...]` -> {key: value}; `model.key` values under "model"."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise InputError(f"--set {item!r} must look like key=value (e.g. epochs=20, model.film=false)")
        key, val = item.split("=", 1)
        try:
            val = json.loads(val)
        except json.JSONDecodeError:
            pass
        if key.startswith("model."):
            out.setdefault("model", {})[key[6:]] = val
        else:
            out[key] = val
    return out


def _check_value(what: str, key: str, value, default, choices=None):
    bad = None
    if choices is not None:
        if value not in choices:
            bad = f"choose one of {', '.join(choices)}"
    elif isinstance(default, bool):
        if not isinstance(value, bool):
            bad = "give true or false"
    elif isinstance(default, (int, float)):
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not number or value < 0:
            bad = "give a number >= 0"
        elif isinstance(default, int) and not float(value).is_integer():
            bad = "give a whole number"
        elif key in UNIT_INTERVAL and value > 1:
            bad = "give a number in [0, 1]"
    if bad:
        raise InputError(f"{what} option {key}={value!r}: {bad}")
    return int(value) if isinstance(default, int) and not isinstance(default, bool) else value


def _parse(what: str, defaults: dict, choices: dict, options: dict | None, model: str | None) -> dict:
    options = dict(options or {})
    unknown = set(options) - set(defaults)
    if unknown:
        raise InputError(f"unknown {what} option(s) {sorted(unknown)}; known: {sorted(defaults)}")
    out = {**defaults, **options}
    for key, value in options.items():
        if key == "model":
            if not isinstance(value, dict):
                raise InputError(f"{what} option model must hold model.KEY=VALUE options, got {value!r}")
            if model is not None:
                from ..models.registry import spec

                spec(model).options(value)  # unknown model options are refused here
            continue
        out[key] = _check_value(what, key, value, defaults[key], choices.get(key))
    return out


def parse_training_options(options: dict | None, model: str | None = None) -> dict:
    """Fine-tuning options (TRAIN_DEFAULTS filled in), every value checked; InputError names it."""
    return _parse("training", TRAIN_DEFAULTS, TRAIN_CHOICES, options, model)


def parse_pretrain_options(options: dict | None, model: str | None = None) -> dict:
    """Pre-training options (PRETRAIN_DEFAULTS filled in), every value checked."""
    return _parse("pre-training", PRETRAIN_DEFAULTS, PRETRAIN_CHOICES, options, model)


def with_epochs(options: dict | None, epochs: int | None) -> dict:
    """A copy of `options` with `epochs` set where given (the commands' --epochs)."""
    return {**(options or {}), **({"epochs": epochs} if epochs is not None else {})}


def start_run(options: dict | None, epochs: int | None, parse, model: str, threads: int | None,
              device: str):
    """How every training command starts: --epochs merged into a copy of `options`, the options
    checked by `parse(options, model)` before any image is read, then torch's thread count and
    the device set. Returns (options, device)."""
    import torch

    from ..runtime import resolve_device

    options = with_epochs(options, epochs)
    parse(options, model)
    if threads:
        torch.set_num_threads(threads)
    return options, resolve_device(device)


def parse_choice(option: str, value, choices) -> str:
    if value not in choices:
        raise InputError(f"{option} {value!r}: choose one of {', '.join(choices)}")
    return value


def parse_models(text) -> list[str]:
    """"a,b" or a list -> registry names, each checked."""
    from ..models.registry import MODELS

    models = [m.strip() for m in (text.split(",") if isinstance(text, str) else text) if m.strip()]
    bad = [m for m in models if m not in MODELS]
    if bad or not models:
        raise InputError(f"--models: unknown {bad}; choose from {', '.join(MODELS)}")
    return models
