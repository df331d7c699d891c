"""Phase input: a user's unwrapped tissue phase (local field) turned into a local field in ppm,
checked, and carried by a Subject beside (or instead of) QSM.

Most centres rate rims on phase, not QSM; this module is the one place that knows about phase.

Units (`--phase-units ppm|hz|rad`; when not given, the sidecar's `Units`, else ppm):
  ppm = Hz / (42.577 * B0_T)                      (γ/2π = 42.577 MHz/T)
  ppm = rad * 1000 / (2π * TE_ms * 42.577 * B0_T)
B0 (`--field-t`) and TE (`--te-ms`) are read from the BIDS JSON sidecar beside the image
(`MagneticFieldStrength` in T, `EchoTime` in s) when present; flags override the sidecar.

Sign convention: rimscope's, that of rimscope.simulate.physics.forward_field: field (ppm of B0)
= D * χ with D(k) = 1/3 - (k·b0)²/|k|², positive χ paramagnetic. A paramagnetic sphere gives a
positive field on its B0 axis outside it and a negative one in its equatorial plane; a vein
parallel to B0 a positive field inside it. Vendors store phase with either sign. A field's own
histogram does not reveal its sign (veins perpendicular to B0 are negative inside), so the sign
is judged on a quick TKD inversion of the high-passed field: veins and iron-rich deep grey matter
make the bright tail of χ inside the brain positive. `--phase-sign auto` flips a map whose tail
is confidently negative, with a warning; `+1`/`-1` override (a confident disagreement is warned).

Refused with a one-line message: wrapped phase (values within a 2π range with many ~2π jumps
between neighbours), raw scanner phase (integers spanning ~4096), a magnitude image (all values
>= 0, median far above 0; also what a field without background removal can look like), and a map
far too large for a local field in ppm (rad or Hz given as ppm, or no background removal).

Phase only, rated by a QSM model (the shipped default): the local field (less its brain median)
is inverted to susceptibility by closed-form TKD at threshold 0.2 (rimscope.dipole.tkd), the
middle of the TKD range the shipped model was trained across on the lesion engine, and that map
is Subject.qsm (info["phase"]["qsm_from_phase"] says how). A physics step, not a second network:
a network trained to read the field directly learned nothing within this project's training
budget (BENCHMARK.md, phase input), while the engine-trained QSM network reads TKD maps by
construction. A phase model (card patch.source "phase", `rimscope train --engine --source phase`)
reads the field itself.

Filtered phase (homodyne / SWI-style high-pass) is accepted only when flagged with
`--phase-filtered`: the filter suppresses the large-scale field and part of a large lesion's own
field, so the values are not a local field in ppm and their inversion is not susceptibility. A
rim is local and may still be seen, but such calls are outside the validated domain: the flag is
recorded in the subject's info (and so in outputs) and warned.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np

from .errors import InputError
from .grids import apply_ornt, boxes_overlap, resample_to
from .io import Subject, finite_float, guess_subject_id, load_subject, read_image
from .phase_sign import SignVerdict, apply_sign, array_b0, detect_sign  # noqa: F401 (re-exported)

log = logging.getLogger("rimscope")

GAMMA_MHZ_T = 42.577  # γ/2π of 1H
UNITS = ("ppm", "hz", "rad")
PPM_REFUSE = 1.0  # robust (0.5-99.5 %) range of a local field in ppm is ~0.02-0.3; above: refused
PPM_WARN = 0.3  # above: warned (a rad map at short TE or low field can look like ppm)
PPM_TINY = 2e-3  # below: warned (a ppm map given as Hz or rad?)
WRAP_JUMPS = 2e-3  # fraction of neighbour pairs with |Δ| > half the range that marks wrapping


def sidecar(path) -> dict:
    """The BIDS JSON sidecar beside an image (same name, .json), or {}; unreadable -> {} + log."""
    p = Path(path) if isinstance(path, (str, Path)) else None
    side = p and p.with_name((p.name[:-7] if p.name.endswith(".nii.gz") else p.stem) + ".json")
    if side is None or not side.exists():
        return {}
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        log.warning("%s: sidecar unreadable; ignoring it", side)
        return {}


def acquisition(path, units: str | None, te_ms: float | None, field_t: float | None) -> dict:
    """Units, TE (ms) and B0 (T) for a phase file: flags first, then the sidecar."""
    meta = sidecar(path)
    if units is None:
        side_units = str(meta.get("Units", "")).lower()
        units = side_units if side_units in UNITS else "ppm"
    units = str(units).lower()
    if units not in UNITS:
        raise InputError(f"--phase-units {units!r} is not one of ppm, hz, rad", path)
    if te_ms is None and meta.get("EchoTime") is not None:
        te = meta["EchoTime"]
        if isinstance(te, (int, float)):
            te_ms = float(te) * 1000.0
        elif units == "rad":
            raise InputError("sidecar EchoTime is not one number (multi-echo?); give the echo time "
                             "of this phase with --te-ms", path)
    if field_t is None and isinstance(meta.get("MagneticFieldStrength"), (int, float)):
        field_t = float(meta["MagneticFieldStrength"])
    if units in ("hz", "rad") and not (field_t and field_t > 0):
        raise InputError(f"phase in {units} needs the field strength: give --field-t (tesla) or a "
                         "sidecar with MagneticFieldStrength", path)
    if units == "rad" and not (te_ms and te_ms > 0):
        raise InputError("phase in rad needs the echo time: give --te-ms or a sidecar with "
                         "EchoTime", path)
    return {"units": units, "te_ms": te_ms, "field_t": field_t}


def to_ppm(data: np.ndarray, units: str, te_ms: float | None = None,
           field_t: float | None = None) -> np.ndarray:
    """A phase/field map in ppm, hz or rad (with TE in ms and B0 in T) as a local field in ppm."""
    if units == "ppm":
        return np.asarray(data, np.float32)
    scale = 1.0 / (GAMMA_MHZ_T * field_t)
    if units == "rad":
        scale *= 1000.0 / (2 * np.pi * te_ms)
    return (np.asarray(data, np.float64) * scale).astype(np.float32)


def _region(data: np.ndarray) -> np.ndarray:
    """Where a masked map has values (a local field is masked by background removal), else all."""
    nz = data != 0
    return nz if 0.01 < nz.mean() < 0.95 else np.ones(data.shape, bool)


def _jump_fraction(data: np.ndarray, region: np.ndarray, threshold: float) -> float:
    """Fraction of neighbour pairs (both in the region) differing by more than threshold."""
    jumps = pairs = 0
    for ax in range(data.ndim):
        a = [slice(None)] * data.ndim
        b = [slice(None)] * data.ndim
        a[ax], b[ax] = slice(1, None), slice(None, -1)
        both = region[tuple(a)] & region[tuple(b)]
        diff = np.abs(data[tuple(a)] - data[tuple(b)])[both]
        jumps += int((diff > threshold).sum())
        pairs += diff.size
    return jumps / max(pairs, 1)


def check_raw(data: np.ndarray, name) -> None:
    """Refuse what is not an unwrapped phase/field map, whatever its units (see the module doc)."""
    region = _region(data)
    vals = data[region]
    lo, hi = float(vals.min()), float(vals.max())
    span = hi - lo
    integer = data.dtype.kind in "iu" or bool(np.all(vals[:: max(1, vals.size // 100000)] % 1 == 0))
    if integer and 1000 < span <= 8200 and _jump_fraction(data, region, span / 2) > WRAP_JUMPS:
        raise InputError(f"values are integers spanning {span:.0f} with many jumps: raw scanner "
                         "phase; scale it to rad, unwrap it (e.g. ROMEO or Laplacian) and remove "
                         "the background field first", name)
    if span <= 2 * np.pi * 1.02 and _jump_fraction(data, region, np.pi) > WRAP_JUMPS:
        raise InputError("phase is wrapped (values within 2π with many ±2π jumps between "
                         "neighbours); unwrap it first, e.g. ROMEO or Laplacian unwrapping, and "
                         "remove the background field", name)
    sub = vals[:: max(1, vals.size // 1_000_000)]
    q25, med, q75 = np.percentile(sub, [25, 50, 75])
    if (sub < 0).mean() < 1e-3 and med > 0 and med > 0.5 * (q75 - q25) / 1.35:
        raise InputError(f"all values are >= 0 with median {med:.3g}: this looks like a magnitude "
                         "(or SWI) image, or a field without background removal; give the "
                         "unwrapped, background-removed phase (local field)", name)


def check_ppm(field: np.ndarray, units: str, name) -> tuple[float, list]:
    """(robust range in ppm, warnings); a range no local field can have is refused."""
    vals = field[_region(field)]
    lo, hi = np.percentile(vals[:: max(1, vals.size // 1_000_000)], [0.5, 99.5])
    rng = float(hi - lo)
    if rng > PPM_REFUSE:
        hint = ("it looks like rad or Hz: give --phase-units rad (with --te-ms, --field-t) or hz"
                if units == "ppm" else f"check --phase-units {units}, --te-ms and --field-t")
        raise InputError(f"local field robust range is {rng:.3g} ppm, far above a tissue field "
                         f"(about 0.02-0.3 ppm); {hint}, and that the background field is "
                         "removed", name)
    warnings = []
    if rng > PPM_WARN:
        warnings.append(f"phase: robust range {rng:.3g} ppm is large for a local field; check "
                        f"--phase-units ({units} used) and that the background field is removed")
    if rng < PPM_TINY:
        warnings.append(f"phase: robust range only {rng:.2g} ppm after conversion from {units}; "
                        "check --phase-units, --te-ms and --field-t")
    return rng, warnings


def load_inputs(paths: dict, use_phase: bool | None = None, phase_options: dict | None = None,
                **kw) -> Subject:
    """A Subject from a cohort entry's inputs ({qsm?, phase?, flair, lesions, brainmask?}): with
    the phase (load_phase_subject, `phase_options` its keywords) when `use_phase` (a phase model;
    None: when there is a phase image), else from the QSM (rimscope.io.load_subject), else, for a
    QSM model given phase only, with the QSM inverted from the phase (qsm_from_field)."""
    paths = {k: v for k, v in paths.items() if v is not None}
    phase = paths.pop("phase", None)
    if use_phase is None:
        use_phase = phase is not None
    if use_phase:
        if phase is None:
            raise InputError("this model reads a phase (local field) image and the subject has none; "
                             "give --phase or a manifest column phase, or use a QSM model (-m default)",
                             paths.get("qsm"))
        return load_phase_subject(phase, **paths, **(phase_options or {}), **kw)
    if "qsm" not in paths:
        if phase is None:
            raise InputError("the subject has neither a QSM nor a phase image; give --qsm or --phase",
                             paths.get("flair"))
        return load_phase_subject(phase, **paths, **(phase_options or {}), qsm_from_phase=True, **kw)
    return load_subject(**paths, **kw)


QSM_TKD_THRESHOLD = 0.2  # the middle of the engine's TKD range (simulate.engine_config), fixed a priori


def qsm_from_field(subject: Subject, b0_world=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Susceptibility (ppm) from the subject's local field: TKD inside the brain mask, B0 given in
    world axes (the patch path's b0_dir) and turned into the array's axes."""
    from .dipole import tkd

    return tkd(subject.local_field, subject.brainmask, subject.zooms, array_b0(subject, b0_world),
               QSM_TKD_THRESHOLD)


