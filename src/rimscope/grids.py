"""Voxel grids in world space: orientation, closest-canonical RAS, resampling by affines, overlap.

Kept apart from rimscope.io so that the geometry (which must be exact: outputs go back onto the
user's grid voxel for voxel) can be read and tested on its own, without file handling around it.
"""
from __future__ import annotations

import nibabel as nib
import numpy as np
from nibabel import orientations as nio
from scipy import ndimage

from .errors import InputError

AFFINE_TOL_MM = 1e-3


def same_grid(a, b) -> bool:
    """Same shape and affines equal within AFFINE_TOL_MM: used as is, no resampling."""
    return tuple(a.shape[:3]) == tuple(b.shape[:3]) and np.allclose(a.affine, b.affine,
                                                                    atol=AFFINE_TOL_MM)


def on_qsm_grid(ref, ref_name, img, role: str, name, warnings: list) -> bool:
    """Is `img` on the QSM grid (True: use voxel for voxel) or to be resampled (False)?

    Resampling goes through world space, so both images need a real one: an image whose qform and
    sform codes are both 0 has only nibabel's guess from the voxel size. Such an image is taken
    voxel for voxel when its shape is the QSM's (with a warning) and refused otherwise.
    """
    same = same_grid(ref, img)
    if ref.world and img.world:
        return same
    missing, where = (name, role) if not img.world else (ref_name, "qsm")
    if same or tuple(ref.shape[:3]) == tuple(img.shape[:3]):
        warnings.append(f"{where}: no world space in the header (qform and sform codes 0); "
                        f"{role} taken as on the QSM grid voxel for voxel")
        return True
    raise InputError(f"{where} has no world space (qform and sform codes are both 0) and the "
                     f"{role} grid {'x'.join(map(str, img.shape[:3]))} differs from the qsm grid "
                     f"{'x'.join(map(str, ref.shape[:3]))}, so they cannot be aligned; write the "
                     "scanner affine into its header (e.g. re-export from DICOM with dcm2niix) or "
                     "resample it onto the QSM grid first", missing)


def canonical_ornt(affine: np.ndarray) -> np.ndarray:
    """Orientation transform from an image's voxel axes to closest-canonical RAS."""
    return nio.io_orientation(affine)


IDENTITY_ORNT = np.array([[0, 1], [1, 1], [2, 1]])


def invert_ornt(ornt: np.ndarray) -> np.ndarray:
    """The orientation transform that undoes `ornt` (canonical array -> original voxel order)."""
    return nio.ornt_transform(IDENTITY_ORNT, ornt)


def is_identity(ornt: np.ndarray) -> bool:
    return bool(np.array_equal(ornt, IDENTITY_ORNT))


def apply_ornt(array: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Flip/permute voxel axes (exact, no interpolation); no copy when nothing changes."""
    if is_identity(ornt):
        return array
    return np.ascontiguousarray(nio.apply_orientation(array, ornt))


def canonical_affine(affine: np.ndarray, shape, ornt: np.ndarray) -> np.ndarray:
    """The affine of the reoriented array: the same world points, new voxel indices."""
    return affine @ nio.inv_ornt_aff(ornt, tuple(shape[:3]))


def resample_to(src_data: np.ndarray, src_affine: np.ndarray, ref_shape, ref_affine: np.ndarray,
                order: int) -> np.ndarray:
    """Resample onto a reference grid through world space: linear (order 1) for images,
    nearest (order 0) for labels (dtype kept). Outside the source field of view: 0."""
    vox = np.linalg.inv(src_affine) @ ref_affine
    out_dtype = src_data.dtype if order == 0 else np.float32
    src = src_data if order == 0 else np.asarray(src_data, dtype=np.float32)
    return ndimage.affine_transform(src, vox[:3, :3], offset=vox[:3, 3],
                                    output_shape=tuple(ref_shape[:3]), order=order,
                                    mode="constant", cval=0, output=out_dtype, prefilter=False)


def fov_fraction(vox_idx: np.ndarray, from_affine: np.ndarray, to_shape, to_affine) -> float:
    """Fraction of voxels (indices (N, 3) on a grid with `from_affine`) whose centres fall inside
    the field of view of another grid (half a voxel of margin, as nearest sampling allows)."""
    if len(vox_idx) == 0:
        return 0.0
    world = nib.affines.apply_affine(from_affine, vox_idx)
    to_vox = nib.affines.apply_affine(np.linalg.inv(to_affine), world)
    inside = np.all((to_vox > -0.5) & (to_vox < np.asarray(to_shape[:3]) - 0.5), axis=1)
    return float(inside.mean())


def world_box(shape, affine) -> tuple[np.ndarray, np.ndarray]:
    """World-space bounding box of a grid's voxel centres."""
    corners = np.array(np.meshgrid(*[[0, s - 1] for s in shape[:3]], indexing="ij")).reshape(3, -1).T
    w = nib.affines.apply_affine(affine, corners)
    return w.min(0), w.max(0)


def boxes_overlap(shape_a, affine_a, shape_b, affine_b) -> bool:
    """Do two fields of view share any world space (bounding boxes)?"""
    (alo, ahi), (blo, bhi) = world_box(shape_a, affine_a), world_box(shape_b, affine_b)
    return bool(np.all(np.minimum(ahi, bhi) > np.maximum(alo, blo)))


def obliquity(affine: np.ndarray) -> float:
    """0 for axis-aligned grids; grows with the angle between voxel and world axes."""
    rzs = affine[:3, :3] / np.sqrt((affine[:3, :3] ** 2).sum(0))
    return float(np.max(1 - np.abs(rzs).max(axis=0)))


def axcodes(affine: np.ndarray) -> str:
    return "".join(nio.aff2axcodes(affine))
