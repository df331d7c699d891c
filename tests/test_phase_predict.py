"""Phase input through the whole tool: cohorts with a phase column or BIDS local field maps, the
real `rimscope predict --phase` (units, sign, refusals, the model picked by the input), a phase
model trained on the engine's field patches, and transfer scoring a phase model on simulated
cohorts (their phase column)."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import make_affine
from rimscope.cli import main
from rimscope.cohort import load_cohort
from rimscope.inference.outputs import lesions_tsv, report_path, stamp_path
from rimscope.phase import GAMMA_MHZ_T, detect_sign
from test_phase import _head

B0_T, TE_MS = 3.0, 20.0


def _save(data, path):
    nib.save(nib.Nifti1Image(np.asarray(data), make_affine()), str(path))
    return str(path)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A tiny phase-only subject on disk (field in ppm, Hz, rad, sign-flipped, wrapped, magnitude)
    and an untrained phase model (random weights: these tests check the input path, not skill)."""
    from rimscope.models.card import save_model
    from rimscope.models.registry import build
    from rimscope.patches import PatchConfig

    d = tmp_path_factory.mktemp("phase_predict")
    field, qsm, flair, labels, brain = _head()
    hz = field * GAMMA_MHZ_T * B0_T
    rad = hz * 2 * np.pi * TE_MS / 1000
    strong = rad * 40 + np.indices(field.shape)[0] * 0.8 * (rad != 0)
    f = {"ppm": _save(field, d / "f_ppm.nii.gz"), "hz": _save(hz, d / "f_hz.nii.gz"),
         "rad": _save(rad, d / "f_rad.nii.gz"), "neg": _save(-field, d / "f_neg.nii.gz"),
         "wrapped": _save(np.angle(np.exp(1j * strong)).astype(np.float32) * (field != 0), d / "wrapped.nii.gz"),
         "magnitude": _save(((flair * 3 + 50) * brain).astype(np.float32), d / "magnitude.nii.gz"),
         "qsm": _save(qsm, d / "qsm.nii.gz"), "flair": _save(flair, d / "flair.nii.gz"),
         "lesions": _save(labels, d / "les.nii.gz"), "brainmask": _save(brain.astype(np.uint8), d / "bm.nii.gz")}
    torch.manual_seed(0)
    model = build("asymmetric", widths=[8, 16, 16, 16])
    model.patch_config = PatchConfig(source="phase")
    save_model(model, d / "phase_model")
    return d, f, str(d / "phase_model")


def _predict(case, out, phase_key, *extra, model=True):
    d, f, model_dir = case
    argv = ["predict", "-q", "--phase", f[phase_key], "--flair", f["flair"], "--lesions", f["lesions"],
            "--brainmask", f["brainmask"], "--subject", "01", "-o", str(d / out), "-d", "cpu", *extra]
    return main(argv + (["-m", model_dir] if model else []))


def _probs(case, out):
    rows = lesions_tsv(case[0] / out, "01").read_text().splitlines()
    col = rows[0].split("\t").index("rim_probability")
    return np.array([float(r.split("\t")[col]) for r in rows[1:]])


def _record(case, out):
    return json.loads((case[0] / out / "run.json").read_text())


def test_hz_and_rad_with_te_give_the_same_calls_through_predict(case):
    assert _predict(case, "o_ppm", "ppm") == 0
    assert _predict(case, "o_hz", "hz", "--phase-units", "hz", "--field-t", "3") == 0
    assert _predict(case, "o_rad", "rad", "--phase-units", "rad", "--te-ms", "20", "--field-t", "3") == 0
    p = _probs(case, "o_ppm")
    assert len(p) == 4 and np.ptp(p) > 1e-4  # the model's answer depends on the lesion
    np.testing.assert_allclose(_probs(case, "o_hz"), p, atol=2e-4)
    np.testing.assert_allclose(_probs(case, "o_rad"), p, atol=2e-4)
    # a wrong echo time halves the field: the same model answers differently (the check can fail)
    assert _predict(case, "o_rad_te", "rad", "--phase-units", "rad", "--te-ms", "40", "--field-t", "3") == 0
    assert np.abs(_probs(case, "o_rad_te") - p).max() > 1e-3
    rec = _record(case, "o_rad")
    ph = rec["phase"]["01"]
    assert rec["model"]["source"] == "phase"
    assert (ph["units"], ph["te_ms"], ph["field_t"], ph["sign_given"], ph["sign_used"], ph["filtered"]) == \
        ("rad", 20.0, 3.0, "auto", 1, False)
    stamp = json.loads(stamp_path(case[0] / "o_rad", "01").read_text())
    assert stamp["phase"]["units"] == "rad"
    side = json.loads(lesions_tsv(case[0] / "o_rad", "01").with_suffix(".json").read_text())
    assert side["PhaseHandling"]["te_ms"] == 20.0 and side["PhaseHandling"]["sign_used"] == 1


