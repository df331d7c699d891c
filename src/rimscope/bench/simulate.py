"""`rimscope bench simulate`: seconds and peak memory per subject in the default 1 mm setting.

Cohorts of 40+ subjects are simulated on shared laptops and CI runners, so the per-subject cost
is a target (≤ 20 s, ≤ 4 GB on 2 cores) that is measured, not assumed. Each subject runs in a
fresh process so its peak memory (ru_maxrss) is its own.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from rimscope.simulate.config import SimConfig
from rimscope.simulate.cohort_writer import write_subject
from rimscope.simulate.subject import simulate_subject
from pathlib import Path
cfg = SimConfig(voxel_mm=[1.0, 1.0], p_anisotropic=0.0, **json.loads(sys.argv[3]))
t0 = time.perf_counter()
s = simulate_subject(cfg, 0, int(sys.argv[1]))
t1 = time.perf_counter()
write_subject(Path(sys.argv[2]), "%03d" % int(sys.argv[1]), s, True)
t2 = time.perf_counter()
print(json.dumps({"simulate_s": t1 - t0, "write_s": t2 - t1, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "shape": list(s.qsm.shape), "lesions": len(s.truth["lesions"]),
                  "inversion": s.truth["acquisition"]["inversion"]["kind"]}))
"""


def run(args) -> int:
    repeats = max(int(getattr(args, "repeats", 3) or 1), 1)
    extra = {}
    out = Path(args.out) if getattr(args, "out", None) else Path(tempfile.mkdtemp(prefix="rimscope-bench-sim-"))
    rows = []
    for i in range(repeats):
        r = subprocess.run([sys.executable, "-c", CHILD, str(i), str(out), json.dumps(extra)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            return 1
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
        d = rows[-1]
        print(f"subject {i}: {d['simulate_s']:.1f} s simulate + {d['write_s']:.1f} s write, peak "
              f"{d['peak_mb']:.0f} MB, grid {d['shape']}, {d['lesions']} lesions, {d['inversion']}")
    sim = sorted(d["simulate_s"] + d["write_s"] for d in rows)
    peak = max(d["peak_mb"] for d in rows)
    print(f"default 1 mm configuration, {repeats} subjects: median {sim[len(sim) // 2]:.1f} s/subject "
          f"(target <= 20 s), peak memory {peak:.0f} MB (target <= 4096 MB); first includes loading "
          "the host brain and lesion library")
    return 0
