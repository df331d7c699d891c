"""Normal-appearing white-matter patches for pre-training, sampled through rimscope.patches.

Pre-training on lesions only would teach "what lesions look like"; adding tissue away from
lesions teaches the encoders QSM/FLAIR structure in general (veins, grey/white boundaries) and
makes the cross-modal task harder. Sampling reuses patches.sample_patch with a placeholder
lesion (id -1: no voxel carries it), so the geometry — world axes, B0 last, 1 mm — is exactly the
lesions' one; the mask channel is then set to 0 and the signed distance to "far outside" (+1).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..lesions import Lesion
from ..patches import PatchConfig, sample_patch

MIN_DIST_MM = 8.0  # from any lesion
BRAIN_MARGIN_MM = 10.0  # from the brain edge (cortex, skull residue)
FLAIR_NORMAL = 0.5  # |normalised FLAIR| below this: normal-appearing tissue


def wm_centres(subject, n: int, rng: np.random.Generator) -> np.ndarray:
    """Up to n world centres (n, 3) in normal-appearing deep tissue, away from lesions."""
    zooms = subject.zooms
    far_lesion = ndimage.distance_transform_edt(subject.lesions == 0, sampling=zooms) > MIN_DIST_MM
    deep = ndimage.distance_transform_edt(subject.brainmask, sampling=zooms) > BRAIN_MARGIN_MM
    ok = far_lesion & deep & (np.abs(subject.flair) < FLAIR_NORMAL)
    vox = np.argwhere(ok)
    if len(vox) == 0:
        return np.zeros((0, 3))
    pick = vox[rng.choice(len(vox), size=min(n, len(vox)), replace=False)].astype(float)
    return pick @ subject.affine[:3, :3].T + subject.affine[:3, 3]


def wm_patches(subject, n: int, config: PatchConfig | None = None, seed: int = 0) -> np.ndarray:
    """(k <= n, 4, S, S, S) float32 patches at normal-appearing white-matter locations."""
    config = config or PatchConfig()
    rng = np.random.default_rng(seed)
    centres = wm_centres(subject, n, rng)
    s = config.size
    out = np.zeros((len(centres), 4, s, s, s), np.float32)
    for i, c in enumerate(centres):
        placeholder = Lesion(id=-1, n_voxels=0, volume_mm3=0.0, centroid_vox=np.zeros(3), centroid_mm=c,
                             bbox=(slice(0, 0),) * 3)
        out[i], _ = sample_patch(subject, placeholder, config)
    out[:, 2] = 0.0
    out[:, 3] = 1.0
    return out


def cohort_wm_patches(entries, n_per_subject: int, config: PatchConfig | None = None, seed: int = 0,
                      quiet: bool = True) -> np.ndarray:
    from ..io import load_subject
    from ..runtime import progress

    parts = []
    for k, entry in enumerate(progress(entries, desc="white-matter patches", unit="subject", quiet=quiet)):
        subject = load_subject(subject_id=entry.subject, **entry.paths())
        parts.append(wm_patches(subject, n_per_subject, config, seed=seed * 1000 + k))
    s = (config or PatchConfig()).size
    return np.concatenate(parts) if parts else np.zeros((0, 4, s, s, s), np.float32)
