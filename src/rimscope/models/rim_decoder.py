"""A light voxel head: the asymmetric net's QSM features back to 32³ rim logits.

Why: which voxels carry the rim is the output a quantitative study needs, and dense voxel truth
(the lesion engine and the simulator know it) is a far stronger training signal than one label
per lesion. Kept cheap on CPU: the mid features (8³, after FiLM) are upsampled to the stem's 16³
and merged with it (a U-Net skip), one 3x3x3 conv there, then a trilinear upsample to 32³ where a
1x1x1 conv reads those features with the raw QSM, mask and signed-distance channels (the full-
resolution skip that places the rim at its voxel). No convolution runs at 32³ except 1x1x1.
`pooled_summary` gives the classifier a few numbers from the rim map (how much of the edge the
head thinks is rim, and how strongly). The classifier reads them detached: with the lesion
loss's gradient flowing back through them, a long-trained head learned to paint a rim only where
the lesion is called Rim+ (all or nothing per lesion) and missed the rims of lesions rated low.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import norm

N_SUMMARY = 3


class RimDecoder(nn.Module):
    def __init__(self, stem_ch: int, mid_ch: int, width: int = 8, raw_ch: int = 3):
        super().__init__()
        self.up_mid = nn.Conv3d(mid_ch, width, 1, bias=False)
        self.skip = nn.Conv3d(stem_ch, width, 1, bias=False)
        self.block = nn.Sequential(norm(width), nn.SiLU(), nn.Conv3d(width, width, 3, 1, 1, bias=False),
                                   norm(width), nn.SiLU())
        self.out = nn.Sequential(nn.Conv3d(width + raw_ch, width, 1), nn.SiLU(), nn.Conv3d(width, 1, 1))

    def forward(self, stem: torch.Tensor, mid: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        """stem (N, C0, 16³), mid (N, C1, 8³), raw (N, raw_ch, 32³) -> rim logits (N, 32, 32, 32)."""
        h = F.interpolate(self.up_mid(mid), size=stem.shape[2:], mode="trilinear", align_corners=False)
        h = self.block(h + self.skip(stem))
        h = F.interpolate(h, size=raw.shape[2:], mode="trilinear", align_corners=False)
        return self.out(torch.cat([h, raw], dim=1)).squeeze(1)


def pooled_summary(rim_logits: torch.Tensor, sdist: torch.Tensor) -> torch.Tensor:
    """(N, 3): mean rim probability over the edge band (|d| <= 1.5 mm), its 90th-percentile-like
    soft maximum, and the fraction of the band above 0.5 — what a rater reads off a rim map."""
    p = torch.sigmoid(rim_logits).flatten(1)
    band = (sdist.flatten(1).abs() <= 1.5 / 6.0).to(p.dtype)
    n = band.sum(1).clamp_min(1.0)
    mean = (p * band).sum(1) / n
    soft_max = torch.logsumexp(10.0 * p + torch.log(band.clamp_min(1e-6)), dim=1) / 10.0 - torch.log(n) / 10.0
    above = ((p > 0.5).to(p.dtype) * band).sum(1) / n
    return torch.stack([mean, soft_max, above], dim=1)
