"""Shared fixtures: tiny synthetic subjects in any orientation, on disk."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
if "RIMSCOPE_CACHE" not in os.environ:  # the engine's shape cache: never the user's home in tests
    import tempfile

    os.environ["RIMSCOPE_CACHE"] = tempfile.mkdtemp(prefix="rimscope-test-cache-")

import nibabel as nib
import numpy as np
import pytest


def make_affine(codes: str = "RAS", zooms=(1.0, 1.0, 1.0), rot_deg: float = 0.0, origin=(0, 0, 0)):
    """Affine with the given axis codes (e.g. 'LPS', 'LAS'), voxel size, and an oblique rotation
    (degrees about the world x axis)."""
    from nibabel import orientations as nio

    ornt = nio.axcodes2ornt(tuple(codes))  # axis i of the array points along world axis ornt[i,0]
    A = np.zeros((3, 3))
    for i, (ax, sign) in enumerate(ornt):
        A[int(ax), i] = sign * zooms[i]
    t = np.deg2rad(rot_deg)
    R = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    aff = np.eye(4)
    aff[:3, :3] = R @ A
    aff[:3, 3] = origin
    return aff


def tiny_subject(shape=(40, 44, 36), seed=0, n_lesions=4):
    """Arrays of a small synthetic subject (canonical RAS): qsm ppm, flair, instance labels, brain."""
    rng = np.random.default_rng(seed)
    zz = np.indices(shape).astype(float)
    c = (np.array(shape) - 1) / 2
    brain = (((zz - c[:, None, None, None]) / (np.array(shape)[:, None, None, None] * 0.45)) ** 2).sum(0) <= 1
    qsm = (rng.normal(0, 0.01, shape) * brain).astype(np.float32)
    flair = ((1.0 + rng.normal(0, 0.05, shape)) * brain * 100).astype(np.float32)
    labels = np.zeros(shape, np.int32)
    centres = [(12, 14, 12), (27, 28, 22), (14, 30, 24), (26, 14, 14)][:n_lesions]
    for i, cc in enumerate(centres, start=1):
        r = 2.5 + i * 0.7
        ball = ((zz - np.array(cc)[:, None, None, None]) ** 2).sum(0) <= r * r
        labels[ball & brain] = i
        flair[ball] *= 1.6
        qsm[ball] += 0.02 * i
    return qsm, flair, labels, brain


def to_orientation(array: np.ndarray, codes: str, zooms=(1.0, 1.0, 1.0), rot_deg=0.0):
    """Re-express a canonical RAS array (1 mm, origin 0) in another orientation: same world data."""
    from nibabel import orientations as nio

    target = nio.axcodes2ornt(tuple(codes))
    ras = nio.axcodes2ornt(("R", "A", "S"))
    t = nio.ornt_transform(ras, target)
    out = nio.apply_orientation(array, t)
    base = np.diag([*zooms, 1.0])
    aff_ras = base
    aff = aff_ras @ nio.inv_ornt_aff(t, array.shape)
    if rot_deg:
        tt = np.deg2rad(rot_deg)
        R = np.eye(4)
        R[1:3, 1:3] = [[np.cos(tt), -np.sin(tt)], [np.sin(tt), np.cos(tt)]]
        aff = R @ aff
    return np.ascontiguousarray(out), aff


@pytest.fixture
def subject_files(tmp_path):
    """Write a tiny subject in RAS; returns dict of paths."""
    qsm, flair, labels, brain = tiny_subject()
    aff = np.eye(4)
    paths = {}
    for role, arr in (("qsm", qsm), ("flair", flair), ("lesions", (labels > 0).astype(np.uint8))):
        p = tmp_path / f"sub-01_{role}.nii.gz"
        nib.save(nib.Nifti1Image(arr, aff), str(p))
        paths[role] = p
    return paths


# ---------------------------------------------------------------- world-space phantom (oblique tests)

PHANTOM_LESIONS = (  # world centre (mm), radius (mm), QSM amplitude (ppm)
    ((-6.0, -5.0, -4.0), 4.0, 0.08),
    ((7.0, 6.0, 3.0), 3.2, 0.05),
)


def phantom_on_grid(shape, affine):
    """A smooth analytic subject evaluated at the voxel centres of any grid (oblique included):
    the same world objects whatever the grid, so tests can compare orientations and obliquity.
    Returns qsm (ppm), flair, binary lesion mask."""
    ijk = np.indices(shape).reshape(3, -1).astype(float)
    world = (affine[:3, :3] @ ijk + affine[:3, 3:4]).reshape((3, *shape))
    r_brain = np.sqrt(((world / np.array([22.0, 24.0, 20.0])[:, None, None, None]) ** 2).sum(0))
    brain = r_brain <= 1
    qsm = 0.01 * np.sin(world[0] / 5.0) * brain
    flair = 100.0 * brain + 5 * np.cos(world[1] / 7.0) * brain
    mask = np.zeros(shape, np.uint8)
    for centre, radius, amp in PHANTOM_LESIONS:
        d2 = ((world - np.array(centre)[:, None, None, None]) ** 2).sum(0)
        qsm = qsm + amp * np.exp(-d2 / (2 * 3.0 ** 2))
        flair = flair + 60 * np.exp(-d2 / (2 * radius ** 2))
        mask[d2 <= radius ** 2] = 1
    return qsm.astype(np.float32) * brain, flair.astype(np.float32), mask


def centred_affine(shape, codes="RAS", zooms=(1.0, 1.0, 1.0), rot_deg=0.0):
    """make_affine with the origin chosen so the grid's centre sits at world (0, 0, 0)."""
    aff = make_affine(codes, zooms, rot_deg)
    centre_vox = (np.array(shape) - 1) / 2
    aff[:3, 3] = -aff[:3, :3] @ centre_vox
    return aff


