"""Grids: the fine model grid in head (MNI) space, and random scanner acquisition grids.

rimscope is judged on data from other scanners, so every subject gets its own acquisition:
voxel size (0.6-1.0 mm, slices may be thicker), array orientation (RAS, LPS, PIR-like
permutations), oblique affines, and a head pose that tilts the head against B0 (scanner z).
The model is built once on an axis-aligned fine grid in head space and sampled onto each
acquisition grid with an anti-alias prefilter, which gives partial volume at the acquired voxel.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from nibabel import orientations as nio
from scipy import ndimage
from scipy.spatial.transform import Rotation


@dataclass
class ModelGrid:
    """Axis-aligned grid in head (MNI RAS) mm: mm = origin + h * index."""

    origin: np.ndarray
    h: float
    shape: tuple

    def to_index(self, mm: np.ndarray) -> np.ndarray:
        return (np.asarray(mm, float) - self.origin) / self.h

    def to_mm(self, idx: np.ndarray) -> np.ndarray:
        return self.origin + self.h * np.asarray(idx, float)


def upsample_to_model(vol: np.ndarray, vol_origin: np.ndarray, grid: ModelGrid, order: int = 1) -> np.ndarray:
    """Resample a 1 mm head-space box (mm = index + vol_origin) onto the model grid (separable)."""
    coords = [(grid.origin[i] + grid.h * np.arange(grid.shape[i]) - vol_origin[i]) for i in range(3)]
    out = vol
    for ax in range(3):  # 1-D interpolation per axis keeps it cheap (linear is separable)
        c = coords[ax]
        i0 = np.clip(np.floor(c).astype(int), 0, vol.shape[ax] - 1)
        i1 = np.clip(i0 + 1, 0, vol.shape[ax] - 1)
        w = (c - np.floor(c)).astype(np.float32)
        valid = (c >= 0) & (c <= vol.shape[ax] - 1)
        a = np.take(out, i0, axis=ax)
        if order == 0:
            r = np.where((w < 0.5).reshape([-1 if k == ax else 1 for k in range(3)]), a, np.take(out, i1, axis=ax))
        else:
            sh = [-1 if k == ax else 1 for k in range(3)]
            r = a * (1 - w.reshape(sh)) + np.take(out, i1, axis=ax) * w.reshape(sh)
        r = r * valid.reshape([-1 if k == ax else 1 for k in range(3)])
        out = r.astype(vol.dtype if order == 0 else np.float32)
    return out


@dataclass
class Acquisition:
    """One scanner grid. `affine` maps voxel → world (scanner) mm; `head` maps head mm → world."""

    shape: tuple
    affine: np.ndarray
    zooms: tuple
    orientation: str
    oblique_deg: float
    head: np.ndarray  # 4x4 head (MNI) → world

    def b0_in_axes(self) -> np.ndarray:
        """B0 (world z) in the array's own orthonormal axes, for the dipole kernel."""
        U = self.affine[:3, :3] / np.asarray(self.zooms)[None, :]
        return U.T @ np.array([0.0, 0.0, 1.0])


def random_rotation(rng: np.random.Generator, max_deg: float, min_deg: float = 0.0) -> tuple[np.ndarray, float]:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    ang = float(rng.uniform(min_deg, max_deg))
    return Rotation.from_rotvec(np.deg2rad(ang) * axis).as_matrix(), ang


def head_pose(rng: np.random.Generator, tilt_range) -> tuple[np.ndarray, dict]:
    """Head → world: a rotation mostly about left-right (pitch) plus some roll/yaw, so B0 makes a
    0-20° angle with the head's superior axis; a random shift of the head in the scanner."""
    tilt = float(rng.uniform(*tilt_range))
    share = rng.dirichlet([4, 1, 1])
    sign = rng.choice([-1, 1], 3)
    rotvec = np.deg2rad(tilt) * np.sqrt(share) * sign
    R = Rotation.from_rotvec(rotvec).as_matrix()
    H = np.eye(4)
    H[:3, :3] = R
    H[:3, 3] = rng.uniform(-15, 15, 3) + np.array([0, 10, 20])
    b0_head = R.T @ np.array([0.0, 0.0, 1.0])
    ang = float(np.degrees(np.arccos(np.clip(b0_head[2], -1, 1))))
    return H, {"b0_tilt_deg": ang, "b0_in_head": b0_head.tolist()}


