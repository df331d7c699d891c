"""Lesion-centred patches sampled in millimetres along world axes: the one path from images to
network inputs, shared by training, evaluation and prediction.

Sampling in world space (not voxel space) makes a lesion's patch the same whatever the input's
orientation, obliquity or voxel size, and puts B0 on the patch's last axis, so the only
physics-respecting augmentations (rotations about B0, flips) are simple array operations.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from .io import Subject
from .lesions import Lesion, lesion_table

log = logging.getLogger("rimscope")

CHANNELS = ("qsm", "flair", "mask", "sdist")
SDIST_CLIP_MM = 6.0
CACHE_VERSION = 1


@dataclass(frozen=True)
class PatchConfig:
    size: int = 32  # voxels per side
    spacing_mm: float = 1.0  # patch voxel size
    b0_dir: tuple = (0.0, 0.0, 1.0)  # world direction of B0; becomes the patch's last axis

    def to_dict(self) -> dict:
        return {"size": self.size, "spacing_mm": self.spacing_mm, "b0_dir": list(self.b0_dir)}

    @classmethod
    def from_dict(cls, d: dict) -> "PatchConfig":
        return cls(size=int(d["size"]), spacing_mm=float(d["spacing_mm"]),
                   b0_dir=tuple(float(x) for x in d.get("b0_dir", (0, 0, 1))))


@dataclass
class PatchSet:
    """Patches of one subject: x[i] is lesion ids[i]; channels as in CHANNELS."""

    subject: str
    ids: np.ndarray  # (N,) int
    x: np.ndarray  # (N, C, S, S, S) float32: QSM ppm, FLAIR normalised, lesion mask, signed dist/6mm
    flags: list  # per lesion, list of str
    lesions: list = field(default_factory=list)  # Lesion geometry, same order

    def __len__(self) -> int:
        return len(self.ids)


def b0_frame(b0_dir) -> np.ndarray:
    """Orthonormal world basis (columns) whose third axis is B0; identity for B0 along z."""
    z = np.asarray(b0_dir, float)
    z = z / np.linalg.norm(z)
    if np.allclose(z, [0, 0, 1]):
        return np.eye(3)
    helper = np.array([1.0, 0, 0]) if abs(z[0]) < 0.9 else np.array([0, 1.0, 0])
    x = helper - z * (helper @ z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], axis=1)


def patch_points(centre_mm: np.ndarray, config: PatchConfig) -> np.ndarray:
    """World coordinates (3, S, S, S) of a patch's voxel centres."""
    s = config.size
    off = (np.arange(s) - (s - 1) / 2.0) * config.spacing_mm
    g = np.stack(np.meshgrid(off, off, off, indexing="ij"))  # (3, S, S, S) in the patch frame
    frame = b0_frame(config.b0_dir)
    return np.tensordot(frame, g, axes=1) + np.asarray(centre_mm, float)[:, None, None, None]


def sample_patch(subject: Subject, lesion: Lesion, config: PatchConfig) -> tuple[np.ndarray, list]:
    """One lesion's patch (C, S, S, S) and its flags."""
    world = patch_points(lesion.centroid_mm, config)
    inv = np.linalg.inv(subject.affine)
    vox = np.tensordot(inv[:3, :3], world, axes=1) + inv[:3, 3][:, None, None, None]
    flags = list(lesion.flags)
    shape = np.asarray(subject.qsm.shape)[:, None, None, None]
    outside = np.any((vox < -0.5) | (vox > shape - 0.5), axis=0)
    if outside.any() and "edge_of_fov" not in flags:
        flags.append("edge_of_fov")
    qsm = ndimage.map_coordinates(subject.qsm, vox, order=1, mode="constant", cval=0.0, prefilter=False)
    flair = ndimage.map_coordinates(subject.flair, vox, order=1, mode="constant", cval=0.0,
                                    prefilter=False)
    lab = ndimage.map_coordinates(subject.lesions, vox, order=0, mode="constant", cval=0, prefilter=False)
    mask = lab == lesion.id
    if not mask.any():  # a thin lesion can fall between patch samples: keep its centre voxel
        c = config.size // 2
        mask[c, c, c] = True
    sampled_mm3 = mask.sum() * config.spacing_mm ** 3
    if sampled_mm3 < 0.8 * lesion.volume_mm3 and lesion.volume_mm3 > 8 * config.spacing_mm ** 3:
        flags.append("exceeds_patch")
    sdist = (ndimage.distance_transform_edt(~mask, sampling=config.spacing_mm)
             - ndimage.distance_transform_edt(mask, sampling=config.spacing_mm))
    sdist = np.clip(sdist, -SDIST_CLIP_MM, SDIST_CLIP_MM) / SDIST_CLIP_MM
    x = np.stack([qsm, flair, mask.astype(np.float32), sdist.astype(np.float32)]).astype(np.float32)
    return x, flags


