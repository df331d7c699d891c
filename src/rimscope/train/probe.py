"""Start a network's logit as a fitted linear probe on its analytic rim statistics.

Why: a labelled cohort holds a few dozen Rim+ lesions, and a CNN head trained for a few epochs
on them lands below a logistic regression on shell/surround/coverage statistics (measured: see
BENCHMARK.md). So before the network trains, `rim_skip` (the linear path from the statistics to
the logit) is set to an L2-regularised, class-balanced logistic regression fitted on the same
training lesions, and the network then learns a residual on it. Balanced class weights match
the balanced batches the network trains on, so the probe's logit is on the same (balanced) prior.
"""
from __future__ import annotations

import numpy as np
import torch


def rim_statistics(x: np.ndarray, batch_size: int = 256, features=None) -> np.ndarray:
    """`features`: the net's own statistics (AsymmetricNet.rim_stats); blocks.rim_features if None."""
    from ..models.blocks import rim_features

    features = features or rim_features
    with torch.no_grad():
        out = [features(torch.from_numpy(np.asarray(x[i:i + batch_size], dtype=np.float32)))
               for i in range(0, len(x), batch_size)]
    return torch.cat(out).double().numpy()


def fit_rim_probe(net, x: np.ndarray, y: np.ndarray, c: float = 0.1) -> bool:
    """Set net.rim_skip to the probe; False (nothing changed) when the net has no such path or
    the labels hold one class only."""
    from sklearn.linear_model import LogisticRegression

    layer = getattr(net, "rim_skip", None)
    y = np.asarray(y)
    if layer is None or len(np.unique(y)) < 2:
        return False
    f = rim_statistics(x, features=net.rim_stats)  # only nets with rim_skip get here
    mu, sd = f.mean(0), f.std(0)
    sd[sd < 1e-8] = 1.0
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=2000).fit((f - mu) / sd, y)
    w = lr.coef_[0] / sd  # the standardisation folded into the weights
    b = float(lr.intercept_[0] - np.sum(lr.coef_[0] * mu / sd))
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(w, dtype=layer.weight.dtype)[None])
        layer.bias.fill_(b)
    return True
