"""BIDS discovery as real pipelines write it: raw `sub-*/[ses-*/]anat/` plus `derivatives/*/`.

Why its own module: QSMxT (v8's timestamped `derivatives/qsmxt-<date>/` folders, v9's
`derivatives/qsmxt/`) writes several Chimaps per subject: the main (two-pass) map without `desc`,
`_desc-singlepass`, `_desc-paramagnetic/diamagnetic/total` from source separation, and one per
run/acquisition. The main map is picked by a stated rule, every run/acquisition becomes its own
entry (its id carries the entities, `01_ses-pre_acq-mag_run-2`), and each entry says which file
was taken and why (`SubjectEntry.why`, written to the run record).

It sits below `cohort` (which calls it) and knows file names only, not the entry type.
"""
from __future__ import annotations

import logging
import re
from datetime import datetime
from pathlib import Path

from .errors import InputError

log = logging.getLogger("rimscope")

# BIDS entity order (the part of it an anatomical file name uses)
ORDER = ("sub", "ses", "task", "acq", "ce", "rec", "dir", "run", "mod", "echo", "part", "space", "desc")
SPLIT = ("ses", "acq", "rec", "run", "echo", "part")  # entities that make separate entries
IGNORED_DESC = {"paramagnetic": "a source-separation map", "diamagnetic": "a source-separation map",
                "total": "a source-separation map"}
DESC_RANK = {None: 0, "twopass": 1, "singlepass": 2}  # lower wins
NII = re.compile(r"\.nii(\.gz)?$")


def entities(name: str) -> tuple[dict, str]:
    """(entities, suffix) of a BIDS file name: sub-01_ses-pre_run-2_Chimap.nii -> ({sub, ses, run}, Chimap)."""
    stem = NII.sub("", Path(name).name)
    parts = stem.split("_")
    ents = dict(p.split("-", 1) for p in parts[:-1] if "-" in p)
    return ents, parts[-1] if "-" not in parts[-1] else ""


def entry_id(ents: dict) -> str:
    """The subject id of an entry: the sub label, then the splitting entities in BIDS order."""
    return "_".join([ents["sub"]] + [f"{k}-{ents[k]}" for k in ORDER if k in SPLIT and k in ents])


def id_entities(sid: str) -> dict:
    """Inverse of entry_id: '01_ses-pre_run-2' -> {sub: 01, ses: pre, run: 2}."""
    head, *rest = sid.split("_")
    ents = {"sub": head.removeprefix("sub-")}
    for p in rest:
        if "-" in p:
            k, v = p.split("-", 1)
            ents[k] = v
        else:
            ents["sub"] += "_" + p  # not an entity: part of a non-BIDS id
    return ents


def id_from_path(path, session: str | None = None) -> str | None:
    """The entry id a single file implies: its name's entities (sub, ses, acq, run, ...), a
    `ses-*` parent folder, or `session`; None when the name carries no sub- entity."""
    ents, _ = entities(Path(path).name)
    if "sub" not in ents:
        return None
    if "ses" not in ents:
        ses = session or next((p[4:] for p in Path(path).parent.parts[::-1] if p.startswith("ses-")), None)
        if ses:
            ents["ses"] = ses
    return entry_id(ents)


def select(items, subjects=None, sessions=None, key=lambda x: x):
    """Keep the items whose id has one of `subjects` (labels, 'sub-' optional) and `sessions`."""
    subs = {s.removeprefix("sub-") for s in subjects or ()}
    sess = {s.removeprefix("ses-") for s in sessions or ()}
    out = []
    for it in items:
        e = id_entities(key(it))
        if (not subs or e["sub"] in subs) and (not sess or e.get("ses") in sess):
            out.append(it)
    return out


def _folder_time(d: Path) -> float:
    """A derivatives folder's age: the date-time in its name (QSMxT 8: qsmxt-2024-01-31_12-00-00
    and similar), else its modification time."""
    digits = re.sub(r"\D", "", d.name)
    for fmt, n in (("%Y%m%d%H%M%S", 14), ("%Y%m%d%H%M", 12), ("%Y%m%d", 8)):
        if len(digits) >= n:
            try:
                return datetime.strptime(digits[:n], fmt).timestamp()
            except ValueError:
                continue
    return d.stat().st_mtime


