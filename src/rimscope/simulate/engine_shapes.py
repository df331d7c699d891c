"""Real lesion shapes for the engine: every 26-connected component of the 30 open_ms_data masks,
as signed-distance maps that can be rotated, flipped and scaled freely.

A rim detector keys on where the edge is, so the engine renders everything (core, rim band,
mask) from one signed distance to the true edge. Storing each shape as a smoothed signed
distance at 1 mm lets any pose be rendered by sampling it at transformed points (cheap,
sub-voxel), instead of resampling a binary mask (aliasing). The library is loaded once per
process (~2,000 shapes) and each map is built the first time its shape is drawn. Building all
maps costs ~50 s of one core, and every engine worker would pay it again, so `warm_library`
builds them once and keeps them in a cache file (RIMSCOPE_CACHE, else ~/.cache/rimscope) that
later processes load in a second; a cache that cannot be written or read is simply rebuilt.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
from scipy import ndimage

from .library import donor_lesions, donors

PAD_VOX = 8  # the map reaches this far (mm) outside the shape: rim offsets, thickness, margins
SHAPE_CACHE_VERSION = 1  # bump when Shape._build changes
log = logging.getLogger("rimscope")


class Shape:
    """One library lesion: signed distance (mm, < 0 inside) on a padded 1 mm crop."""

    def __init__(self, donor: str, index: int, mask: np.ndarray):
        self.donor, self.index = donor, index
        self.volume_mm3 = float(mask.sum())
        self._mask = mask
        self._sdf = None

    def _build(self):
        # the lesion is the 0.5 level of the mask smoothed by 0.5 mm, as the whole-brain
        # simulator defines it (lesions_model._on_model); its signed distance is measured on a
        # 0.5 mm grid (a true distance, |∇d| = 1, so bands keep their thickness) and kept at 1 mm
        m = np.pad(self._mask, PAD_VOX).astype(np.float32)
        soft = ndimage.gaussian_filter(m, 0.5)
        fine = np.stack(np.meshgrid(*[np.arange(2 * n - 1) / 2.0 for n in m.shape], indexing="ij"))
        inside = ndimage.map_coordinates(soft, fine.reshape(3, -1), order=1).reshape(fine.shape[1:]) >= 0.5
        if not inside.any():
            inside[tuple(np.array(inside.shape) // 2)] = True
        df = 0.5 * np.where(inside, -(ndimage.distance_transform_edt(inside) - 0.5),
                            ndimage.distance_transform_edt(~inside) - 0.5)
        # float16 precision (< 0.01 mm here) is what the cache file stores: a shape gives the
        # same examples whether it was built now or loaded
        sdf = np.ascontiguousarray(df[::2, ::2, ::2]).astype(np.float16).astype(np.float32)
        self._sdf = sdf
        inside = np.argwhere(sdf < 0)
        self.centre = (inside.mean(0) if len(inside) else np.array(sdf.shape) / 2.0).astype(float)
        surf = np.argwhere(np.abs(sdf) < 0.5).astype(float) - self.centre
        n = np.linalg.norm(surf, axis=1, keepdims=True)
        self.surface_dirs = (surf / np.maximum(n, 1e-6)).astype(np.float16).astype(np.float32)  # coverage
        self.extent = float(np.abs(np.argwhere(sdf < 0) - self.centre).max() + 1.0) if len(inside) else 1.0

    @property
    def sdf(self) -> np.ndarray:
        if self._sdf is None:
            self._build()
        return self._sdf

    def __getattr__(self, name):  # centre, surface_dirs, extent: built with the map
        if name in ("centre", "surface_dirs", "extent") and self.__dict__.get("_sdf") is None:
            self._build()
            return self.__dict__[name]
        raise AttributeError(name)

    @property
    def radius_mm(self) -> float:
        return float((3 * self.volume_mm3 / (4 * np.pi)) ** (1 / 3))


@functools.lru_cache(maxsize=8)
def library(min_mm3: float, max_mm3: float, donor_names: tuple = ()) -> tuple:
    """Every component of the chosen donor masks within the volume range (cached per process)."""
    names = donor_names or tuple(donors())
    out = []
    for d in names:
        for lib in donor_lesions(d, float(min_mm3), float(max_mm3)):
            out.append(Shape(lib.donor, lib.index, lib.mask))
    _load_cache(out, _cache_file(out))
    return tuple(out)


def _cache_file(shapes) -> Path:
    root = Path(os.environ.get("RIMSCOPE_CACHE") or Path.home() / ".cache" / "rimscope")
    h = hashlib.sha256(f"v{SHAPE_CACHE_VERSION} pad{PAD_VOX}".encode())
    for sh in shapes:
        h.update(f"{sh.donor}:{sh.index}:{sh.volume_mm3:.0f};".encode())
        h.update(np.packbits(sh._mask).tobytes())
    return root / f"engine-shapes-{h.hexdigest()[:16]}.npz"


def _load_cache(shapes, path: Path) -> bool:
    try:
        with np.load(path) as z:
            if len(z["extent"]) != len(shapes):
                return False
            # each member read once: indexing the NpzFile itself re-reads the member every time
            offs, sdf_shapes, flat = z["sdf_offsets"], z["sdf_shapes"], z["sdf"]
            doffs, dirs, centres, extents = z["dir_offsets"], z["dirs"], z["centre"], z["extent"]
            for i, sh in enumerate(shapes):
                sh._sdf = flat[offs[i]:offs[i + 1]].reshape(sdf_shapes[i]).astype(np.float32)
                sh.centre = centres[i].astype(float)
                sh.surface_dirs = dirs[doffs[i]:doffs[i + 1]].astype(np.float32)
                sh.extent = float(extents[i])
        return True
    except Exception:  # noqa: BLE001 - absent, partial or stale: build on demand instead
        return False


def warm_library(shapes) -> None:
    """Build every map of `shapes` now and write them to the cache file (atomically) for the
    engine workers; a no-op when the cache already held them."""
    if all(sh.__dict__.get("_sdf") is not None for sh in shapes):
        return
    for sh in shapes:
        sh.sdf  # noqa: B018 - builds it
    path = _cache_file(shapes)
    sdfs = [sh._sdf.ravel() for sh in shapes]
    dirs = [sh.surface_dirs for sh in shapes]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.part")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, sdf=np.concatenate(sdfs).astype(np.float16),
                     sdf_offsets=np.cumsum([0] + [len(a) for a in sdfs]),
                     sdf_shapes=np.array([sh._sdf.shape for sh in shapes]),
                     dirs=np.concatenate(dirs).astype(np.float16), dir_offsets=np.cumsum([0] + [len(d) for d in dirs]),
                     centre=np.array([sh.centre for sh in shapes]), extent=np.array([sh.extent for sh in shapes]))
        os.replace(tmp, path)
        log.info("engine shape library cached in %s", path)
    except OSError as exc:
        log.debug("engine shape cache not written (%s): workers build shapes on demand", exc)


def unit(rng) -> np.ndarray:
    """A uniformly random unit vector."""
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def random_pose(rng: np.random.Generator, scale_range, p_rotate: float = 1.0) -> tuple[np.ndarray, float]:
    """(L, s): world offset from the lesion centre = s * L @ shape offset (mm). L is a uniform
    random rotation, mirrored half the time; s the isotropic scale."""
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    R = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    if rng.random() < 0.5:
        R = R @ np.diag([-1.0, 1.0, 1.0])
    if rng.random() >= p_rotate:
        R = np.eye(3)
    return R, float(rng.uniform(*scale_range))

