"""The I/O ground floor: every image enters and leaves rimscope through here.

Inputs are validated once (so later stages can trust them), turned to closest-canonical RAS with
their affine kept, and anything written goes back on the original QSM grid and header, so users
overlay results on their own scans without a resampling step.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations as nio
from scipy import ndimage

from .errors import InputError
from .runtime import atomic_path

log = logging.getLogger("rimscope")

AFFINE_TOL_MM = 1e-3
MIN_LESION_OVERLAP = 0.8
PPB_RANGE = 5.0  # a robust QSM range above this (in "ppm") means the map is in ppb


@dataclass
class Subject:
    """One subject in closest-canonical RAS, with what is needed to write back on the input grid."""

    id: str
    qsm: np.ndarray  # float32, ppm
    flair: np.ndarray  # float32, normalised: brain median 0, robust range 1
    lesions: np.ndarray  # int32 instance ids, 0 = background
    brainmask: np.ndarray  # bool
    affine: np.ndarray  # canonical voxel -> world (mm)
    ref_header: nib.Nifti1Header = field(repr=False)  # the original QSM header (shape, codes)
    ref_affine: np.ndarray = field(repr=False)  # the original QSM affine
    ornt: np.ndarray = field(repr=False)  # original -> canonical orientation transform
    paths: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    info: dict = field(default_factory=dict)

    @property
    def zooms(self) -> np.ndarray:
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    @property
    def voxel_volume(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3])))

    def to_original(self, array: np.ndarray) -> np.ndarray:
        """A canonical-grid array back on the original QSM voxel grid, voxel-exactly."""
        return apply_ornt(array, invert_ornt(self.ornt))

    def original_image(self, array: np.ndarray, dtype=None) -> nib.Nifti1Image:
        """Wrap a canonical-grid array as a NIfTI on the original QSM grid and header."""
        return image_like(self.ref_header, self.ref_affine, self.to_original(array), dtype)


# ---------------------------------------------------------------- reading single images

def read_image(path, role: str) -> nib.Nifti1Image:
    """Load a 3D NIfTI fully (so truncation shows now, not mid-run) or raise a one-line InputError."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{role} file not found; check the path (relative paths are read from the "
                         "manifest's folder)", path)
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for broken files
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise InputError(f"cannot read {role} image ({reason}); re-export it as a complete "
                         ".nii or .nii.gz", path) from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"{role} is not NIfTI; convert it to .nii/.nii.gz (e.g. dcm2niix)", path)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{role} image is {data.ndim}D with shape {data.shape}; give one 3D "
                         "volume (e.g. the last echo's QSM or fslroi to pick a volume)", path)
    if not np.all(np.isfinite(img.affine)) or abs(np.linalg.det(img.affine[:3, :3])) < 1e-6:
        raise InputError(f"{role} has an invalid affine; fix its header (qform/sform)", path)
    out = nib.Nifti1Image(data, img.affine, img.header if isinstance(img, nib.Nifti1Image) else None)
    out.set_filename(str(path))
    return out


def _finite(data: np.ndarray, role: str, path) -> np.ndarray:
    data = np.asarray(data, dtype=np.float32)
    bad = ~np.isfinite(data)
    if bad.any():
        raise InputError(f"{role} has {int(bad.sum())} NaN/Inf voxels; set them to 0 "
                         "(e.g. fslmaths IN -nan OUT)", path)
    return data


def _lesion_labels(data: np.ndarray, path) -> np.ndarray:
    """Binary mask -> 26-connected components; integer map -> ids kept."""
    from .lesions import label_components

    if not np.issubdtype(data.dtype, np.integer):
        data = np.asarray(data, dtype=np.float64)
        if not np.all(np.isfinite(data)):
            raise InputError("lesion mask has NaN/Inf voxels; give a binary or integer label map", path)
        if np.any(np.abs(data - np.round(data)) > 1e-3):
            raise InputError("lesion mask has non-integer values (a probability map?); threshold "
                             "it to a binary mask or give integer lesion ids", path)
        data = np.round(data)
    if data.min() < 0:
        raise InputError("lesion mask has negative labels; lesion ids must be >= 0", path)
    values = np.unique(data)
    if values.size == 1 and values[0] == 0:
        raise InputError("lesion mask is empty (no voxel > 0); check it is the right file", path)
    if values.max() >= 2**31:
        raise InputError("lesion ids exceed int32; renumber them", path)
    if set(values.tolist()) <= {0, 1}:
        return label_components(data > 0)
    return data.astype(np.int32)


# ---------------------------------------------------------------- grids and orientation

def same_grid(a: nib.Nifti1Image, b: nib.Nifti1Image) -> bool:
    return a.shape[:3] == b.shape[:3] and np.allclose(a.affine, b.affine, atol=AFFINE_TOL_MM)


