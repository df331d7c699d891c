"""`rimscope bench predict`: end-to-end seconds and peak memory of `rimscope predict`.

Runs the real CLI in a child process on full-size synthetic subjects (256×256×176, 40 lesions),
so the figures include start-up, loading, patches, the network and writing, as a user sees them;
peak memory is the child's maximum resident set. Targets: ≤ 5 s per subject, ≤ 2.5 GB.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .io import synthetic_subject

N_LESIONS = 40
TARGET_S, TARGET_GB = 5.0, 2.5


def _run_child(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "rimscope", *argv], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"predict failed: {proc.stderr.strip()[-400:]}")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, peak_kb / 1024 / 1024


def run(args) -> int:
    from ..runtime import resolve_device
    from ..weights import shipped

    device = resolve_device(args.device)
    model_arg: list[str] = []
    tmp_ctx = tempfile.TemporaryDirectory() if args.out is None else None
    root = Path(args.out or tmp_ctx.name)
    if "default" not in shipped():
        from ..models.card import save_model
        from ..models.registry import build

        save_model(build("asymmetric"), root / "untrained")
        model_arg = ["-m", str(root / "untrained")]
        print("note: no shipped default model; timing an untrained asymmetric network", file=sys.stderr)
    n_subj = max(2, args.repeats)
    lines = ["subject\tqsm\tflair\tlesions"]
    for i in range(n_subj):
        p = synthetic_subject(root / f"s{i}", n_lesions=N_LESIONS, seed=i)
        lines.append("\t".join([f"b{i}"] + [str(p[r]) for r in ("qsm", "flair", "lesions")]))
    (root / "manifest.tsv").write_text("\n".join(lines) + "\n")
    one = root / "s0"
    wall1, peak1 = _run_child(["predict", "-q", "-d", device, "--qsm", str(one / "sub-bench_qsm.nii.gz"),
                               "--flair", str(one / "sub-bench_flair.nii.gz"), "--lesions",
                               str(one / "sub-bench_lesions.nii.gz"), "-o", str(root / "out1"), *model_arg])
    rec1 = json.loads((root / "out1" / "run.json").read_text())
    wall_c, _ = _run_child(["predict", "-q", "-d", device, "-i", str(root / "manifest.tsv"),
                            "-o", str(root / "outc"), *model_arg])
    rec = json.loads((root / "outc" / "run.json").read_text())
    per_subject = sorted(rec["timings_s"].values())
    in_proc = per_subject[len(per_subject) // 2]
    lesions_s = n_subj * N_LESIONS / sum(per_subject)
    print(f"rimscope bench predict — 256×256×176 subjects, {N_LESIONS} lesions each, device {device}, "
          f"model {rec1['model']['name']}")
    print(f"{'figure':<44}{'value':>10}  target")
    print(f"{'end-to-end s, one subject (CLI, cold start)':<44}{wall1:>10.2f}  ≤ {TARGET_S}")
    print(f"{'s per subject in a batch (median of ' + str(n_subj) + ')':<44}{in_proc:>10.2f}  ≤ {TARGET_S}")
    print(f"{'peak memory GB (child process)':<44}{peak1:>10.2f}  ≤ {TARGET_GB}")
    print(f"{'lesions/s over the batch (load→write)':<44}{lesions_s:>10.1f}")
    print(f"{'batch wall s incl. start-up (' + str(n_subj) + ' subjects)':<44}{wall_c:>10.2f}")
    if tmp_ctx is not None:
        tmp_ctx.cleanup()
    return 0