def make_grid(orientation: str, zooms, rotation: np.ndarray, head: np.ndarray, box_min, box_max,
              margin_mm: float = 3.0) -> tuple[tuple, np.ndarray]:
    """Smallest grid of the given axis codes, voxel size and extra rotation covering a head box."""
    ornt = nio.axcodes2ornt(tuple(orientation))
    P = np.zeros((3, 3))
    for i, (ax, sign) in enumerate(ornt):
        P[int(ax), i] = sign
    A = rotation @ P @ np.diag(zooms)
    corners = np.array(np.meshgrid(*[[box_min[i], box_max[i]] for i in range(3)], indexing="ij")).reshape(3, -1).T
    world = corners @ head[:3, :3].T + head[:3, 3]
    vox = np.linalg.solve(A, world.T).T
    lo = vox.min(0) - margin_mm / np.asarray(zooms)
    hi = vox.max(0) + margin_mm / np.asarray(zooms)
    shape = tuple(int(np.ceil(h - l)) + 1 for l, h in zip(lo, hi))
    aff = np.eye(4)
    aff[:3, :3] = A
    aff[:3, 3] = A @ np.floor(lo)
    return shape, aff


def random_acquisition(rng, cfg, head, box_min, box_max, voxel=None, slice_mm=None) -> Acquisition:
    v = float(rng.uniform(*cfg.voxel_mm)) if voxel is None else voxel
    if slice_mm is None:
        slice_mm = float(rng.uniform(max(v, cfg.slice_mm[0]), max(v, cfg.slice_mm[1]))) \
            if rng.random() < cfg.p_anisotropic else v
    orient = str(rng.choice(cfg.orientations))
    if rng.random() < cfg.p_oblique:
        R, ang = random_rotation(rng, cfg.oblique_deg[1], cfg.oblique_deg[0])
    else:
        R, ang = np.eye(3), 0.0
    # the slice axis is the array axis closest to world S/I
    ornt = nio.axcodes2ornt(tuple(orient))
    zooms = [v, v, v]
    zooms[int(np.argmax(ornt[:, 0] == 2))] = slice_mm
    shape, aff = make_grid(orient, zooms, R, head, box_min, box_max)
    return Acquisition(shape, aff, tuple(zooms), orient, ang, head)


def sample(vol: np.ndarray, grid: ModelGrid, acq: Acquisition, order: int = 1, prefilter_mm=None,
           cval: float = 0.0) -> np.ndarray:
    """Values of a model-grid volume at the acquisition voxel centres (world → head → model).

    `prefilter_mm` (per-acquisition-axis voxel sizes) applies a Gaussian of the box filter's
    standard deviation first, so thin structures partial-volume instead of aliasing.
    """
    Hinv = np.linalg.inv(acq.head)
    M = Hinv @ acq.affine  # acquisition voxel → head mm
    M = np.diag([1 / grid.h] * 3 + [1]) @ np.vstack([M[:3], [0, 0, 0, 1]])
    M[:3, 3] -= grid.origin / grid.h
    offsets = [np.zeros(3)]
    if prefilter_mm is not None:
        z = np.asarray(prefilter_mm, float)
        s = np.sqrt(max(z.min() ** 2 - grid.h ** 2, 0)) / np.sqrt(12) / grid.h
        if s > 0.2:
            vol = ndimage.gaussian_filter(vol, s)
        ax = int(np.argmax(z))
        k = int(np.ceil(z[ax] / z.min() - 0.25))
        if k > 1:  # thick slices: average sub-slices along the slice axis (slice profile)
            offsets = []
            for j in range(k):
                o = np.zeros(3)
                o[ax] = (j + 0.5) / k - 0.5
                offsets.append(o)
    out = None
    for o in offsets:
        r = ndimage.affine_transform(vol, M[:3, :3], M[:3, 3] + M[:3, :3] @ o, output_shape=acq.shape,
                                     order=order, cval=cval, prefilter=False,
                                     output=np.float32 if order else vol.dtype)
        out = r if out is None else out + r
    return out if len(offsets) == 1 else out / np.float32(len(offsets))