def apply_ornt(array: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(nio.apply_orientation(array, ornt))


def invert_ornt(ornt: np.ndarray) -> np.ndarray:
    """The orientation transform that undoes `ornt` (a permutation with flips)."""
    inv = np.zeros_like(ornt)
    for i, (axis, flip) in enumerate(ornt):
        inv[int(axis)] = (i, flip)
    return inv


def canonical_ornt(affine: np.ndarray) -> np.ndarray:
    return nio.io_orientation(affine)


def canonical_affine(affine: np.ndarray, shape, ornt: np.ndarray) -> np.ndarray:
    return affine @ nio.inv_ornt_aff(ornt, shape)


def resample_to(src_data: np.ndarray, src_affine: np.ndarray, ref_shape, ref_affine: np.ndarray,
                order: int) -> np.ndarray:
    """Resample by affines (world space shared): linear for images, nearest for labels."""
    vox = np.linalg.inv(src_affine) @ ref_affine
    out_dtype = src_data.dtype if order == 0 else np.float32
    src = src_data if order == 0 else src_data.astype(np.float32)
    return ndimage.affine_transform(src, vox[:3, :3], offset=vox[:3, 3], output_shape=tuple(ref_shape),
                                    order=order, mode="constant", cval=0, output=out_dtype,
                                    prefilter=False)


def lesion_fraction_in_fov(lesions: np.ndarray, les_affine: np.ndarray, ref_shape, ref_affine) -> float:
    idx = np.argwhere(lesions > 0)
    if idx.size == 0:
        return 0.0
    world = nib.affines.apply_affine(les_affine, idx)
    ref_vox = nib.affines.apply_affine(np.linalg.inv(ref_affine), world)
    inside = np.all((ref_vox > -0.5) & (ref_vox < np.asarray(ref_shape) - 0.5), axis=1)
    return float(inside.mean())


# ---------------------------------------------------------------- normalisation and masks

def robust_range(values: np.ndarray) -> float:
    if values.size == 0:
        return 0.0
    lo, hi = np.percentile(values, [0.5, 99.5])
    return float(hi - lo)


def normalise_flair(flair: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Scale-free FLAIR: brain median at 0, the brain's 0.5-99.5 percentile range at 1."""
    vals = flair[brain]
    if vals.size < 10:
        vals = flair[flair != 0] if np.any(flair != 0) else flair.ravel()
    lo, med, hi = np.percentile(vals, [0.5, 50, 99.5])
    scale = max(hi - lo, 1e-6)
    return ((flair - med) / scale).astype(np.float32)


def derive_brainmask(qsm: np.ndarray, flair: np.ndarray) -> np.ndarray:
    """qsm != 0 when the map is masked (it usually is); else a FLAIR threshold, filled."""
    nz = qsm != 0
    if 0.01 < nz.mean() < 0.9:
        return nz
    thr = 0.1 * np.percentile(flair[flair > 0], 98) if np.any(flair > 0) else 0
    mask = ndimage.binary_fill_holes(flair > thr)
    lab, n = ndimage.label(mask)
    if n > 1:
        mask = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    return mask


# ---------------------------------------------------------------- the subject loader

def load_subject(qsm, flair, lesions, brainmask=None, subject_id: str | None = None,
                 qsm_units: str = "ppm") -> Subject:
    """Load, validate and canonicalise one subject. Images may be paths or nibabel images."""
    paths = {}
    imgs = {}
    for role, src in (("qsm", qsm), ("flair", flair), ("lesions", lesions), ("brainmask", brainmask)):
        if src is None:
            continue
        if isinstance(src, (str, Path)):
            paths[role] = str(src)
            imgs[role] = read_image(src, role)
        else:
            paths[role] = src.get_filename() or f"<{role} image>"
            data = np.asanyarray(src.dataobj)
            if data.ndim == 4 and data.shape[3] == 1:
                data = data[..., 0]
            if data.ndim != 3:
                raise InputError(f"{role} image is {data.ndim}D; give one 3D volume", paths[role])
            imgs[role] = nib.Nifti1Image(data, src.affine, src.header if isinstance(src, nib.Nifti1Image) else None)
    sid = subject_id or _guess_id(paths.get("qsm", "subject"))
    warnings: list[str] = []

    ref = imgs["qsm"]
    qsm_data = _finite(np.asanyarray(ref.dataobj), "qsm", paths["qsm"])
    if qsm_units == "ppb":
        qsm_data = qsm_data / 1000.0
    elif qsm_units != "ppm":
        raise InputError(f"--qsm-units {qsm_units!r} is not ppm or ppb")
    nz = qsm_data[qsm_data != 0]
    rng = robust_range(nz)
    if rng > PPB_RANGE:
        raise InputError(f"QSM robust range is {rng:.3g}, far above tissue values in ppm (about 0.5); "
                         "it looks like ppb: rerun with --qsm-units ppb", paths["qsm"])

    flair_img = imgs["flair"]
    flair_data = _finite(np.asanyarray(flair_img.dataobj), "flair", paths["flair"])
    les_img = imgs["lesions"]
    les_data = _lesion_labels(np.asanyarray(les_img.dataobj), paths["lesions"])

    if not same_grid(ref, les_img):
        frac = lesion_fraction_in_fov(les_data, les_img.affine, ref.shape, ref.affine)
        if frac < MIN_LESION_OVERLAP:
            raise InputError(f"only {frac:.0%} of lesion voxels fall inside the QSM field of view "
                             f"(need {MIN_LESION_OVERLAP:.0%}); register the mask to the QSM first",
                             paths["lesions"])
        les_data = resample_to(les_data, les_img.affine, ref.shape, ref.affine, order=0)
        if not np.any(les_data):
            raise InputError("lesion mask is empty after resampling onto the QSM grid; register it "
                             "to the QSM first", paths["lesions"])
        warnings.append(f"lesions: grid differs from the QSM; resampled (nearest) onto the QSM grid")
    if not same_grid(ref, flair_img):
        if not _overlaps(flair_img, ref):
            raise InputError("FLAIR does not overlap the QSM in world space; register it to the QSM "
                             "first", paths["flair"])
        flair_data = resample_to(flair_data, flair_img.affine, ref.shape, ref.affine, order=1)
        warnings.append("flair: grid differs from the QSM; resampled (linear) onto the QSM grid")

    if "brainmask" in imgs:
        bm_img = imgs["brainmask"]
        bm = _finite(np.asanyarray(bm_img.dataobj), "brainmask", paths["brainmask"]) > 0
        if not same_grid(ref, bm_img):
            bm = resample_to(bm.astype(np.uint8), bm_img.affine, ref.shape, ref.affine, order=0) > 0
            warnings.append("brainmask: grid differs from the QSM; resampled (nearest)")
        if not bm.any():
            raise InputError("brain mask is empty; give the right file or leave it out", paths["brainmask"])
    else:
        bm = derive_brainmask(qsm_data, flair_data)

    ornt = canonical_ornt(ref.affine)
    affine = canonical_affine(ref.affine, ref.shape, ornt)
    info = {
        "shape": list(ref.shape[:3]),
        "zooms_mm": [round(float(z), 4) for z in ref.header.get_zooms()[:3]],
        "orientation": "".join(nio.aff2axcodes(ref.affine)),
        "oblique": bool(_obliquity(ref.affine) > 1e-3),
        "qsm_robust_range": round(rng, 4),
        "qsm_units": qsm_units,
    }
    for w in warnings:
        log.warning("%s: %s", sid, w)
    return Subject(
        id=sid,
        qsm=apply_ornt(qsm_data, ornt),
        flair=normalise_flair(apply_ornt(flair_data, ornt), apply_ornt(bm, ornt)),
        lesions=apply_ornt(les_data.astype(np.int32), ornt),
        brainmask=apply_ornt(bm, ornt),
        affine=affine,
        ref_header=ref.header.copy(),
        ref_affine=ref.affine.copy(),
        ornt=ornt,
        paths=paths,
        warnings=warnings,
        info=info,
    )


def _overlaps(img: nib.Nifti1Image, ref: nib.Nifti1Image) -> bool:
    """Do the two images' fields of view share any world space (bounding boxes of the corners)?"""
    def box(im):
        corners = np.array(np.meshgrid(*[[0, s - 1] for s in im.shape[:3]], indexing="ij")).reshape(3, -1).T
        w = nib.affines.apply_affine(im.affine, corners)
        return w.min(0), w.max(0)

    (alo, ahi), (blo, bhi) = box(img), box(ref)
    return bool(np.all(np.minimum(ahi, bhi) > np.maximum(alo, blo)))


def _obliquity(affine: np.ndarray) -> float:
    rzs = affine[:3, :3] / np.sqrt((affine[:3, :3] ** 2).sum(0))
    return float(np.max(1 - np.abs(rzs).max(axis=0)))


def _guess_id(path: str) -> str:
    name = Path(path).name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    return name.split("_")[0].removeprefix("sub-") or "subject"


# ---------------------------------------------------------------- writing

def image_like(header: nib.Nifti1Header, affine: np.ndarray, data: np.ndarray,
               dtype=None) -> nib.Nifti1Image:
    """A new image with the reference's affine and header (qform/sform codes kept)."""
    if tuple(data.shape[:3]) != tuple(header.get_data_shape()[:3]):
        raise ValueError(f"shape {data.shape} does not match the reference grid "
                         f"{header.get_data_shape()}")
    hdr = header.copy()
    data = np.asarray(data, dtype=dtype) if dtype is not None else np.asarray(data)
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
