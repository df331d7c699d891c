"""`rimscope bench engine`: lesion-engine examples per second, single process and 2 workers,
and peak memory.

Training streams the engine, so its throughput bounds how fast a model can see 200,000
examples; the target (>= 100 lesions/s on 2 cores) is measured here, never assumed. The first
examples pay for loading the lesion library and are excluded from the timing.
"""
from __future__ import annotations

import resource
import time


def run(args) -> int:
    from .engine import engine_pool, render_batch
    from .engine_config import EngineConfig
    from .engine_shapes import library

    n = max(int(getattr(args, "repeats", 3) or 1), 1) * 100
    cfg = EngineConfig()
    t0 = time.perf_counter()
    library(cfg.lesion_min_mm3, cfg.lesion_max_mm3, tuple(cfg.donors))
    render_batch(cfg, 99, 0, 8)  # warm: every shape drawn builds its map once
    print(f"library {len(library(cfg.lesion_min_mm3, cfg.lesion_max_mm3, ()))} shapes, loaded and warmed in "
          f"{time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    b = render_batch(cfg, 1, 0, n)
    single = n / (time.perf_counter() - t0)
    print(f"single process: {single:.1f} lesions/s ({n} examples, Rim+ share {b.y.mean():.2f})")
    pool = engine_pool(cfg, 2)
    render_batch(cfg, 98, 0, 8, pool=pool)  # the workers load the library
    t0 = time.perf_counter()
    render_batch(cfg, 2, 0, 2 * n, pool=pool)
    dual = 2 * n / (time.perf_counter() - t0)
    pool.terminate()
    pool.join()
    print(f"2 workers: {dual:.1f} lesions/s ({2 * n} examples)")
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    print(f"peak memory per process: {peak:.0f} MB (target >= 100 lesions/s on 2 cores)")
    return 0
