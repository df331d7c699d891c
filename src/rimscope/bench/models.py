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
    """Seconds for one fine-tuning epoch on EPOCH_LESIONS, extrapolated from `steps` timed steps:
    a B0-axis rotation + flip, forward, BCE on the logit plus a similarity term on the projection
    (stand-ins for focal + SupCon, same tensors touched), backward, AdamW: the loss terms are a
    negligible share of a step next to the 3D convolutions, so the models are timed on their own."""
    net = model.net.to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    xt = torch.from_numpy(x[:batch_size])
    yt = torch.from_numpy(y[:batch_size]).float().to(device)

    def step():
        xb = torch.flip(torch.rot90(xt, 1, dims=(2, 3)), dims=(4,)).to(device)
        out = net(xb)
        z = torch.nn.functional.normalize(out["proj"], dim=1)
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(out["logit"], yt)
                + 0.1 * torch.logsumexp(z @ z.t() / 0.1, dim=1).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    step()  # warm-up
    t = _median_time(step, steps)
    return t * EPOCH_LESIONS / batch_size


def run(args) -> int:
    """Models are timed round-robin (every round times every model) and the best round is kept:
    on a shared machine, load then hits all rows alike and the fastest round is the least
    disturbed one. The median round is printed too."""
    from ..runtime import resolve_device
    from ..models.registry import MODELS, build, is_neural
    from ..models.synthetic import synthetic_patches

    device = resolve_device(getattr(args, "device", "auto"))
    repeats = max(1, int(getattr(args, "repeats", 3)))
    n_inf = 256
    x, y, _ = synthetic_patches(n_inf, seed=0)
    print(f"# device={device} torch_threads={torch.get_num_threads()} load_avg={_load()} inference on "
          f"{n_inf} patches; epoch = {EPOCH_LESIONS} lesions, batch 32 (from 2 timed steps per round); "
          f"{repeats} round-robin rounds, best (median)")
    warm = build("qsm-only", widths=[8, 16, 16, 16])  # first-call costs (allocator, kernels) hit no row
    train_epoch_seconds(warm, x, y, device, steps=1)
    models, params, inf, ep = {}, {}, {n: [] for n in MODELS}, {n: [] for n in MODELS}
    for name in MODELS:
        torch.manual_seed(0)
        models[name] = build(name)
        if is_neural(name):
            params[name] = models[name].n_parameters()
            models[name].predict_proba(x[:32], device)  # warm-up
        else:
            t0 = time.perf_counter()
            models[name].fit_arrays(x, y)
            ep[name].append((time.perf_counter() - t0) * EPOCH_LESIONS / n_inf)  # a full fit, no epochs
            params[name] = sum(v.numel() for v in models[name].state_dict().values())
    for _ in range(repeats):
        for name, model in models.items():
            inf[name].append(n_inf / _median_time(lambda: model.predict_proba(x, device), 1))
            if is_neural(name):
                ep[name].append(train_epoch_seconds(model, x, y, device, steps=2))
    print("model\tparameters\tinference_lesions_per_s\ts_per_epoch_1000")
    for name in MODELS:
        print(f"{name}\t{params[name]}\t{max(inf[name]):.1f} ({np.median(inf[name]):.1f})\t"
              f"{min(ep[name]):.1f} ({np.median(ep[name]):.1f})")
    a, r = max(inf["asymmetric"]), max(inf["rimnet"])
    print(f"# asymmetric no slower than rimnet at inference: {'yes' if a >= r else 'NO'} "
          f"({a:.1f} vs {r:.1f} lesions/s, best rounds)")
    return 0


def _load() -> str:
    try:
        import os

        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "?"
