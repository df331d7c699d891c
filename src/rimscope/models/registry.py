"""Every model by name: `build(name, **options) -> RimModel`.

One registry means evaluation and the benchmark table compare models built the same way; a card
stores (name, config) and `build` rebuilds the exact architecture before the weights go in.
"""
from __future__ import annotations

from ..errors import InputError
from .base import NeuralRimModel, RimModel


def _asymmetric(defaults):
    def build(**options) -> RimModel:
        from .asymmetric import AsymmetricNet

        cfg = _merge(defaults, options)
        return NeuralRimModel("", cfg, AsymmetricNet(**cfg))
    return build


def _baseline(mode):
    def build(**options) -> RimModel:
        from .baselines import DEFAULTS, BaselineNet

        cfg = _merge(DEFAULTS, options)
        return NeuralRimModel("", cfg, BaselineNet(mode, **cfg))
    return build


def _classical(cls_name):
    def build(**options) -> RimModel:
        from . import classical

        return getattr(classical, cls_name)(**options)
    return build


def _merge(defaults: dict, options: dict) -> dict:
    unknown = set(options) - set(defaults)
    if unknown:
        raise InputError(f"unknown model option(s) {sorted(unknown)}; known: {sorted(defaults)}")
    return {**defaults, **options}


def _defaults():
    from .asymmetric import DEFAULTS, FRODO

    return DEFAULTS, FRODO


MODELS = {
    "asymmetric": (lambda **o: _asymmetric(_defaults()[0])(**o),
                   "rimscope's method: full QSM encoder, light FLAIR encoder, spatial FiLM, rim features"),
    "asymmetric-frodo": (lambda **o: _asymmetric(_defaults()[1])(**o),
                         "FRODO's published design (symmetric stems, FiLM, input masking)"),
    "rimnet": (_baseline("rimnet"), "two symmetric branches QSM / FLAIR, late fusion (RimNet)"),
    "qsm-only": (_baseline("qsm-only"), "one encoder on QSM (+ mask channels)"),
    "concat": (_baseline("concat"), "early fusion: one encoder on QSM+FLAIR"),
    "radiomics": (_classical("Radiomics"), "shell/core/surround statistics + gradient-boosted trees"),
    "rim-contrast": (_classical("RimContrast"), "shell minus surroundings, logistic map"),
}
NEURAL = ("asymmetric", "asymmetric-frodo", "rimnet", "qsm-only", "concat")


def build(name: str, **options) -> RimModel:
    if name not in MODELS:
        raise InputError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    model = MODELS[name][0](**options)
    model.name = name
    return model
