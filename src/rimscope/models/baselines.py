"""Neural baselines under the same blocks and input scaling as `asymmetric`, so a difference
in the benchmark is a difference in how QSM and FLAIR are combined, nothing else.

- `qsm-only`: one encoder on QSM (+ mask, signed distance): what FLAIR adds at all.
- `concat`: early fusion, one encoder on all four channels.
- `rimnet`: RimNet's design, two symmetric full-depth branches (QSM / FLAIR), late fusion of the
  pooled embeddings.
"""
from __future__ import annotations

import torch
from torch import nn

from .blocks import PreActBlock, Stem, norm, scale_inputs

DEFAULTS = {"widths": [16, 32, 64, 128], "mask_channels": True, "proj_dim": 32, "dropout": 0.2}


class Encoder(nn.Module):
    """Stem (16^3) -> mid (8^3) -> two SE stages (4^3, 2^3) -> pooled embedding."""

    def __init__(self, cin: int, widths):
        super().__init__()
        w0, w1, w2, w3 = widths
        self.body = nn.Sequential(Stem(cin, w0), PreActBlock(w0, w1, 2), PreActBlock(w1, w2, 2, se=True),
                                  PreActBlock(w2, w3, 2, se=True), norm(w3), nn.SiLU())
        self.dim = w3

    def forward(self, x):
        return self.body(x).mean(dim=(2, 3, 4))


class BaselineNet(nn.Module):
    """`mode` in {"qsm-only", "concat", "rimnet"}."""

    def __init__(self, mode: str, widths=(16, 32, 64, 128), mask_channels=True, proj_dim=32, dropout=0.2):
        super().__init__()
        self.mode, self.mask_channels = mode, mask_channels
        extra = 2 if mask_channels else 0
        if mode == "concat":
            self.enc = Encoder(2 + extra, widths)
            dim = self.enc.dim
        elif mode == "qsm-only":
            self.enc = Encoder(1 + extra, widths)
            dim = self.enc.dim
        elif mode == "rimnet":
            self.enc = Encoder(1 + extra, widths)
            self.enc_f = Encoder(1 + extra, widths)
            dim = 2 * self.enc.dim
        else:
            raise ValueError(mode)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, 64), nn.SiLU(), nn.Linear(64, 1))
        self.proj = nn.Sequential(nn.Linear(dim, 64), nn.SiLU(), nn.Linear(64, proj_dim))

    def forward(self, x) -> dict:
        s = scale_inputs(x)
        m = [2, 3] if self.mask_channels else []
        if self.mode == "concat":
            e = self.enc(s[:, [0, 1] + m])
        elif self.mode == "qsm-only":
            e = self.enc(s[:, [0] + m])
        else:
            e = torch.cat([self.enc(s[:, [0] + m]), self.enc_f(s[:, [1] + m])], dim=1)
        return {"logit": self.head(e).squeeze(1), "proj": self.proj(e), "emb": e}