def ranked_derivatives(root: Path) -> list[Path]:
    """derivatives/* in the order a tie is broken: QSMxT folders newest first, then the others."""
    derivs = [d for d in sorted((root / "derivatives").glob("*")) if d.is_dir()]
    qsmxt = sorted((d for d in derivs if d.name.lower().startswith("qsmxt")), key=_folder_time, reverse=True)
    return qsmxt + [d for d in derivs if d not in qsmxt]


def _nii(folder: Path, suffix: str) -> list[Path]:
    return sorted(p for p in folder.glob(f"*_{suffix}.nii*") if NII.search(p.name)) if folder.is_dir() else []


def _short(p: Path, root: Path) -> str:
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return str(p)


def _folder(p: Path, root: Path) -> str:
    rel = _short(p, root)
    return "/".join(rel.split("/")[:2]) if rel.startswith("derivatives/") else "the raw folder"


def pick_chimaps(cands: list[Path], root: Path) -> tuple[dict, list[str]]:
    """{entry entities (tuple): (path, why)} from every Chimap of one sub/ses, and the notes of
    what was ignored. `cands` come in folder order (raw, QSMxT newest first, other derivatives)."""
    groups: dict[tuple, list] = {}
    ignored = []
    for order, p in enumerate(cands):
        ents, _ = entities(p.name)
        desc = ents.get("desc")
        if desc not in DESC_RANK:
            ignored.append(f"{_short(p, root)} ({IGNORED_DESC.get(desc, 'desc-' + str(desc) + ' is not a main map')})")
            continue
        key = tuple((k, ents[k]) for k in ORDER if k in SPLIT and k in ents)
        groups.setdefault(key, []).append((DESC_RANK[desc], order, p, desc))
    out = {}
    for key, items in groups.items():
        items.sort(key=lambda t: (t[0], t[1]))
        rank, _, best, desc = items[0]
        why = "no desc entity: the main (two-pass) map" if desc is None else f"desc-{desc}: the best map present"
        others = [t for t in items[1:]]
        same = [t for t in others if t[0] == rank]
        if same:
            if any(t[2].parent == best.parent for t in same):
                raise InputError(f"two main Chimaps in one folder ({best.name}, "
                                 f"{', '.join(t[2].name for t in same if t[2].parent == best.parent)}); "
                                 "keep one, or use a manifest", best.parent)
            folders = [_folder(best, root)] + [_folder(t[2], root) for t in same]
            why += (f"; the same map is also in {', '.join(folders[1:])}: took {folders[0]} "
                    "(raw data first, then the newest QSMxT folder)")
            log.warning("%s: Chimap found in %s; took %s", best.name, ", ".join(folders), folders[0])
        for t in others:
            if t[0] != rank:
                why += f"; ignored {_short(t[2], root)} (desc-{t[3]})"
        out[key] = (best, why)
    return out, ignored


def _match(paths: list[Path], key: tuple, what: str, where: Path) -> Path | None:
    """The one file of `paths` for an entry: the only one, or the one sharing the entry's entities."""
    if len(paths) <= 1:
        return paths[0] if paths else None
    want = dict(key)
    fits = [p for p in paths if all(entities(p.name)[0].get(k) == v for k, v in want.items())]
    if len(fits) == 1:
        return fits[0]
    raise InputError(f"{len(paths)} {what} files found ({', '.join(p.name for p in paths)}) and not one "
                     "matching the Chimap's entities; keep one per subject/session/run or use a manifest", where)


