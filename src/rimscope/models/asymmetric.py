"""The asymmetric QSM-FLAIR network (rimscope's method) and its FRODO-faithful configuration.

Why asymmetric: the rim is a QSM finding (a 1-2 voxel paramagnetic shell); FLAIR only says where
the lesion and its surroundings are. So QSM gets the full-depth encoder and FLAIR a light one
whose features *condition* the QSM features by spatial FiLM at mid resolution — (1+γ)·z+β with
γ, β from FLAIR by zero-initialised 1x1x1 convs, so training starts from a pure QSM network —
and never the reverse. Deeper stages see QSM-dominant features only (with squeeze-excitation),
and the head reads the pooled QSM embedding with analytic rim statistics (blocks.rim_features).

Why a linear path from the rim statistics to the logit (`rim_skip`): a labelled cohort holds a
few dozen Rim+ lesions, too few for a randomly initialised head to even reach the
shell-minus-surround rule a rater applies. The path starts as that rule; training first sets it
to a logistic regression on the training lesions' statistics (rimscope.train.probe) and the
network learns a residual on it (the benchmark's "w/o rim probe" ablation switches both off).
"""
from __future__ import annotations

import torch
from torch import nn

from .blocks import (N_PROFILE_FEATURES, N_RIM_FEATURES, RIM_FEATURE_SCALE, PreActBlock, Stem, frodo_mask,
                     norm, rim_features, scale_inputs)
from .features import RIM_CONTRAST_PRIOR
from .rim_decoder import N_SUMMARY, RimDecoder, pooled_summary

RULE_FEATURE = 3  # rim_features' shell minus surround, in units of 10 ppb
RULE_SLOPE = RIM_CONTRAST_PRIOR[0] / RIM_FEATURE_SCALE
RULE_BIAS = RIM_CONTRAST_PRIOR[1]

DEFAULTS = {
    "widths": [16, 32, 64, 128],  # QSM: stem (16^3), mid (8^3), deep (4^3, 2^3)
    "flair_widths": [8, 16],  # light FLAIR context encoder: 16^3, 8^3
    "flair_stem": "light",  # "light": two strided convs to 8^3, one block there; "full": like QSM
    "mask_channels": True,  # lesion mask + signed edge distance as input channels
    "frodo_mask": False,  # FRODO's dilated-lesion input masking
    "film": True,
    "rim_features": True,  # analytic shell/core/surround means into the head
    "rim_skip": True,  # ...and a linear path from them to the logit (the rule; a probe once trained)
    "rim_profile": False,  # ...with blocks.radial_profile's five layer-by-layer contrasts
    "proj_dim": 32,  # SupCon projection head
    "dropout": 0.2,
    "rim_head": False,  # a voxel head (rim_decoder) adding out["rim_logits"] (N, 32, 32, 32)
}

# FRODO's published design as faithfully as a CPU budget allows: symmetric 16->32 stems, FiLM,
# 1x1x1 fusion, QSM-only 64/128 stages with SE; no mask channel (input masking instead), no
# analytic features. (64^3 patches are replaced by rimscope's 32^3 at 1 mm.)
FRODO = dict(DEFAULTS, flair_widths=[16, 32], flair_stem="full", mask_channels=False, frodo_mask=True,
             rim_features=False, rim_skip=False)


