"""`rimscope bench engine`: lesion-engine examples per second, single process and 2 workers,
and peak memory.

Training streams the engine, so its throughput bounds how fast a model can see 200,000
examples; the target (>= 100 lesions/s on 2 cores) is measured here, never assumed. Loading the
lesion library is excluded; each shape's signed-distance map is built the first time a process
draws it (~30 ms), so short runs ("cold") are slower than the steady state of a long one ("warm":
the same examples again, maps built).
"""
from __future__ import annotations

import resource
import time


def run(args) -> int:
    from ..simulate.engine import engine_pool, render_batch
    from ..simulate.engine_config import EngineConfig
    from ..simulate.engine_shapes import library

    n = max(int(getattr(args, "repeats", 3) or 1), 1) * 100
    cfg = EngineConfig()
    t0 = time.perf_counter()
    library(cfg.lesion_min_mm3, cfg.lesion_max_mm3, tuple(cfg.donors))
    render_batch(cfg, 99, 0, 8)  # warm: every shape drawn builds its map once
    print(f"library {len(library(cfg.lesion_min_mm3, cfg.lesion_max_mm3, ()))} shapes, loaded and warmed in "
          f"{time.perf_counter() - t0:.1f} s")
    rates = {}
    for label, pool in (("single process", None), ("2 workers", engine_pool(cfg, 2))):
        if pool is not None:
            render_batch(cfg, 98, 0, 8, pool=pool)  # the workers load the library
        for state in ("cold", "warm"):  # cold: most shapes build their map; warm: the same again
            t0 = time.perf_counter()
            b = render_batch(cfg, 1, 0, n, pool=pool)
            rates[label, state] = n / (time.perf_counter() - t0)
        if pool is not None:
            pool.terminate()
            pool.join()
        print(f"{label}: {rates[label, 'warm']:.1f} lesions/s with shape maps built, "
              f"{rates[label, 'cold']:.1f} lesions/s building them ({n} examples, Rim+ {b.y.mean():.2f})")
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    print(f"peak memory per process: {peak:.0f} MB (target >= 100 lesions/s on 2 cores)")
    return 0
