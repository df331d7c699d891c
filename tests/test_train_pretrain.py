"""Pre-training: the loss falls, embeddings retrieve the matching FLAIR patch of a QSM patch far
above chance on held-out patches, no collapse, and the result initialises fine-tuning."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from rimscope.errors import InputError
from rimscope.train.pretrain import pretrain

torch.set_num_threads(1)
SMALL = {"widths": [8, 16, 32, 32], "flair_widths": [8, 16]}


def paired_patches(n, seed, size=32):
    """QSM and FLAIR share blobs at random places (lesion-like in FLAIR, ±susceptibility in QSM):
    the only link between the two modalities of a patch is where its structures are."""
    rng = np.random.default_rng(seed)
    zz = np.indices((size,) * 3).astype(np.float32)
    x = np.zeros((n, 4, size, size, size), np.float32)
    for i in range(n):
        q = rng.normal(0, 0.01, (size,) * 3)
        f = rng.normal(0, 0.1, (size,) * 3)
        for _ in range(rng.integers(1, 4)):
            c = rng.uniform(6, size - 6, 3)
            r = rng.uniform(2.5, 5)
            blob = (((zz - c[:, None, None, None]) ** 2).sum(0) <= r * r)
            q += rng.choice([-1, 1]) * rng.uniform(0.04, 0.08) * blob
            f += rng.uniform(0.8, 1.5) * blob
        x[i, 0], x[i, 1] = ndimage.gaussian_filter(q, 0.7), f
    x[:, 3] = 1.0
    return x


def retrieval_top1(result, x) -> float:
    heads = result["heads"].eval()
    with torch.no_grad():
        zq, zf, _ = heads.embeddings(torch.from_numpy(x))
    zq, zf = torch.nn.functional.normalize(zq, dim=1), torch.nn.functional.normalize(zf, dim=1)
    return float(((zq @ zf.t()).argmax(1) == torch.arange(len(x))).float().mean())


def test_pretraining_loss_falls_without_collapse(tmp_path):
    x = paired_patches(16, seed=0, size=16)  # the encoders are fully convolutional: 16^3 is 8x cheaper
    res = pretrain(x, {"epochs": 30, "batch_size": 16, "lr": 1e-3, "augment": False, "model": SMALL},
                   seed=0, out=tmp_path)
    h = res["history"]
    assert h[-1]["contrast"] < 0.85 * h[0]["contrast"] and h[-1]["recon"] < h[0]["recon"]
    assert h[-1]["embedding_spread"] > 0.02  # not collapsed
    assert (tmp_path / "encoder.pt").exists() and (tmp_path / "pretrain.json").exists()


@pytest.mark.slow
def test_pretrained_embeddings_retrieve_the_matching_flair_patch():
    """Held-out patches: top-1 QSM->FLAIR retrieval among 32 (chance 0.03). Seen: 0.375."""
    train, held_out = paired_patches(128, seed=0, size=16), paired_patches(32, seed=1, size=16)
    res = pretrain(train, {"epochs": 30, "batch_size": 32, "lr": 1e-3, "model": SMALL}, seed=0)
    top1 = retrieval_top1(res, held_out)
    assert top1 >= 0.2, f"held-out QSM->FLAIR top-1 retrieval {top1:.2f} (chance 1/32 = 0.03)"
    assert res["history"][-1]["embedding_spread"] > 0.02


def test_pretrained_init_is_used_and_checked(tmp_path):
    from rimscope.models.synthetic import synthetic_patches
    from rimscope.train.data import LesionData
    from rimscope.train.finetune import fit, load_init

    res = pretrain(paired_patches(8, seed=2), {"epochs": 1, "batch_size": 8, "model": SMALL}, out=tmp_path / "pt")
    state = load_init(tmp_path / "pt")
    assert all(torch.equal(state[k], v) for k, v in res["state"].items())
    x, y, s = synthetic_patches(8, seed=0)
    d = LesionData(x, y, s, np.arange(8), np.ones(8), [[]] * 8)
    m = fit("asymmetric", d, None, init=tmp_path / "pt", options={"epochs": 0, "model": SMALL})
    assert torch.equal(m.net.state_dict()["q_stem.conv.weight"], res["state"]["q_stem.conv.weight"])
    with pytest.raises(InputError, match="share no layer"):
        fit("qsm-only", d, None, init=tmp_path / "pt", options={"epochs": 0})
    (tmp_path / "pt" / "encoder.pt").write_bytes(b"junk")
    with pytest.raises(InputError, match="do not match"):
        load_init(tmp_path / "pt")
    with pytest.raises(InputError, match="pre-training is defined"):
        pretrain(paired_patches(4, 0), model_name="rimnet")


def test_a_complete_model_given_as_init_competes_as_epoch_0(tmp_path):
    """Fine-tuning a trained model can keep it untouched (epoch 0), where a pre-trained encoder
    under a fresh head cannot: the head's random start would only win by validation noise."""
    from rimscope.models.synthetic import synthetic_patches
    from rimscope.train.data import LesionData
    from rimscope.train.finetune import fit

    x, y, s = synthetic_patches(16, seed=0)
    assert 0 < y.sum() < len(y)
    d = LesionData(x, y, s, np.arange(16), np.ones(16), [[]] * 16)
    opts = {"epochs": 1, "batch_size": 8, "rim_probe": False, "model": SMALL}
    from rimscope.models.card import save_model

    save_model(fit("asymmetric", d, None, options=opts, seed=0), tmp_path / "trained")
    m = fit("asymmetric", d, d, init=tmp_path / "trained", options=opts, seed=1)
    assert [h["epoch"] for h in m.card_extra["training"]["history"]] == [0, 1]
    pretrain(paired_patches(8, seed=2), {"epochs": 1, "batch_size": 8, "model": SMALL}, out=tmp_path / "pt")
    m = fit("asymmetric", d, d, init=tmp_path / "pt", options=opts, seed=1)
    assert [h["epoch"] for h in m.card_extra["training"]["history"]] == [1]
