"""Cohorts (a manifest or a BIDS folder) and expert labels, checked before any long run starts."""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

REQUIRED = ("subject", "qsm", "flair", "lesions")
NII = re.compile(r"\.nii(\.gz)?$")


@dataclass
class SubjectEntry:
    subject: str
    qsm: Path
    flair: Path
    lesions: Path
    brainmask: Path | None = None

    def paths(self) -> dict:
        """Keyword arguments for rimscope.io.load_subject."""
        out = {"qsm": self.qsm, "flair": self.flair, "lesions": self.lesions}
        if self.brainmask is not None:
            out["brainmask"] = self.brainmask
        return out


def load_cohort(path) -> list[SubjectEntry]:
    """A manifest file (CSV/TSV) or a BIDS folder, auto-detected."""
    path = Path(path)
    if path.is_dir():
        return discover_bids(path)
    if not path.exists():
        raise InputError("cohort not found; give a manifest (.csv/.tsv) or a BIDS folder", path)
    return read_manifest(path)


def read_manifest(path) -> list[SubjectEntry]:
    path = Path(path)
    delim = "," if path.suffix.lower() == ".csv" else "\t"
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh, delimiter=delim))
            header = [h.strip() for h in (rows[0].keys() if rows else [])]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read manifest ({exc}); give a UTF-8 CSV or TSV", path) from None
    if not rows:
        raise InputError("manifest has no subjects; add rows subject,qsm,flair,lesions[,brainmask]", path)
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        sep = "," if delim == "," else "<tab>"
        raise InputError(f"manifest lacks column(s) {', '.join(missing)}; its header must be "
                         f"{sep.join(REQUIRED)}[{sep}brainmask]" + (" (is it tab-separated? name it .tsv)"
                                                                    if len(header) == 1 else ""), path)
    base = path.parent
    seen = {}
    out = []
    for n, row in enumerate(rows, start=2):
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        sid = row["subject"].removeprefix("sub-")
        if not sid:
            raise InputError(f"line {n}: empty subject id", path)
        if sid in seen:
            raise InputError(f"subject {sid!r} appears twice (lines {seen[sid]} and {n}); ids must be "
                             "unique", path)
        seen[sid] = n
        files = {}
        for col in ("qsm", "flair", "lesions", "brainmask"):
            val = row.get(col, "")
            if not val:
                if col == "brainmask":
                    continue
                raise InputError(f"line {n}: subject {sid} has no {col} path", path)
            p = Path(val)
            p = p if p.is_absolute() else base / p
            if not p.exists():
                raise InputError(f"line {n}: {col} file of subject {sid} not found: {p}; paths are "
                                 "relative to the manifest's folder", path)
            files[col] = p
        out.append(SubjectEntry(subject=sid, **files))
    return out


def _one(paths: list[Path], what: str, where: Path) -> Path | None:
    if not paths:
        return None
    if len(paths) > 1:
        raise InputError(f"{len(paths)} {what} files found ({', '.join(p.name for p in paths)}); keep "
                         "one per subject/session or use a manifest", where)
    return paths[0]


def discover_bids(root) -> list[SubjectEntry]:
    """sub-*/[ses-*/]anat/*_Chimap.nii[.gz] + *_FLAIR, lesions from derivatives/*/ (mask or dseg)."""
    root = Path(root)
    out = []
    for anat in sorted(root.glob("sub-*/anat")) + sorted(root.glob("sub-*/ses-*/anat")):
        rel = anat.parent.relative_to(root)
        parts = rel.parts
        sid = parts[0].removeprefix("sub-") + (f"_{parts[1]}" if len(parts) > 1 else "")
        chi = _one(sorted(p for p in anat.glob("*_Chimap.nii*") if NII.search(p.name)), "Chimap", anat)
        if chi is None:
            continue
        flair = _one(sorted(p for p in anat.glob("*_FLAIR.nii*") if NII.search(p.name)), "FLAIR", anat)
        if flair is None:
            raise InputError(f"no *_FLAIR.nii[.gz] beside the Chimap of sub-{sid}; add it", anat)
        les = []
        for deriv in sorted((root / "derivatives").glob("*")):
            d = deriv / rel / "anat"
            les += [p for p in sorted(d.glob("*_desc-lesions_*.nii*"))
                    if re.search(r"_desc-lesions_(mask|dseg)\.nii(\.gz)?$", p.name)]
        lesion = _one(les, "desc-lesions", root / "derivatives")
        if lesion is None:
            raise InputError(f"no derivatives/*/{rel}/anat/*_desc-lesions_mask.nii.gz for sub-{sid}; "
                             "add the lesion mask there", root)
        bms = []
        for deriv in sorted((root / "derivatives").glob("*")):
            bms += sorted((deriv / rel / "anat").glob("*_desc-brain_mask.nii*"))
        out.append(SubjectEntry(subject=sid, qsm=chi, flair=flair, lesions=lesion,
                                brainmask=_one(bms, "desc-brain_mask", root / "derivatives")))
    if not out:
        raise InputError("no sub-*/anat/*_Chimap.nii[.gz] found; is this a BIDS folder?", root)
    return out


def read_labels(path) -> dict[tuple[str, int], int]:
    """Labels TSV `subject lesion_id rim` -> {(subject, lesion_id): 0/1}. Optional rater columns
    are allowed; with several raters per lesion the majority (ties to Rim+) is kept."""
    path = Path(path)
    if not path.exists():
        raise InputError("labels file not found", path)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh, delimiter="," if path.suffix.lower() == ".csv" else "\t"))
    if not rows or not {"subject", "lesion_id", "rim"} <= set(rows[0].keys()):
        raise InputError("labels need columns subject, lesion_id, rim (tab-separated)", path)
    votes: dict[tuple[str, int], list[int]] = {}
    for n, r in enumerate(rows, start=2):
        try:
            lid = int(r["lesion_id"])
            rim = int(float(r["rim"]))
        except (TypeError, ValueError):
            raise InputError(f"line {n}: lesion_id and rim must be integers", path) from None
        if rim not in (0, 1):
            raise InputError(f"line {n}: rim must be 0 or 1, got {rim}", path)
        votes.setdefault((r["subject"].removeprefix("sub-"), lid), []).append(rim)
    return {k: int(sum(v) * 2 >= len(v)) for k, v in votes.items()}


def check_labels(labels: dict, lesion_ids: dict[str, set], path="labels") -> None:
    """Every labelled lesion must exist: a typo in an id silently shifts labels otherwise."""
    for (sid, lid) in labels:
        if sid not in lesion_ids:
            raise InputError(f"labels name subject {sid!r}, which is not in the cohort", path)
        if lid not in lesion_ids[sid]:
            raise InputError(f"labels name lesion {lid} of subject {sid}, which does not exist "
                             f"(ids 1..{max(lesion_ids[sid], default=0)}); check the lesion ids", path)
