"""Where the inputs are: cohorts (a manifest or a BIDS folder), a plain subject folder or three
files given one by one (`discover`), expert labels, and the fingerprint of a subject's input files
(patch cache keys and prediction stamps). Checked before any long run starts.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

log = logging.getLogger("rimscope")

REQUIRED = ("subject", "flair", "lesions")  # and qsm or phase (or both)
NII = re.compile(r"\.nii(\.gz)?$")
SUBJECT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")  # names a folder of OUT: no / or ..


@dataclass
class SubjectEntry:
    """One subject's files; `qsm` is None for a phase-only subject (`phase`: local field map)."""

    subject: str
    qsm: Path | None
    flair: Path
    lesions: Path
    brainmask: Path | None = None
    bids_root: Path | None = None  # the BIDS folder it was found in (the outputs' Sources)
    why: dict = field(default_factory=dict)  # role -> which file was taken and why (run record)
    phase: Path | None = None

    def paths(self) -> dict:
        """Keyword arguments for rimscope.io.load_subject: the given images, phase left out."""
        out = {"qsm": self.qsm, "flair": self.flair, "lesions": self.lesions, "brainmask": self.brainmask}
        return {k: v for k, v in out.items() if v is not None}

    def inputs(self) -> dict:
        """paths() and the phase image where there is one (rimscope.phase.load_inputs)."""
        return {**self.paths(), **({"phase": self.phase} if self.phase else {})}


def fingerprint(paths: dict, **extra) -> str:
    """sha256 of each input file's (resolved path, size, mtime) and of `extra` (JSON-able): the
    key of a patch cache entry and of a prediction stamp, so a changed input redoes the work."""
    stamp = dict(extra)
    for role, p in sorted(paths.items()):
        st = Path(p).stat()
        stamp[role] = [str(Path(p).resolve()), st.st_size, st.st_mtime_ns]
    return hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()


def discover(input=None, *, qsm=None, flair=None, lesions=None, brainmask=None, subject=None,
             session=None, subjects=None, sessions=None, problems: list | None = None,
             phase=None) -> list[SubjectEntry]:
    """The subjects to rate: `input` is a subject folder, a manifest (.csv/.tsv) or a BIDS
    folder; without it, the three files of one subject (its id from `subject` or the QSM name,
    with its session from the name, a ses-* folder or `session`). `subjects`/`sessions` keep
    those labels only; with `problems`, a subject with a problem is listed there, not raised."""
    from .cohort_bids import select

    if not input:
        return [single_subject(qsm, flair, lesions, brainmask, subject, session, phase)]
    path = Path(input)
    found: list = []
    entries = (subject_folder(path) or load_cohort(path, found)) if path.is_dir() else load_cohort(path, found)
    entries = select(entries, subjects, sessions, key=lambda e: e.subject)
    found = select(found, subjects, sessions, key=lambda f: f[0])
    if (subjects or sessions) and not entries and not found:
        raise InputError(f"no subject matches --subjects {' '.join(subjects or ['*'])} --sessions "
                         f"{' '.join(sessions or ['*'])}; check the labels", path)
    for sid, err in found:
        _report(problems, sid, err)
    return entries


def single_subject(qsm, flair, lesions, brainmask=None, subject=None, session=None,
                   phase=None) -> SubjectEntry:
    if not ((qsm or phase) and flair and lesions):
        raise InputError("give -i SUBJECT_DIR|MANIFEST|BIDS, or --qsm (and/or --phase) with --flair "
                         "--lesions")
    for p in (qsm, phase, flair, lesions):
        if p and not Path(p).exists():
            raise InputError("file not found", p)
    from .cohort_bids import id_from_path
    from .io import guess_subject_id

    main = qsm or phase
    sid = subject.removeprefix("sub-") if subject else (id_from_path(main, session) or guess_subject_id(main))
    if session and "_ses-" not in f"_{sid}":
        sid = f"{sid}_ses-{session.removeprefix('ses-')}"
    why = {**({"qsm": "given with --qsm"} if qsm else {}), **({"phase": "given with --phase"} if phase else {})}
    return SubjectEntry(subject=sid, qsm=Path(qsm) if qsm else None, flair=Path(flair),
                        lesions=Path(lesions), brainmask=Path(brainmask) if brainmask else None,
                        why=why, phase=Path(phase) if phase else None)


