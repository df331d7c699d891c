"""Losses for the rare positive class and for contrastive learning.

- focal: down-weights the many easy Rim- lesions (γ=2);
- logit-adjusted BCE: adds log prior odds to the logit during training so the decision rule is
  balanced without resampling;
- SupCon (Khosla et al.) on the projection head: pulls lesions of the same class together;
- InfoNCE (symmetric, cross-modal) for pre-training: negatives prevent the collapse FRODO's
  MSE-only objective allows.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def focal_loss(logit, y, gamma: float = 2.0, alpha: float | None = None):
    y = y.float()
    bce = F.binary_cross_entropy_with_logits(logit, y, reduction="none")
    p = torch.sigmoid(logit)
    pt = p * y + (1 - p) * (1 - y)
    w = (1 - pt).pow(gamma)
    if alpha is not None:
        w = w * (alpha * y + (1 - alpha) * (1 - y))
    return (w * bce).mean()


def logit_adjusted_loss(logit, y, prior: float, tau: float = 1.0):
    prior = min(max(prior, 1e-4), 1 - 1e-4)
    return F.binary_cross_entropy_with_logits(logit + tau * math.log(prior / (1 - prior)), y.float())


def supcon_loss(z, y, tau: float = 0.1):
    """Supervised contrastive loss; anchors without a positive in the batch are skipped."""
    z = F.normalize(z.float(), dim=1)
    n = z.shape[0]
    sim = z @ z.t() / tau
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, -1e9)
    pos = (y[:, None] == y[None, :]) & ~eye
    logprob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    npos = pos.sum(1)
    ok = npos > 0
    if not ok.any():
        return z.sum() * 0.0
    per = -(logprob * pos).sum(1)[ok] / npos[ok]
    return per.mean()


def info_nce(a, b, tau: float = 0.1):
    """Symmetric InfoNCE: row i of a and row i of b are the positive pair."""
    a, b = F.normalize(a.float(), dim=1), F.normalize(b.float(), dim=1)
    logits = a @ b.t() / tau
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def rim_voxel_loss(logits, truth, eps: float = 1.0):
    """Dense rim supervision: BCE + soft Dice between voxel rim logits (N, S, S, S) and the rim
    voxel truth (N, S, S, S, fraction 0-1). Samples whose truth is not finite (NaN: the example
    carries no voxel truth) are left out; with none left the loss is 0. The Dice term keeps the
    thin rim from drowning in the background, and is pooled over the batch (one ratio of all its
    voxels, eps 1 voxel), so a rim voxel counts the same on every lesion. Per-sample Dice made a
    few voxels painted on a lesion without rim (empty truth: Dice near 0) cost as much as a whole
    missed rim, and taught the head an all-or-nothing call per lesion: long trained, it painted
    rims only on the lesions it judged Rim+."""
    truth = truth.to(logits.dtype)
    ok = torch.isfinite(truth.flatten(1)).all(1)
    if not ok.any():
        return logits.sum() * 0.0
    lg, t = logits[ok].flatten(1), truth[ok].flatten(1)
    bce = F.binary_cross_entropy_with_logits(lg, t)
    p = torch.sigmoid(lg)
    dice = (2 * (p * t).sum() + eps) / (p.sum() + t.sum() + eps)
    return bce + (1 - dice)