def reference_brain(field: np.ndarray, brain: np.ndarray) -> tuple[np.ndarray, float]:
    """The field less its median over the brain (voxels outside stay as given), and that median.
    Background removal leaves a local field's offset arbitrary; each patch is referenced again to
    its own median (patches.sampling.reference_field), this first step makes an offset of the
    whole map vanish before any interpolation mixes brain and background voxels."""
    inside = brain & (field != 0)
    if not inside.any():
        return field, 0.0
    med = float(np.median(field[inside]))
    return np.where(inside, field - np.float32(med), field).astype(np.float32, copy=False), med


def load_phase_subject(phase, flair, lesions, brainmask=None, qsm=None, subject_id=None,
                       qsm_units: str = "ppm", phase_units: str | None = None,
                       te_ms: float | None = None, field_t: float | None = None,
                       phase_sign="auto", phase_filtered: bool = False,
                       b0_dir=(0.0, 0.0, 1.0), lesion_label: int | None = None,
                       qsm_from_phase: bool = False) -> Subject:
    """rimscope.io.load_subject with a phase image: Subject.local_field holds the local field in
    ppm (canonical RAS, rimscope's sign). With a QSM the QSM grid stays the reference (the phase
    is resampled onto it, linear, with a warning, if on another grid); without one the phase grid
    is the reference and Subject.qsm is None, or with `qsm_from_phase` the field's TKD inversion
    (for a QSM model)."""
    img, name = read_image(phase, "phase")
    raw = finite_float(img.data, "phase", name)
    if not raw.any():
        raise InputError("phase is all zero; check it is the phase / local field map", name)
    check_raw(raw, name)
    acq = acquisition(phase if isinstance(phase, (str, Path)) else None, phase_units, te_ms,
                      field_t)
    field = to_ppm(raw, **acq)
    rng, warnings = check_ppm(field, acq["units"], name)
    if qsm is None:
        stand_in = nib.Nifti1Image(field, img.affine, img.header)
        subject = load_subject(stand_in, flair, lesions, brainmask, subject_id or guess_subject_id(name),
                               lesion_label=lesion_label)
        subject.local_field, subject.qsm = subject.qsm, None
        subject.paths.pop("qsm", None)
        for key in ("qsm_robust_range", "qsm_units", "units_guess"):
            subject.info.pop(key, None)
    else:
        subject = load_subject(qsm, flair, lesions, brainmask, subject_id, qsm_units, lesion_label)
        ref_shape = tuple(int(n) for n in subject.ref_header.get_data_shape()[:3])
        if not (img.shape == ref_shape and np.allclose(img.affine, subject.ref_affine, atol=1e-3)):
            if not boxes_overlap(img.shape, img.affine, ref_shape, subject.ref_affine):
                raise InputError("phase and QSM do not overlap in world space; register the "
                                 "phase to the QSM first", name)
            field = resample_to(field, img.affine, ref_shape, subject.ref_affine, order=1)
            warnings.append("phase: grid differs from the QSM; resampled (linear) onto the QSM grid")
        subject.local_field = apply_ornt(field, subject.ornt).astype(np.float32, copy=False)
    subject.local_field, offset = reference_brain(subject.local_field, subject.brainmask)
    subject.local_field, record, sign_warn = apply_sign(subject, subject.local_field, phase_sign,
                                                        name, b0_dir)
    record["offset_removed_ppm"] = round(offset, 6)
    if subject.qsm is None and qsm_from_phase:  # phase only, a QSM model: it reads the field's TKD
        subject.qsm = qsm_from_field(subject, b0_dir)
        record["qsm_from_phase"] = {"method": "tkd", "threshold": QSM_TKD_THRESHOLD,
                                    "b0_dir": [float(v) for v in b0_dir]}
    warnings += sign_warn
    if phase_filtered:
        warnings.append("phase: high-pass filtered (--phase-filtered): values are not a local "
                        "field in ppm; calls are outside the validated domain")
    subject.paths["phase"] = name
    subject.info["phase"] = {**acq, "robust_range_ppm": round(rng, 5),
                             "filtered": bool(phase_filtered), **record}
    for w in warnings:
        log.warning("%s: %s", subject.id, w)
    subject.warnings += warnings
    return subject
