"""Single images in and out: read and check one image (NIfTI or MGZ, its size from the header,
finite values, lesion maps), the intensity normalisation and brain mask, and writing back on a
reference header atomically.

Why apart from the subject loader (io.subject): these are the per-file rules every image obeys,
whatever subject it belongs to; the loader combines them on one reference grid.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..runtime import atomic_path

PERCENTILE_SAMPLES = 1_000_000  # robust percentiles from an evenly strided subsample this large
# A subject needs about 17 bytes of memory per voxel of the QSM grid (three images and their masks
# in memory at once): 2**27 voxels (512^3) stay under ~2.5 GB. Larger grids are refused from the
# header, before anything is read; patches are sampled at 1 mm, so a 0.5-0.6 mm grid loses nothing.
MAX_VOXELS = 2**27


# ---------------------------------------------------------------- reading single images

@dataclass
class Image:
    """A read image: 3D data in memory, its affine and its untouched header (for write-back)."""

    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header = field(repr=False)
    world: bool = True  # False: qform and sform codes 0, the affine is nibabel's guess from pixdim

    @property
    def shape(self) -> tuple:
        return self.data.shape


def read_image(src, role: str) -> tuple[Image, str]:
    """A path or nibabel image -> (Image with its 3D data in memory, name for messages).

    Files are read completely now, so a truncated download fails here with its name rather than
    mid-run; every problem is a one-line InputError.
    """
    if isinstance(src, (str, Path)):
        path = Path(src)
        name = str(path)
        if not path.exists():
            raise InputError(f"{role} file not found; check the path (relative paths are read "
                             "from the manifest's folder)", path)
        try:
            img = nib.load(name)
            _check_size(img, role, path)
            data = np.asanyarray(img.dataobj)
        except InputError:
            raise
        except Exception as exc:  # nibabel raises many types for broken files
            first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            raise InputError(f"cannot read {role} image ({first}); re-export it as a complete "
                             ".nii or .nii.gz", path) from None
    else:
        img = src
        name = (src.get_filename() if hasattr(src, "get_filename") else None) or f"<{role} image>"
        _check_size(img, role, name)
        data = np.asanyarray(img.dataobj)
    if isinstance(img, nib.MGHImage):  # FreeSurfer .mgz/.mgh (SAMSEG, recon-all): scanner RAS
        img = nib.Nifti1Image(data, img.affine)
        img.set_qform(img.affine, code=1)
        img.set_sform(img.affine, code=1)
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"{role} is not NIfTI or MGZ; convert it to .nii/.nii.gz (DICOM: "
                         "dcm2niix)", name)
    while data.ndim > 3 and data.shape[-1] == 1:  # (x, y, z, 1): one volume stored as 4D
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{role} image is {data.ndim}D with shape {data.shape}; give one 3D "
                         "volume (e.g. fslroi IN OUT 0 1 to pick one)", name)
    if data.dtype.kind not in "biuf":
        raise InputError(f"{role} has data type {data.dtype}, not real numbers; save it as "
                         "float32 or an integer type", name)
    if not np.all(np.isfinite(img.affine)) or abs(np.linalg.det(img.affine[:3, :3])) < 1e-6:
        raise InputError(f"{role} has an invalid affine; fix its header (qform/sform)", name)
    header = img.header if isinstance(img, nib.Nifti1Image) else nib.Nifti1Header.from_header(img.header)
    world = bool(int(img.header["qform_code"]) or int(img.header["sform_code"]))
    return Image(data=data, affine=np.array(img.affine, dtype=float), header=header.copy(),
                 world=world), name


def _check_size(img, role: str, name) -> None:
    """Refuse a grid too large for memory from its header alone (nothing read yet)."""
    shape = tuple(int(n) for n in getattr(img, "shape", ()))
    n = int(np.prod(shape, dtype=np.int64)) if shape else 0
    if n > MAX_VOXELS:
        raise InputError(f"{role} has {'x'.join(map(str, shape))} = {n / 1e6:.0f} M voxels, above "
                         f"rimscope's limit of {MAX_VOXELS / 1e6:.0f} M (512^3, about 2.5 GB of "
                         "memory); resample it to 0.5-0.6 mm first (patches are read at 1 mm), e.g. "
                         "mri_convert -vs 0.6 0.6 0.6 IN OUT", name)


def finite_float(data: np.ndarray, role: str, name) -> np.ndarray:
    """float32 copy-free where possible; NaN/Inf refused with the fix (common outside the brain)."""
    data = np.asarray(data, dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):  # +Inf + -Inf: no numpy warning, just NaN
        total = data.sum(dtype=np.float64)
    if not np.isfinite(total):  # one cheap pass; count only on failure
        bad = int((~np.isfinite(data)).sum())
        raise InputError(f"{role} has {bad} NaN/Inf voxels; set them to 0 (e.g. fslmaths IN -nan "
                         "OUT)", name)
    return data


def lesion_values(data: np.ndarray, name, lesion_label: int | None = None,
                  zooms=(1.0, 1.0, 1.0)) -> tuple[str, np.ndarray]:
    """('binary', uint8 mask) or ('instances', int32 ids); refuses empty/non-integer/negative maps.

    A map with one non-zero value (0/1, 0/255, float 0.0/1.0) is a binary mask whose components
    become lesions; two or more values are instance ids, kept as given, unless the map is a label
    map of classes or tissues (refused, rimscope.lesion_maps). `lesion_label` takes that one
    label as a binary mask.
    """
    from .. import lesion_maps

    if lesion_label is not None:
        return "binary", lesion_maps.select_label(data, lesion_label, name)
    nonzero = data != 0
    vals = data[nonzero]
    if vals.size == 0:
        raise InputError("lesion mask is empty (no voxel > 0); check it is the right file", name)
    if data.dtype.kind == "f":
        if not np.all(np.isfinite(vals)):
            raise InputError("lesion mask has NaN/Inf voxels; give a binary or integer label map",
                             name)
        if np.any(np.abs(vals - np.round(vals)) > 1e-3):
            raise InputError("lesion mask has non-integer values (a probability map?); threshold "
                             "it to a binary mask or give integer lesion ids", name)
        vals = np.round(vals)
    if vals.min() < 0:
        raise InputError("lesion mask has negative labels; lesion ids must be >= 0", name)
    uniq = np.unique(vals)
    if uniq.max() >= 2**31:
        raise InputError("lesion ids exceed int32; renumber them", name)
    if uniq.size == 1:
        return "binary", nonzero.view(np.uint8)
    out = np.zeros(data.shape, np.int32)
    out[nonzero] = vals.astype(np.int32)
    lesion_maps.check_instance_map(out, uniq, zooms, name)
    return "instances", out


# ---------------------------------------------------------------- normalisation and masks

def _subsample(values: np.ndarray) -> np.ndarray:
    """An evenly strided subsample: percentiles within ~0.1 % of the exact ones, several times
    faster on whole-brain volumes, and deterministic."""
    step = max(1, values.size // PERCENTILE_SAMPLES)
    return values[::step]


def _grid_sample(volume: np.ndarray, *masks_of: np.ndarray) -> tuple:
    """Every other voxel along each axis (1/8 of a whole-brain volume) when the volume is large:
    the same views for the image and its masks whatever their memory order."""
    step = 2 if volume.size > 8 * PERCENTILE_SAMPLES else 1
    sl = (slice(None, None, step),) * volume.ndim
    return (volume[sl],) + tuple(m[sl] for m in masks_of)


def robust_range(values: np.ndarray) -> float:
    """0.5-99.5 percentile range: what tissue spans, ignoring a few extreme voxels."""
    if values.size == 0:
        return 0.0
    lo, hi = np.percentile(_subsample(values), [0.5, 99.5])
    return float(hi - lo)


def normalise_flair(flair: np.ndarray, brain: np.ndarray) -> tuple[np.ndarray, float]:
    """Scale-free FLAIR: brain median at 0, the brain's 0.5-99.5 percentile range at 1.

    Returns the image and the value raw 0 maps to (what "no signal" looks like after scaling;
    patches are padded with it outside the field of view).
    """
    f_s, b_s = _grid_sample(flair, brain)
    vals = f_s[b_s]
    if vals.size < 10:
        vals = flair[flair != 0] if np.any(flair != 0) else flair.ravel()
    lo, med, hi = (float(v) for v in np.percentile(_subsample(vals), [0.5, 50, 99.5]))
    scale = max(hi - lo, 1e-6)
    out = flair - np.float32(med)
    out *= np.float32(1.0 / scale)
    return out.astype(np.float32, copy=False), -med / scale


def derive_brainmask(qsm: np.ndarray, flair: np.ndarray) -> np.ndarray:
    """qsm != 0 when the map is masked (it usually is); else a FLAIR threshold, filled."""
    nz = qsm != 0
    if 0.01 < nz.mean() < 0.9:
        return nz
    thr = 0.1 * np.percentile(_subsample(flair[flair > 0]), 98) if np.any(flair > 0) else 0
    mask = ndimage.binary_fill_holes(flair > thr)
    lab, n = ndimage.label(mask)
    if n > 1:
        mask = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    return mask


# ---------------------------------------------------------------- writing

def image_like(header: nib.Nifti1Header, affine: np.ndarray, data: np.ndarray,
               dtype=None) -> nib.Nifti1Image:
    """A new image with the reference's affine and header (qform/sform codes, pixdim, units kept).

    A reference stored as (x, y, z, 1) gets its output in the same shape, so the header is the
    user's own, dimension for dimension.
    """
    ref_shape = tuple(int(n) for n in header.get_data_shape())
    if tuple(data.shape[:3]) != ref_shape[:3]:
        raise ValueError(f"shape {data.shape} does not match the reference grid {ref_shape}")
    data = np.asarray(data, dtype=dtype) if dtype is not None else np.asarray(data)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    elif data.dtype == np.int64 and (data.size == 0 or np.abs(data).max() < 2**31):
        data = data.astype(np.int32)
    if data.ndim == 3 and len(ref_shape) > 3 and all(n == 1 for n in ref_shape[3:]):
        data = data.reshape(ref_shape)
    hdr = header.copy()
    hdr.set_data_dtype(data.dtype)
    img = nib.Nifti1Image(data, affine, hdr)
    img.header.set_slope_inter(1, 0)
    img.header["cal_min"], img.header["cal_max"] = 0, 0
    return img


def save_atomic(img: nib.Nifti1Image, path) -> None:
    """Write a NIfTI so that a crash never leaves a partial file under the final name."""
    path = Path(path)
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else ".nii"
    with atomic_path(path, suffix=suffix) as tmp:
        nib.save(img, str(tmp))
