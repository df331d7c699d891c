"""The voxel rim head: off by default (the shipped net unchanged), shapes, the dense loss, and
the rim truth riding through augmentation with its patch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rimscope.models.asymmetric import DEFAULTS, AsymmetricNet
from rimscope.train.augment import augment
from rimscope.train.losses import rim_voxel_loss
from rimscope.train.rim_supervision import (RIM_THRESHOLDS, augment_with_rim, check_head, choose_rim_threshold,
                                            rim_batch, soft_dice)


def _x(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, 32, 32, 32, generator=g) * 0.05
    x[:, 2] = (torch.rand(n, 32, 32, 32, generator=g) > 0.5).float()
    x[:, 3] = torch.rand(n, 32, 32, 32, generator=g) * 2 - 1
    return x


def test_default_net_is_unchanged_and_the_head_adds_rim_logits():
    cfg = {k: v for k, v in DEFAULTS.items() if k != "rim_head"}
    torch.manual_seed(0)
    plain = AsymmetricNet(**cfg).eval()
    assert DEFAULTS["rim_head"] is False and plain.rim_decoder is None
    torch.manual_seed(0)
    head = AsymmetricNet(**cfg, rim_head=True).eval()
    own = set(plain.state_dict())
    assert own < set(head.state_dict())  # only new tensors: shipped weights load as before
    assert all(k.startswith("rim_decoder.") for k in set(head.state_dict()) - own)
    x = _x()
    with torch.no_grad():
        a, b = plain(x), head(x)
    assert "rim_logits" not in a and b["rim_logits"].shape == (3, 32, 32, 32)
    assert torch.isfinite(b["rim_logits"]).all() and b["logit"].shape == (3,)


def test_dense_loss_trains_the_head_and_skips_samples_without_truth():
    torch.manual_seed(1)
    net = AsymmetricNet(**{k: v for k, v in DEFAULTS.items() if k != "rim_head"}, rim_head=True)
    x = _x(2)
    truth = torch.zeros(2, 32, 32, 32)
    truth[0, 10:20, 10:20, 15] = 1.0
    truth[1] = float("nan")  # carries no voxel truth
    out = net(x)
    loss = rim_voxel_loss(out["rim_logits"], truth)
    loss.backward()
    assert torch.isfinite(loss) and net.rim_decoder.out[-1].weight.grad.abs().sum() > 0
    only0 = rim_voxel_loss(out["rim_logits"][:1].detach(), truth[:1])
    assert float(rim_voxel_loss(out["rim_logits"].detach(), truth)) == pytest.approx(float(only0))
    none = rim_voxel_loss(out["rim_logits"].detach(), torch.full_like(truth, float("nan")))
    assert float(none) == 0.0
    # a perfect prediction scores lower than a blank one
    perfect = torch.where(truth[:1] > 0, 20.0, -20.0)
    assert rim_voxel_loss(perfect, truth[:1]) < rim_voxel_loss(torch.full_like(perfect, -20.0), truth[:1]) - 0.5


def test_rim_truth_follows_its_patch_through_augmentation():
    x = _x(4, seed=2)
    rim = (x[:, 2] > 0).float()  # a copy of the mask channel: must stay equal to it
    xa, ra = augment_with_rim(x, rim, torch.Generator().manual_seed(5), 0.01)
    assert torch.equal(ra, xa[:, 2])
    plain = augment(x, torch.Generator().manual_seed(5), 0.01)
    assert torch.equal(plain, xa)  # same draws with or without the truth
    xb, rb = augment_with_rim(x, None, torch.Generator().manual_seed(5), 0.01)
    assert rb is None and torch.equal(xb, plain)

    class D:
        rim = np.arange(5 * 2 * 2 * 2, dtype=np.float32).reshape(5, 2, 2, 2)

    assert rim_batch(object(), [0, 1]) is None
    assert torch.equal(rim_batch(D(), torch.tensor([3, 1])), torch.from_numpy(D.rim[[3, 1]]))


def test_validation_soft_dice_and_the_collapsed_head_warning():
    truth = np.zeros((3, 4, 4, 4), np.float32)
    truth[0, 1, 1:3, 1] = 1.0
    truth[2] = np.nan  # no voxel truth: left out
    assert soft_dice(truth, truth) == pytest.approx(1.0)
    assert soft_dice(np.zeros_like(truth), truth) == 0.0
    assert soft_dice(np.full_like(truth, 0.5), truth) == pytest.approx(2 * 1.0 / (64 + 2))
    assert np.isnan(soft_dice(truth, np.zeros_like(truth)))  # nothing to match
    hist = [{"epoch": 1, "val_rim_dice": 0.3}, {"epoch": 2, "val_rim_dice": 0.001}]
    assert check_head(hist, 1) is None
    assert "learned no rim" in check_head(hist, 2)
    assert check_head([{"epoch": 1}], 1) is None  # no voxel head: nothing measured, no warning


def test_the_voxel_threshold_is_chosen_where_the_truth_says_rim():
    """A head trained on soft rim fractions predicts a one-third-rim voxel near 0.33: the chosen
    threshold must call it rim (the truth does, at RIM_TRUTH_FRACTION), where 0.5 would not;
    examples without truth are left out, and no truth at all leaves 0.5."""
    rng = np.random.default_rng(0)
    truth = rng.choice([0.0, 0.2, 0.4, 0.9], size=(6, 8, 8, 8)).astype(np.float32)
    truth[5] = np.nan  # an example without rim truth
    p = np.where(np.isfinite(truth), truth, 1.0)  # p = the true fraction; the NaN row is all "rim"
    thr, curve = choose_rim_threshold(p, truth)
    assert 0.2 < thr <= 0.4 and curve[thr] == 1.0 and curve[0.5] < 0.8
    assert set(curve) == set(float(t) for t in RIM_THRESHOLDS)
    assert choose_rim_threshold(p, np.full_like(truth, np.nan)) == (0.5, {})
    assert choose_rim_threshold(p, np.zeros_like(truth)) == (0.5, {})


def test_the_lesion_loss_never_reaches_the_voxel_head():
    """The classifier reads the rim map's summary but cannot shape it: the lesion logit's gradient
    stops at the map, so the head learns rims only from the voxel truth."""
    torch.manual_seed(2)
    net = AsymmetricNet(**{k: v for k, v in DEFAULTS.items() if k != "rim_head"}, rim_head=True)
    with torch.no_grad():  # let the summary matter to the logit, so the test can fail
        net.head[-1].weight.fill_(0.1)
    out = net(_x(2))
    out["logit"].sum().backward()
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0.0 for p in net.rim_decoder.parameters())
    assert float(net.head[1].weight.grad[:, -3:].abs().sum()) > 0  # the head does read the summary
    assert float(net.q_stem.parameters().__next__().grad.abs().sum()) > 0


def test_a_few_voxels_painted_without_rim_cost_far_less_than_a_missed_rim():
    """The Dice term is pooled over the batch: 10 voxels painted on a lesion without rim cost a
    fraction of a missed 100-voxel rim (per-sample Dice scored the two nearly alike: 0.46, 0.52)."""
    truth = torch.zeros(2, 32, 32, 32)
    rim = torch.zeros(32, 32, 32, dtype=torch.bool)
    rim[10:20, 10:20, 15] = True  # 100 rim voxels on sample 0; sample 1 has no rim
    truth[0][rim] = 1.0
    perfect = torch.where(truth > 0, 20.0, -20.0)
    stray = perfect.clone()
    stray[1, 0, 0, :10] = 20.0  # 10 voxels painted where there is no rim
    missed = perfect.clone()
    missed[0][rim] = -20.0
    assert rim_voxel_loss(stray, truth) < 0.2 * rim_voxel_loss(missed, truth)
