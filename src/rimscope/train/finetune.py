"""Fine-tuning any registered model on labelled lesions: `fit(...) -> RimModel`.

Networks: focal (or logit-adjusted) loss on class-balanced batches, plus a supervised contrastive
term on the projection head whose weight is learned (softplus(w), with the −½·log softplus(w)
term of uncertainty weighting so the optimiser cannot simply switch it off), physics-aware
augmentation, AdamW with cosine decay, early stopping on validation PR AUC, threshold chosen on
validation. Each epoch is a pure function of (seed, epoch) — sampler, augmentation and dropout are
re-seeded per epoch — so `resume` replays exactly what an uninterrupted run would have done.
Classical models are fitted in one call and thresholded the same way.
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..metrics import choose_threshold
from ..models.card import save_model
from ..models.registry import build, is_neural
from ..runtime import progress, versions
from . import checkpoint as ckpt
from . import distributed as ddp
from .data import LesionData, subset
from .losses import focal_loss, logit_adjusted_loss, rim_voxel_loss, supcon_loss
from .operating import summary
from .options import TRAIN_DEFAULTS, parse_training_options  # noqa: F401 - TRAIN_DEFAULTS re-exported
from .probe import fit_rim_probe
from .rim_supervision import augment_with_rim, finish_head, rim_batch, soft_dice
from .sampling import epoch_indices

log = logging.getLogger("rimscope")


def fit(model_name: str, train: LesionData, val: LesionData | None = None, *, init=None, options=None,
        seed: int = 0, device: str = "cpu", quiet: bool = True, out=None, resume: bool = False,
        describe: dict | None = None, epoch_data=None, patch=None):
    """Fit `model_name` on the labelled lesions of `train`; early stopping and threshold on `val`.
    `describe` (e.g. cohort and labels paths) is recorded in the card's training section.
    `epoch_data(epoch) -> LesionData`, if given, supplies each epoch's training lesions (a
    streamed engine chunk, a pure function of the epoch); `train` then seeds the rim probe.
    `patch` (a PatchConfig) is the geometry and source the data were sampled with (the card's)."""
    opts = parse_training_options(options, model_name)
    train = subset(train, train.y >= 0)
    val = subset(val, val.y >= 0) if val is not None else None
    if len(train) == 0 or len(np.unique(train.y)) < 2:
        raise InputError("training needs labelled Rim+ and Rim- lesions; the labels give "
                         f"{int((train.y == 1).sum())} Rim+ and {int((train.y == 0).sum())} Rim-")
    record = {**(describe or {}), "model": model_name, "options": opts, "seed": seed, "n_train": len(train),
              "n_train_pos": int((train.y == 1).sum()), "n_train_subjects": len(np.unique(train.subject)),
              "n_val": len(val) if val is not None else 0,
              "n_val_pos": int((val.y == 1).sum()) if val is not None else 0,
              "n_val_subjects": len(np.unique(val.subject)) if val is not None else 0}
    torch.manual_seed(seed)  # initial weights: same for every run with this seed, and on every rank
    model = build(model_name, **opts["model"])
    if patch is not None:
        model.patch_config = patch
    if not is_neural(model_name):
        return _fit_classical(model, train, val, opts, seed, record, out)
    return _fit_neural(model, train, val, opts, seed, device, quiet, out, resume, init, record, epoch_data)


def _finish(model, val, opts, record, out, best_epoch=None):
    if is_neural(model.name):
        # a streamed engine's prevalence is not the world's: the caller records the target
        model.calibration = prior_shift(record.get("prevalence_target",
                                                   record["n_train_pos"] / record["n_train"]), opts)
        record["calibration"] = list(model.calibration)
    if val is not None and len(val) and (val.y == 1).any():
        p = model.predict_proba(val.x)
        model.threshold = choose_threshold(val.y, p, opts["threshold_rule"], opts["min_sensitivity"])
        metrics = {"validation": summary(val.y, p, model.threshold)}
        rule = opts["threshold_rule"]
    else:
        log.warning("no validation Rim+ lesion: operating threshold left at 0.5")
        model.threshold, metrics, rule = 0.5, {}, "default 0.5 (no validation Rim+)"
    record.update(best_epoch=best_epoch, threshold_rule=rule, min_sensitivity=opts["min_sensitivity"])
    model.card_extra = {"training": record, "metrics": metrics}
    if out is not None and ddp.is_main():
        save_model(model, out)
    return model


def prior_shift(prevalence: float, opts: dict) -> tuple[float, float]:
    """(scale, shift) that turns a logit learned at the prior the batches showed (balanced: 1/2,
    sqrt: between; the logit-adjusted loss also learns at 1/2) into one at the training
    prevalence. Not fitted on validation: with a dozen validation Rim+ lesions a fitted Platt
    slope swung 0.3-1.1 between folds in our runs, which scrambled the ranking of lesions pooled
    across folds (out-of-fold ROC AUC 0.80 -> 0.75); this shift is a fixed function of the data."""
    pi = min(max(prevalence, 1e-4), 1 - 1e-4)
    if opts["loss"] == "logit-adjusted" or opts["sampler"] == "balanced":
        seen = 0.5
    elif opts["sampler"] == "sqrt":
        seen = math.sqrt(pi) / (math.sqrt(pi) + math.sqrt(1 - pi))
    else:
        seen = pi
    return 1.0, math.log(pi / (1 - pi)) - math.log(seen / (1 - seen))


def _fit_classical(model, train, val, opts, seed, record, out):
    model.fit_arrays(train.x, train.y, seed=seed)
    return _finish(model, val, opts, record, out)


def load_init(init) -> dict:
    """`init`: a state dict, a pre-training output folder (encoder.pt + pretrain.json) or a model
    folder (card.json + weights.pt)."""
    if isinstance(init, dict):
        return init["state"] if isinstance(init.get("state"), dict) else init
    path = Path(init)
    if (path / "encoder.pt").exists() or path.name == "encoder.pt":
        f = path / "encoder.pt" if path.is_dir() else path
        meta = f.parent / "pretrain.json"
        if meta.exists():
            from ..models.card import sha256_file

            if json.loads(meta.read_text(encoding="utf-8")).get("encoder_sha256") != sha256_file(f):
                raise InputError("pre-trained weights do not match pretrain.json (corrupted or "
                                 "replaced); rerun `rimscope pretrain`", f)
        try:
            return torch.load(f, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"cannot read pre-trained weights ({type(exc).__name__}); rerun "
                             "`rimscope pretrain`", f) from None
    from ..models.card import load_model

    return load_model(path).state_dict()


def is_trained_model(init) -> bool:
    """Whether `init` is a trained model's folder (or card), not pre-training output or a state dict:
    its head was trained too, so its untouched self is a model worth keeping."""
    if init is None or isinstance(init, dict):
        return False
    path = Path(init)
    return (path / "card.json").is_file() or (path.name == "card.json" and path.is_file())


def _apply_init(net, state: dict) -> bool:
    """Load the same-named, same-shaped tensors of `state`; True when they make up the whole net."""
    own = net.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if len(usable) < 0.5 * len(own):  # a few same-shaped head layers by chance are no init
        raise InputError(f"the --init weights share no layer structure with this model (only "
                         f"{len(usable)}/{len(own)} tensors fit); pre-train with the same --model "
                         "and model options")
    net.load_state_dict(usable, strict=False)
    log.info("initialised %d/%d tensors from --init", len(usable), len(own))
    return len(usable) == len(own)


def _loss(out, y, opts, prior, w, rim=None):
    logit = out["logit"]
    if opts["loss"] == "focal":
        loss = focal_loss(logit, y, opts["gamma"])
    elif opts["loss"] == "logit-adjusted":
        loss = logit_adjusted_loss(logit, y, prior)
    else:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y.float())
    if opts["supcon"]:
        s = torch.nn.functional.softplus(w)
        loss = loss + s * supcon_loss(out["proj"], y, opts["supcon_tau"]) - 0.5 * torch.log(s)
    if rim is not None and "rim_logits" in out and opts["rim_loss_weight"]:  # dense voxel truth
        loss = loss + opts["rim_loss_weight"] * rim_voxel_loss(out["rim_logits"], rim)
    return loss


