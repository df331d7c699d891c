"""evaluate.rims on a hand-made two-subject cohort whose rims are known exactly."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from test_rim_measures import sphere_phantom

from rimscope.errors import InputError
from rimscope.evaluate.rims import bland_altman, evaluate_rims


def _cohort(tmp_path, noise=0.004):
    rng = np.random.default_rng(1)
    rows, subjects = [], {}
    for i, (half, amp) in enumerate(((False, 0.03), (True, 0.06))):
        sid = f"{i + 1:03d}"
        qsm, labels, rim, z = sphere_phantom(half=half)
        qsm = qsm + (amp - 0.05) * rim + rng.normal(0, noise, qsm.shape).astype(np.float32)
        aff = np.diag([*z, 1.0])
        d = tmp_path / f"sub-{sid}" / "anat"
        d.mkdir(parents=True)
        names = {}
        for role, arr in (("qsm", qsm), ("flair", 1.0 + labels.astype(np.float32)), ("lesions", labels),
                          ("brainmask", np.ones_like(labels, np.uint8)), ("rimtruth", rim.astype(np.uint8))):
            name = f"sub-{sid}/anat/sub-{sid}_" + {"qsm": "Chimap", "flair": "FLAIR", "lesions": "desc-lesions_dseg",
                                                    "brainmask": "desc-brain_mask",
                                                    "rimtruth": "desc-rimtruth_mask"}[role] + ".nii.gz"
            nib.save(nib.Nifti1Image(arr, aff), tmp_path / name)
            names[role] = name
        rows.append(f"{sid}\t{names['qsm']}\t{names['flair']}\t{names['lesions']}\t{names['brainmask']}")
        subjects[sid] = {"lesions": [{"lesion_id": 1, "true_rim": 1, "rim_ppm": amp + 0.02,
                                      "coverage": 0.5 if half else 1.0}]}
    (tmp_path / "manifest.tsv").write_text("subject\tqsm\tflair\tlesions\tbrainmask\n" + "\n".join(rows) + "\n")
    (tmp_path / "truth.json").write_text(json.dumps({"subjects": subjects}))
    return tmp_path


def test_truth_as_prediction_scores_perfectly_and_the_rule_close(tmp_path):
    root = _cohort(tmp_path)

    def oracle(s):
        return np.asarray(nib.load(root / f"sub-{s.id}/anat/sub-{s.id}_desc-rimtruth_mask.nii.gz").dataobj) > 0

    res = evaluate_rims(root, oracle)
    sm = res["summary"]
    assert sm["n_lesions"] == 2 and sm["dice_mean"] == pytest.approx(1.0) and sm["dice_pooled"] == pytest.approx(1.0)
    assert sm["coverage_mae"] < 0.03
    rows = {r["subject"]: r for r in res["lesions"]}
    assert rows["001"]["pred_rim_susceptibility_ppb"] == pytest.approx(30.0, abs=2.0)
    assert rows["002"]["pred_rim_susceptibility_ppb"] == pytest.approx(60.0, abs=2.0)
    rule = evaluate_rims(root)["summary"]
    assert rule["dice_mean"] > 0.7 and rule["coverage_mae"] < 0.15
    nothing = evaluate_rims(root, lambda s: np.zeros(s.qsm.shape, bool))["summary"]
    assert nothing["n_no_rim_found"] == 2 and nothing["dice_mean"] == 0.0
    assert nothing["coverage_mae"] == pytest.approx(0.75, abs=0.01)


def test_predictions_folder_and_missing_truth(tmp_path):
    root = _cohort(tmp_path)
    with pytest.raises(InputError):
        evaluate_rims(root, tmp_path / "nowhere")
    (root / "sub-002/anat/sub-002_desc-rimtruth_mask.nii.gz").unlink()
    with pytest.raises(InputError, match="rim voxel truth"):
        evaluate_rims(root)


def test_bland_altman_known_numbers():
    a = np.array([10.0, 20.0, 30.0, np.nan])
    b = np.array([8.0, 19.0, 27.0, 5.0])
    r = bland_altman(a, b)
    assert r["n"] == 3 and r["mean_diff"] == pytest.approx(2.0)
    sd = np.std([2.0, 1.0, 3.0], ddof=1)
    assert r["loa_low"] == pytest.approx(2 - 1.96 * sd) and r["loa_high"] == pytest.approx(2 + 1.96 * sd)
    assert np.isnan(bland_altman([1.0], [2.0])["mean_diff"])
