"""Every model by name: one `ModelSpec` each (name, kind, builder, defaults, description).

The registry is the one place that answers "which models exist", "is this one neural?" and
"which options does it take": evaluation, training, the benchmark and the card reader all ask
it, so they compare models built the same way. A card stores (name, config) and `build`
rebuilds the exact architecture before the weights go in.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from ..errors import InputError
from .base import NeuralRimModel, RimModel

# no NEURAL tuple any more (ask is_neural): an old `name in NEURAL` must fail loudly, not test a substring
KIND_NEURAL, KIND_CLASSICAL = "neural", "classical"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # KIND_NEURAL | KIND_CLASSICAL
    description: str
    builder: str  # "module:attribute" of a callable(name, config) -> RimModel
    defaults_from: str  # "module:attribute" of the default options dict

    @property
    def neural(self) -> bool:
        return self.kind == KIND_NEURAL

    @property
    def defaults(self) -> dict:
        """The model's options and their default values (a fresh copy)."""
        return {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in _attr(self.defaults_from).items()}

    def options(self, options: dict) -> dict:
        """Defaults updated by `options`; unknown names refused."""
        defaults = self.defaults
        unknown = set(options) - set(defaults)
        if unknown:
            raise InputError(f"unknown model option(s) {sorted(unknown)} for {self.name}; known: {sorted(defaults)}")
        return {**defaults, **options}


def _attr(ref: str):
    module, name = ref.split(":")
    return getattr(importlib.import_module(module, __package__), name)


def _spec(name, kind, description, builder, defaults_from):
    return name, ModelSpec(name, kind, description, builder, defaults_from)


MODELS: dict[str, ModelSpec] = dict([
    _spec("asymmetric", KIND_NEURAL, "rimscope's method: full QSM encoder, light FLAIR encoder, spatial FiLM, rim features",
          ".registry:_asymmetric", ".asymmetric:DEFAULTS"),
    _spec("asymmetric-frodo", KIND_NEURAL, "FRODO's published design (symmetric stems, FiLM, input masking)",
          ".registry:_asymmetric", ".asymmetric:FRODO"),
    _spec("rimnet", KIND_NEURAL, "two symmetric branches QSM / FLAIR, late fusion (RimNet)",
          ".registry:_baseline", ".baselines:DEFAULTS"),
    _spec("qsm-only", KIND_NEURAL, "one encoder on QSM (+ mask channels)", ".registry:_baseline", ".baselines:DEFAULTS"),
    _spec("concat", KIND_NEURAL, "early fusion: one encoder on QSM+FLAIR", ".registry:_baseline", ".baselines:DEFAULTS"),
    _spec("radiomics", KIND_CLASSICAL, "shell/core/surround statistics + gradient-boosted trees",
          ".classical:Radiomics", ".classical:RADIOMICS_DEFAULTS"),
    _spec("rim-contrast", KIND_CLASSICAL, "shell minus surroundings, logistic map",
          ".classical:RimContrast", ".classical:RIM_CONTRAST_DEFAULTS"),
])


def _asymmetric(name: str, config: dict) -> RimModel:
    from .asymmetric import AsymmetricNet

    return NeuralRimModel(name, config, AsymmetricNet(**config))


def _baseline(name: str, config: dict) -> RimModel:
    from .baselines import BaselineNet

    return NeuralRimModel(name, config, BaselineNet(name, **config))


def spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise InputError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name]


def is_neural(name: str) -> bool:
    """The one answer to "is this model a network?" (trained by epochs, calibrated, has .net)."""
    return spec(name).neural


def build(name: str, **options) -> RimModel:
    s = spec(name)
    return _attr(s.builder)(name, s.options(options))
