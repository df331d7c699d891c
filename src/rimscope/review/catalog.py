"""What can be reviewed: the cohort's subjects joined with their prediction tables.

Why a catalog: the browser addresses lesions only by (subject id, lesion id), and both are looked
up here, in dictionaries built at start from the cohort manifest and the predictions folder. No
string from a client is ever joined into a path; the files read are those the cohort and the
predictions contract name. Volumes are loaded lazily (a reviewer looks at one subject at a time)
and kept in a small LRU cache.
"""
from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..cohort import load_cohort
from ..errors import InputError
from ..inference.outputs import LESION_COLUMNS, find_lesions_tsv
from ..runtime import read_tsv

log = logging.getLogger("rimscope")

NEEDED = ("lesion_id", "rim_probability", "rim")  # the columns of LESION_COLUMNS the review reads
assert set(NEEDED) <= set(LESION_COLUMNS)

@dataclass
class Prediction:
    subject: str
    lesion_id: int
    probability: float
    rim: int
    volume_mm3: float
    centroid_mm: tuple
    flags: str = ""


@dataclass
class Volumes:
    """The canonical arrays a view needs, nothing else (the Subject keeps headers we do not)."""

    qsm: np.ndarray
    flair: np.ndarray
    lesions: np.ndarray
    affine: np.ndarray
    zooms: np.ndarray
    centroids: dict = field(default_factory=dict)  # lesion id -> canonical voxel centroid


def read_predictions(path: Path, subject: str) -> list[Prediction]:
    """One subject's `_lesions.tsv` (output contract) -> predictions, checked row by row."""
    try:
        rows = read_tsv(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read predictions ({exc}); rerun rimscope predict", path) from None
    if rows and not set(NEEDED) <= set(rows[0]):
        raise InputError("predictions table lacks lesion_id, rim_probability or rim; is it a "
                         "rimscope predict output?", path)
    out, seen = [], set()
    for n, r in enumerate(rows, start=2):
        try:
            lid = int(r["lesion_id"])
            p = float(r["rim_probability"])
            rim = int(float(r["rim"]))
            vol = float(r.get("volume_mm3") or "nan")
            cen = tuple(float(r.get(k) or "nan") for k in ("x_mm", "y_mm", "z_mm"))
        except (TypeError, ValueError):
            raise InputError(f"line {n}: lesion_id, rim_probability and rim must be numbers", path) from None
        if lid < 1 or lid in seen:
            raise InputError(f"line {n}: lesion_id {lid} is not a new positive integer; ids must be "
                             "unique", path)
        if not 0.0 <= p <= 1.0 or rim not in (0, 1):
            raise InputError(f"line {n}: lesion {lid}: rim_probability must lie in [0, 1] and rim be "
                             "0 or 1", path)
        seen.add(lid)
        out.append(Prediction(subject, lid, p, rim, vol, cen, (r.get("flags") or "").strip()))
    return out


def phase_handling(lesions_tsv: Path) -> dict:
    """The `PhaseHandling` record predict wrote beside a subject's lesions table ({} if none)."""
    try:
        side = json.loads(lesions_tsv.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    rec = side.get("PhaseHandling") if isinstance(side, dict) else None
    return rec if isinstance(rec, dict) else {}


def phase_view(record: dict, phase_only: bool) -> tuple[bool, dict]:
    """(use_phase, phase options) for load_inputs, so a phase-only subject is shown as the map the
    model rated: the field's TKD inversion for a QSM model (record `qsm_from_phase`, its B0), the
    field itself for a phase model, with predict's units and sign either way. Without a record
    (predictions written before it was kept) the field is shown."""
    if not phase_only:
        return False, {}
    if not record:
        return True, {}
    options = {k: record[k] for k in ("te_ms", "field_t") if record.get(k) is not None}
    if record.get("units"):
        options["phase_units"] = record["units"]
    if record.get("sign_used") in (1, -1):
        options["phase_sign"] = str(record["sign_used"])
    made = record.get("qsm_from_phase")
    if isinstance(made, dict):
        options["b0_dir"] = tuple(float(v) for v in made.get("b0_dir", (0.0, 0.0, 1.0)))
        return False, options
    return True, options


class Catalog:
    """Cohort entries and predictions, indexed by ids; loads volumes on demand."""

    def __init__(self, cohort, predictions, cache_size: int = 3):
        self.entries = {e.subject: e for e in load_cohort(cohort)}
        self.predictions_dir = Path(predictions)
        if not self.predictions_dir.is_dir():
            raise InputError("predictions folder not found; give the OUT folder of rimscope predict",
                             self.predictions_dir)
        self.lesions: dict[str, dict[int, Prediction]] = {}
        missing = []
        for sid in self.entries:
            path = find_lesions_tsv(self.predictions_dir, sid)
            if not path.exists():
                missing.append(sid)
                continue
            self.lesions[sid] = {p.lesion_id: p for p in read_predictions(path, sid)}
        if missing:
            log.warning("no predictions for %d subject(s) (%s); they are left out of the review",
                        len(missing), ", ".join(missing[:5]) + (" …" if len(missing) > 5 else ""))
        if not any(self.lesions.values()):
            raise InputError("no sub-<id>/[ses-<s>/]anat/sub-<id>_lesions.tsv for any subject of the cohort; run "
                             "rimscope predict on this cohort first", self.predictions_dir)
        self._cache: OrderedDict[str, Volumes] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    # ------------------------------------------------------------ lookups (ids only)
    def get(self, subject: str, lesion_id: int) -> Prediction | None:
        return self.lesions.get(subject, {}).get(lesion_id)

    def all(self) -> list[Prediction]:
        return [p for les in self.lesions.values() for p in les.values()]

    def ordered(self, order: str) -> list[Prediction]:
        """'probability' (highest first), 'uncertainty' (|p-0.5| smallest first) or 'subject'."""
        items = self.all()
        if order == "probability":
            return sorted(items, key=lambda p: (-p.probability, p.subject, p.lesion_id))
        if order == "uncertainty":
            return sorted(items, key=lambda p: (round(abs(p.probability - 0.5), 9), p.subject, p.lesion_id))
        return sorted(items, key=lambda p: (p.subject, p.lesion_id))

    # ------------------------------------------------------------ volumes
    def volumes(self, subject: str) -> Volumes:
        """Canonical arrays of a subject of the catalog (KeyError otherwise), cached."""
        entry = self.entries[subject]
        with self._lock:  # one load at a time: two views of a new subject must not load it twice
            if subject in self._cache:
                self._cache.move_to_end(subject)
                return self._cache[subject]
            from ..phase import load_inputs

            phase_only = entry.qsm is None  # only then does how predict read the phase matter
            record = phase_handling(find_lesions_tsv(self.predictions_dir, subject)) if phase_only else {}
            use_phase, options = phase_view(record, phase_only)
            s = load_inputs(entry.inputs(), use_phase, options, subject_id=subject)
            from ..lesions import lesion_table

            cents = {les.id: les.centroid_vox for les in lesion_table(s.lesions, s.affine)}
            unknown = sorted(set(self.lesions.get(subject, {})) - set(cents))
            if unknown:
                log.warning("sub-%s: predictions name lesion(s) %s absent from the lesion mask; "
                            "their views are refused", subject, unknown[:5])
            vol = Volumes(s.qsm if s.qsm is not None else s.local_field, s.flair, s.lesions, s.affine, np.asarray(s.zooms), cents)
            self._cache[subject] = vol
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return vol