def test_python_api_takes_phase(case):
    import rimscope

    d, f, model_dir = case
    rows = rimscope.predict(None, f["flair"], f["lesions"], model=model_dir, brainmask=f["brainmask"],
                            device="cpu", phase=f["hz"], phase_units="hz", field_t=B0_T)
    assert _predict(case, "o_api", "ppm") == 0
    np.testing.assert_allclose([r["rim_probability"] for r in rows], _probs(case, "o_api"), atol=2e-4)


def test_sign_flipped_map_is_warned_and_corrected_in_auto(case):
    assert _predict(case, "o_pos", "ppm") == 0
    assert _predict(case, "o_neg", "neg") == 0
    rec = _record(case, "o_neg")
    assert rec["phase"]["01"]["sign_detected"] == -1 and rec["phase"]["01"]["sign_used"] == -1
    assert any("inverted" in w for w in rec["warnings"]["01"])
    np.testing.assert_allclose(_probs(case, "o_neg"), _probs(case, "o_pos"), atol=2e-4)
    assert _predict(case, "o_neg_kept", "neg", "--phase-sign", "+1") == 0  # kept as given: differs
    assert np.abs(_probs(case, "o_neg_kept") - _probs(case, "o_pos")).max() > 1e-3
    assert any("look opposite" in w for w in _record(case, "o_neg_kept")["warnings"]["01"])


@pytest.mark.parametrize("key, words", [("wrapped", "wrapped"), ("magnitude", "magnitude")])
def test_wrapped_and_magnitude_phase_exit_2_with_one_line(case, capsys, key, words):
    capsys.readouterr()
    assert _predict(case, f"o_{key}", key) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{key}.nii.gz" in err and words in err
    assert not (case[0] / f"o_{key}").exists()


def test_phase_only_input_is_rated_by_the_qsm_model_through_its_tkd_inversion(case, capsys):
    """No -m, phase only: the shipped QSM model reads the TKD inversion of the field, the same calls
    as giving that inversion as --qsm, and the run says how its QSM was made."""
    from rimscope.phase import QSM_TKD_THRESHOLD, load_phase_subject

    d, f, _ = case
    assert _predict(case, "o_qsm_model", "ppm", "--report", model=False) == 0
    assert "QSM (TKD 0.2 of the phase" in report_path(d / "o_qsm_model", "01").read_text()
    rec = _record(case, "o_qsm_model")
    assert rec["model"]["source"] == "qsm"
    assert rec["phase"]["01"]["qsm_from_phase"] == {"method": "tkd", "threshold": QSM_TKD_THRESHOLD,
                                                     "b0_dir": [0.0, 0.0, 1.0]}
    s = load_phase_subject(f["ppm"], f["flair"], f["lesions"], f["brainmask"], subject_id="01",
                           qsm_from_phase=True)
    assert np.abs(s.qsm).max() > 0.02  # a susceptibility map, not the (weaker) field
    tkd_qsm = _save(s.qsm, d / "tkd_qsm.nii.gz")  # RAS: the canonical grid is the stored one
    base = ["predict", "-q", "--flair", f["flair"], "--lesions", f["lesions"], "--brainmask", f["brainmask"],
            "--subject", "01", "-d", "cpu"]
    assert main(base + ["--qsm", tkd_qsm, "-o", str(d / "o_tkd_given")]) == 0
    np.testing.assert_allclose(_probs(case, "o_qsm_model"), _probs(case, "o_tkd_given"), atol=1e-5)
    assert "phase" not in _record(case, "o_tkd_given")