def discover_bids(root, make, problems: list | None = None) -> list:
    """Every entry of a BIDS folder: sub-*/[ses-*/]anat/*_Chimap (raw or derivatives/*/, the main
    map by rule), *_FLAIR next to it, lesions `derivatives/*/…_desc-lesions_mask|dseg`, optional
    `_desc-brain_mask`; `make(**fields)` builds each entry (cohort.SubjectEntry). With `problems`, an entry with a problem is appended as (id, InputError)."""
    root = Path(root)
    derivs = ranked_derivatives(root)
    rels = set()
    for base in [root] + derivs:
        rels |= {a.parent.relative_to(base) for a in base.glob("sub-*/anat") if a.is_dir()}
        rels |= {a.parent.relative_to(base) for a in base.glob("sub-*/ses-*/anat") if a.is_dir()}
    out = []
    for rel in sorted(rels):
        parts = rel.parts
        base_id = parts[0].removeprefix("sub-") + (f"_{parts[1]}" if len(parts) > 1 else "")
        anats = [root / rel / "anat"] + [d / rel / "anat" for d in derivs]
        phases = local_fields(anats)
        try:
            chis, ignored = pick_chimaps([p for a in anats for p in _nii(a, "Chimap")], root)
        except InputError as err:
            _report(problems, base_id, err)
            continue
        if not chis:  # phase only: one entry per local field map (its splitting entities)
            chis = {tuple((k, e[k]) for k in ORDER if k in SPLIT and k in e): (None, "")
                    for e in (entities(p.name)[0] for p in phases)}
        if not chis:
            if (root / rel / "anat").is_dir():
                log.warning("sub-%s has no main *_Chimap.nii[.gz]%s; skipped", base_id,
                            f" (ignored {', '.join(ignored)})" if ignored else "")
            continue
        for key, (chi, why) in sorted(chis.items()):
            ents = {"sub": parts[0][4:], **({"ses": parts[1][4:]} if len(parts) > 1 else {}), **dict(key)}
            sid = entry_id(ents)
            try:
                entry = _entry(make, root, rel, anats, key, sid, chi, phases)
            except InputError as err:
                _report(problems, sid, err)
                continue
            entry.why = {"qsm": f"{_short(chi, root)}: {why}" + (f"; ignored {', '.join(ignored)}" if ignored else "")
                         } if chi is not None else {}
            if entry.phase is not None:
                entry.why["phase"] = f"{_short(entry.phase, root)}: the local field map"
            out.append(entry)
    if not out and not problems:
        raise InputError("no sub-*/[ses-*/]anat/*_Chimap.nii[.gz] (or *_desc-localfield_phase) found; is "
                         "this a BIDS folder?", root)
    return out


def local_fields(anats: list[Path]) -> list[Path]:
    """Local field maps (rimscope.phase) of one sub/ses: `*_desc-localfield_phase` (rimscope's
    simulator) or SEPIA's `*_localfield`, raw folder first."""
    return [p for a in anats for p in _nii(a, "phase") + _nii(a, "localfield")
            if "_desc-localfield_" in p.name or entities(p.name)[1] == "localfield"]


def _entry(make, root, rel, anats, key, sid, chi, phases=()):
    key = tuple((k, v) for k, v in key if k != "ses")
    phase = _match(list(phases), key, "local field phase", root) if phases else None
    flair = _match(_nii(anats[0], "FLAIR"), key, "FLAIR", anats[0]) or _match(
        [p for a in anats[1:] for p in _nii(a, "FLAIR")], key, "FLAIR", root / "derivatives")
    if flair is None:
        raise InputError(f"no *_FLAIR.nii[.gz] for sub-{sid} (next to its Chimap); add it",
                         (chi or phase).parent)
    les = [p for a in anats[1:] for p in _nii(a, "*") if re.search(r"_desc-lesions_(mask|dseg)\.nii(\.gz)?$", p.name)]
    lesion = _match(les, key, "desc-lesions", root / "derivatives")
    if lesion is None:
        raise InputError(f"no derivatives/*/{rel.as_posix()}/anat/*_desc-lesions_mask.nii.gz for sub-{sid}; "
                         "add the lesion mask there", root)
    bm = _match([p for a in anats[1:] for p in _nii(a, "mask") if "_desc-brain_" in p.name], key,
                "desc-brain_mask", root / "derivatives")
    return make(subject=sid, qsm=chi, flair=flair, lesions=lesion, brainmask=bm, bids_root=root, phase=phase)


def _report(problems, subject, err):
    if problems is None:
        raise err
    problems.append((subject, err))
