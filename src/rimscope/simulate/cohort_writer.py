"""Write a simulated cohort in rimscope's input contract, one finished subject at a time.

Cohorts take a while on shared CPUs, so each subject is written atomically and its truth file is
written last as the "done" marker: a rerun with the same arguments skips finished subjects, and a
crash never leaves a half-written subject that looks complete.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import InputError
from ..io import save_atomic
from ..runtime import progress, versions, write_json_atomic, write_tsv_atomic
from .config import SimConfig
from .layout import rimtruth_path, subject_id, subject_paths

log = logging.getLogger("rimscope")


LOCALFIELD_SIDECAR = {"Units": "ppm", "Description": "local (tissue) field in ppm of B0, "
                      "rimscope's sign (paramagnetic sources positive on their B0 axis), the "
                      "dipole inversion's input: residual background and noise included, masked"}


def _image(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm")
    return img


def _settings(seed: int, cfg: SimConfig, labelled: bool) -> dict:
    return {"seed": int(seed), "labelled": bool(labelled), "config": cfg.to_dict()}


def check_folder(out: Path, seed: int, cfg: SimConfig, labelled: bool) -> None:
    """A folder holds one cohort: refuse to mix subjects made with other settings."""
    marker = out / "simulate.json"
    want = _settings(seed, cfg, labelled)
    if marker.exists():
        have = json.loads(marker.read_text(encoding="utf-8"))
        if have != json.loads(json.dumps(want)):
            raise InputError("this folder holds a cohort simulated with another seed, config or "
                             "--unlabeled; give a new -o/--output or delete the folder", out)
    elif out.exists() and any(out.iterdir()):
        raise InputError("folder exists and is not a simulated cohort; give a new or empty -o/--output folder", out)
    write_json_atomic(marker, want)


def write_subject(out: Path, sid: str, sim, labelled: bool) -> dict:
    p = subject_paths(sid)
    save_atomic(_image(sim.qsm, sim.qsm_affine), out / p["qsm"])
    save_atomic(_image(sim.flair, sim.flair_affine), out / p["flair"])
    save_atomic(_image(sim.lesions.astype(np.int16), sim.qsm_affine), out / p["lesions"])
    save_atomic(_image(sim.brainmask.astype(np.uint8), sim.qsm_affine), out / p["brainmask"])
    if getattr(sim, "rim", None) is not None:
        save_atomic(_image(sim.rim.astype(np.uint8), sim.qsm_affine), out / rimtruth_path(sid))
    if sim.local_field is not None:  # the field the QSM was inverted from, masked; sidecar: units
        save_atomic(_image(sim.local_field, sim.qsm_affine), out / p["phase"])
        write_json_atomic(out / p["phase"].replace(".nii.gz", ".json"), LOCALFIELD_SIDECAR)
    truth = dict(sim.truth)
    if not labelled:
        for t in truth["lesions"]:
            t.pop("rim", None)
    write_json_atomic(out / p["truth"], truth)  # last: marks the subject finished
    return truth


def simulate_cohort(out, n_subjects: int, seed: int, cfg: SimConfig, labelled: bool = True,
                    quiet: bool = False, montage: bool | None = None, command: str | None = None,
                    preset: str | None = None) -> dict:
    """Simulate (or finish) a cohort; returns the cohort truth dict also written to truth.json
    (with the name of the simulate.presets preset the config came from, if any)."""
    from .subject import simulate_subject

    out = Path(out)
    if n_subjects < 1:
        raise InputError(f"--subjects {n_subjects}: give at least 1")
    out.mkdir(parents=True, exist_ok=True)
    check_folder(out, seed, cfg, labelled)
    subjects, timings = {}, {}
    for i in progress(range(n_subjects), desc="simulate", unit="subject", quiet=quiet):
        sid = subject_id(i)
        tpath = out / subject_paths(sid)["truth"]
        if tpath.exists():
            subjects[sid] = json.loads(tpath.read_text(encoding="utf-8"))
            continue
        t0 = time.perf_counter()
        sim = simulate_subject(cfg, seed, i, labelled=labelled)
        subjects[sid] = write_subject(out, sid, sim, labelled)
        timings[sid] = round(time.perf_counter() - t0, 2)
        log.debug("sub-%s: %d lesions in %.1f s", sid, len(sim.truth["lesions"]), timings[sid])
    rows = [{"subject": sid, **{k: v for k, v in subject_paths(sid).items() if k != "truth"}}
            for sid in subjects]
    write_tsv_atomic(out / "manifest.tsv", rows, ["subject", "qsm", "flair", "lesions", "brainmask", "phase"])
    if labelled:
        lab = [{"subject": sid, "lesion_id": t["lesion_id"], "rim": t["rim"]}
               for sid, s in subjects.items() for t in s["lesions"]]
        write_tsv_atomic(out / "labels.tsv", lab, ["subject", "lesion_id", "rim"])
    cohort = {"seed": int(seed), "n_subjects": n_subjects, "labelled": labelled,
              "command": command or " ".join(sys.argv), "config": cfg.to_dict(), "versions": versions(),
              "seconds_per_subject_this_run": timings, "subjects": subjects}
    if preset is not None:
        cohort["preset"] = preset
    write_json_atomic(out / "truth.json", cohort)
    if cfg.montage if montage is None else montage:
        from .montage import write_montage

        try:
            write_montage(out, cohort, out / "montage.png")
        except Exception as exc:  # a figure must never lose a finished cohort
            log.warning("montage not written: %s", exc)
    return cohort