def test_phase_model_refuses_a_qsm_only_subject_and_qsm_wins_without_m(case, capsys):
    d, f, model_dir = case
    base = ["predict", "-q", "--qsm", f["qsm"], "--flair", f["flair"], "--lesions", f["lesions"],
            "--brainmask", f["brainmask"], "--subject", "01", "-d", "cpu"]
    capsys.readouterr()
    assert main(base + ["-o", str(d / "o_q1"), "-m", model_dir]) == 2
    assert "reads phase" in capsys.readouterr().err
    # QSM and phase both given: the phase model reads the phase (on the QSM grid)
    assert main(base + ["--phase", f["ppm"], "-o", str(d / "o_q2"), "-m", model_dir]) == 0
    assert _predict(case, "o_q3", "ppm") == 0
    np.testing.assert_allclose(_probs(case, "o_q2"), _probs(case, "o_q3"), atol=2e-4)
    assert main(base + ["--phase", f["ppm"], "-o", str(d / "o_q4")]) == 0  # no -m: the QSM default
    rec = _record(case, "o_q4")
    assert rec["model"]["source"] == "qsm" and "phase" not in rec


def test_report_shows_the_local_field_for_a_phase_only_subject(case):
    assert _predict(case, "o_report", "ppm", "--report") == 0
    html = report_path(case[0] / "o_report", "01").read_text()
    assert "local field + outline" in html and "<b>local field</b> -50" in html and "QSM + outline" not in html


def test_review_shows_a_phase_only_subject_as_the_map_its_model_rated(case, tmp_path):
    """QSM model on phase only: the review shows the TKD inversion it rated (with predict's sign
    correction); a phase model: the field itself."""
    from rimscope.phase import load_phase_subject
    from rimscope.review.catalog import Catalog

    d, f, _ = case
    manifest = tmp_path / "m.tsv"
    manifest.write_text("subject\tphase\tflair\tlesions\tbrainmask\n"
                        f"01\t{f['neg']}\t{f['flair']}\t{f['lesions']}\t{f['brainmask']}\n")
    assert _predict(case, "o_review_qsm", "neg", model=False) == 0
    assert _predict(case, "o_review_phase", "neg") == 0
    ref = load_phase_subject(f["ppm"], f["flair"], f["lesions"], f["brainmask"], subject_id="01",
                             qsm_from_phase=True)
    shown = Catalog(manifest, d / "o_review_qsm").volumes("01").qsm
    np.testing.assert_allclose(shown, ref.qsm, atol=1e-6)
    shown = Catalog(manifest, d / "o_review_phase").volumes("01").qsm
    np.testing.assert_allclose(shown, ref.local_field, atol=1e-6)


def test_cohort_phase_column_bids_discovery_and_validate(case, tmp_path, capsys):
    d, f, _ = case
    m = tmp_path / "manifest.tsv"
    m.write_text("subject\tphase\tflair\tlesions\tbrainmask\n"
                 f"01\t{f['neg']}\t{f['flair']}\t{f['lesions']}\t{f['brainmask']}\n")
    (e,) = load_cohort(m)
    assert e.qsm is None and str(e.phase) == f["neg"] and "qsm" not in e.paths() and "phase" not in e.paths()
    assert e.inputs()["phase"] == e.phase
    m.write_text("subject\tqsm\tflair\tlesions\n01\t\t" + f"{f['flair']}\t{f['lesions']}\n")
    with pytest.raises(Exception, match="neither a qsm nor a phase"):
        load_cohort(m)
    bids = tmp_path / "bids"
    anat, der = bids / "sub-01" / "anat", bids / "derivatives" / "seg" / "sub-01" / "anat"
    anat.mkdir(parents=True)
    der.mkdir(parents=True)
    for src, dst in ((f["ppm"], anat / "sub-01_desc-localfield_phase.nii.gz"),
                     (f["flair"], anat / "sub-01_FLAIR.nii.gz"), (f["lesions"], der / "sub-01_desc-lesions_mask.nii.gz")):
        dst.write_bytes(open(src, "rb").read())
    (e,) = load_cohort(bids)
    assert e.qsm is None and e.phase.name == "sub-01_desc-localfield_phase.nii.gz"
    manifest = tmp_path / "m2.tsv"
    manifest.write_text("subject\tphase\tflair\tlesions\tbrainmask\n"
                        f"01\t{f['neg']}\t{f['flair']}\t{f['lesions']}\t{f['brainmask']}\n")
    capsys.readouterr()
    assert main(["validate", str(manifest)]) == 0
    out = capsys.readouterr().out
    assert "no QSM; phase ppm" in out and "sign -1 used (auto given, detected -1" in out and "inverted" in out


