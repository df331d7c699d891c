"""Self-supervised cross-modal pre-training of the asymmetric encoders.

Objective (per batch of lesion and white-matter patches):
- cross-modal InfoNCE: the pooled QSM embedding (FiLM off, so no FLAIR leaks into it) and the
  pooled FLAIR embedding of the same location are a positive pair, every other patch of the batch
  a negative. The negatives are what prevents collapse (FRODO's MSE regression of one embedding
  from the other has a constant solution); the embeddings' spread is logged to show it.
- masked-QSM reconstruction: random 4^3 blocks of QSM are zeroed and a small decoder must
  predict them from the QSM mid-level features: forces the QSM encoder to model local
  susceptibility structure, rims included.
Mask and signed-distance channels are zeroed during pre-training: with them, matching a QSM
patch to its FLAIR patch would be solved by the lesion's outline alone.
FRODO's objective (`objective=frodo-mse`: MLP regresses the QSM embedding from the FLAIR one) is
offered for the faithful row.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..models.blocks import QSM_CLIP_PPM, QSM_SCALE
from ..models.registry import build
from ..runtime import progress, versions
from .augment import augment
from .losses import info_nce
from .options import PRETRAIN_DEFAULTS, parse_pretrain_options  # noqa: F401 - PRETRAIN_DEFAULTS re-exported

log = logging.getLogger("rimscope")

PRETRAINABLE = ("asymmetric", "asymmetric-frodo")


class PretrainModel(nn.Module):
    """The network plus what only pre-training needs (projection MLPs, decoder); only `net`'s
    weights are kept as the fine-tuning init."""

    def __init__(self, net, dim: int = 64):
        super().__init__()
        self.net = net
        self.pq = nn.Sequential(nn.Linear(net.emb_dim, 128), nn.SiLU(), nn.Linear(128, dim))
        self.pf = nn.Sequential(nn.LayerNorm(net.flair_dim), nn.Linear(net.flair_dim, 128), nn.SiLU(),
                                nn.Linear(128, dim))
        self.regress = nn.Sequential(nn.Linear(dim, 128), nn.SiLU(), nn.Linear(128, dim))  # frodo-mse
        m = net.mid_dim
        self.decoder = nn.Sequential(nn.ConvTranspose3d(m, 16, 2, 2), nn.GroupNorm(4, 16), nn.SiLU(),
                                     nn.ConvTranspose3d(16, 8, 2, 2), nn.SiLU(), nn.Conv3d(8, 1, 3, padding=1))

    def embeddings(self, x):
        """(QSM projection, FLAIR projection, QSM mid features) of raw patches, mask channels zeroed."""
        x = x.clone()
        x[:, 2:4] = 0.0
        enc = self.net.encode(x, film=False)
        return self.pq(enc["emb"]), self.pf(enc["flair_emb"]), enc["mid"]


def block_mask(n: int, size: int, block: int, ratio: float, gen: torch.Generator) -> torch.Tensor:
    """(n, 1, S, S, S) bool: True where QSM is hidden."""
    g = size // block
    m = torch.rand(n, 1, g, g, g, generator=gen) < ratio
    return m.repeat_interleave(block, 2).repeat_interleave(block, 3).repeat_interleave(block, 4)


def pretrain_loss(pm: PretrainModel, x: torch.Tensor, opts: dict, gen: torch.Generator) -> tuple:
    hide = block_mask(len(x), x.shape[-1], opts["block"], opts["mask_ratio"], gen).to(x.device)
    xm = x.clone()
    xm[:, 0:1] = xm[:, 0:1].masked_fill(hide, 0.0)
    zq, zf, mid = pm.embeddings(xm)
    if opts["objective"] == "frodo-mse":
        contrast = F.mse_loss(pm.regress(zf), zq)
    else:
        contrast = info_nce(zq, zf, opts["tau"])
    target = x[:, 0:1].clamp(-QSM_CLIP_PPM, QSM_CLIP_PPM) * QSM_SCALE
    rec = pm.decoder(mid)
    recon = ((rec - target) ** 2 * hide).sum() / hide.sum().clamp_min(1)
    spread = F.normalize(zq.detach(), dim=1).std(0).mean()
    return contrast + opts["recon_weight"] * recon, float(contrast.detach()), float(recon.detach()), float(spread)


def pretrain(data, options=None, seed: int = 0, device: str = "cpu", quiet: bool = True, out=None,
             model_name: str = "asymmetric") -> dict:
    """Pre-train on `data` (a LesionData, labels ignored, or an array of raw patches). Returns
    {"state": net state_dict, "model": name, "config": ..., "history": [...]}: pass it (or the
    `out` folder) as `init=` to rimscope.train.finetune.fit."""
    options = dict(options or {})
    if "model" in options and isinstance(options["model"], str):  # evaluate's adapter convention
        model_name = options.pop("model")
    opts = parse_pretrain_options(options, model_name)
    if model_name not in PRETRAINABLE:
        raise InputError(f"pre-training is defined for {', '.join(PRETRAINABLE)}, not {model_name!r}")
    x_all = torch.from_numpy(np.ascontiguousarray(getattr(data, "x", data), dtype=np.float32))
    bs = int(opts["batch_size"])
    if len(x_all) < 4:
        raise InputError(f"pre-training needs at least 4 patches, got {len(x_all)}")
    torch.manual_seed(seed)
    model = build(model_name, **opts["model"])
    pm = PretrainModel(model.net).to(device)
    opt = torch.optim.AdamW(pm.parameters(), lr=opts["lr"], weight_decay=opts["weight_decay"])
    epochs = int(opts["epochs"])
    # warm-up then cosine: at full lr from the first step InfoNCE can fall into the constant
    # solution (seen at lr 3e-3 on tiny batches); warm-up keeps it out
    warm = max(1, epochs // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda e: min(1.0, (e + 1) / warm) * 0.5 * (1 + np.cos(np.pi * e / max(1, epochs))))
    history = []
    for epoch in progress(range(epochs), desc=f"pretrain {model_name}", unit="epoch", quiet=quiet):
        t0 = time.time()
        gen = torch.Generator().manual_seed(seed * 104729 + epoch)
        perm = torch.randperm(len(x_all), generator=gen)
        pm.train()
        stats = []
        for b in range(0, len(perm) - min(bs, len(perm)) + 1, bs):  # full batches: InfoNCE needs negatives
            xb = x_all[perm[b:b + bs]]
            if opts["augment"]:
                xb = augment(xb, gen)
            loss, c, r, s = pretrain_loss(pm, xb.to(device), opts, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            stats.append((float(loss.detach()), c, r, s))
        sched.step()
        m = np.mean(stats, axis=0)
        history.append({"epoch": epoch + 1, "loss": float(m[0]), "contrast": float(m[1]), "recon": float(m[2]),
                        "embedding_spread": float(m[3]), "seconds": round(time.time() - t0, 2)})
        log.debug("pretrain %s", history[-1])
    if history and history[-1]["embedding_spread"] < 0.01:
        log.warning("pre-training embeddings collapsed (spread %.4f); try a lower lr or more data",
                    history[-1]["embedding_spread"])
    pm.cpu().eval()
    result = {"state": {k: v.detach().cpu() for k, v in pm.net.state_dict().items()}, "model": model_name,
              "config": model.config, "options": opts, "seed": seed, "n_patches": len(x_all),
              "history": history, "versions": versions(), "heads": pm}
    if out is not None:
        save_pretrained(result, out)
    return result


def save_pretrained(result: dict, out) -> None:
    """out/encoder.pt (state_dict) + out/pretrain.json (model, config, options, history, sha256)."""
    from pathlib import Path

    from ..models.card import sha256_file
    from ..runtime import atomic_path, write_json_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "encoder.pt", suffix=".pt") as tmp:
        torch.save(result["state"], tmp)
    meta = {k: v for k, v in result.items() if k not in ("state", "heads")}
    meta["encoder_sha256"] = sha256_file(out / "encoder.pt")
    write_json_atomic(out / "pretrain.json", meta)
