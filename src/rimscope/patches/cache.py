"""The per-subject patch cache (`PatchCache`) and the one path from a cohort entry to patches
(`subject_patches`), for training, evaluation and prediction.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..cohort import fingerprint
from ..errors import InputError
from ..lesions import Lesion
from .sampling import CHANNELS, PatchConfig, PatchSet, extract_patches

log = logging.getLogger("rimscope")

CACHE_VERSION = 4  # 3: phase patches referenced to their median; QSM from phase; 4: oblique grids by grid_sample


class PatchCache:
    """npz per subject, keyed by the input files (path, size, mtime), the config and the version.

    Training revisits the same subjects every fold and epoch; loading NIfTIs each time would
    dominate the run. Patches are stored as float32, so a cache hit returns exactly what a fresh
    extraction returns; an unreadable or inconsistent entry is rebuilt, never trusted.
    """

    def __init__(self, root):
        self.root = Path(root)

    def key(self, paths: dict, config: PatchConfig, extra: dict | None = None) -> str:
        return fingerprint(paths, v=CACHE_VERSION, config=config.to_dict(), extra=extra or {})[:24]

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def get(self, key: str, config: PatchConfig | None = None) -> PatchSet | None:
        f = self.path(key)
        if not f.exists():
            return None
        try:
            with np.load(f, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                ids, x = z["ids"], z["x"]
            lesions = [Lesion(id=d["id"], n_voxels=d["n_voxels"], volume_mm3=d["volume_mm3"],
                              centroid_vox=np.array(d["centroid_vox"]),
                              centroid_mm=np.array(d["centroid_mm"]),
                              bbox=tuple(slice(a, b) for a, b in d["bbox"]), flags=d["flags"])
                       for d in meta["lesions"]]
            n = len(ids)
            ok = (x.dtype == np.float32 and x.ndim == 5 and x.shape[:2] == (n, len(CHANNELS))
                  and len(meta["flags"]) == n and len(lesions) == n
                  and (config is None or x.shape[2:] == (config.size,) * 3))
            if not ok:
                raise ValueError("inconsistent cache entry")
            return PatchSet(subject=meta["subject"], ids=ids, x=x, flags=meta["flags"],
                            lesions=lesions)
        except Exception as exc:  # a corrupt cache entry is rebuilt, never trusted
            log.warning("patch cache entry %s unreadable (%s); rebuilding it", f,
                        str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__)
            return None

    def put(self, key: str, ps: PatchSet) -> None:
        """Store atomically; a cache that cannot be written only costs speed, so it warns."""
        from ..runtime import atomic_path

        meta = {"subject": ps.subject, "flags": ps.flags, "lesions": [
            {"id": les.id, "n_voxels": les.n_voxels, "volume_mm3": les.volume_mm3,
             "centroid_vox": les.centroid_vox.tolist(), "centroid_mm": les.centroid_mm.tolist(),
             "bbox": [[s.start, s.stop] for s in les.bbox], "flags": les.flags} for les in ps.lesions]}
        try:
            with atomic_path(self.path(key), suffix=".npz") as tmp:
                np.savez(tmp, ids=ps.ids, x=ps.x.astype(np.float32, copy=False),
                         meta=np.array(json.dumps(meta)))
        except OSError as exc:
            log.warning("cannot write patch cache %s (%s); continuing without it", self.root, exc)


def subject_patches(entry, config: PatchConfig | None = None, cache: PatchCache | None = None,
                    qsm_units: str = "ppm", quiet: bool = True, phase_options: dict | None = None) -> PatchSet:
    """Patches of a cohort entry (see rimscope.cohort.SubjectEntry), through the cache if given.
    A phase model (config.source "phase") reads entry.phase with rimscope.phase's options; a QSM
    model given a phase-only entry reads the TKD inversion of its field (rimscope.phase.load_inputs)."""
    from ..phase import QSM_TKD_THRESHOLD, load_inputs

    config = config or PatchConfig()
    paths = {k: v for k, v in entry.paths().items() if v is not None}
    phase = getattr(entry, "phase", None)
    if config.source == "phase" and phase is None:
        raise InputError(f"subject {entry.subject} has no phase image, which this model reads; "
                         "add a phase column to the manifest")
    if config.source == "phase" or "qsm" not in paths:  # the phase is read (QSM from phase: no qsm)
        paths["phase"] = phase
    key = None
    if cache is not None:
        try:
            key = cache.key(paths, config, {"qsm_units": qsm_units, "subject": entry.subject,
                                            **({"phase": phase_options} if phase_options else {}),
                                            **({"qsm_from_phase": QSM_TKD_THRESHOLD}
                                               if "qsm" not in paths else {})})
        except OSError:  # a missing file: the loader below says which, in one line
            key = None
        hit = cache.get(key, config) if key else None
        if hit is not None:
            return hit
    subject = load_inputs(paths, config.source == "phase", phase_options, subject_id=entry.subject,
                          qsm_units=qsm_units)
    ps = extract_patches(subject, config, quiet=quiet)
    if key is not None:
        cache.put(key, ps)
    return ps
