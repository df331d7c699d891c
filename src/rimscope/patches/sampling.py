"""The patch geometry (`PatchConfig`, `patch_transform`) and the sampler (`sample_patch`,
`extract_patches`, channels `CHANNELS`): lesion-centred patches in millimetres along world axes.

Sampling in world space (not voxel space) makes a lesion's patch the same whatever the input's
orientation, obliquity or voxel size, and puts B0 on the patch's last axis, so the only
physics-respecting augmentations (rotations about B0, flips) are simple array operations.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..io import Subject
from ..lesions import Lesion, lesion_table

log = logging.getLogger("rimscope")

CHANNELS = ("qsm", "flair", "mask", "sdist")
SDIST_CLIP_MM = 6.0


@dataclass(frozen=True)
class PatchConfig:
    size: int = 32  # voxels per side
    spacing_mm: float = 1.0  # patch voxel size
    b0_dir: tuple = (0.0, 0.0, 1.0)  # world direction of B0; becomes the patch's last axis
    source: str = "qsm"  # what channel 0 samples: "qsm" (ppm) or "phase" (local field, ppm)

    def to_dict(self) -> dict:
        d = {"size": self.size, "spacing_mm": self.spacing_mm, "b0_dir": list(self.b0_dir)}
        return d if self.source == "qsm" else {**d, "source": self.source}

    @classmethod
    def from_dict(cls, d: dict) -> "PatchConfig":
        return cls(size=int(d["size"]), spacing_mm=float(d["spacing_mm"]),
                   b0_dir=tuple(float(x) for x in d.get("b0_dir", (0, 0, 1))),
                   source=str(d.get("source", "qsm")))


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


def patch_transform(centre_mm, affine: np.ndarray, config: PatchConfig) -> tuple[np.ndarray, np.ndarray]:
    """(M, t): patch index (i, j, k) -> voxel coordinates of the volume, vox = M @ ijk + t."""
    inv = np.linalg.inv(affine)
    frame = b0_frame(config.b0_dir)
    half = (config.size - 1) / 2.0 * config.spacing_mm
    m = inv[:3, :3] @ frame * config.spacing_mm
    t = inv[:3, :3] @ (np.asarray(centre_mm, float) - frame @ np.full(3, half)) + inv[:3, 3]
    return m, t


def _axis_weights(coords: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """Linear-interpolation weights (len(coords), window) along one axis, and the window start.

    Neighbours outside 0..n-1 get no weight (their value is the padding value, added later)."""
    i0 = np.floor(coords).astype(int)
    f = (coords - i0).astype(np.float32)
    lo = int(min(max(i0.min(), 0), n))
    hi = int(max(min(i0.max() + 2, n), lo))
    w = np.zeros((coords.size, hi - lo), np.float32)
    rows = np.arange(coords.size)
    for idx, wt in ((i0, 1 - f), (i0 + 1, f)):
        ok = (idx >= lo) & (idx < hi)
        np.add.at(w, (rows[ok], idx[ok] - lo), wt[ok])
    return w, lo


def _windows(volumes, cvals, win, size):
    """Each volume's cropped window (volumes may be arrays or loaders taking the window), with a
    constant patch ready when the window is empty (the patch lies wholly outside the volume)."""
    for vol, cval in zip(volumes, cvals):
        v = vol(win) if callable(vol) else vol[win]
        yield v, cval, (np.full((size,) * 3, cval, np.float32) if min(v.shape) == 0 else None)


def _sample_separable(volumes, cvals, m, t, size, shape):
    """Axis-aligned patch grid (the usual case): trilinear sampling as three small matrix
    products on the cropped window, several times faster than a per-point interpolation."""
    ax = np.arange(size, dtype=np.float64)
    ws = [_axis_weights(m[d, d] * ax + t[d], shape[d]) for d in range(3)]
    win = tuple(slice(lo, lo + w.shape[1]) for w, lo in ws)
    (wx, _), (wy, _), (wz, _) = ws
    inside = (wx.sum(1)[:, None, None] * wy.sum(1)[None, :, None] * wz.sum(1)[None, None, :])
    out = []
    for v, cval, empty in _windows(volumes, cvals, win, size):
        if empty is not None:
            out.append(empty)
            continue
        # batched small products: each stays under OpenBLAS's threading threshold (one big
        # GEMM would spawn threads, which on a busy 2-core machine is 50x slower)
        r = np.matmul(wx, v.transpose(1, 0, 2))  # (y, S, z)
        r = np.matmul(wy, r.transpose(1, 0, 2))  # (S, S, z)
        r = np.matmul(r, wz.T)  # (S, S, S)
        if cval:
            r += np.float32(cval) * (1 - inside)
        out.append(r.astype(np.float32, copy=False))
    return out


def sample_grid(volumes, cvals, m, t, size, shape):
    """Any patch grid (oblique data, B0 off the z axis): trilinear sampling of a cropped window,
    every volume in one torch grid_sample call (a quarter of scipy's per-volume affine_transform
    cost, which was a quarter of the lesion engine's time). Points outside the volume read the
    volume's padding value, as scipy's "grid-constant" mode does."""
    import torch

    corners = np.array(np.meshgrid(*[[0, size - 1]] * 3, indexing="ij")).reshape(3, -1)
    vox = m @ corners + t[:, None]
    lo = np.clip(np.floor(vox.min(1)).astype(int) - 1, 0, shape)
    hi = np.clip(np.ceil(vox.max(1)).astype(int) + 2, lo, shape)
    win = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    wins = list(_windows(volumes, cvals, win, size))
    if wins[0][2] is not None:  # the window is empty: every volume is
        return [empty for _, _, empty in wins]
    n = hi - lo
    ijk = np.stack(np.meshgrid(*[np.arange(size, dtype=np.float64)] * 3, indexing="ij")).reshape(3, -1)
    v = m @ ijk + (t - lo)[:, None]
    g = (2 * v + 1) / n[:, None] - 1  # align_corners=False: any window size, even 1
    grid = torch.from_numpy(np.ascontiguousarray(g[::-1].T.reshape(1, size, size, size, 3), np.float32))
    inp = torch.from_numpy(np.stack([np.asarray(w, np.float32) - np.float32(c) for w, c, _ in wins]))[None]
    out = torch.nn.functional.grid_sample(inp, grid, mode="bilinear", padding_mode="zeros",
                                          align_corners=False)[0].numpy()
    return [(o + np.float32(c)) if c else o for o, (_, c, _) in zip(out, wins)]


def _signed_distance_clipped(mask: np.ndarray, spacing: float) -> np.ndarray:
    """Signed distance to the mask edge / SDIST_CLIP_MM, clipped to [-1, 1] (negative inside).

    Distances beyond the clip are constant, so the EDTs run on the mask's box grown by the clip
    distance only (identical result, a fraction of the work for small lesions)."""
    out = np.ones(mask.shape, np.float32)
    grow = int(np.ceil(SDIST_CLIP_MM / spacing)) + 1
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(0) - grow, 0)
    hi = np.minimum(idx.max(0) + grow + 1, mask.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    m = mask[box]
    d = (ndimage.distance_transform_edt(~m, sampling=spacing)
         - ndimage.distance_transform_edt(m, sampling=spacing))
    out[box] = np.clip(d, -SDIST_CLIP_MM, SDIST_CLIP_MM) / SDIST_CLIP_MM
    return out


def _patch_sampler(subject: Subject, lesion: Lesion, config: PatchConfig):
    """(m, t, sampler): the lesion's patch grid and the trilinear sampler for it."""
    m, t = patch_transform(lesion.centroid_mm, subject.affine, config)
    off_diag = np.abs(m - np.diag(np.diag(m))).max()
    return m, t, (_sample_separable if off_diag < 1e-9 else sample_grid)


def sample_volume(subject: Subject, lesion: Lesion, volume: np.ndarray, config: PatchConfig,
                  cval: float = 0.0) -> np.ndarray:
    """Another canonical volume of the subject (a simulated cohort's rim truth) on exactly the
    grid of the lesion's patch, trilinear like the QSM channel: (S, S, S) float32."""
    m, t, sampler = _patch_sampler(subject, lesion, config)
    return sampler((volume,), (cval,), m, t, config.size, subject.lesions.shape)[0]


def sample_patch(subject: Subject, lesion: Lesion, config: PatchConfig) -> tuple[np.ndarray, list]:
    """One lesion's patch (C, S, S, S) and its flags.

    QSM and FLAIR are trilinear; the lesion mask is the trilinearly interpolated indicator of
    this lesion, kept where >= 0.5 (ties count as inside), so a sample point half-way between
    voxels gets the same answer whatever the stored orientation (nearest-neighbour rounding of .5
    would not). Outside the field of view QSM is 0 and FLAIR the value of "no signal"; such
    lesions are flagged `padded`.
    """
    m, t, sampler = _patch_sampler(subject, lesion, config)
    s = config.size
    shape = subject.lesions.shape
    flags = list(lesion.flags)
    corners = np.array(np.meshgrid(*[[0, s - 1]] * 3, indexing="ij")).reshape(3, -1)
    cvox = m @ corners + t[:, None]
    if np.any(cvox < -0.5) or np.any(cvox > np.asarray(shape)[:, None] - 0.5):
        flags.append("padded")
    volumes = (subject.local_field if config.source == "phase" else subject.qsm, subject.flair,
               lambda win: (subject.lesions[win] == lesion.id).astype(np.float32))
    if volumes[0] is None:
        raise InputError(f"subject {subject.id} has no {config.source} image, which this model "
                         "reads; give it, or use a model for the input the subject has")
    cvals = (0.0, float(subject.info.get("flair_background", 0.0)), 0.0)
    qsm, flair, ind = sampler(volumes, cvals, m, t, s, shape)
    mask = ind >= 0.5 - 1e-4
    if not mask.any():  # a thin lesion can fall between patch samples: keep its centre voxel
        mask[s // 2, s // 2, s // 2] = True
    sampled_mm3 = mask.sum() * config.spacing_mm ** 3
    if sampled_mm3 < 0.8 * lesion.volume_mm3 and lesion.volume_mm3 > 8 * config.spacing_mm ** 3:
        flags.append("exceeds_patch")
    sdist = _signed_distance_clipped(mask, config.spacing_mm)
    if config.source == "phase":
        qsm = reference_field(qsm)
    x = np.stack([qsm, flair, mask.astype(np.float32), sdist]).astype(np.float32, copy=False)
    return x, flags


def reference_field(patch: np.ndarray) -> np.ndarray:
    """A local field patch less its median over the voxels that hold field (outside the brain and
    the field of view stay 0). Background removal leaves a field's offset arbitrary (it depends on
    the method and the mask), and the offset is as large as a lesion's own field (a few ppb), so a
    phase model reads the field relative to its neighbourhood. Train (the engine's field patches)
    and predict (sample_patch) call this one function."""
    held = patch != 0
    if not held.any():
        return patch
    return (patch - np.float32(np.median(patch[held])) * held).astype(np.float32, copy=False)


def extract_patches(subject: Subject, config: PatchConfig | None = None, lesion_ids=None,
                    quiet: bool = True) -> PatchSet:
    """Patches of every lesion (or of `lesion_ids`) of a loaded subject."""
    from ..runtime import progress

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
