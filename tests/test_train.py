"""Fine-tuning: overfitting capacity, exact resume, the CLI on a tiny on-disk cohort, DDP."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from rimscope.errors import InputError
from rimscope.models.synthetic import synthetic_patches
from rimscope.train import checkpoint
from rimscope.train.data import LesionData, inner_split
from rimscope.train.finetune import fit
from rimscope.metrics import choose_threshold

torch.set_num_threads(1)
FAST = {"widths": [8, 16, 32, 32]}


def data(n, seed, pos_frac=0.4):
    x, y, s = synthetic_patches(n, seed=seed, pos_frac=pos_frac)
    return LesionData(x, y, s, np.arange(n), np.ones(n), [[] for _ in range(n)])


def auc(y, p):
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(y, p)


@pytest.mark.parametrize("name", ["asymmetric", "radiomics", "rim-contrast"])
def test_overfits_16_lesions(name):
    """Capacity check (a training-set figure on purpose): the model can fit 16 lesions."""
    d = data(16, seed=5, pos_frac=0.5)
    opts = {"epochs": 40, "batch_size": 16, "augment": False, "lr": 3e-3, "patience": 100,
            "model": {**FAST, "dropout": 0.0} if name == "asymmetric" else {}}
    m = fit(name, d, None, options=opts, seed=0)
    assert auc(d.y, m.predict_proba(d.x)) == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["asymmetric-frodo", "rimnet", "qsm-only", "concat"])
def test_overfits_16_lesions_other_networks(name):
    d = data(16, seed=5, pos_frac=0.5)
    opts = {"epochs": 60, "batch_size": 16, "augment": False, "lr": 3e-3, "patience": 100,
            "model": {**FAST, "dropout": 0.0}}
    m = fit(name, d, None, options=opts, seed=0)
    assert auc(d.y, m.predict_proba(d.x)) == 1.0


def test_resume_continues_exactly_where_it_stopped(tmp_path, monkeypatch):
    tr, va = data(24, 1), data(12, 2)
    opts = {"epochs": 4, "batch_size": 8, "model": FAST}
    ref = fit("asymmetric", tr, va, options=opts, seed=3, out=tmp_path / "ref")
    real_save = checkpoint.save

    def crash_after_epoch_2(out, fp, net, opt, sched, w, state):
        real_save(out, fp, net, opt, sched, w, state)
        if state["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", crash_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        fit("asymmetric", tr, va, options=opts, seed=3, out=tmp_path / "run")
    monkeypatch.setattr(checkpoint, "save", real_save)
    assert not (tmp_path / "run" / "card.json").exists()
    resumed = fit("asymmetric", tr, va, options=opts, seed=3, out=tmp_path / "run", resume=True)
    hist = resumed.card_extra["training"]["history"]
    assert [h["epoch"] for h in hist] == [0, 1, 2, 3, 4]  # 0: the initial model is scored too
    for k, v in ref.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert resumed.threshold == ref.threshold
    # a different run must not silently continue from this checkpoint
    with pytest.raises(InputError, match="different run"):
        fit("asymmetric", tr, va, options={**opts, "lr": 1e-2}, seed=3, out=tmp_path / "run", resume=True)


def test_a_run_stopped_by_its_time_cap_says_so_and_a_resume_keeps_it(tmp_path):
    """max_minutes stops after the epoch that passes it; rerunning with --resume finishes the
    same model (nothing more to train) and its card still says why training stopped."""
    tr, va = data(16, 1), data(8, 2)
    opts = {"epochs": 3, "batch_size": 8, "model": FAST, "max_minutes": 1e-9}
    first = fit("asymmetric", tr, va, options=opts, seed=3, out=tmp_path / "run")
    rec = first.card_extra["training"]
    assert rec["stopped_by"] == "max_minutes" and rec["epochs_run"] == 1
    again = fit("asymmetric", tr, va, options=opts, seed=3, out=tmp_path / "run", resume=True)
    rec2 = again.card_extra["training"]
    assert rec2["stopped_by"] == "max_minutes" and rec2["epochs_run"] == 1
    for k, v in first.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


def test_threshold_is_highest_with_sensitivity_09():
    y = np.array([1] * 10 + [0] * 5)
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.35, 0.3, 0.1, 0.2, 0.2, 0.5, 0.6, 0.05])
    t = choose_threshold(y, p, "sensitivity")
    assert t == 0.3 and np.mean(p[y == 1] >= t) >= 0.9
    assert choose_threshold(np.zeros(3), np.ones(3)) == 0.5


def test_default_threshold_maximises_f1_by_hand():
    # thresholds 0.9 / 0.5 / 0.4 / 0.1 give F1 2/3, 1/2, 4/5, 2/3
    assert choose_threshold(np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.5, 0.1])) == 0.4


def test_prior_shift_moves_a_balanced_logit_to_the_prevalence():
    from rimscope.train.finetune import TRAIN_DEFAULTS, prior_shift

    a, b = prior_shift(0.1, TRAIN_DEFAULTS)  # balanced batches: logit 0 meant p = 1/2
    assert a == 1.0 and 1 / (1 + np.exp(-b)) == pytest.approx(0.1)
    assert prior_shift(0.1, {**TRAIN_DEFAULTS, "sampler": "natural"}) == (1.0, 0.0)
    _, b_sqrt = prior_shift(0.1, {**TRAIN_DEFAULTS, "sampler": "sqrt"})
    assert b < b_sqrt < 0


def test_inner_split_is_grouped_and_stratified():
    d = data(80, 4, pos_frac=0.15)
    tr, va = inner_split(d, 0.25, seed=1)
    assert not set(d.subject[tr]) & set(d.subject[va])
    assert (d.y[va] == 1).any() and (d.y[tr] == 1).any()
    assert 0.1 < va.mean() < 0.4


def test_training_needs_both_classes():
    d = data(8, 1)
    d.y[:] = 0
    with pytest.raises(InputError, match="Rim\\+"):
        fit("asymmetric", d, None, options={"epochs": 1})


def _cohort(tmp_path, n_subjects=4):
    from conftest import write_cohort

    manifest, labels, _ = write_cohort(tmp_path, n_subjects)
    return manifest, labels


def test_train_cli_end_to_end_and_bad_labels(tmp_path, capsys):
    from rimscope.cli import main
    from rimscope.models.card import load_model

    manifest, labels = _cohort(tmp_path)
    out = tmp_path / "model"
    rc = main(["train", "-q", "-i", str(manifest), "--labels", str(labels), "-o", str(out),
               "--epochs", "1", "--val-frac", "0.5", "--set", "batch_size=4", "--set", "model.widths=[8,16,16,16]",
               "-d", "cpu"])
    assert rc == 0
    card = json.loads((out / "card.json").read_text())
    assert card["name"] == "asymmetric" and card["training"]["seed"] == 0
    assert card["training"]["n_val_subjects"] == 2 and card["training"]["labels"] == str(labels)
    # the split is by patient: the lesions counted as training are exactly those of the other subjects
    val_subjects = set(card["training"]["val_subjects"])
    per_subject = {}
    for line in labels.read_text().splitlines()[1:]:
        per_subject[line.split("\t")[0]] = per_subject.get(line.split("\t")[0], 0) + 1
    assert len(val_subjects) == 2 and val_subjects <= set(per_subject)
    assert card["training"]["n_val"] == sum(n for s, n in per_subject.items() if s in val_subjects)
    assert card["training"]["n_train"] == sum(n for s, n in per_subject.items() if s not in val_subjects)
    model = load_model(out)
    assert model.config["widths"] == [8, 16, 16, 16]
    assert (out / "checkpoint.pt").exists()
    (tmp_path / "bad.tsv").write_text("subject\tlesion_id\trim\ns0\t99\t1\n")
    rc = main(["train", "-q", "-i", str(manifest), "--labels", str(tmp_path / "bad.tsv"),
               "-o", str(tmp_path / "m2"), "--epochs", "1"])
    assert rc == 2 and "lesion 99" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["threshold_rule=abc", "sampler=uniform", "epochs=-1", "model.widht=3"])
def test_bad_training_option_fails_before_any_work(tmp_path, capsys, option):
    """Options are checked up front: exit 2 naming the option, before a patch is extracted."""
    from rimscope.cli import main

    manifest, labels = _cohort(tmp_path)
    out = tmp_path / "model"
    rc = main(["train", "-q", "-i", str(manifest), "--labels", str(labels), "-o", str(out),
               "--set", option, "-d", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and option.split("=")[0].removeprefix("model.") in err[0]
    assert not out.exists()  # no patch cache, no checkpoint: nothing ran


def test_rim_probe_sets_the_linear_path_to_a_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    from rimscope.models.registry import build
    from rimscope.train.probe import fit_rim_probe, rim_statistics

    d = data(40, 5, pos_frac=0.3)
    net = build("asymmetric", **FAST).net.eval()
    assert fit_rim_probe(net, d.x, d.y)
    f = rim_statistics(d.x)
    mu, sd = f.mean(0), f.std(0)
    sd[sd < 1e-8] = 1.0
    ref = LogisticRegression(C=0.1, class_weight="balanced", max_iter=2000).fit((f - mu) / sd, d.y)
    with torch.no_grad():  # head's last layer is zero at init: the logit is the probe's
        logit = net(torch.from_numpy(d.x))["logit"].double().numpy()
    np.testing.assert_allclose(logit, ref.decision_function((f - mu) / sd), atol=1e-4)
    assert not fit_rim_probe(build("asymmetric", rim_skip=False, **FAST).net, d.x, d.y)
    assert not fit_rim_probe(net, d.x, np.zeros(len(d.y), int))  # one class: nothing to fit


def test_a_voxel_head_without_voxel_truth_to_learn_from_is_kept_as_it_is():
    """Fine-tuning a head model (the shipped one) on lesions without rim voxel truth trains the
    classifier and leaves the head untouched: the lesion loss cannot reach it, so it is frozen
    (and DDP sees no weights without a gradient)."""
    from rimscope.models.registry import build

    torch.manual_seed(0)
    start = build("asymmetric", **FAST, rim_head=True)
    before = {k: v.clone() for k, v in start.state_dict().items()}
    d = data(16, seed=5, pos_frac=0.5)
    m = fit("asymmetric", d, None, init=before, seed=0,
            options={"epochs": 2, "batch_size": 8, "patience": 100, "model": {**FAST, "rim_head": True}})
    after = m.state_dict()
    head = [k for k in after if k.startswith("rim_decoder.")]
    assert head and all(torch.equal(after[k], before[k]) for k in head)
    assert any(not torch.equal(after[k], before[k]) for k in after if k.startswith("head."))
