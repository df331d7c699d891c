"""The subject loader: one subject's QSM, FLAIR, lesions and brain mask read (in parallel),
checked against each other on the QSM grid, canonicalised to closest-canonical RAS, with what is
needed to write results back on the user's own grid (`Subject`); the subject id a file name
implies (`guess_subject_id`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import InputError
from ..grids import (apply_ornt, axcodes, boxes_overlap, canonical_affine, canonical_ornt, fov_fraction,
                     invert_ornt, obliquity, on_qsm_grid, resample_to, same_grid)
from .images import (derive_brainmask, finite_float, image_like, lesion_values, normalise_flair, read_image,
                     robust_range, _grid_sample)

log = logging.getLogger("rimscope")

MIN_LESION_OVERLAP = 0.8
PPB_RANGE = 5.0  # a robust QSM range above this (in "ppm") means the map is in ppb


@dataclass
class Subject:
    """One subject in closest-canonical RAS, with what is needed to write back on the input grid."""

    id: str
    qsm: np.ndarray | None  # float32, ppm; None for a phase-only subject (rimscope.phase)
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
    local_field: np.ndarray | None = None  # float32 ppm, from a phase image (rimscope.phase)

    @property
    def zooms(self) -> np.ndarray:
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    @property
    def voxel_volume(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3])))

    def to_original(self, array: np.ndarray) -> np.ndarray:
        """A canonical-grid array back on the original QSM voxel grid, voxel-exactly."""
        return apply_ornt(np.asarray(array), invert_ornt(self.ornt))

    def original_image(self, array: np.ndarray, dtype=None) -> nib.Nifti1Image:
        """Wrap a canonical-grid array as a NIfTI on the original QSM grid and header."""
        return image_like(self.ref_header, self.ref_affine, self.to_original(array), dtype)


# ---------------------------------------------------------------- the subject loader

def load_subject(qsm, flair, lesions, brainmask=None, subject_id: str | None = None,
                 qsm_units: str = "ppm", lesion_label: int | None = None) -> Subject:
    """Load, validate and canonicalise one subject. Images may be paths or nibabel images.

    The QSM grid is the reference: a FLAIR, mask or brain mask on another grid of the same
    session is resampled onto it through world space (with a warning), and refused when it does
    not cover the lesions. `lesion_label` takes one label of a label map (e.g. 99 of SAMSEG's
    segmentation) as the binary lesion mask.
    """
    if qsm_units not in ("ppm", "ppb"):
        raise InputError(f"--qsm-units {qsm_units!r} is not ppm or ppb")
    (ref, qsm_name), (flair_img, flair_name), (les_img, les_name), (bm_img, bm_name) = \
        _read_all({"qsm": qsm, "flair": flair, "lesions": lesions, "brainmask": brainmask})
    paths = {"qsm": qsm_name, "flair": flair_name, "lesions": les_name}
    if bm_name:
        paths["brainmask"] = bm_name
    sid = subject_id or guess_subject_id(qsm_name)
    warnings: list[str] = []
    shape = ref.shape[:3]

    # QSM: finite, not empty, in ppm
    qsm_data = finite_float(ref.data, "qsm", qsm_name)
    (q_s,) = _grid_sample(qsm_data)
    nz = q_s[q_s != 0]
    if nz.size == 0 and not qsm_data.any():
        raise InputError("qsm is all zero; check it is the susceptibility map", qsm_name)
    raw_range = robust_range(nz)
    units_guess = "ppb" if raw_range > PPB_RANGE else "ppm"
    if qsm_units == "ppb":
        qsm_data = qsm_data * np.float32(1e-3)
        if units_guess == "ppm":
            warnings.append(f"qsm: --qsm-units ppb given but its robust range ({raw_range:.3g}) "
                            "looks like ppm; check the units")
    rng = raw_range / 1000 if qsm_units == "ppb" else raw_range
    if rng > PPB_RANGE:
        raise InputError(f"QSM robust range is {rng:.3g}, far above tissue values in ppm (about "
                         "0.5); it looks like ppb: rerun with --qsm-units ppb", qsm_name)

    # lesions: binary mask or instance map, onto the QSM grid
    kind, les_data = lesion_values(les_img.data, les_name, lesion_label,
                                   np.sqrt((les_img.affine[:3, :3] ** 2).sum(0)))
    if not on_qsm_grid(ref, qsm_name, les_img, "lesions", les_name, warnings):
        idx = np.argwhere(les_data)
        frac = fov_fraction(idx, les_img.affine, shape, ref.affine)
        if frac < MIN_LESION_OVERLAP:
            raise InputError(f"only {frac:.0%} of lesion voxels fall inside the QSM field of view "
                             f"(need {MIN_LESION_OVERLAP:.0%}); the mask and the QSM cannot be put "
                             "in one space: register the mask to the QSM first", les_name)
        les_data = resample_to(les_data, les_img.affine, shape, ref.affine, order=0)
        if not np.any(les_data):
            raise InputError("lesion mask is empty after resampling onto the QSM grid; register "
                             "it to the QSM first", les_name)
        warnings.append("lesions: grid differs from the QSM; resampled (nearest) onto the QSM grid")

    # FLAIR: onto the QSM grid; it must cover the lesions
    flair_data = finite_float(flair_img.data, "flair", flair_name)
    if not on_qsm_grid(ref, qsm_name, flair_img, "flair", flair_name, warnings):
        frac = fov_fraction(np.argwhere(les_data), ref.affine, flair_img.shape, flair_img.affine)
        if frac < MIN_LESION_OVERLAP or not boxes_overlap(shape, ref.affine, flair_img.shape,
                                                          flair_img.affine):
            raise InputError(f"only {frac:.0%} of lesion voxels fall inside the FLAIR field of view "
                             f"(need {MIN_LESION_OVERLAP:.0%}); FLAIR and QSM cannot be put in one "
                             "space: register the FLAIR to the QSM first", flair_name)
        flair_data = resample_to(flair_data, flair_img.affine, shape, ref.affine, order=1)
        warnings.append("flair: grid differs from the QSM; resampled (linear) onto the QSM grid")

    if bm_img is not None:
        bm = finite_float(bm_img.data, "brainmask", bm_name) > 0
        if not on_qsm_grid(ref, qsm_name, bm_img, "brainmask", bm_name, warnings):
            bm = resample_to(bm.view(np.uint8), bm_img.affine, shape, ref.affine, order=0) > 0
            warnings.append("brainmask: grid differs from the QSM; resampled (nearest)")
        if not bm.any():
            raise InputError("brain mask is empty (on the QSM grid); give the right file or leave "
                             "it out", bm_name)
    else:
        bm = derive_brainmask(qsm_data, flair_data)

    # closest-canonical RAS; binary masks get their ids there, so ids do not depend on how the
    # file happened to be stored (RAS, LPS, ...)
    ornt = canonical_ornt(ref.affine)
    affine = canonical_affine(ref.affine, shape, ornt)
    les_can = apply_ornt(les_data, ornt)
    if kind == "binary":
        from ..lesions import label_components

        les_can = label_components(les_can)
    bm_can = apply_ornt(bm, ornt)
    flair_can, flair_zero = normalise_flair(apply_ornt(flair_data, ornt), bm_can)
    info = {
        "shape": list(shape),
        "zooms_mm": [round(float(z), 4) for z in np.sqrt((ref.affine[:3, :3] ** 2).sum(0))],
        "orientation": axcodes(ref.affine),
        "oblique": bool(obliquity(ref.affine) > 1e-3),
        "qsm_robust_range": round(rng, 4),
        "qsm_units": qsm_units,
        "units_guess": units_guess,
        "lesion_map": kind,
        "lesion_label": lesion_label,
        "flair_background": float(flair_zero),
    }
    for w in warnings:
        log.warning("%s: %s", sid, w)
    return Subject(
        id=sid,
        qsm=apply_ornt(qsm_data, ornt),
        flair=flair_can,
        lesions=np.asarray(les_can, dtype=np.int32),
        brainmask=bm_can,
        affine=affine,
        ref_header=ref.header.copy(),
        ref_affine=ref.affine.copy(),
        ornt=ornt,
        paths=paths,
        warnings=warnings,
        info=info,
    )


def _read_all(sources: dict) -> list:
    """read_image for every role at once: gzip inflation releases the GIL, so on 2+ cores the
    files decompress in parallel. Errors are raised in role order, so the message is stable."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(sources)) as pool:
        futures = [pool.submit(read_image, src, role) if src is not None else None
                   for role, src in sources.items()]
        return [f.result() if f is not None else (None, None) for f in futures]


def canonical_mask(path, subject: Subject, what: str = "mask") -> np.ndarray:
    """A binary image that must lie on `subject`'s QSM grid (a rim mask, a simulated cohort's rim
    truth), as a canonical bool array like the subject's own; refused when it is on another grid."""
    img = nib.load(str(path))
    if not same_grid(img, nib.Nifti1Image(np.zeros(subject.ref_header.get_data_shape()[:3], np.uint8),
                                          subject.ref_affine)):
        raise InputError(f"{what} is not on the subject's QSM grid; write it on that grid", path)
    return apply_ornt(np.asarray(img.dataobj) > 0, subject.ornt)


def guess_subject_id(path) -> str:
    """The subject id a file name implies (sub-01_Chimap.nii.gz -> 01); the one place it is guessed."""
    name = Path(path).name
    for ext in (".nii.gz", ".nii", ".mgz", ".mgh"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    return name.split("_")[0].removeprefix("sub-") or "subject"
