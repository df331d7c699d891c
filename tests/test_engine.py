"""The lesion engine: determinism, the patch contract, the label rule, rim placement, B0, and
agreement with the whole-brain simulator's rendering of the same lesion."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rimscope.simulate.engine import render_batch, render_example
from rimscope.simulate.engine_config import EngineConfig, load_engine_config

DONOR = ["patient01"]  # one donor mask keeps the library load under a second


def cfg(**kw) -> EngineConfig:
    return EngineConfig(donors=DONOR, **kw)


CLEAN = dict(p_neighbour=0.0, p_fov_cut=0.0, p_dilate=0.0, p_erode=0.0, p_gm_boundary=0.0,
             p_ventricle=0.0, p_deep_gm=0.0, n_veins=[0, 0], noise_ppm=[0.0, 0.0],
             background_ppm=[0.0, 0.0], texture_ppm=[0.0, 0.0], offset_ppm=[0.0, 0.0])


def test_examples_are_a_pure_function_of_seed_and_index():
    c = cfg()
    a = render_batch(c, 3, 5, 3)
    b = render_batch(c, 3, 5, 3)
    one = render_batch(c, 3, 6, 1)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y) and np.array_equal(a.rim, b.rim)
    assert np.array_equal(a.x[1], one.x[0]) and np.array_equal(a.field[1], one.field[0])
    other = render_batch(c, 4, 5, 1)
    assert not np.allclose(a.x[0], other.x[0])


def test_patch_contract_shapes_dtypes_channels():
    b = render_batch(cfg(), 0, 0, 6)
    assert b.x.shape == (6, 4, 32, 32, 32) and b.x.dtype == np.float32
    assert b.rim.shape == b.field.shape == (6, 32, 32, 32) and b.rim.dtype == b.field.dtype == np.float32
    assert set(np.unique(b.x[:, 2])) <= {0.0, 1.0} and np.all(b.x[:, 2].reshape(6, -1).sum(1) > 0)
    assert b.x[:, 3].min() >= -1 and b.x[:, 3].max() <= 1
    assert 0 <= b.rim.min() and b.rim.max() <= 1 and set(b.y.tolist()) <= {0, 1}
    assert np.all(np.abs(b.x[:, 0]).max(axis=(1, 2, 3)) < 2.0)  # QSM in ppm, not ppb
    for m in b.meta:
        assert {"amplitude_ppb", "coverage", "offset_mm", "thickness_mm", "kind", "inversion", "voxel_mm",
                "b0_angle_deg", "core"} <= set(m)


def test_labels_follow_the_coverage_and_amplitude_rule_and_rater_flips():
    c = cfg(rim_fraction=0.5)
    b = render_batch(c, 1, 0, 40)
    rule = [int(m["coverage"] >= 2 / 3 - 1e-9 and m["amplitude_ppb"] >= 20.0) for m in b.meta]
    assert b.y.tolist() == rule and 0 < b.y.sum() < 40
    kinds = {m["kind"] for m, y in zip(b.meta, b.y) if y == 0}
    assert kinds & {"partial_rim", "weak_rim", "hyper_core", "vein_edge", "central_vein", "deep_gm", "plain"}
    flipped = render_batch(EngineConfig(donors=DONOR, rim_fraction=0.5, rater_flip=1.0), 1, 0, 10)
    assert flipped.y.tolist() == [1 - t for t in rule[:10]]


@pytest.mark.parametrize("offset,sign,vmin", [([1.2, 1.5], 1, 300.0), ([-1.5, -1.2], -1, 1000.0)])
def test_rim_voxel_truth_sits_where_the_rim_was_put(offset, sign, vmin):
    c = cfg(rim_fraction=1.0, rim_offset_mm=offset, rim_thickness_mm=[0.6, 0.8], lesion_min_mm3=vmin,
            voxel_mm=[0.6, 0.8], slice_mm=[0.6, 1.0], **CLEAN)
    b = render_batch(c, 2, 0, 4)
    for x, rim in zip(b.x, b.rim):
        assert rim.sum() > 5
        mean_d = float((rim * x[3] * 6.0).sum() / rim.sum())  # rim-weighted signed distance (mm)
        assert sign * mean_d > 0.4, mean_d


def test_b0_tilt_changes_the_patch_of_the_same_lesion():
    base = dict(p_axis_aligned=0.0, b0_patch_jitter_deg=[0.0, 0.0], **CLEAN)
    a = render_example(cfg(b0_angle_deg=[0.0, 0.0], **base), 5, 0)
    b = render_example(cfg(b0_angle_deg=[35.0, 35.0], **base), 5, 0)
    ma, mb = a["x"][2] > 0, b["x"][2] > 0
    assert (ma & mb).sum() / (ma | mb).sum() > 0.4  # the same lesion ...
    qa, qb = a["x"][0], b["x"][0]
    assert np.abs(qa - qb).mean() > 0.2 * np.abs(qa).mean()  # ... seen along another B0


def test_bad_engine_config_is_one_line_exit_2(tmp_path, capsys):
    from rimscope.cli import main
    from rimscope.errors import InputError

    bad = tmp_path / "engine.json"
    bad.write_text(json.dumps({"rim_fractoin": 0.3}))
    with pytest.raises(InputError, match="rim_fractoin"):
        load_engine_config(bad)
    rc = main(["train", "-q", "--engine", str(bad), "-o", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "rim_fractoin" in err and len(err.splitlines()) == 1
    bad.write_text(json.dumps({"voxel_mm": [1.2, 0.5]}))
    with pytest.raises(InputError, match="voxel_mm"):
        load_engine_config(bad)
    assert load_engine_config(None).to_dict() == EngineConfig().to_dict()


def test_engine_stream_is_a_pure_function_of_the_epoch():
    from rimscope.train.engine_data import EngineStream

    s = EngineStream(cfg(), seed=7, epoch_examples=3, workers=1)
    e1, again, e0 = s.chunk(1), s.chunk(1), s.chunk(0)
    assert np.array_equal(e1.data.x, again.data.x) and not np.allclose(e1.data.x, e0.data.x)
    assert e1.rim.shape == (3, 32, 32, 32) and list(e1.data.lesion_id) == [3, 4, 5]
    # streamed chunks carry only what training reads: no field patches, rim truth as float16,
    # and the same examples as render_batch
    ref = render_batch(cfg(), 7, 3, 3)
    assert e1.field is None and e1.data.rim.dtype == np.float16
    assert np.array_equal(e1.data.x, ref.x) and np.array_equal(e1.data.y, ref.y)
    assert np.allclose(e1.data.rim, ref.rim, atol=1e-3)
    s.close()
    ps = EngineStream(cfg(), seed=7, epoch_examples=3, workers=1, source="phase")
    phase = ps.chunk(1)
    ps.close()
    from rimscope.patches.sampling import reference_field

    assert np.array_equal(phase.data.x[:, 0], np.stack([reference_field(f) for f in ref.field]))
    assert np.array_equal(phase.data.x[:, 1:], ref.x[:, 1:])
    assert np.abs(np.median(phase.data.x[:, 0].reshape(3, -1), axis=1)).max() < 1e-6  # read less its median


def _simulator_patch(lib, amp, th, thr):
    """The same lesion through the whole-brain simulator's path: lesions_model.render_lesion on
    a 0.5 mm model grid, acquisition.sample onto 1 mm, physics forward model and TKD."""
    from types import SimpleNamespace

    from rimscope.io import Subject
    from rimscope.lesions import lesion_table
    from rimscope.patches import PatchConfig, sample_patch
    from rimscope.simulate import physics
    from rimscope.simulate.acquisition import Acquisition, ModelGrid, sample
    from rimscope.simulate.lesions_model import Placed, _on_model, render_lesion

    c = np.round(lib.centroid_mm())
    grid = ModelGrid(c - 32.0, 0.5, (129, 129, 129))
    win, mask = _on_model(lib, grid)
    chi = np.zeros(grid.shape, np.float32)
    flair = np.zeros(grid.shape, np.float32)
    truth = {"kind": "rim", "core_ppm": 0.0, "rim_ppm": amp, "coverage": 1.0, "rim_thickness_mm": th,
             "central_vein": False}
    render_lesion(Placed(lib, win, mask, truth), grid, chi, flair, np.random.default_rng(0),
                  SimpleNamespace(vein_chi=[0.3, 0.3]), 0.5)
    labels = np.zeros(grid.shape, np.int32)
    labels[win][mask] = 1
    aff = np.eye(4)
    # 1 mm voxel centres half-way between the donor mask's: on the donor's own centres, nearest
    # sampling would hand back the unsmoothed donor mask instead of the simulated lesion's
    aff[:3, 3] = grid.origin + 0.5
    acq = Acquisition((65, 65, 65), aff, (1.0, 1.0, 1.0), "RAS", 0.0, np.eye(4))
    chi_a = sample(chi, grid, acq, order=1, prefilter_mm=acq.zooms)
    lab_a = sample(labels, grid, acq, order=0).astype(np.int32)
    ones = np.ones(chi_a.shape, bool)
    field = physics.forward_field(chi_a, acq.zooms, (0, 0, 1))
    les = lesion_table(lab_a, aff)[0]
    out = []
    for vol in (physics.tkd(field, ones, acq.zooms, (0, 0, 1), thr), field):  # QSM patch, local field patch
        subj = Subject(id="sim", qsm=vol, flair=np.zeros_like(vol), lesions=lab_a, brainmask=ones, affine=aff,
                       ref_header=None, ref_affine=aff, ornt=None, info={"flair_background": 0.0})
        out.append(sample_patch(subj, les, PatchConfig())[0])
    return out


@pytest.mark.parametrize("amp,th", [(0.06, 1.5), (0.03, 1.0)])
def test_engine_and_whole_brain_simulator_agree_on_the_same_lesion(amp, th):
    """Same shape, rim (full coverage, amplitude, thickness, position) and acquisition (1 mm,
    B0 along z, TKD 0.15, no noise): shell-minus-surround contrast within 15 % (the engine's
    mean over four sub-voxel placements, as the simulator's lesion sits at one)."""
    from rimscope.models.features import FEATURES, lesion_features
    from rimscope.simulate.library import donor_lesions

    libs = donor_lesions(DONOR[0], 300.0, 1500.0)
    vols = [lb.volume_mm3 for lb in libs]
    lib = next(lb for lb in libs if vols.count(lb.volume_mm3) == 1)
    c = cfg(lesion_min_mm3=lib.volume_mm3, lesion_max_mm3=lib.volume_mm3, voxel_mm=[1.0, 1.0],
            slice_mm=[1.0, 1.0], p_axis_aligned=1.0, b0_patch_jitter_deg=[0.0, 0.0], scale=[1.0, 1.0],
            p_rotate=0.0, rim_fraction=1.0, rim_coverage_pos=[1.0, 1.0], rim_amplitude_ppm=[amp, amp],
            rim_amplitude_variation=[0.0, 0.0], rim_thickness_mm=[th, th],
            rim_offset_mm=[-0.15 * th, -0.15 * th], core_kinds={"iso": 1.0}, core_iso=[0.0, 0.0],
            inversions={"tkd": 1.0}, tkd_threshold=[0.15, 0.15], **CLEAN)
    engs = [render_example(c, 0, i) for i in range(4)]  # four sub-voxel placements of the box
    assert all(eng["meta"]["component"] == lib.index for eng in engs)
    j = FEATURES.index("shell_minus_sur")
    e = float(np.mean([lesion_features(eng["x"][None])[0, j] for eng in engs]))
    sim_x, sim_field = _simulator_patch(lib, amp, th, 0.15)
    s = lesion_features(sim_x[None])[0, j]
    assert s > 0.2 * amp  # the rim is visible at all
    assert abs(e / s - 1) < 0.15, (e, s)
    # the local field a phase model reads (same units, same B0 axis): the rim's dipole pattern, its
    # size and its shape, agree too
    ef = np.mean([eng["field"] for eng in engs], axis=0)
    f = sim_field[0]
    assert abs(np.abs(ef).mean() / np.abs(f).mean() - 1) < 0.15, (np.abs(ef).mean(), np.abs(f).mean())
    assert np.corrcoef(ef.ravel(), f.ravel())[0, 1] > 0.9


def test_train_engine_two_tiny_epochs_end_to_end(tmp_path):
    """`rimscope train --engine` streams 2 epochs, validates on a held-out engine seed, records
    the engine config, both prevalences, the examples seen, and writes a loadable model."""
    from rimscope.cli import main
    from rimscope.models.card import load_model

    conf = tmp_path / "engine.json"
    conf.write_text(json.dumps({"donors": DONOR}))
    out = tmp_path / "model"
    rc = main(["train", "-q", "--engine", str(conf), "-o", str(out), "--examples", "32",
               "--epoch-examples", "16", "--val-examples", "16", "--engine-workers", "1", "--threads", "1",
               "-o", "batch_size=8", "-o", "model.widths=[8,16,16,16]", "-d", "cpu"])
    assert rc == 0
    card = json.loads((out / "card.json").read_text())
    t = card["training"]
    assert t["examples_seen"] == 32 and t["epochs_run"] == 2 and t["validation"] == "engine"
    assert t["engine_config"]["donors"] == DONOR and t["prevalence_target"] == 0.10
    assert 0 < t["engine_prevalence"] < 1 and t["calibration"][1] == pytest.approx(np.log(0.1 / 0.9))
    model = load_model(out)
    x = render_batch(cfg(), 5, 0, 2).x
    p = model.predict_proba(x)
    assert p.shape == (2,) and np.all((p >= 0) & (p <= 1))


def test_train_engine_with_a_voxel_head_records_its_validation_rim_dice(tmp_path):
    """The engine's held-out examples carry rim voxel truth, so every epoch of a voxel head's
    training records its soft Dice there (what tells a collapsed head from a learning one)."""
    from rimscope.cli import main

    conf = tmp_path / "engine.json"
    conf.write_text(json.dumps({"donors": DONOR}))
    out = tmp_path / "model"
    rc = main(["train", "-q", "--engine", str(conf), "-o", str(out), "--examples", "16",
               "--epoch-examples", "16", "--val-examples", "16", "--engine-workers", "1", "--threads", "1",
               "-o", "batch_size=8", "-o", "model.widths=[8,16,16,16]", "-o", "model.rim_head=true",
               "-d", "cpu"])
    assert rc == 0
    card = json.loads((out / "card.json").read_text())
    assert all(0.0 <= e["val_rim_dice"] <= 1.0 for e in card["training"]["history"])
    # the voxel threshold predict uses is chosen on the same held-out rim truth, and loads back
    from rimscope.models.card import load_model
    from rimscope.train.rim_supervision import RIM_THRESHOLDS

    thr = card["rim_threshold"]
    assert thr in RIM_THRESHOLDS and card["training"]["rim_threshold"] == thr
    assert set(card["training"]["rim_threshold_dice"]) == {str(float(t)) for t in RIM_THRESHOLDS}
    assert load_model(out).rim_threshold == thr


def test_shape_cache_gives_the_same_examples_and_is_rebuilt_when_unreadable(tmp_path, monkeypatch):
    """warm_library writes every shape map once; a fresh process (lru cache cleared) loads them
    and renders bit-identical examples; a corrupt cache file is ignored, never trusted."""
    from rimscope.simulate import engine_shapes as es

    monkeypatch.setenv("RIMSCOPE_CACHE", str(tmp_path))
    c = EngineConfig(donors=["patient02"])
    es.library.cache_clear()
    fresh = render_batch(c, 7, 0, 3)  # maps built on demand, no cache file
    lib = es.library(c.lesion_min_mm3, c.lesion_max_mm3, tuple(c.donors))
    es.warm_library(lib)
    files = list(tmp_path.glob("engine-shapes-*.npz"))
    assert len(files) == 1 and not list(tmp_path.glob("*.part"))
    es.library.cache_clear()
    lib2 = es.library(c.lesion_min_mm3, c.lesion_max_mm3, tuple(c.donors))
    assert all(sh.__dict__.get("_sdf") is not None for sh in lib2)  # loaded, not built
    cached = render_batch(c, 7, 0, 3)
    assert np.array_equal(fresh.x, cached.x) and np.array_equal(fresh.rim, cached.rim)
    files[0].write_bytes(b"not a cache")
    es.library.cache_clear()
    lib3 = es.library(c.lesion_min_mm3, c.lesion_max_mm3, tuple(c.donors))
    assert all(sh.__dict__.get("_sdf") is None for sh in lib3)
    assert np.array_equal(render_batch(c, 7, 0, 3).x, fresh.x)
    es.library.cache_clear()

