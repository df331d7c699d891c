"""A montage of typical lesions of each kind, written with every cohort.

Whether a simulated cohort looks like real QSM is judged by eye first: the montage shows a Rim+
lesion, a plain Rim− lesion and every mimic (partial rim, hyperintense core without rim, vein
along the edge, central vein) as QSM and FLAIR crops through the lesion centre, read back through
rimscope.io exactly as a user's data would be.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .layout import subject_paths

KINDS = [
    ("Rim+", lambda t: t["true_rim"] == 1),
    ("Rim− (plain)", lambda t: t["kind"] == "plain" and not t["central_vein"]),
    ("partial rim", lambda t: t["kind"] == "partial_rim" and t["coverage"] < 0.5),
    ("hyperintense, no rim", lambda t: t["kind"] == "hyper_norim"),
    ("vein at edge", lambda t: t["kind"] == "vein_touch"),
    ("central vein", lambda t: t["hard_negative"] == "central_vein"),
]


def pick_examples(cohort: dict, per_kind: int = 2) -> list[tuple[str, str, dict]]:
    """Per kind, the lesions closest to 150 mm³ (big enough to see), from different subjects."""
    out = []
    for name, pred in KINDS:
        cands = [(abs(np.log(max(t["volume_mm3"], 1) / 150)), sid, t)
                 for sid, s in cohort["subjects"].items() for t in s["lesions"] if pred(t)]
        cands.sort(key=lambda c: c[0])
        used = set()
        for _, sid, t in cands:
            if sid in used:
                continue
            used.add(sid)
            out.append((name, sid, t))
            if len(used) >= per_kind:
                break
    return out


def lesion_crops(subject, lesion_id: int, half_mm: float = 14.0):
    """Axial QSM and FLAIR crops (canonical RAS) through the lesion centroid, and its outline."""
    les = subject.lesions == lesion_id
    c = np.round(np.argwhere(les).mean(0)).astype(int)
    z = subject.zooms
    hw = np.ceil(half_mm / z[:2]).astype(int)
    sl = (slice(max(c[0] - hw[0], 0), c[0] + hw[0] + 1), slice(max(c[1] - hw[1], 0), c[1] + hw[1] + 1), c[2])
    return subject.qsm[sl].T, subject.flair[sl].T, les[sl].T, (z[0], z[1])


def write_montage(out_dir, cohort: dict, path, per_kind: int = 2) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import load_subject

    out_dir = Path(out_dir)
    ex = pick_examples(cohort, per_kind)
    if not ex:
        raise ValueError("no lesions to show")
    cache = {}
    fig, axes = plt.subplots(2, len(ex), figsize=(1.6 * len(ex), 3.7), squeeze=False)
    for j, (name, sid, t) in enumerate(ex):
        if sid not in cache:
            p = subject_paths(sid)
            rlog = logging.getLogger("rimscope")
            level = rlog.level
            rlog.setLevel(logging.ERROR)  # the resampling warnings are expected here
            try:
                cache = {sid: load_subject(out_dir / p["qsm"], out_dir / p["flair"], out_dir / p["lesions"],
                                           out_dir / p["brainmask"], subject_id=sid)}
            finally:
                rlog.setLevel(level)
        q, f, m, z = lesion_crops(cache[sid], t["lesion_id"])
        for i, (img, kw) in enumerate(((q, dict(cmap="gray", vmin=-0.12, vmax=0.15)),
                                       (f, dict(cmap="gray", vmin=-0.6, vmax=1.2)))):
            ax = axes[i, j]
            ax.imshow(img, origin="lower", aspect=z[1] / z[0], interpolation="nearest", **kw)
            if m.any():
                ax.contour(m.astype(float), levels=[0.5], colors="tab:orange", linewidths=0.6)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, j].set_title(f"{name}\nsub-{sid} #{t['lesion_id']}", fontsize=6.5)
        axes[1, j].set_xlabel(f"cov {t['coverage']:.2f}, rim {t['rim_ppm']:.3f}\n{t['volume_mm3']:.0f} mm³",
                              fontsize=5.5)
    axes[0, 0].set_ylabel("QSM (ppm)", fontsize=7)
    axes[1, 0].set_ylabel("FLAIR", fontsize=7)
    fig.suptitle("rimscope simulate: typical lesions (axial, canonical RAS; orange = lesion mask)", fontsize=8)
    fig.tight_layout()
    from ..runtime import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=150)
    plt.close(fig)
    return Path(path)
