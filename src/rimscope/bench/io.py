"""`rimscope bench io`: how long the input path takes on a full-size subject.

Loading and patch extraction run once per subject per command (and per epoch without the cache),
so they must stay cheap next to the network: targets are load+validate <= 2 s and 50 patches <= 1 s
for a 256x256x176 subject on 2 CPU cores. The subject is synthetic (written to a temp folder),
so the figures are reproducible anywhere.
"""
from __future__ import annotations

import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE = (256, 256, 176)
N_LESIONS = 50
TARGETS_S = {"load_subject": 2.0, "extract_patches": 1.0}


def synthetic_subject(folder, shape=SHAPE, n_lesions=N_LESIONS, seed=0) -> dict:
    """Write a QSM (float32 ppm, masked), a FLAIR (int16) and a binary lesion mask (uint8) with
    `n_lesions` separate ellipsoids inside an ellipsoidal brain; return the paths."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    c = (np.array(shape) - 1) / 2
    radii = np.array(shape) * 0.42
    brain = sum(((g - ci) / ri) ** 2 for g, ci, ri in zip(grids, c, radii)) <= 1
    qsm = (rng.standard_normal(shape, dtype=np.float32) * 0.03) * brain
    flair = (300 + 20 * rng.standard_normal(shape, dtype=np.float32)) * brain
    mask = np.zeros(shape, np.uint8)
    placed = []
    for _ in range(100 * n_lesions):
        if len(placed) == n_lesions:
            break
        centre = c + (rng.uniform(-0.6, 0.6, 3) * radii)
        if any(np.linalg.norm(centre - p) < 14 for p in placed):
            continue
        placed.append(centre)
        r = rng.uniform(2.0, 5.0, 3)
        lo = np.maximum(np.floor(centre - r - 1).astype(int), 0)
        hi = np.minimum(np.ceil(centre + r + 2).astype(int), shape)
        sub = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
        ball = sum(((g - ci) / ri) ** 2 for g, ci, ri in zip(sub, centre, r)) <= 1
        win = tuple(slice(a, b) for a, b in zip(lo, hi))
        mask[win] |= ball.astype(np.uint8)
        flair[win] += 200 * ball
        qsm[win] += 0.05 * ball
    if len(placed) < n_lesions:
        raise ValueError(f"cannot place {n_lesions} separate lesions in a {shape} volume")
    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    aff[:3, 3] = -(np.array(shape) / 2)
    paths = {}
    for role, arr in (("qsm", qsm.astype(np.float32)), ("flair", flair.astype(np.int16)),
                      ("lesions", mask)):
        p = folder / f"sub-bench_{role}.nii.gz"
        img = nib.Nifti1Image(arr, aff)
        img.header.set_qform(aff, code=1)
        img.header.set_sform(aff, code=1)
        nib.save(img, str(p))
        paths[role] = p
    return paths


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports kB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def measure(paths: dict, repeats: int) -> dict:
    from ..io import load_subject
    from ..patches import PatchConfig, extract_patches

    res = {"load_subject": [], "extract_patches": [], "load_subject_cpu": [],
           "extract_patches_cpu": [], "n_lesions": 0}
    for _ in range(max(1, repeats)):
        t0, c0 = time.perf_counter(), time.process_time()
        subject = load_subject(subject_id="bench", **paths)
        t1, c1 = time.perf_counter(), time.process_time()
        ps = extract_patches(subject, PatchConfig())
        t2, c2 = time.perf_counter(), time.process_time()
        res["load_subject"].append(t1 - t0)
        res["extract_patches"].append(t2 - t1)
        res["load_subject_cpu"].append(c1 - c0)
        res["extract_patches_cpu"].append(c2 - c1)
        res["n_lesions"] = len(ps)
    return res


def run(args) -> int:
    repeats = getattr(args, "repeats", 3)
    with tempfile.TemporaryDirectory(prefix="rimscope-bench-io-", dir=getattr(args, "out", None)) as tmp:
        t0 = time.perf_counter()
        paths = synthetic_subject(tmp)
        t_write = time.perf_counter() - t0
        res = measure(paths, repeats)
    print(f"rimscope bench io: synthetic subject {'x'.join(map(str, SHAPE))}, {res['n_lesions']} "
          f"lesions, {repeats} repeats (written in {t_write:.1f} s)")
    print(f"{'step':<18}{'median_s':>10}{'min_s':>8}{'max_s':>8}{'cpu_s':>8}{'target_s':>10}  ok")
    for step in ("load_subject", "extract_patches"):
        t = res[step]
        ok = statistics.median(t) <= TARGETS_S[step]
        print(f"{step:<18}{statistics.median(t):>10.3f}{min(t):>8.3f}{max(t):>8.3f}"
              f"{statistics.median(res[step + '_cpu']):>8.3f}{TARGETS_S[step]:>10.1f}  "
              f"{'yes' if ok else 'NO'}")
    print(f"peak RSS: {peak_rss_mb():.0f} MB   (wall seconds; cpu_s = process CPU time, which "
          "other jobs on the machine do not inflate)")
    return 0