class AsymmetricNet(nn.Module):
    def __init__(self, **options):
        """Options as in DEFAULTS (the one source of their default values)."""
        super().__init__()
        o = {**DEFAULTS, **options}
        unknown = set(o) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"unknown AsymmetricNet option(s) {sorted(unknown)}")
        widths, flair_widths, flair_stem = o["widths"], o["flair_widths"], o["flair_stem"]
        mask_channels, frodo_mask, film = o["mask_channels"], o["frodo_mask"], o["film"]
        rim_features, rim_skip, proj_dim, dropout = o["rim_features"], o["rim_skip"], o["proj_dim"], o["dropout"]
        rim_head = o["rim_head"]
        self.rim_profile = bool(o["rim_profile"]) and rim_features
        n_rim = N_RIM_FEATURES + (N_PROFILE_FEATURES if self.rim_profile else 0)
        w0, w1, w2, w3 = widths
        f0, f1 = flair_widths
        self.mask_channels, self.use_frodo_mask = mask_channels, frodo_mask
        self.use_film, self.use_rim = film, rim_features
        qin, fin = (3, 2) if mask_channels else (1, 1)
        self.q_stem = Stem(qin, w0)
        self.q_mid = PreActBlock(w0, w1, stride=2)
        if flair_stem == "full":  # FRODO: a residual stem like the QSM one
            self.f_stem = Stem(fin, f0)
            self.f_mid = PreActBlock(f0, f1, stride=2)
        elif flair_stem == "light":  # context only: no residual block at 16^3, where convs cost most
            self.f_stem = nn.Sequential(nn.Conv3d(fin, f0, 3, 2, 1, bias=False), norm(f0), nn.SiLU())
            self.f_mid = nn.Sequential(nn.Conv3d(f0, f1, 3, 2, 1, bias=False), PreActBlock(f1, f1))
        else:
            raise ValueError(f"flair_stem {flair_stem!r} is not light or full")
        self.gamma = nn.Conv3d(f1, w1, 1)
        self.beta = nn.Conv3d(f1, w1, 1)
        for c in (self.gamma, self.beta):  # start as a pure QSM network
            nn.init.zeros_(c.weight)
            nn.init.zeros_(c.bias)
        self.fuse = nn.Conv3d(w1, w1, 1)
        self.q_deep = nn.Sequential(PreActBlock(w1, w2, 2, se=True), PreActBlock(w2, w3, 2, se=True))
        self.out_norm = nn.Sequential(norm(w3), nn.SiLU())
        # the voxel head, and its pooled rim-map summary into the classifier head
        self.rim_decoder = RimDecoder(w0, w1, raw_ch=qin) if rim_head else None
        hin = w3 + (n_rim if rim_features else 0) + (N_SUMMARY if rim_head else 0)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hin, 64), nn.SiLU(), nn.Linear(64, 1))
        # the logit starts *as* rim-contrast's prior map (shell minus surround, +30 ppb -> p =
        # 0.5): the linear path holds the rule and the head's last layer is zero, so the deep
        # features add a residual only where training supports one
        self.rim_skip = None
        if rim_features and rim_skip:
            self.rim_skip = nn.Linear(n_rim, 1)
            with torch.no_grad():
                self.rim_skip.weight.zero_()
                self.rim_skip.weight[0, RULE_FEATURE] = RULE_SLOPE
                self.rim_skip.bias.fill_(RULE_BIAS)
                nn.init.zeros_(self.head[-1].weight)
                nn.init.zeros_(self.head[-1].bias)
        self.proj = nn.Sequential(nn.Linear(w3, 64), nn.SiLU(), nn.Linear(64, proj_dim))
        self.emb_dim, self.flair_dim, self.mid_dim = w3, f1, w1

    def rim_stats(self, x: torch.Tensor) -> torch.Tensor:
        """The analytic rim statistics this net reads (blocks.rim_features)."""
        return rim_features(x, profile=self.rim_profile)

    def split(self, x):
        """Raw patches -> (QSM-branch input, FLAIR-branch input). FLAIR never sees QSM."""
        if self.use_frodo_mask:
            x = frodo_mask(x)
        s = scale_inputs(x)
        if self.mask_channels:
            return s[:, [0, 2, 3]], s[:, [1, 3]]
        return s[:, 0:1], s[:, 1:2]

    def encode(self, x, film: bool = True, flair_emb: bool = True) -> dict:
        """Features for pre-training and the head: QSM mid features (after FiLM if `film`), the
        pooled QSM embedding and (if asked: pre-training only, so DDP sees no unused
        parameter when fine-tuning) the pooled FLAIR embedding."""
        xq, xf = self.split(x)
        stem = self.q_stem(xq)
        zq = self.q_mid(stem)
        zf = self.f_mid(self.f_stem(xf))
        if self.use_film and film:
            zq = (1.0 + self.gamma(zf)) * zq + self.beta(zf)
        zq = self.fuse(zq)
        deep = self.out_norm(self.q_deep(zq))
        out = {"mid": zq, "emb": deep.mean(dim=(2, 3, 4))}
        if self.rim_decoder is not None:
            out["rim_logits"] = self.rim_decoder(stem, zq, xq)
        if flair_emb:
            out["flair_emb"] = zf.mean(dim=(2, 3, 4))  # pre-training's own head normalises it
        return out

    def forward(self, x) -> dict:
        enc = self.encode(x, flair_emb=False)
        h = enc["emb"]
        if self.use_rim:
            rf = self.rim_stats(x)
            h = torch.cat([h, rf], dim=1)
        if self.rim_decoder is not None:  # read, never shaped, by the lesion loss (see rim_decoder)
            h = torch.cat([h, pooled_summary(enc["rim_logits"].detach(), x[:, 3])], dim=1)
        logit = self.head(h).squeeze(1)
        if self.rim_skip is not None:
            logit = logit + self.rim_skip(rf).squeeze(1)
        out = {"logit": logit, "proj": self.proj(enc["emb"]), "emb": enc["emb"]}
        if self.rim_decoder is not None:
            out["rim_logits"] = enc["rim_logits"]
        return out