def subject_folder(path: Path) -> list[SubjectEntry] | None:
    """A plain folder holding one subject's files, found by name (qsm/chimap, flair, lesion)."""
    nii = [p for p in sorted(path.iterdir()) if p.name.endswith((".nii", ".nii.gz"))]
    if not nii or any(path.glob("sub-*/")):
        return None

    def pick(*keys, exclude=()):
        hits = [p for p in nii if any(k in p.name.lower() for k in keys)
                and not any(e in p.name.lower() for e in exclude)]
        return hits[0] if len(hits) == 1 else None

    qsm, flair = pick("qsm", "chimap"), pick("flair")
    les = pick("lesion", exclude=("brain",))
    if not (qsm and flair and les):
        raise InputError("folder holds NIfTIs but not exactly one each of *qsm*|*Chimap*, *flair*, "
                         "*lesion*; rename them or use --qsm/--flair/--lesions", path)
    return [SubjectEntry(subject=path.name.removeprefix("sub-"), qsm=qsm, flair=flair, lesions=les,
                         brainmask=pick("brainmask", "brain_mask"))]


def load_cohort(path, problems: list | None = None) -> list[SubjectEntry]:
    """A manifest file (CSV/TSV) or a BIDS folder, auto-detected.

    With `problems` (a list), a subject whose files are missing is left out and
    `(subject, InputError)` appended, so `validate` and batch runs go on with the others;
    without it the first such problem raises. Cohort-wide problems (no such file, missing
    columns, duplicate ids) always raise.
    """
    path = Path(path)
    if path.is_dir():
        return discover_bids(path, problems)
    if not path.exists():
        raise InputError("cohort not found; give a manifest (.csv/.tsv) or a BIDS folder", path)
    return read_manifest(path, problems)


def _delimiter(path: Path, first_line: str) -> str:
    """Tab or comma, from the header line (a .csv that is really tab-separated still works)."""
    if "\t" in first_line:
        return "\t"
    if "," in first_line:
        return ","
    return "," if path.suffix.lower() == ".csv" else "\t"


def _report(problems: list | None, subject: str, err: InputError) -> None:
    if problems is None:
        raise err
    problems.append((subject, err))