def test_sign_detection_on_a_big_grid_takes_the_quick_path_and_agrees():
    """Above SIGN_FULL_VOXELS the sign is judged on a 2x grid first: same verdict as the full grid."""
    from rimscope import phase_sign

    field, *_, brain = _head()
    big = np.kron(field, np.ones((3, 3, 3), np.float32))  # 120x132x108 = 1.7 M voxels at 1/3 mm
    mask = np.kron(brain, np.ones((3, 3, 3), bool))
    zooms = (1 / 3,) * 3
    quick = detect_sign(big, mask, zooms)
    full = phase_sign._verdict(big, mask, zooms, np.array([0.0, 0.0, 1.0]))
    assert big.size > phase_sign.SIGN_FULL_VOXELS and quick.sign == full.sign == 1
    assert detect_sign(-big, mask, zooms).sign == -1


def test_train_engine_source_phase_swaps_channel_0_and_records_it(tmp_path):
    from rimscope.models.card import load_model, read_card
    from rimscope.simulate.engine import render_batch
    from rimscope.simulate.engine_config import EngineConfig
    from rimscope.train.engine_data import as_chunk

    batch = render_batch(EngineConfig(donors=["patient01"]), 3, 0, 2)
    chunk = as_chunk(batch, 3, 0, "phase")
    from rimscope.patches.sampling import reference_field

    np.testing.assert_array_equal(chunk.data.x[:, 0], np.stack([reference_field(f) for f in batch.field]))
    np.testing.assert_array_equal(chunk.data.x[:, 1:], batch.x[:, 1:])
    assert not np.array_equal(batch.x[:, 0], batch.field)
    conf = tmp_path / "engine.json"
    conf.write_text(json.dumps({"donors": ["patient01"]}))
    out = tmp_path / "phase_model"
    assert main(["train", "-q", "--engine", str(conf), "--source", "phase", "--out", str(out), "--examples", "16",
                 "--epoch-examples", "16", "--val-examples", "16", "--engine-workers", "1", "--threads", "1",
                 "-o", "batch_size=8", "-o", "model.widths=[8,16,16,16]", "-d", "cpu"]) == 0
    card = read_card(out / "card.json")
    assert card.patch.source == "phase" and json.loads((out / "card.json").read_text())["training"]["source"] == "phase"
    assert load_model(out).patch_config.source == "phase"
    assert json.loads((out / "card.json").read_text())["training"]["options"]["offset_ppm"] == 0.0  # no offset jitter


def test_transfer_scores_a_phase_model_on_simulated_cohorts(case, tmp_path):
    from rimscope.evaluate import transfer_bench as TB
    from test_transfer import TINY

    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    models = {"ph": case[2], "qsm": "default", "from-phase": "default@phase"}
    res = TB.transfer(tmp_path / "b", models=models, presets="default", subjects=1, config=cfg,
                      n_boot=20, device="cpu", quiet=True, foreign=False)
    c = res["cohorts"][0]
    assert res["models"][:3] == ["ph", "qsm", "from-phase"] and c["n_lesions"] > 0
    assert np.isfinite(c["metrics"]["ph"]["roc_auc"]) or c["n_rim"] in (0, c["n_lesions"])
    # the same QSM model on the cohort's QSM and on the TKD of its phase: related, not the same scores
    from rimscope.evaluate.transfer import make_scorers, score_cohort

    sc = score_cohort(tmp_path / "b" / "cohorts" / "default-seed7000", make_scorers(
        {"qsm": "default", "from-phase": "default@phase"}), quiet=True)["scores"]
    assert len(sc["qsm"]) == len(sc["from-phase"]) == c["n_lesions"]
    assert not np.allclose(sc["qsm"], sc["from-phase"]) and np.corrcoef(sc["qsm"], sc["from-phase"])[0, 1] > 0.3
    with pytest.raises(Exception, match="@phase"):
        make_scorers({"x": "default@flair"})