def _scorable(val) -> bool:
    return val is not None and len(val) > 0 and bool((val.y == 1).any()) and bool((val.y == 0).any())


def _val_score(model, val, device, entry: dict) -> float:
    """Validation PR AUC (the early-stopping score); ROC AUC and PR AUC go into `entry`, and for
    a voxel head with validation rim truth its soft Dice (`val_rim_dice`)."""
    truth = getattr(val, "rim", None)  # only then are voxel probabilities worth computing
    proba, voxels = (model.predict_with_rims(val.x, device) if truth is not None
                     else (model.predict_proba(val.x, device), None))
    s = summary(val.y, proba, 0.5)
    entry.update(val_pr_auc=s["pr_auc"], val_roc_auc=s["roc_auc"])
    if voxels is not None:
        entry["val_rim_dice"] = soft_dice(voxels, truth)
    return s["pr_auc"]


def _fit_neural(model, train, val, opts, seed, device, quiet, out, resume, init, record, epoch_data=None):
    rank, world, device = ddp.setup(device)
    net = model.net
    complete = False
    if init is not None:
        complete = _apply_init(net, load_init(init)) and is_trained_model(init)
        record["init"] = str(init) if not isinstance(init, dict) else "state dict"
    if opts["rim_probe"] and fit_rim_probe(net, train.x, train.y):  # deterministic: resume-safe
        record["rim_probe"] = "rim_skip set to a logistic regression on the training lesions' rim statistics"
    dense = getattr(net, "rim_decoder", None) is not None  # rim voxel truth only feeds a voxel head
    if dense and getattr(train, "rim", None) is None:
        net.rim_decoder.requires_grad_(False)  # no voxel truth to learn from (and DDP sees no idle weights)
    net.to(device)
    w0 = math.log(math.expm1(opts["supcon_init"]))
    w = torch.nn.Parameter(torch.tensor(w0, device=device))
    opt = torch.optim.AdamW([{"params": net.parameters()}, {"params": [w], "weight_decay": 0.0}],
                            lr=opts["lr"], weight_decay=opts["weight_decay"])
    epochs, bs = int(opts["epochs"]), int(opts["batch_size"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: min(1.0, (e + 1) / max(1, opts["warmup_epochs"]))
                                              * 0.5 * (1 + math.cos(math.pi * min(e, epochs) / max(1, epochs))))
    prior = float((train.y == 1).mean()) if opts["sampler"] == "natural" else 0.5
    fingerprint = json.dumps({k: record[k] for k in ("model", "options", "seed", "n_train", "n_val")},
                             sort_keys=True, default=str)
    state = {"epoch": 0, "best_score": -1.0, "best_epoch": 0, "best_state": None, "history": [], "stopped": False}
    if resume and out is not None:
        loaded = ckpt.load(out, fingerprint)
        if loaded is not None:
            net.load_state_dict(loaded["net"])
            opt.load_state_dict(loaded["opt"])
            sched.load_state_dict(loaded["sched"])
            with torch.no_grad():
                w.copy_(loaded["w"].to(device))
            state = loaded["state"]
            log.info("resuming after epoch %d", state["epoch"])
    # a net that starts as a model (the fitted probe, or a whole trained model given as --init:
    # fine-tuning must be able to keep what it started from) competes as epoch 0; a randomly
    # initialised or encoder-only one would only win by validation noise, so it does not
    if state["epoch"] == 0 and _scorable(val) and (record.get("rim_probe") or complete):
        entry = {"epoch": 0}
        state.update(best_score=_val_score(model, val, device, entry), best_epoch=0,
                     best_state={k: v.detach().cpu().clone() for k, v in net.state_dict().items()})
        state["history"].append(entry)
    dnet = ddp.wrap(net, device, find_unused=not opts["supcon"])
    xs_train = torch.from_numpy(train.x)
    ys_train = torch.from_numpy(train.y)
    current = train
    bar = progress(range(state["epoch"], epochs), desc=f"train {model.name}", unit="epoch",
                   quiet=quiet or rank != 0)
    t_start = time.time()
    for epoch in bar:
        if state["stopped"]:
            break
        t0 = time.time()
        torch.manual_seed(seed * 7919 + epoch + 1)  # dropout
        gen = torch.Generator().manual_seed(seed * 104729 + epoch)  # augmentation
        if epoch_data is not None:  # a fresh chunk per epoch: same (seed, epoch), same chunk
            current = epoch_data(epoch)
            xs_train, ys_train = torch.from_numpy(current.x), torch.from_numpy(current.y)
        idx = epoch_indices(current.y, epoch, seed, rank, world, opts["sampler"], bs)
        dnet.train()
        losses = []
        for b in range(0, len(idx), bs):
            bi = torch.from_numpy(idx[b:b + bs])
            xb, yb, rb = xs_train[bi], ys_train[bi], rim_batch(current, bi) if dense else None
            if opts["augment"]:
                xb, rb = augment_with_rim(xb, rb, gen, opts["offset_ppm"])
            xb, yb = xb.to(device), yb.to(device)
            loss = _loss(dnet(xb), yb, opts, prior, w, None if rb is None else rb.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if world > 1 and w.grad is not None:  # w lives outside DDP: average its gradient by hand
                torch.distributed.all_reduce(w.grad)
                w.grad /= world
            opt.step()
            losses.append(float(loss.detach()))
        sched.step()
        entry = {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else float("nan"),
                 "supcon_weight": float(torch.nn.functional.softplus(w.detach())), "seconds": round(time.time() - t0, 2)}
        if _scorable(val):
            score = _val_score(model, val, device, entry)
        else:
            score = float(epoch)  # no validation: the last epoch wins
        state["history"].append(entry)
        state["epoch"] = epoch + 1
        if score > state["best_score"]:
            state.update(best_score=score, best_epoch=epoch + 1,
                         best_state={k: v.detach().cpu().clone() for k, v in net.state_dict().items()})
        elif epoch + 1 - state["best_epoch"] >= opts["patience"]:
            state["stopped"] = True
        if opts["max_minutes"] and (time.time() - t_start) / 60 >= float(opts["max_minutes"]):
            log.info("max_minutes=%s reached after epoch %d", opts["max_minutes"], epoch + 1)
            state["stopped"] = True
            state["stopped_by"] = "max_minutes"  # in the checkpoint: a resumed run's card keeps it
        state["stopped"] = ddp.broadcast_flag(state["stopped"])
        log.debug("epoch %s", entry)
        if out is not None and rank == 0:
            ckpt.save(out, fingerprint, net, opt, sched, w, state)
        if state["stopped"]:
            log.info("early stop after epoch %d (best %d)", epoch + 1, state["best_epoch"])
            break
    if state["best_state"] is not None:
        net.load_state_dict(state["best_state"])
    net.to("cpu").eval()
    record.update(history=state["history"], epochs_run=state["epoch"], world_size=world, device=device,
                  versions=versions(), **({"stopped_by": state["stopped_by"]} if "stopped_by" in state else {}))
    finish_head(model, val, state["history"], state["best_epoch"], record)
    ddp.barrier()
    return _finish(model, val, opts, record, out, best_epoch=state["best_epoch"])
