"""The one place evaluation touches training: fit a model on a training part, pre-train an init.

Cross-validation calls `fit_model` and `pretrain_init` only, so a change in rimscope.train's API
is absorbed here, and tests can hand cross-validation any function with the same signature.
"""
from __future__ import annotations


def fit_model(name: str, train, val, *, init=None, options: dict | None = None, seed: int = 0,
              device: str = "cpu", quiet: bool = True):
    """A fitted RimModel whose `threshold` was chosen on `val` (never on test data)."""
    from ..train import finetune

    return finetune.fit(name, train, val, init=init, options=dict(options or {}), seed=seed,
                        device=device, quiet=quiet)


def pretrain_init(model_name: str, unlabeled, *, options: dict | None = None, seed: int = 0,
                  device: str = "cpu", quiet: bool = True):
    """Self-supervised weights for `model_name` from lesions whose labels are never tested on."""
    from ..train import pretrain as pt

    return pt.pretrain(unlabeled, options=dict(options or {}), seed=seed, device=device, quiet=quiet,
                       model_name=model_name)
