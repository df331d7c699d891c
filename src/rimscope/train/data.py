"""Labelled (and unlabelled) lesions of a cohort as arrays, and the patient-grouped split.

Everything downstream (fine-tuning, pre-training, evaluation folds) works on one LesionData, so
patches are extracted once (through rimscope.patches' cache) and every split is by subject:
lesions of one patient are never on both sides of a split.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..patches import PatchCache, PatchConfig, subject_patches


@dataclass
class LesionData:
    x: np.ndarray  # (N, 4, S, S, S) float32 raw patches
    y: np.ndarray  # (N,) int64: 1 Rim+, 0 Rim-, -1 unlabelled
    subject: np.ndarray  # (N,) str
    lesion_id: np.ndarray  # (N,) int64
    volume_mm3: np.ndarray  # (N,) float
    flags: list = field(default_factory=list)  # (N,) list of str
    rim: np.ndarray | None = None  # (N, S, S, S) rim voxel truth where known (the lesion engine)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def labelled(self) -> np.ndarray:
        return self.y >= 0


def subset(data: LesionData, mask) -> LesionData:
    """Rows selected by a boolean mask or an index array."""
    if np.asarray(mask).dtype == bool and np.all(mask):  # nothing dropped: no copy (engine chunks)
        return data
    idx = np.flatnonzero(mask) if np.asarray(mask).dtype == bool else np.asarray(mask, dtype=np.int64)
    return LesionData(x=data.x[idx], y=data.y[idx], subject=data.subject[idx], lesion_id=data.lesion_id[idx],
                      volume_mm3=data.volume_mm3[idx], flags=[data.flags[i] for i in idx],
                      rim=None if data.rim is None else data.rim[idx])


def concat(parts: list[LesionData]) -> LesionData:
    return LesionData(x=np.concatenate([p.x for p in parts]), y=np.concatenate([p.y for p in parts]),
                      subject=np.concatenate([p.subject for p in parts]),
                      lesion_id=np.concatenate([p.lesion_id for p in parts]),
                      volume_mm3=np.concatenate([p.volume_mm3 for p in parts]),
                      flags=[f for p in parts for f in p.flags],
                      rim=(np.concatenate([p.rim for p in parts])
                           if parts and all(p.rim is not None for p in parts) else None))


def load_lesion_data(entries, labels: dict | None, config: PatchConfig | None = None, cache_dir=None,
                     quiet: bool = True, labels_path="labels") -> LesionData:
    """Patches of every lesion of `entries` (cohort.SubjectEntry); y from `labels`
    ({(subject, lesion_id): 0/1}, see cohort.read_labels), -1 where unlabelled. Labels that
    name a missing subject or lesion are refused (cohort.check_labels)."""
    from ..cohort import check_labels
    from ..runtime import progress

    config = config or PatchConfig()
    cache = PatchCache(cache_dir) if cache_dir else None
    labels = labels or {}
    parts, ids = [], {}
    for entry in progress(entries, desc="patches", unit="subject", quiet=quiet):
        ps = subject_patches(entry, config, cache=cache)
        ids[entry.subject] = set(int(i) for i in ps.ids)
        n = len(ps)
        y = np.array([labels.get((entry.subject, int(i)), -1) for i in ps.ids], dtype=np.int64)
        parts.append(LesionData(x=ps.x, y=y, subject=np.array([entry.subject] * n, dtype=object),
                                lesion_id=ps.ids.astype(np.int64),
                                volume_mm3=np.array([les.volume_mm3 for les in ps.lesions], float),
                                flags=[list(f) for f in ps.flags]))
    check_labels(labels, ids, labels_path)
    s = config.size
    if not parts:
        return LesionData(np.zeros((0, 4, s, s, s), np.float32), np.zeros(0, np.int64), np.zeros(0, object),
                          np.zeros(0, np.int64), np.zeros(0), [])
    return concat(parts)


def inner_split(data: LesionData, frac: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Patient-grouped, stratified: boolean masks (train, val). Subjects with and without a Rim+
    lesion are shuffled separately and `frac` of each group (at least one where the group has
    two or more) goes to validation, so validation has positives whenever possible."""
    rng = np.random.default_rng(seed)
    subjects = np.unique(data.subject)
    has_pos = {s: bool(np.any(data.y[data.subject == s] == 1)) for s in subjects}
    val = []
    for group in ([s for s in subjects if has_pos[s]], [s for s in subjects if not has_pos[s]]):
        group = list(group)
        rng.shuffle(group)
        k = int(round(frac * len(group)))
        if k == 0 and len(group) >= 2 and frac > 0:
            k = 1
        val += group[:k]
    vmask = np.isin(data.subject, np.array(val, dtype=object))
    return ~vmask, vmask