def extract_patches(subject: Subject, config: PatchConfig | None = None, lesion_ids=None,
                    quiet: bool = True) -> PatchSet:
    """Patches of every lesion (or of `lesion_ids`) of a loaded subject."""
    from .runtime import progress

    config = config or PatchConfig()
    table = lesion_table(subject.lesions, subject.affine)
    if lesion_ids is not None:
        wanted = set(int(i) for i in lesion_ids)
        table = [les for les in table if les.id in wanted]
    s = config.size
    x = np.zeros((len(table), len(CHANNELS), s, s, s), np.float32)
    flags = []
    for i, les in enumerate(progress(table, desc=f"patches {subject.id}", unit="lesion", quiet=quiet)):
        x[i], f = sample_patch(subject, les, config)
        flags.append(f)
    return PatchSet(subject=subject.id, ids=np.array([les.id for les in table], dtype=np.int64), x=x,
                    flags=flags, lesions=table)


# ---------------------------------------------------------------- per-subject cache

class PatchCache:
    """npz per subject, keyed by the input files (path, size, mtime), the config and the version.

    Training revisits the same subjects every fold and epoch; loading NIfTIs each time would
    dominate the run.
    """

    def __init__(self, root):
        self.root = Path(root)

    def key(self, paths: dict, config: PatchConfig, extra: dict | None = None) -> str:
        stamp = {"v": CACHE_VERSION, "config": config.to_dict(), "extra": extra or {}}
        for role, p in sorted(paths.items()):
            st = Path(p).stat()
            stamp[role] = [str(Path(p).resolve()), st.st_size, st.st_mtime_ns]
        return hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:24]

    def get(self, key: str) -> PatchSet | None:
        f = self.root / f"{key}.npz"
        if not f.exists():
            return None
        try:
            z = np.load(f, allow_pickle=False)
            meta = json.loads(str(z["meta"]))
            lesions = [Lesion(id=d["id"], n_voxels=d["n_voxels"], volume_mm3=d["volume_mm3"],
                              centroid_vox=np.array(d["centroid_vox"]), centroid_mm=np.array(d["centroid_mm"]),
                              bbox=tuple(slice(a, b) for a, b in d["bbox"]), flags=d["flags"])
                       for d in meta["lesions"]]
            return PatchSet(subject=meta["subject"], ids=z["ids"], x=z["x"].astype(np.float32),
                            flags=meta["flags"], lesions=lesions)
        except Exception:  # a corrupt cache entry is rebuilt, never trusted
            log.debug("patch cache entry %s unreadable; rebuilding", f)
            return None

    def put(self, key: str, ps: PatchSet) -> None:
        from .runtime import atomic_path

        meta = {"subject": ps.subject, "flags": ps.flags, "lesions": [
            {"id": les.id, "n_voxels": les.n_voxels, "volume_mm3": les.volume_mm3,
             "centroid_vox": les.centroid_vox.tolist(), "centroid_mm": les.centroid_mm.tolist(),
             "bbox": [[s.start, s.stop] for s in les.bbox], "flags": les.flags} for les in ps.lesions]}
        with atomic_path(self.root / f"{key}.npz", suffix=".npz") as tmp:
            np.savez(tmp, ids=ps.ids, x=ps.x.astype(np.float16), meta=np.array(json.dumps(meta)))


def subject_patches(entry, config: PatchConfig | None = None, cache: PatchCache | None = None,
                    qsm_units: str = "ppm", quiet: bool = True) -> PatchSet:
    """Patches of a cohort entry (see rimscope.cohort.SubjectEntry), through the cache if given."""
    from .io import load_subject

    config = config or PatchConfig()
    paths = entry.paths()
    key = cache.key(paths, config, {"qsm_units": qsm_units}) if cache else None
    if cache is not None:
        hit = cache.get(key)
        if hit is not None:
            return hit
    subject = load_subject(subject_id=entry.subject, qsm_units=qsm_units, **paths)
    ps = extract_patches(subject, config, quiet=quiet)
    if cache is not None:
        cache.put(key, ps)
    return ps
