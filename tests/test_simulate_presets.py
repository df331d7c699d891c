"""Each simulate preset produces the shift it names, and leaves the default config untouched."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from nibabel import orientations as nio

from rimscope.errors import InputError
from rimscope.simulate.acquisition import ModelGrid, random_acquisition
from rimscope.simulate.config import SimConfig
from rimscope.simulate.lesions_model import Placed, render_lesion
from rimscope.simulate.presets import PRESETS, parse, preset_config
from rimscope.simulate.subject import segmentation_error

SMALL = {"crop_mm": 48, "model_mm": 1.0, "voxel_mm": [0.9, 1.0], "n_veins": [2, 4], "n_medullary": [2, 4],
         "lesions_median": 10, "p_subject_rim_free": 0.0, "p_rim_base": 0.5, "montage": False}


def _acquisitions(name, n=12):
    cfg = preset_config(name)
    rng = np.random.default_rng(3)
    return [random_acquisition(rng, cfg, np.eye(4), np.array([-40.0] * 3), np.array([40.0] * 3)) for _ in range(n)]


def test_default_is_the_simulator_default_and_every_preset_changes_something():
    assert preset_config("default").to_dict() == SimConfig().to_dict()
    for name in PRESETS:
        cfg = preset_config(name).to_dict()
        assert name == "default" or cfg != SimConfig().to_dict()
    assert parse("all") == list(PRESETS) and parse("aniso-2,rim-outside") == ["aniso-2", "rim-outside"]
    with pytest.raises(InputError, match="unknown preset"):
        parse("default,nope")


def test_lps_oblique_stores_lps_with_a_15_to_25_degree_rotation():
    for acq in _acquisitions("lps-oblique"):
        assert nib.aff2axcodes(acq.affine) == ("L", "P", "S")
        assert 15.0 <= acq.oblique_deg <= 25.0
        ornt = nio.axcodes2ornt(("L", "P", "S"))
        P = np.zeros((3, 3))
        for i, (ax, sign) in enumerate(ornt):
            P[int(ax), i] = sign
        R = acq.affine[:3, :3] / np.asarray(acq.zooms)[None, :] @ P.T  # the extra rotation
        angle = np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1)))
        assert angle == pytest.approx(acq.oblique_deg, abs=1e-6)


@pytest.mark.parametrize("name,zooms", [("aniso-1.5", (0.75, 0.75, 1.5)), ("aniso-2", (0.5, 0.5, 2.0))])
def test_aniso_presets_give_thick_slices_along_superior_inferior(name, zooms):
    for acq in _acquisitions(name):
        assert sorted(acq.zooms) == pytest.approx(sorted(zooms))
        codes = nib.aff2axcodes(acq.affine)
        thick = int(np.argmax(acq.zooms))
        assert codes[thick] in ("S", "I")
        assert np.linalg.norm(acq.affine[:3, thick]) == pytest.approx(zooms[2])


def _sphere_lesion(truth, h=0.5, n=40, r_mm=4.0):
    grid = ModelGrid(np.zeros(3), h, (n, n, n))
    idx = np.indices((n, n, n)).transpose(1, 2, 3, 0)
    mask = np.linalg.norm((idx - (n - 1) / 2) * h, axis=-1) <= r_mm
    lo, hi = np.argwhere(mask).min(0), np.argwhere(mask).max(0) + 1
    win = tuple(slice(a, b) for a, b in zip(lo, hi))
    chi, flair = np.zeros((n, n, n), np.float32), np.zeros((n, n, n), np.float32)
    render_lesion(Placed(None, win, mask[win], dict(truth)), grid, chi, flair, np.random.default_rng(0),
                  SimConfig(), 0.5)
    from scipy import ndimage

    s = np.where(mask, -ndimage.distance_transform_edt(mask), ndimage.distance_transform_edt(~mask)) * h
    return chi, s


@pytest.mark.parametrize("offset", [None, 0.5, 1.5])
def test_rim_offset_puts_the_rim_outside_the_mask_edge(offset):
    t = {"kind": "rim", "core_ppm": 0.0, "coverage": 1.0, "rim_ppm": 0.05, "rim_thickness_mm": 1.0,
         "central_vein": False, "flair_scale": 1.0}
    if offset is not None:
        t["rim_offset_mm"] = offset
    chi, s = _sphere_lesion(t)
    centre = float((chi * s).sum() / chi.sum())  # where the rim's susceptibility sits
    if offset is None:
        assert centre < 0.1  # the default band: mostly inside the edge
    else:
        assert centre > 0.2 and abs(centre - offset) < 0.5
        assert chi[s < -0.5].sum() < 0.1 * chi.sum()


def test_rim_outside_preset_records_an_outside_offset_for_every_rim(tmp_path):
    from rimscope.simulate.subject import simulate_subject

    cfg = SimConfig.from_dict({**PRESETS["rim-outside"], **SMALL})
    sim = simulate_subject(cfg, 5, 0)
    rims = [t for t in sim.truth["lesions"] if t["rim_ppm"] > 0]
    assert rims and all(0.5 <= t["rim_offset_mm"] <= 1.5 for t in rims)
    assert all("rim_offset_mm" not in t for t in sim.truth["lesions"] if t["rim_ppm"] == 0)


@pytest.mark.parametrize("name,grow", [("mask-eroded", False), ("mask-dilated", True)])
def test_mask_presets_erode_or_dilate_every_lesion_by_one_or_two_voxels(name, grow):
    labels = np.zeros((60, 60, 30), np.int32)
    idx = np.indices(labels.shape).transpose(1, 2, 3, 0)
    for k, c in enumerate([(12, 12, 15), (12, 45, 15), (45, 12, 15), (45, 45, 15)], start=1):
        labels[np.linalg.norm(idx - np.array(c), axis=-1) <= 5] = k
    cfg = SimConfig.from_dict({**PRESETS[name], "seg_boundary_noise": [0.0, 0.0]})
    out, t = segmentation_error(labels, np.random.default_rng(1), cfg)
    before = np.bincount(labels.ravel())[1:]
    after = np.bincount(out.ravel(), minlength=5)[1:]
    kinds = set(t["per_lesion"].values())
    assert kinds <= ({"dilate", "dilate2"} if grow else {"erode", "erode2"})
    assert np.all(after > before) if grow else np.all(after < before)


def test_simulate_cli_records_the_preset(tmp_path):
    from rimscope.cli import main

    cfg = tmp_path / "small.json"
    cfg.write_text(json.dumps(SMALL))
    out = tmp_path / "c"
    assert main(["simulate", "--preset", "lps-oblique", "--config", str(cfg), "-o", str(out),
                 "--subjects", "1", "--seed", "2", "-q"]) == 0
    truth = json.loads((out / "truth.json").read_text())
    acq = truth["subjects"]["001"]["acquisition"]
    assert truth["preset"] == "lps-oblique" and truth["config"]["crop_mm"] == 48
    assert acq["orientation"] == "LPS" and 15 <= acq["oblique_deg"] <= 25
    img = nib.load(out / "sub-001/anat/sub-001_Chimap.nii.gz")
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
