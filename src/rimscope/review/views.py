"""Slices of QSM or FLAIR around a lesion, as PNG bytes, rendered on the server.

Why server-side: the page stays plain HTML/JS with no image library, the volumes never leave the
process, and what a rater sees is computed by the same canonical arrays the model saw. Each view
is resampled (nearest neighbour) onto a square grid in millimetres centred on the lesion centroid,
so pixels are square whatever the voxel size and the three planes share one scale. Display is
radiological: the patient's right on the image's left; anterior on the left of sagittal views.
The lesion outline is drawn on the boundaries between voxels, never over them, so a rim at the
lesion edge stays visible. A tiny zlib PNG encoder avoids importing matplotlib per request.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

PLANES = {"axial": 2, "coronal": 1, "sagittal": 0}  # plane -> normal axis of the canonical RAS array
IN_PLANE = {"axial": (0, 1), "coronal": (0, 2), "sagittal": (1, 2)}  # (horizontal, vertical) axes
HALF_MM = 20.0  # half the field of view of a view, in mm
PX_PER_MM = 8.0
CONTOUR_RGB = (255, 210, 0)
OUTSIDE = 0  # grey level outside the image volume


def png_bytes(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> PNG file bytes (8-bit truecolour, no filter)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = rgb.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * 3)], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def max_offset(zooms, plane: str) -> int:
    """How many voxels a view may scroll either way from the centroid: the field of view's half."""
    return int(np.ceil(HALF_MM / float(zooms[PLANES[plane]])))


def sample_plane(volume: np.ndarray, centre_vox, zooms, plane: str, offset: int,
                 half_mm: float = HALF_MM, px_per_mm: float = PX_PER_MM):
    """Nearest-neighbour samples of `volume` on the display grid of `plane`.

    Returns (values (n, n), inside (n, n) bool) where `inside` marks pixels within the volume.
    """
    n = int(round(2 * half_mm * px_per_mm))
    h_ax, v_ax = IN_PLANE[plane]
    normal = PLANES[plane]
    centre = np.asarray(centre_vox, float)
    mm = ((np.arange(n) + 0.5) - n / 2) / px_per_mm  # pixel centres, mm from the centre
    # columns run from the high (right / anterior) to the low end; rows from superior / anterior down
    cols = np.rint(centre[h_ax] - mm / zooms[h_ax]).astype(int)
    rows = np.rint(centre[v_ax] - mm / zooms[v_ax]).astype(int)
    k = int(np.rint(centre[normal])) + int(offset)
    shape = volume.shape
    ok_c = (cols >= 0) & (cols < shape[h_ax])
    ok_r = (rows >= 0) & (rows < shape[v_ax])
    inside = ok_r[:, None] & ok_c[None, :] & (0 <= k < shape[normal])
    if not (0 <= k < shape[normal]):
        return np.zeros((n, n), volume.dtype), inside
    sl = [slice(None)] * 3
    sl[normal] = k
    plane2d = volume[tuple(sl)]  # axes (h_ax, v_ax) in increasing order, which IN_PLANE keeps
    vals = plane2d[np.clip(cols, 0, shape[h_ax] - 1)[None, :], np.clip(rows, 0, shape[v_ax] - 1)[:, None]]
    return np.where(inside, vals, 0), inside


def outline(mask: np.ndarray) -> np.ndarray:
    """Pixels on the boundary between mask and non-mask, on the mask's outer side only."""
    edge = np.zeros_like(mask, dtype=bool)
    for axis in (0, 1):
        for shift in (1, -1):
            nb = np.roll(mask, shift, axis=axis)
            if shift == 1:
                (nb[0, :] if axis == 0 else nb[:, 0])[...] = False
            else:
                (nb[-1, :] if axis == 0 else nb[:, -1])[...] = False
            edge |= nb & ~mask
    return edge


def render(image: np.ndarray, labels: np.ndarray, lesion_id: int, centre_vox, zooms, plane: str,
           offset: int, vmin: float, vmax: float, contour: bool = True) -> bytes:
    """One view as PNG: grey levels windowed to [vmin, vmax], the lesion's outline in yellow."""
    vals, inside = sample_plane(image, centre_vox, zooms, plane, offset)
    grey = np.clip((vals.astype(np.float64) - vmin) / (vmax - vmin), 0.0, 1.0) * 255.0
    grey = np.where(inside, grey, OUTSIDE).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    if contour:
        lab, _ = sample_plane(labels, centre_vox, zooms, plane, offset)
        edge = outline(lab == lesion_id)
        rgb[edge] = CONTOUR_RGB
    return png_bytes(rgb)
