"""`rimscope bench engine`: lesion-engine examples per second, single process and 2 workers,
and peak memory.

Training streams the engine, so its throughput bounds how fast a model can see 200,000
examples; the target (>= 100 lesions/s on 2 cores) is measured here, never assumed. The shape
library's signed-distance maps are built once (~50 s, reported) and cached on disk
(engine_shapes.warm_library); the rates are then measured on fresh examples, as training sees
them, with every worker loading the cached maps.
"""
from __future__ import annotations

import resource
import time


def run(args) -> int:
    from ..simulate.engine import engine_pool, render_batch
    from ..simulate.engine_config import EngineConfig
    from ..simulate.engine_shapes import library, warm_library

    n = max(int(getattr(args, "repeats", 3) or 1), 1) * 100
    cfg = EngineConfig()
    t0 = time.perf_counter()
    lib = library(cfg.lesion_min_mm3, cfg.lesion_max_mm3, tuple(cfg.donors))
    warm_library(lib)
    print(f"library {len(lib)} shapes, signed-distance maps built or loaded in {time.perf_counter() - t0:.1f} s")
    rates = {}
    for label, pool in (("single process", None), ("2 workers", engine_pool(cfg, 2))):
        render_batch(cfg, 98, 0, 8, pool=pool)  # workers start and load the library
        t0 = time.perf_counter()
        b = render_batch(cfg, 1, 0, n, pool=pool)
        rates[label] = n / (time.perf_counter() - t0)
        if pool is not None:
            pool.terminate()
            pool.join()
        print(f"{label}: {rates[label]:.1f} lesions/s ({n} fresh examples, Rim+ {b.y.mean():.2f})")
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    print(f"peak memory per process: {peak:.0f} MB (target >= 100 lesions/s on 2 cores)")
    return 0
