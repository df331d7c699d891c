"""predict writes the rim segmentation (issue 13): rim mask (+ voxel probabilities with a voxel
head) on the original grid, the rim columns of the lesions table, the report's rim layer."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import to_orientation, tiny_subject, write_nii
from scipy import ndimage
from test_predict import model_dir  # noqa: F401  (the shared fixture: no voxel head)

from rimscope.cli import main as cli_main
from rimscope.inference.outputs import LESION_COLUMNS, lesions_tsv, report_path, subject_dir
from rimscope.inference.rims import BY_HEAD, BY_RULE
from rimscope.rim_measures import COLUMNS
from rimscope.runtime import read_tsv

RIM_LESION, SHELL_PPM = 2, 0.08  # lesion 2 gets a bright 2-voxel edge shell (80 ppb); the others none
CORE_PPB = 5.0  # every lesion's own susceptibility over the background (below the rule's 15 ppb)


def known_shell(lesion_id: int = RIM_LESION) -> np.ndarray:
    """The rim painted on lesion `lesion_id` (canonical RAS grid): one voxel inside and one
    outside its edge."""
    _, _, labels, _ = tiny_subject(seed=0)
    ball = labels == lesion_id
    return ndimage.binary_dilation(ball, iterations=1) & ~ndimage.binary_erosion(ball)


def write_rim_subject(folder, codes="LPS") -> dict:
    """tiny_subject(seed=0) with lesions CORE_PPB above the background and a known rim on
    RIM_LESION, written in orientation `codes` (same world data) -> {role: path}."""
    qsm, flair, labels, brain = tiny_subject(seed=0)
    qsm = np.where(labels > 0, CORE_PPB / 1000, 0.0) + np.random.default_rng(1).normal(0, 0.005, qsm.shape)
    qsm = ((qsm + SHELL_PPM * known_shell()) * brain).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for role, arr in (("qsm", qsm), ("flair", flair), ("lesions", labels.astype(np.int16)),
                      ("brainmask", brain.astype(np.uint8))):
        a, aff = to_orientation(arr, codes)
        paths[role] = folder / f"sub-01_{role}.nii.gz"
        write_nii(paths[role], a, aff)
    return paths


def run_predict(tmp_path, model, codes="LPS", report=False):
    p = write_rim_subject(tmp_path / "in", codes)
    out = tmp_path / "out"
    argv = ["predict", "-q", "--qsm", str(p["qsm"]), "--flair", str(p["flair"]), "--lesions", str(p["lesions"]),
            "--brainmask", str(p["brainmask"]), "--subject", "01", "-o", str(out), "-m", str(model), "-d", "cpu"]
    assert cli_main(argv + (["--report"] if report else [])) == 0
    return p, out


def on_grid(path, src_path, dtype):
    img, src = nib.load(str(path)), nib.load(str(src_path))
    assert img.shape == src.shape and np.allclose(img.affine, src.affine, atol=1e-5)
    data = np.asanyarray(img.dataobj)
    assert data.dtype == dtype
    return data


def test_analytic_rim_mask_columns_and_report(tmp_path, model_dir):  # noqa: F811
    p, out = run_predict(tmp_path, model_dir, "LPS", report=True)
    anat = subject_dir(out, "01")
    mask = on_grid(anat / "sub-01_desc-rim_mask.nii.gz", p["qsm"], np.uint8).astype(bool)
    shell = to_orientation(known_shell().astype(np.uint8), "LPS")[0].astype(bool)  # the input's grid
    assert mask.any() and set(np.unique(mask)) <= {0, 1}
    dice = 2 * (mask & shell).sum() / (mask.sum() + shell.sum())
    assert dice > 0.7, dice  # the rule finds the painted shell, on the LPS grid, not a flipped one
    labels = np.asanyarray(nib.load(str(p["lesions"])).dataobj)
    near_rimless = ndimage.binary_dilation(np.isin(labels, [1, 3, 4]), iterations=1) & ~shell
    assert (mask & near_rimless).sum() < 0.05 * mask.sum()  # rimless lesions get (almost) no rim voxels
    assert not (anat / "sub-01_desc-rimvoxel_probseg.nii.gz").exists()  # no voxel head, no voxel map
    side = json.loads((anat / "sub-01_desc-rim_mask.json").read_text())
    assert side["rim_segmentation"] == BY_RULE and "15 ppb" in BY_RULE
    run = json.loads((out / "run.json").read_text())
    assert run["rim_segmentation"] == BY_RULE

    rows = {int(r["lesion_id"]): r for r in read_tsv(lesions_tsv(out, "01"))}
    assert list(read_tsv(lesions_tsv(out, "01"))[0]) == LESION_COLUMNS
    rim = rows[RIM_LESION]
    assert all(rim[c] != "" for c in COLUMNS), rim
    assert float(rim["rim_susceptibility_ppb"]) > 30 and 0.5 < float(rim["rim_coverage"]) <= 1.0
    assert float(rim["rim_volume_mm3"]) > 0 and float(rim["rim_thickness_mm"]) > 0
    for lid in (1, 3, 4):  # no rim: empty rim cells, the core still measured
        assert all(rows[lid][c] == "" for c in COLUMNS if c != "core_susceptibility_ppb"), rows[lid]
        assert rows[lid]["core_susceptibility_ppb"] != ""
    for lid in rows:  # the lesions sit CORE_PPB over a ~0 background: the core reads it
        assert float(rows[lid]["core_susceptibility_ppb"]) == pytest.approx(CORE_PPB, abs=3)
    cols = json.loads((anat / "sub-01_lesions.json").read_text())
    assert {c: cols[c]["Units"] for c in COLUMNS} == {
        "rim_susceptibility_ppb": "ppb", "rim_volume_mm3": "mm^3", "rim_coverage": "fraction (0-1)",
        "rim_thickness_mm": "mm", "core_susceptibility_ppb": "ppb"}

    html = report_path(out, "01").read_text()
    assert 'id="t-rim"' in html and "rim voxels" in html  # the switchable rim layer


class ShellHead(torch.nn.Module):
    """A stand-in network with a voxel head that calls the lesion edge (|sdist| < 1.2 mm) rim;
    counts its forward passes."""

    def __init__(self):
        super().__init__()
        self.rim_decoder = torch.nn.Identity()  # what marks a voxel head on a network
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        sdist = x[:, 3]
        return {"logit": self.w + x[:, 0].mean(dim=(1, 2, 3)), "rim_logits": 8.0 * (1.2 - sdist.abs())}


def test_voxel_head_gives_probability_map_in_the_same_pass(tmp_path):
    from rimscope.inference.api import rate_subject_rims
    from rimscope.io import load_subject
    from rimscope.models.base import NeuralRimModel

    net = ShellHead()
    model = NeuralRimModel("shell-head", {}, net)
    assert model.has_voxel_head
    p = write_rim_subject(tmp_path / "in")
    subject = load_subject(p["qsm"], p["flair"], p["lesions"], brainmask=p["brainmask"], subject_id="01")
    model.rim_threshold = 0.99  # as a trained card sets it (chosen on held-out rim truth)
    rows, rims = rate_subject_rims(subject, model, "cpu")
    assert net.calls == 1  # lesion probabilities and voxel probabilities from one pass
    assert rims.method == BY_HEAD and rims.prob is not None and rims.prob.dtype == np.float32
    edge = known_shell(RIM_LESION)
    assert rims.mask[edge].mean() > 0.8  # the head's edge band lands on the lesion's edge
    assert rims.prob.max() <= 1.0 and rims.prob[subject.lesions == 0][~ndimage.binary_dilation(
        subject.lesions > 0, iterations=6)[subject.lesions == 0]].max() == 0.0  # nothing far from lesions
    assert all(r["rim_volume_mm3"] is not None for r in rows)  # every lesion has an edge band here

    from rimscope.inference.outputs import write_subject

    out = tmp_path / "out"
    info = write_subject(subject, rows, out, rims)
    anat = subject_dir(out, "01")
    assert "sub-01/anat/sub-01_desc-rimvoxel_probseg.nii.gz" in info["files"]
    prob = on_grid(anat / "sub-01_desc-rimvoxel_probseg.nii.gz", p["qsm"], np.float32)
    mask = on_grid(anat / "sub-01_desc-rim_mask.nii.gz", p["qsm"], np.uint8)
    assert np.array_equal(mask.astype(bool), prob >= 0.99) and ((prob >= 0.99) != (prob >= 0.5)).any()
    side = json.loads((anat / "sub-01_desc-rimvoxel_probseg.json").read_text())
    assert side["rim_segmentation"] == BY_HEAD and side["RimThreshold"] == 0.99


def test_python_api_returns_the_rim_images(tmp_path, model_dir):  # noqa: F811
    import rimscope

    p = write_rim_subject(tmp_path)
    res = rimscope.predict(p["qsm"], p["flair"], p["lesions"], model=str(model_dir), device="cpu")
    assert res.rim_segmentation == BY_RULE
    assert res.images["rim_mask"].shape == nib.load(str(p["qsm"])).shape
    assert res[RIM_LESION - 1]["rim_coverage"] is not None and res[0]["rim_coverage"] is None
