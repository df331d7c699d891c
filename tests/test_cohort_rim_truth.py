"""A simulated validation cohort's rim voxel truth on each lesion's patch grid: where it lies,
that the stored orientation does not change it, and that engine training validates a voxel head
on it (its Dice every epoch, its voxel threshold) when `--val-cohort` is given."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from conftest import tiny_subject, to_orientation, write_cohort
from rimscope.cohort import load_cohort, read_labels
from rimscope.patches import SDIST_CLIP_MM, PatchConfig
from rimscope.train.cohort_rim_truth import cohort_rim_truth, rimtruth_beside
from rimscope.train.data import load_lesion_data

RIM_LESION = 2


def _cohort(root, codes="RAS", truth_for=None):
    """Two tiny subjects in sub-<id>/ folders; lesion 2 of each gets a rim truth shell (its
    outer edge voxels), written in the images' orientation beside the lesion mask."""
    manifest, labels, subjects = write_cohort(root, 2, folders=True, codes=codes, shell_ppm=0.05,
                                              rims=lambda k: [0, 1, 0, 0])
    for k, sid in enumerate(subjects):
        if truth_for is not None and sid not in truth_for:
            continue
        _, _, lab, _ = tiny_subject(seed=k)
        ball = lab == RIM_LESION
        shell = (ndimage.binary_dilation(ball) & ~ball).astype(np.uint8)
        a, aff = to_orientation(shell, codes) if codes != "RAS" else (shell, np.eye(4))
        entry = next(e for e in load_cohort(manifest) if e.subject == sid)
        nib.save(nib.Nifti1Image(a, aff), str(rimtruth_beside(entry)))
    return manifest, labels


def _truth(manifest, labels):
    entries = load_cohort(manifest)
    data = load_lesion_data(entries, read_labels(labels))
    return data, cohort_rim_truth(entries, data, PatchConfig())


@pytest.mark.parametrize("codes", ["RAS", "LPS"])
def test_the_rim_truth_patch_lies_on_its_lesions_edge_whatever_the_orientation(tmp_path, codes):
    data, truth = _truth(*_cohort(tmp_path / codes, codes))
    ref, ref_truth = _truth(*_cohort(tmp_path / "ref")) if codes != "RAS" else (data, truth)
    assert truth.shape == (len(data), 32, 32, 32) and truth.dtype == np.float32
    np.testing.assert_allclose(truth, ref_truth, atol=1e-4)  # the same world data, the same truth
    for r in np.flatnonzero(data.lesion_id == RIM_LESION):
        rim = truth[r] >= 0.5
        d_mm = data.x[r, 3][rim] * SDIST_CLIP_MM
        assert rim.sum() > 20 and np.mean(np.abs(d_mm) <= 1.5) > 0.9  # on this lesion's own edge
    for r in np.flatnonzero(data.lesion_id != RIM_LESION):  # lesions without a rim: none at their edge
        edge = np.abs(data.x[r, 3] * SDIST_CLIP_MM) <= 1.0
        assert truth[r][edge].max() < 0.5


def test_a_cohort_without_rim_truth_for_every_subject_gives_none(tmp_path):
    manifest, labels = _cohort(tmp_path, truth_for={"s0"})
    assert _truth(manifest, labels)[1] is None


def test_a_rim_truth_on_another_grid_is_refused_naming_it(tmp_path):
    from rimscope.errors import InputError

    manifest, labels = _cohort(tmp_path)
    entry = load_cohort(manifest)[0]
    nib.save(nib.Nifti1Image(np.zeros((10, 10, 10), np.uint8), np.eye(4)), str(rimtruth_beside(entry)))
    with pytest.raises(InputError, match="rimtruth"):
        _truth(manifest, labels)


@pytest.mark.slow  # a whole engine training run (the pieces above are the fast checks)
def test_engine_training_validates_a_voxel_head_on_the_cohorts_rim_truth(tmp_path):
    from rimscope.cli import main

    manifest, labels = _cohort(tmp_path / "val")
    conf = tmp_path / "engine.json"
    conf.write_text(json.dumps({"donors": ["patient01"]}))
    out = tmp_path / "model"
    rc = main(["train", "-q", "--engine", str(conf), "-o", str(out), "--examples", "16",
               "--epoch-examples", "16", "--val-cohort", str(manifest), "--val-labels", str(labels),
               "--engine-workers", "1", "--threads", "1", "-o", "batch_size=8", "-o", "model.widths=[8,16,16,16]",
               "-o", "model.rim_head=true", "-d", "cpu"])
    assert rc == 0
    t = json.loads((out / "card.json").read_text())["training"]
    assert t["validation"] != "engine"
    assert all(0.0 <= e["val_rim_dice"] <= 1.0 for e in t["history"])
    assert t["rim_threshold_dice"] and max(t["rim_threshold_dice"].values()) > 0
