"""Models: registry, interface, cards (sha256, weights_only), asymmetry guarantees."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from rimscope.errors import InputError
from rimscope.models.card import load_model, save_model
from rimscope.models.registry import MODELS, build, is_neural
from rimscope.models.synthetic import synthetic_patches

torch.set_num_threads(1)
SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def patches():
    x, y, _ = synthetic_patches(12, seed=3)
    return x, y


def test_every_torch_load_in_src_uses_weights_only():
    bad = []
    for f in SRC.rglob("*.py"):
        text = f.read_text(encoding="utf-8")
        for m in re.finditer(r"torch\.load\(", text):
            depth, i = 1, m.end()
            while depth and i < len(text):
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            if "weights_only=True" not in text[m.end():i]:
                bad.append(f"{f.relative_to(SRC)}:{text[:m.start()].count(chr(10)) + 1}")
    assert not bad, f"torch.load without weights_only=True: {bad}"


@pytest.mark.parametrize("name", list(MODELS))
def test_build_predict_save_load_roundtrip(name, patches, tmp_path):
    x, y = patches
    model = build(name)
    assert model.name == name
    if not is_neural(name):
        model.fit_arrays(x, y)
    model.threshold = 0.37
    if is_neural(name):
        model.calibration = (1.0, -2.0)  # must travel in the card: it changes every probability
    p = model.predict_proba(x)
    assert p.shape == (len(x),) and np.all((p >= 0) & (p <= 1)) and np.isfinite(p).all()
    card = save_model(model, tmp_path / name)
    meta = json.loads(card.read_text())
    assert meta["name"] == name and meta["threshold"] == pytest.approx(0.37) and "torch" in meta["versions"]
    again = load_model(tmp_path / name)
    np.testing.assert_allclose(again.predict_proba(x), p, rtol=1e-5, atol=1e-6)
    assert again.threshold == pytest.approx(0.37)


def test_corrupted_weights_are_refused(patches, tmp_path):
    model = build("qsm-only")
    save_model(model, tmp_path / "m")
    w = tmp_path / "m" / "weights.pt"
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(InputError, match="corrupted"):
        load_model(tmp_path / "m")


def test_weights_of_another_model_are_refused(tmp_path):
    save_model(build("qsm-only"), tmp_path / "a")
    save_model(build("concat", widths=[8, 16, 32, 64]), tmp_path / "b")
    (tmp_path / "a" / "weights.pt").write_bytes((tmp_path / "b" / "weights.pt").read_bytes())
    with pytest.raises(InputError, match="do not match"):
        load_model(tmp_path / "a")
    # even with a consistent sha, an architecture mismatch is a clear InputError
    card = json.loads((tmp_path / "a" / "card.json").read_text())
    card["weights_sha256"] = json.loads((tmp_path / "b" / "card.json").read_text())["weights_sha256"]
    (tmp_path / "a" / "card.json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="do not fit"):
        load_model(tmp_path / "a")


def test_missing_card_and_unknown_model(tmp_path):
    with pytest.raises(InputError, match="card.json"):
        load_model(tmp_path)
    with pytest.raises(InputError, match="unknown model"):
        build("resnet")
    with pytest.raises(InputError, match="unknown model option"):
        build("asymmetric", widht=3)


def test_flair_never_sees_qsm_and_film_starts_as_identity(patches):
    torch.manual_seed(0)
    net = build("asymmetric").net.eval()
    x = torch.from_numpy(patches[0][:4])
    x2 = x.clone()
    x2[:, 0] += torch.randn_like(x2[:, 0]) * 0.05  # change QSM only
    with torch.no_grad():
        a, b = net.encode(x), net.encode(x2)
        assert torch.equal(a["flair_emb"], b["flair_emb"])
        assert not torch.allclose(a["emb"], b["emb"])
        x3 = x.clone()
        x3[:, 1] += 1.0  # change FLAIR only: zero-initialised FiLM -> no effect at init
        assert torch.allclose(net(x)["emb"], net(x3)["emb"], atol=1e-6)
        net.gamma.weight.fill_(0.1)
        assert not torch.allclose(net(x)["emb"], net(x3)["emb"], atol=1e-6)


def test_asymmetric_starts_as_the_rim_contrast_rule(patches):
    """Untrained, the logit is rim-contrast's prior map of its own score: same ranking, same
    probabilities; training then learns a residual (head) and the rule's slope (rim_skip)."""
    torch.manual_seed(0)
    x = patches[0][:8]
    net_model, rule = build("asymmetric"), build("rim-contrast")
    assert np.allclose(net_model.predict_proba(x), rule.predict_proba(x), atol=2e-3)
    off = build("asymmetric", rim_skip=False)
    assert off.net.rim_skip is None
    assert not np.allclose(off.predict_proba(x), rule.predict_proba(x), atol=2e-3)


