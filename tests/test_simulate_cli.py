"""`rimscope simulate` writes a cohort that rimscope itself reads back, reproducibly and atomically."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rimscope.cli import main

SMALL = {"crop_mm": 56, "model_mm": 1.0, "voxel_mm": [0.9, 1.0], "n_veins": [3, 6],
         "n_medullary": [3, 6], "lesions_median": 8, "montage": False}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim")
    cfg = d / "small.json"
    cfg.write_text(json.dumps(SMALL))
    out = d / "cohort"
    assert main(["simulate", "-o", str(out), "--subjects", "2", "--seed", "7", "--config", str(cfg), "-q"]) == 0
    return out, cfg


def test_cohort_reads_back_through_io(cohort):
    from rimscope.cohort import load_cohort, read_labels
    from rimscope.io import load_subject

    out, _ = cohort
    entries = load_cohort(out / "manifest.tsv")
    assert [e.subject for e in entries] == ["001", "002"]
    labels = read_labels(out / "labels.tsv")
    truth = json.loads((out / "truth.json").read_text())
    assert truth["seed"] == 7 and truth["config"]["crop_mm"] == 56 and "numpy" in truth["versions"]
    for e in entries:
        s = load_subject(**e.paths(), subject_id=e.subject)
        ids = set(np.unique(s.lesions[s.lesions > 0]).tolist())
        t = truth["subjects"][e.subject]
        assert ids == {x["lesion_id"] for x in t["lesions"]} == {k[1] for k in labels if k[0] == e.subject}
        assert ids == set(range(1, len(ids) + 1))
        for x in t["lesions"]:
            assert labels[(e.subject, x["lesion_id"])] == x["rim"]
            assert x["true_rim"] == int(x["kind"] == "rim" and x["coverage"] >= 2 / 3)
            assert x["hard_negative"] in {"none", "partial_rim", "hyperintense_no_rim", "vein_touching", "central_vein"}
        assert -0.5 < np.percentile(s.qsm[s.brainmask], 1) < 0 < np.percentile(s.qsm[s.brainmask], 99) < 0.5
        a = t["acquisition"]
        assert abs(np.linalg.norm(a["b0_in_array_axes"]) - 1) < 1e-6 and 0 <= a["b0_tilt_deg"] <= 20.5
        assert a["inversion"]["kind"] in ("tkd", "cg_l2")


def test_rerun_skips_finished_subjects_and_refuses_other_settings(cohort, capsys):
    out, cfg = cohort
    q = out / "sub-001/anat/sub-001_Chimap.nii.gz"
    before = q.stat().st_mtime_ns
    assert main(["simulate", "-o", str(out), "--subjects", "2", "--seed", "7", "--config", str(cfg), "-q"]) == 0
    assert q.stat().st_mtime_ns == before
    assert json.loads((out / "truth.json").read_text())["seconds_per_subject_this_run"] == {}
    assert main(["simulate", "-o", str(out), "--subjects", "2", "--seed", "8", "--config", str(cfg), "-q"]) == 2
    err = capsys.readouterr().err
    assert "another seed" in err and str(out) in err


def test_same_seed_same_subject_other_seed_differs(tmp_path):
    from rimscope.simulate.config import SimConfig
    from rimscope.simulate.subject import simulate_subject

    cfg = SimConfig(**SMALL)
    a, b, c = simulate_subject(cfg, 3, 0), simulate_subject(cfg, 3, 0), simulate_subject(cfg, 4, 0)
    np.testing.assert_array_equal(a.qsm, b.qsm)
    assert a.truth["lesions"] == b.truth["lesions"]
    assert a.qsm.shape != c.qsm.shape or not np.array_equal(a.qsm, c.qsm)


def test_unlabeled_and_bad_config(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({**SMALL, "lesions_median": 4}))
    out = tmp_path / "u"
    assert main(["simulate", "-o", str(out), "--subjects", "1", "--seed", "1", "--config", str(cfg),
                 "--unlabeled", "-q"]) == 0
    assert not (out / "labels.tsv").exists() and (out / "manifest.tsv").exists()
    truth = json.loads((out / "truth.json").read_text())
    assert all("rim" not in x and "true_rim" in x for x in truth["subjects"]["001"]["lesions"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rim_strength": 1}))
    assert main(["simulate", "-o", str(tmp_path / "b"), "--subjects", "1", "--config", str(bad), "-q"]) == 2
    err = capsys.readouterr().err
    assert "rim_strength" in err and "bad.json" in err
    bad.write_text(json.dumps({"voxel_mm": [1.0, 0.6]}))
    assert main(["simulate", "-o", str(tmp_path / "b"), "--subjects", "1", "--config", str(bad), "-q"]) == 2


def test_check_prints_difficulty(cohort, capsys):
    out, _ = cohort
    assert main(["simulate", "--check", str(out), "--json", "-q"]) == 0
    m = json.loads(capsys.readouterr().out)
    truth = json.loads((out / "truth.json").read_text())
    n = sum(len(s["lesions"]) for s in truth["subjects"].values())
    assert m["lesions"] == n and m["subjects"] == 2
    assert 0 <= m["label"]["prevalence"] <= 1
    assert -1 <= m["expected_inter_rater_kappa"] <= 1


def test_cohort_writes_the_local_field_in_the_phase_contract(cohort):
    """The local field the QSM was inverted from: ppm, sidecar Units, manifest column `phase`."""
    import csv

    import nibabel as nib

    from rimscope.phase import load_phase_subject
    from rimscope.simulate.physics import forward_field

    out, _ = cohort
    row = next(csv.DictReader((out / "manifest.tsv").open(), delimiter="\t"))
    assert row["phase"] == "sub-001/anat/sub-001_desc-localfield_phase.nii.gz"
    assert json.loads((out / row["phase"].replace(".nii.gz", ".json")).read_text())["Units"] == "ppm"
    field, qsm, mask = (np.asarray(nib.load(str(out / row[k])).dataobj) for k in ("phase", "qsm", "brainmask"))
    mask = mask > 0
    assert not field[~mask].any() and np.count_nonzero(field[mask]) > 0.99 * mask.sum()
    acq = json.loads((out / "truth.json").read_text())["subjects"]["001"]["acquisition"]
    pred = forward_field(qsm, acq["voxel_mm"], acq["b0_in_array_axes"])  # QSM inverts this field
    assert np.corrcoef(pred[mask], field[mask])[0, 1] > 0.5
    s = load_phase_subject(out / row["phase"], out / row["flair"], out / row["lesions"],
                           out / row["brainmask"], qsm=out / row["qsm"], subject_id="001")
    assert s.info["phase"]["units"] == "ppm" and s.info["phase"]["sign_used"] == 1