def write_nii(path, data, affine, qform_code=1, sform_code=1):
    img = nib.Nifti1Image(data, affine)
    img.header.set_qform(affine, code=qform_code)
    img.header.set_sform(affine, code=sform_code)
    nib.save(img, str(path))
    return path


def write_subject(folder, arrays: dict, affine, prefix="sub-01"):
    """Write role -> array NIfTIs (same affine) into folder; returns role -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    return {role: write_nii(folder / f"{prefix}_{role}.nii.gz", arr, affine)
            for role, arr in arrays.items()}


# ---------------------------------------------------------------- one cohort factory for every test file

def write_tiny_subject(folder, sid: str, seed: int = 0, *, n_lesions: int = 4, affine=None, codes: str = "RAS",
                       rot_deg: float = 0.0, prefix: str | None = None, brainmask: bool = False,
                       rim_lesions=(), shell_ppm: float = 0.0, qform_code: int = 0, sform_code: int = 2,
                       lesions_dtype=None) -> dict:
    """One tiny_subject on disk -> {role: path}. `codes`/`rot_deg` re-express it in another
    orientation (same world data); `affine` instead puts the canonical arrays on that affine;
    `rim_lesions` get a bright edge shell of `shell_ppm` (what rim-contrast looks for)."""
    from scipy import ndimage

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    qsm, flair, labels, brain = tiny_subject(seed=seed, n_lesions=n_lesions)
    for k in rim_lesions:
        ball = labels == k
        qsm[ndimage.binary_dilation(ball, iterations=1) & ~ndimage.binary_erosion(ball)] += shell_ppm
    arrays = {"qsm": qsm, "flair": flair,
              "lesions": labels.astype(lesions_dtype) if lesions_dtype is not None else labels}
    if brainmask:
        arrays["brainmask"] = brain.astype(np.uint8)
    prefix = prefix or sid
    paths = {}
    for role, arr in arrays.items():
        if affine is not None:
            a, aff = arr, affine
        else:
            a, aff = to_orientation(arr, codes, rot_deg=rot_deg) if (codes != "RAS" or rot_deg) else (arr, np.eye(4))
        img = nib.Nifti1Image(a, aff)
        if qform_code:
            img.set_qform(aff, code=qform_code)
            img.set_sform(aff, code=sform_code)
        paths[role] = folder / f"{prefix}_{role}.nii.gz"
        nib.save(img, str(paths[role]))
    return paths


def save_untrained_model(folder) -> Path:
    """An untrained but deterministic asymmetric model (threshold 0.5), saved like a shipped one."""
    import torch

    from rimscope.models.card import save_model
    from rimscope.models.registry import build

    torch.manual_seed(0)
    model = build("asymmetric")
    model.threshold = 0.5
    save_model(model, folder)
    return Path(folder)


def predict_inputs(root) -> list[str]:
    """An untrained model in root/model and subjects 01, 02 (tiny_subject seeds 0, 1; int16
    lesions; identity affine) in root -> the manifest's lines, header first."""
    root = Path(root)
    save_untrained_model(root / "model")
    lines = ["subject\tqsm\tflair\tlesions"]
    for sid, seed in (("01", 0), ("02", 1)):
        qsm, flair, labels, _ = tiny_subject(seed=seed)
        files = []
        for role, arr in (("qsm", qsm), ("flair", flair), ("lesions", labels.astype(np.int16))):
            p = root / f"sub-{sid}_{role}.nii.gz"
            write_nii(p, arr, np.eye(4))
            files.append(p.name)
        lines.append("\t".join([sid] + files))
    return lines