def test_qsm_scaling_is_linear_in_ppm_and_frodo_mask():
    from rimscope.models.blocks import frodo_mask, scale_inputs

    x = torch.zeros(1, 4, 32, 32, 32)
    x[0, 0, 0, 0, :3] = torch.tensor([0.05, 0.1, 1.0])
    s = scale_inputs(x)
    assert s[0, 0, 0, 0, :3].tolist() == pytest.approx([0.5, 1.0, 3.0])
    x = torch.ones(1, 4, 32, 32, 32)
    x[0, 2] = 0
    x[0, 2, 15:18, 15:18, 15:18] = 1  # 27 voxels: r ~ 1.9 -> margin 5 mm
    x[0, 3] = 1.0  # far outside everywhere...
    x[0, 3, 10:22, 10:22, 10:22] = 0.5  # ...but 3 mm here
    m = frodo_mask(x)
    assert m[0, 0, 16, 16, 16] == 1 and m[0, 0, 0, 0, 0] == 0 and m[0, 2].sum() == 27


@pytest.mark.parametrize("name", [n for n in MODELS if is_neural(n)])
def test_networks_take_a_batch_of_one_and_give_projections(name):
    x, _, _ = synthetic_patches(2, seed=1)
    out = build(name).net.eval()(torch.from_numpy(x[:1]))
    assert out["logit"].shape == (1,) and out["proj"].shape[0] == 1


def test_bad_patch_shape_is_refused():
    with pytest.raises(ValueError, match="N, 4"):
        build("rim-contrast").predict_proba(np.zeros((2, 3, 8, 8, 8), np.float32))


def test_asymmetric_options_build_and_run():
    x, _, _ = synthetic_patches(2, seed=1)
    for opts in ({"rim_skip": True}, {"film": False, "rim_features": False}, {"flair_stem": "full"}):
        out = build("asymmetric", **opts).net.eval()(torch.from_numpy(x))
        assert torch.isfinite(out["logit"]).all()


def test_radial_profile_puts_a_rim_at_the_edge_and_a_paramagnetic_core_inside():
    """Known patches: a 50 ppb band on the two voxel layers either side of the edge (a rim), and
    the same 50 ppb on the voxels deeper than 2 mm (a paramagnetic core): radial_profile's layers
    (10 ppb units) say where it sits."""
    from rimscope.models.blocks import N_PROFILE_FEATURES, N_RIM_FEATURES, rim_features
    from rimscope.patches.sampling import _signed_distance_clipped

    s = 32
    ijk = np.indices((s,) * 3) - s // 2
    mask = (ijk ** 2).sum(0) <= 3.2 ** 2
    sd = _signed_distance_clipped(mask, 1.0)
    d = sd * 6.0
    rim = np.where(np.abs(d) <= 1.0 + 1e-6, 0.05, 0.0)
    core = np.where(d <= -2.0 + 1e-6, 0.05, 0.0)
    x = np.zeros((2, 4, s, s, s), np.float32)
    for i, q in enumerate((rim, core)):
        x[i] = np.stack([q, np.ones_like(q), mask, sd])
    x = torch.from_numpy(x)
    plain, full = rim_features(x), rim_features(x, profile=True)
    assert plain.shape == (2, N_RIM_FEATURES) and full.shape == (2, N_RIM_FEATURES + N_PROFILE_FEATURES)
    assert torch.equal(full[:, :N_RIM_FEATURES], plain)
    assert plain[0, 3] == pytest.approx(5.0, abs=1e-4)  # shell minus surround
    in1, out1, out2, deep, out1_deep = full[:, N_RIM_FEATURES:].T
    np.testing.assert_allclose(in1.numpy(), [5.0, 0.0], atol=1e-4)
    np.testing.assert_allclose(out1.numpy(), [5.0, 0.0], atol=1e-4)
    np.testing.assert_allclose(out2.numpy(), [0.0, 0.0], atol=1e-4)
    np.testing.assert_allclose(deep.numpy(), [0.0, 5.0], atol=1e-4)
    np.testing.assert_allclose(out1_deep.numpy(), [5.0, -5.0], atol=1e-4)


def test_asymmetric_with_the_radial_profile_starts_as_the_rule_and_its_probe_reads_it(patches):
    from rimscope.train.probe import fit_rim_probe

    torch.manual_seed(0)
    x, y = patches
    model = build("asymmetric", rim_profile=True)
    assert model.net.rim_skip.in_features == 20
    assert np.allclose(model.predict_proba(x[:8]), build("rim-contrast").predict_proba(x[:8]), atol=2e-3)
    assert fit_rim_probe(model.net, x, y)
    w = model.net.rim_skip.weight.detach().numpy()[0]
    assert w.shape == (20,) and np.any(w[15:] != 0)
