"""The Python API of prediction: which model (`resolve_model_card`; a phase-only subject is read
by the QSM model through the TKD inversion of its field, rimscope.phase), one loaded subject to
its lesion rows (`rate_subject`, the single path from patches to probabilities), and
`predict_subject` (what `rimscope.predict` calls, returning a `PredictResult`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import Subject
from ..patches import extract_patches
from ..phase import load_inputs
from ..runtime import resolve_device

def resolve_model_card(model=None, device: str = "cpu"):
    """(model, card or None). `model`: None → the shipped default; a name of a shipped model; a
    folder or card path; or a model object (no card)."""
    from ..models.card import load_card_model
    from ..weights import shipped as shipped_models

    if model is not None and not isinstance(model, (str, Path)):
        return model, None
    shipped = shipped_models()
    if model is None:
        model = "default"
    if str(model) in shipped:
        return load_card_model(shipped[str(model)], device=device)
    path = Path(model)
    if not path.exists():
        raise InputError(f"model not found; give a folder with card.json + weights.pt, or one of: "
                         f"{', '.join(sorted(shipped)) or 'none shipped'}", path)
    return load_card_model(path, device=device)


def resolve_model(model=None, device: str = "cpu"):
    """The model of resolve_model_card."""
    return resolve_model_card(model, device)[0]


def check_inputs(net, entries) -> None:
    """Refuse, before any work, subjects that lack the image the model reads (its patch.source)."""
    source = net.patch_config.source
    for e in entries:
        if source == "phase" and getattr(e, "phase", None) is None:
            raise InputError(f"model {net.name} reads phase (local field) and subject {e.subject} has "
                             "none; give --phase (or a manifest column phase) or a QSM model "
                             "(-m default)", e.qsm)


def rate_subject(subject: Subject, model, device: str = "cpu", b0_dir=None) -> list[dict]:
    """Per-lesion rows (the lesions TSV, rim columns included) of a loaded subject."""
    return rate_subject_rims(subject, model, device, b0_dir)[0]


def rate_subject_rims(subject: Subject, model, device: str = "cpu", b0_dir=None):
    """(rows, SubjectRims): the lesions TSV rows and the rim segmentation they were measured on,
    from one forward pass (`model.predict_with_rims`: the voxel head's output when it has one)."""
    from .rims import subject_rims

    config = model.patch_config  # the model's own patch geometry (from its card): train and predict share it
    if b0_dir is not None:
        config = replace(config, b0_dir=tuple(float(v) for v in b0_dir))
    ps = extract_patches(subject, config)
    prob, rim_proba = model.predict_with_rims(ps.x, device=device) if len(ps) else (np.zeros(0), None)
    rims = subject_rims(subject, ps.lesions, rim_proba, config, model.rim_threshold)
    rows = []
    for les, p, flags in zip(ps.lesions, prob, ps.flags):
        x, y, z = (float(v) for v in les.centroid_mm)
        rows.append({"lesion_id": les.id, "n_voxels": les.n_voxels, "volume_mm3": round(les.volume_mm3, 3),
                     "x_mm": round(x, 2), "y_mm": round(y, 2), "z_mm": round(z, 2),
                     "rim_probability": round(float(p), 4), "rim": int(p >= model.threshold),
                     **rims.columns[les.id], "flags": ",".join(flags)})
    return rows, rims


@dataclass
class PredictResult:
    """What `rimscope.predict` returns (as TotalSegmentator returns its image):

    - `records`: one dict per lesion (the columns of the lesions TSV);
    - `table`: the same as a pandas DataFrame when pandas is importable, else `records`;
    - `images`: {"probseg", "dseg", "rim_mask"[, "rimvoxel_probseg"]} nibabel images on the QSM's
      original grid (the files `rimscope predict` writes), e.g.
      `result.images["probseg"].to_filename("p.nii.gz")`;
    - `rim_segmentation`: how the rim mask was made (the model's voxel head or the analytic rule);
    - `warnings`: what loading the inputs noticed (resampling, units, ...).

    Iterating, `len()` and indexing go over `records`, as the list of dicts returned before.
    """

    records: list
    images: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    rim_segmentation: str = ""

    @property
    def table(self):
        try:
            import pandas as pd
        except ImportError:
            return self.records
        from .outputs import LESION_COLUMNS

        return pd.DataFrame(self.records, columns=LESION_COLUMNS)

    def __iter__(self):
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i):
        return self.records[i]


def phase_options(phase_units=None, te_ms=None, field_t=None, phase_sign="auto",
                  phase_filtered: bool = False, b0_dir=None) -> dict:
    """rimscope.phase.load_phase_subject's keywords from the predict options."""
    out = {"phase_units": phase_units, "te_ms": te_ms, "field_t": field_t,
           "phase_sign": str(phase_sign), "phase_filtered": bool(phase_filtered)}
    return {**out, "b0_dir": tuple(b0_dir)} if b0_dir is not None else out


def predict_subject(qsm=None, flair=None, lesions=None, model=None, brainmask=None, device: str = "auto",
                    subject_id: str | None = None, qsm_units: str = "ppm", b0_dir=None,
                    lesion_label: int | None = None, phase=None, phase_units: str | None = None,
                    te_ms: float | None = None, field_t: float | None = None, phase_sign="auto",
                    phase_filtered: bool = False) -> PredictResult:
    """Python API: rate every lesion of one subject (paths or nibabel images) → PredictResult
    (`.table`, `.records`, `.images`, `.warnings`; iterable over the lesion dicts). `lesion_label`
    takes one label of a label map as the lesion mask (e.g. 99 for SAMSEG). With `phase` (a local
    field map; units, sign: rimscope.phase) and no QSM, a QSM model reads the TKD inversion of the
    field; a phase model (card patch.source "phase") reads the field itself."""
    from types import SimpleNamespace

    from .outputs import images

    if not ((qsm is not None or phase is not None) and flair is not None and lesions is not None):
        raise InputError("give qsm (and/or phase), flair and lesions")
    device = resolve_device(device)
    entry = SimpleNamespace(subject=subject_id or "subject", qsm=qsm, phase=phase)
    model = resolve_model(model, device)
    check_inputs(model, [entry])
    paths = {"qsm": qsm, "phase": phase, "flair": flair, "lesions": lesions, "brainmask": brainmask}
    subject = load_inputs(paths, model.patch_config.source == "phase",
                          phase_options(phase_units, te_ms, field_t, phase_sign, phase_filtered, b0_dir),
                          subject_id=subject_id, qsm_units=qsm_units, lesion_label=lesion_label)
    rows, rims = rate_subject_rims(subject, model, device, b0_dir)
    return PredictResult(rows, images(subject, rows, rims), list(subject.warnings), rims.method)