def write_manifest(root, subjects: dict) -> Path:
    """manifest.tsv of {sid: {role: path}} with paths relative to `root`."""
    root = Path(root)
    roles = ["qsm", "flair", "lesions"] + (["brainmask"] if all("brainmask" in p for p in subjects.values()) else [])
    lines = ["\t".join(["subject", *roles])]
    lines += ["\t".join([sid] + [str(Path(p[r]).relative_to(root)) for r in roles]) for sid, p in subjects.items()]
    (root / "manifest.tsv").write_text("\n".join(lines) + "\n")
    return root / "manifest.tsv"


def write_labels(root, labels: dict) -> Path:
    """labels.tsv of {(sid, lesion_id): 0/1}."""
    lines = ["subject\tlesion_id\trim"] + [f"{s}\t{i}\t{int(r)}" for (s, i), r in labels.items()]
    (Path(root) / "labels.tsv").write_text("\n".join(lines) + "\n")
    return Path(root) / "labels.tsv"


def write_cohort(root, n: int = 4, *, seed0: int = 0, sid=lambda k: f"s{k}", rims=None, shell_ppm: float = 0.0,
                 folders: bool = False, **subject_options):
    """A labelled tiny cohort on disk -> (manifest, labels, {sid: {role: path}}).

    Subject k (k = seed0, seed0+1, ...) is tiny_subject(seed=k) with id `sid(k)`; `rims(k)` gives
    the 0/1 label of lesions 1..4 (default: even ids Rim+), and with `shell_ppm` the Rim+ ones get
    a bright edge shell. `folders`: sub-<id>/ folders instead of one flat folder."""
    root = Path(root)
    rims = rims or (lambda k: [int(lid % 2 == 0) for lid in range(1, 5)])
    subjects, labels = {}, {}
    for k in range(seed0, seed0 + n):
        s = sid(k)
        r = list(rims(k))
        rim_ids = [lid for lid, v in enumerate(r, start=1) if v] if shell_ppm else ()
        subjects[s] = write_tiny_subject(root / f"sub-{s}" if folders else root, s, seed=k,
                                         rim_lesions=rim_ids, shell_ppm=shell_ppm, **subject_options)
        labels.update({(s, lid): v for lid, v in enumerate(r, start=1)})
    return write_manifest(root, subjects), write_labels(root, labels), subjects


def write_qsmxt_dataset(root, subjects: dict, *, qsmxt_folders=("qsmxt",), singlepass: bool = True,
                        separation: bool = False, seed0: int = 0) -> Path:
    """A BIDS folder laid out as QSMxT writes it, tiny volumes. `subjects`: {"01": [session or
    None, ...]} or {"01": [(session, "run-1"), ...]}. Raw FLAIR in sub-*/[ses-*/]anat/; per QSMxT
    folder (v9: "qsmxt"; v8: "qsmxt-2024-01-31_10-00-00", ...) the main `_Chimap.nii`, with
    `singlepass` a `_desc-singlepass_Chimap.nii`, with `separation` the paramagnetic/diamagnetic/
    total maps; lesion masks in derivatives/lesions/ (`_desc-lesions_mask.nii.gz`)."""
    root = Path(root)
    k = seed0
    for sub, items in subjects.items():
        for item in items:
            ses, extra = item if isinstance(item, tuple) else (item, None)
            rel = Path(f"sub-{sub}") / (f"ses-{ses}" if ses else "") / "anat"
            base = f"sub-{sub}" + (f"_ses-{ses}" if ses else "")
            qsm, flair, labels, _ = tiny_subject(seed=k)
            k += 1
            (root / rel).mkdir(parents=True, exist_ok=True)
            write_nii(root / rel / f"{base}_FLAIR.nii.gz", flair, np.eye(4))
            name = base + (f"_{extra}" if extra else "")
            for folder in qsmxt_folders:
                d = root / "derivatives" / folder / rel
                d.mkdir(parents=True, exist_ok=True)
                write_nii(d / f"{name}_Chimap.nii", qsm, np.eye(4))
                descs = (["singlepass"] if singlepass else []) + (["paramagnetic", "diamagnetic", "total"]
                                                                 if separation else [])
                for desc in descs:
                    write_nii(d / f"{name}_desc-{desc}_Chimap.nii", qsm * 0.5, np.eye(4))
            d = root / "derivatives" / "lesions" / rel
            d.mkdir(parents=True, exist_ok=True)
            write_nii(d / f"{name}_desc-lesions_mask.nii.gz", labels.astype(np.int16), np.eye(4))
    for folder in qsmxt_folders:
        (root / "derivatives" / folder / "dataset_description.json").write_text(
            '{"Name": "QSMxT", "BIDSVersion": "1.9.0", "DatasetType": "derivative"}\n')
    (root / "dataset_description.json").write_text('{"Name": "raw", "BIDSVersion": "1.9.0"}\n')
    return root
