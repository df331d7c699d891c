"""The one place evaluation touches training: fit a model on a training part, pre-train an init.

Cross-validation calls `fit_model` and `pretrain_init` only, so a change in rimscope.train's API
is absorbed here, and tests can hand cross-validation any function with the same signature.
Classical models (they expose `fit_arrays`) are fitted directly when the training API is absent.
"""
from __future__ import annotations

import inspect
import logging

import numpy as np

from ..errors import InputError

log = logging.getLogger("rimscope")


def f1_threshold(y, p) -> float:
    """Threshold maximising F1 on (y, p); 0.5 when y has no Rim+."""
    from .metrics import pr_curve

    y = np.asarray(y).astype(int)
    p = np.asarray(p, float)
    if y.sum() == 0:
        return 0.5
    rec, prec = pr_curve(y, p)
    f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-12), 0)
    thresholds = np.sort(np.unique(p))[::-1]
    return float(thresholds[int(np.argmax(f1))])


def _train_api():
    try:
        from ..train import finetune
    except ImportError:
        return None
    return finetune


def fit_model(name: str, train, val, *, init=None, options: dict | None = None, seed: int = 0,
              device: str = "cpu", quiet: bool = True):
    """A fitted RimModel whose `threshold` was chosen on `val` (never on test data)."""
    finetune = _train_api()
    if finetune is not None:
        return finetune.fit(name, train, val, init=init, options=dict(options or {}), seed=seed,
                            device=device, quiet=quiet)
    from ..models.registry import build

    model = build(name)
    if not hasattr(model, "fit_arrays"):
        raise InputError(f"model {name!r} needs rimscope.train, which is not installed in this build")
    model.fit_arrays(train.x, train.y, seed=seed)
    ref = val if val is not None and len(val) and np.any(val.y == 1) else train
    model.threshold = f1_threshold(ref.y, model.predict_proba(ref.x, device))
    return model


def pretrain_init(model_name: str, unlabeled, *, options: dict | None = None, seed: int = 0,
                  device: str = "cpu", quiet: bool = True):
    """Self-supervised weights for `model_name` from lesions whose labels are never tested on."""
    from ..train import pretrain as pt

    opts = dict(options or {})
    kw = {"seed": seed, "device": device}
    params = inspect.signature(pt.pretrain).parameters
    if "quiet" in params:
        kw["quiet"] = quiet
    if "model_name" in params:
        kw["model_name"] = model_name
    else:
        opts.setdefault("model", model_name)
    return pt.pretrain(unlabeled, options=opts, **kw)
