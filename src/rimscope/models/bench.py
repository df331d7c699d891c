"""`rimscope bench models`: one table, every model side by side in one run — parameters,
inference lesions/s and seconds per fine-tuning epoch on 1,000 lesions (synthetic patches).

Targets (issue 5): `asymmetric` >= 100 lesions/s on 2 CPU cores, <= 60 s per epoch on 1,000
lesions, and no slower than `rimnet` at inference. Numbers depend on the machine and its load;
the table prints the thread count and device so figures can be compared fairly.
"""
from __future__ import annotations

import time

import numpy as np
import torch

EPOCH_LESIONS = 1000


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def train_epoch_seconds(model, x, y, device: str, batch_size: int = 32, steps: int = 4) -> float:
    """Seconds for one fine-tuning epoch on EPOCH_LESIONS, extrapolated from `steps` timed steps
    of the real training step (augmentation, focal + SupCon loss, backward, AdamW)."""
    from ..train.augment import augment  # bench-only import: timing the real step
    from ..train.losses import focal_loss, supcon_loss

    net = model.net.to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    xt, yt = torch.from_numpy(x[:batch_size]), torch.from_numpy(y[:batch_size])

    def step():
        xb = augment(xt, gen).to(device)
        out = net(xb)
        loss = focal_loss(out["logit"], yt.to(device)) + 0.1 * supcon_loss(out["proj"], yt.to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    step()  # warm-up
    t = _median_time(step, steps)
    return t * EPOCH_LESIONS / batch_size


def run(args) -> int:
    from ..runtime import resolve_device
    from .registry import MODELS, NEURAL, build
    from .synthetic import synthetic_patches

    device = resolve_device(getattr(args, "device", "auto"))
    repeats = int(getattr(args, "repeats", 3))
    n_inf = 256
    x, y, _ = synthetic_patches(n_inf, seed=0)
    print(f"# device={device} torch_threads={torch.get_num_threads()} inference on {n_inf} patches "
          f"(median of {repeats}); epoch = {EPOCH_LESIONS} lesions, batch 32")
    print("model\tparameters\tinference_lesions_per_s\ts_per_epoch_1000")
    rows = {}
    warm = build("qsm-only", widths=[8, 16, 16, 16])  # first-call costs (allocator, kernels) hit no row
    train_epoch_seconds(warm, x, y, device, steps=1)
    for name in MODELS:
        torch.manual_seed(0)
        model = build(name)
        if name in NEURAL:
            params = model.n_parameters()
            model.predict_proba(x[:32], device)  # warm-up
            t = _median_time(lambda: model.predict_proba(x, device), repeats)
            epoch = train_epoch_seconds(model, x, y, device)
        else:
            t0 = time.perf_counter()
            model.fit_arrays(x, y)
            fit_s = time.perf_counter() - t0
            params = sum(v.numel() for v in model.state_dict().values())
            t = _median_time(lambda: model.predict_proba(x, device), repeats)
            epoch = fit_s * EPOCH_LESIONS / n_inf  # one full fit: classical models have no epochs
        rows[name] = n_inf / t
        print(f"{name}\t{params}\t{n_inf / t:.1f}\t{epoch:.1f}", flush=True)
    if "asymmetric" in rows and "rimnet" in rows:
        verdict = "yes" if rows["asymmetric"] >= rows["rimnet"] else "NO"
        print(f"# asymmetric no slower than rimnet at inference: {verdict} "
              f"({rows['asymmetric']:.1f} vs {rows['rimnet']:.1f} lesions/s)")
    return 0