def read_manifest(path, problems: list | None = None) -> list[SubjectEntry]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read manifest ({type(exc).__name__}); give a UTF-8 CSV or TSV",
                         path) from None
    lines = text.splitlines()
    delim = _delimiter(path, lines[0] if lines else "")
    try:
        reader = csv.DictReader(lines, delimiter=delim)
        header = [(h or "").strip().lower() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        rows = list(reader)
    except csv.Error as exc:
        raise InputError(f"cannot parse manifest ({exc}); give a UTF-8 CSV or TSV", path) from None
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        sep = "," if delim == "," else "<tab>"
        raise InputError(f"manifest lacks column(s) {', '.join(missing)}; its header must be "
                         f"subject{sep}qsm{sep}flair{sep}lesions[{sep}brainmask][{sep}phase]", path)
    if "qsm" not in header and "phase" not in header:
        raise InputError("manifest has neither a qsm nor a phase column; give one (or both)", path)
    if not rows:
        raise InputError("manifest has no subjects; add rows subject,qsm,flair,lesions[,brainmask]",
                         path)
    base = path.parent
    seen = {}
    out = []
    for n, row in enumerate(rows, start=2):
        row = {k: (v or "").strip() for k, v in row.items() if k}
        sid = row["subject"].removeprefix("sub-")
        if not sid:
            raise InputError(f"line {n}: empty subject id", path)
        if sid in seen:
            raise InputError(f"subject {sid!r} appears twice (lines {seen[sid]} and {n}); ids must be "
                             "unique", path)
        seen[sid] = n
        files = {}
        try:
            if not SUBJECT_ID.match(sid):
                raise InputError(f"line {n}: subject id {sid!r} is not a plain name (it names an "
                                 "output folder); use letters, digits and _ . + - only", path)
            if not (row.get("qsm") or row.get("phase")):
                raise InputError(f"line {n}: subject {sid} has neither a qsm nor a phase path", path)
            for col in ("qsm", "flair", "lesions", "brainmask", "phase"):
                val = row.get(col, "")
                if not val:
                    if col in ("brainmask", "qsm", "phase"):
                        continue
                    raise InputError(f"line {n}: subject {sid} has no {col} path", path)
                p = Path(val)
                p = p if p.is_absolute() else base / p
                if not p.exists():
                    raise InputError(f"line {n}: {col} file of subject {sid} not found: {p}; paths "
                                     "are relative to the manifest's folder", path)
                files[col] = p
        except InputError as err:
            _report(problems, sid, err)
            continue
        out.append(SubjectEntry(subject=sid, **{"qsm": None, **files}))
    return out


def discover_bids(root, problems: list | None = None) -> list[SubjectEntry]:
    """A BIDS folder's entries (rimscope.cohort_bids: QSMxT layouts, main-map rule, runs)."""
    from .cohort_bids import discover_bids as bids

    return bids(root, SubjectEntry, problems)


def read_labels(path) -> dict[tuple[str, int], int]:
    """Labels TSV `subject lesion_id rim` -> {(subject, lesion_id): 0/1}. Optional rater columns
    are allowed; with several raters per lesion the majority (ties to Rim+) is kept."""
    path = Path(path)
    if not path.is_file():
        raise InputError("labels file not found; give a TSV with columns subject, lesion_id, rim",
                         path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
        reader = csv.DictReader(lines, delimiter=_delimiter(path, lines[0] if lines else ""))
        reader.fieldnames = [(h or "").strip().lower() for h in (reader.fieldnames or [])]
        rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read labels ({type(exc).__name__}); give a UTF-8 TSV", path) from None
    missing = [c for c in ("subject", "lesion_id", "rim") if c not in reader.fieldnames]
    if missing:
        raise InputError(f"labels lack column(s) {', '.join(missing)}; the header must be "
                         "subject<tab>lesion_id<tab>rim", path)
    votes: dict[tuple[str, int], list[int]] = {}
    for n, r in enumerate(rows, start=2):
        sid = (r.get("subject") or "").strip().removeprefix("sub-")
        try:
            lid = int((r.get("lesion_id") or "").strip())
            rim = float((r.get("rim") or "").strip())
        except ValueError:
            raise InputError(f"line {n}: lesion_id and rim must be integers", path) from None
        if not sid:
            raise InputError(f"line {n}: empty subject", path)
        if rim not in (0, 1):
            raise InputError(f"line {n}: rim must be 0 or 1, got {rim:g}", path)
        votes.setdefault((sid, lid), []).append(int(rim))
    return {k: int(sum(v) * 2 >= len(v)) for k, v in votes.items()}


def check_labels(labels: dict, lesion_ids: dict[str, set], path="labels") -> None:
    """Every labelled lesion must exist: a typo in an id silently shifts labels otherwise."""
    for (sid, lid) in sorted(labels):
        if sid not in lesion_ids:
            raise InputError(f"labels name subject {sid!r}, which is not in the cohort", path)
        if lid not in lesion_ids[sid]:
            ids = sorted(lesion_ids[sid])
            have = f"{len(ids)} lesions, ids {ids[0]}..{ids[-1]}" if ids else "no lesions"
            raise InputError(f"labels name lesion {lid} of subject {sid}, which does not exist "
                             f"(it has {have}); check the lesion ids", path)
