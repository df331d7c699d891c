"""The label-efficiency curve across a shift: which lesions each fit may see, what each start is
handed, and that a rerun fits nothing twice. Fits are replaced by a recording stand-in; the
shipped model, the patch path and the simulated cohorts are real (tiny)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rimscope.evaluate import finetune_curve as FC
from rimscope.evaluate import transfer_bench as TB

TINY = {"crop_mm": 48, "model_mm": 1.0, "voxel_mm": [0.9, 1.0], "n_veins": [2, 4], "n_medullary": [2, 4],
        "lesions_median": 12, "p_subject_rim_free": 0.0, "p_rim_base": 0.4, "montage": False}


class Recorder:
    """fit_fn / pretrain_fn stand-ins: remember what they were given, return a fixed rule."""

    def __init__(self):
        self.fits, self.pretrains = [], []

    def fit(self, name, train, val, *, init=None, options=None, seed=0, device="cpu", quiet=True):
        from rimscope.models.registry import build

        self.fits.append({"name": name, "train": train, "val": val, "init": init, "options": options})
        return build("rim-contrast")

    def pretrain(self, name, x, *, options=None, seed=0, device="cpu", quiet=True):
        self.pretrains.append(x)
        return {"state": {}}


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    cfg = root / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    train, test = root / "train", root / "test"
    TB._simulated(train, "default", 4, 11, True, cfg)
    TB._simulated(test, "default", 2, 12, True, cfg)
    return train, test


def _digests(x):
    return {hash(p.tobytes()) for p in np.asarray(x)}


def test_curve_fits_only_training_lesions_and_reruns_nothing(cohorts, tmp_path):
    from rimscope.models.card import read_card
    from rimscope.weights import shipped

    train, test = cohorts
    rec = Recorder()
    out = tmp_path / "curve"
    res = FC.finetune_curve(train, test, out, sizes=[2, 4], draws=2, seed=3, n_boot=20, device="cpu", quiet=True,
                            fit_fn=rec.fit, pretrain_fn=rec.pretrain, wm_per_subject=2)
    assert len(rec.fits) == 3 * 2 * 2 and len(rec.pretrains) == 1
    test_x = _digests(FC_test_patches(out, test))
    card = read_card(shipped()["default"])
    for f in rec.fits:
        seen = _digests(f["train"].x) | (_digests(f["val"].x) if f["val"] is not None else set())
        assert not seen & test_x  # no test lesion in any fit
    by = {}
    for f in rec.fits:
        n = len(set(f["train"].subject.tolist()) | (set(f["val"].subject.tolist()) if f["val"] is not None else set()))
        by.setdefault(n, []).append(f)
    assert sorted(by) == [2, 4] and all(len(v) == 6 for v in by.values())
    shipped_fits = [f for f in rec.fits if f["options"].get("rim_probe") is False]
    assert len(shipped_fits) == 4
    for f in shipped_fits:  # the shipped start: its own weights and architecture, its head kept
        assert f["init"] == shipped()["default"] and f["options"]["model"] == card.config
    assert sum(f["init"] is None for f in rec.fits) == 4  # scratch
    assert sum(isinstance(f["init"], dict) for f in rec.fits) == 4  # pre-trained
    # pre-training saw the training cohort's lesions and white matter only
    assert not _digests(rec.pretrains[0]) & test_x
    # two draws at n=2 differ in subjects (4 subjects, seeded draws)
    n2 = [tuple(sorted(set(f["train"].subject.tolist()))) for f in by[2] if f["options"].get("rim_probe") is False]
    assert len(n2) == 2
    assert [r["n_subjects"] for r in res["rows"]][0] == 0 and res["rows"][0]["start"].startswith("shipped")
    assert {(s["start"], s["n_subjects"]) for s in res["summary"]} >= {("scratch", 2), ("pretrained", 4)}
    md = (out / "finetune_curve.md").read_text()
    assert "| shipped | 2 |" in md and "| pretrained | 4 |" in md
    assert (out / "finetune_curve.png").stat().st_size > 1000
    # a rerun with the same settings fits and pre-trains nothing
    rec2 = Recorder()
    res2 = FC.finetune_curve(train, test, out, sizes=[2, 4], draws=2, seed=3, n_boot=20, device="cpu", quiet=True,
                             fit_fn=rec2.fit, pretrain_fn=rec2.pretrain, wm_per_subject=2)
    assert rec2.fits == [] and rec2.pretrains == [] and json.dumps(res2["rows"]) == json.dumps(res["rows"])
    # other training options: every fit is redone
    rec3 = Recorder()
    FC.finetune_curve(train, test, out, sizes=[2], draws=1, starts=["scratch"], options={"epochs": 3}, seed=3,
                      n_boot=20, device="cpu", quiet=True, fit_fn=rec3.fit, pretrain_fn=rec3.pretrain)
    assert len(rec3.fits) == 1 and rec3.pretrains == []


def FC_test_patches(out, test):
    """The test cohort's patches as the curve read them (same cache, same geometry)."""
    from rimscope.cohort import load_cohort
    from rimscope.models.card import load_model
    from rimscope.train.data import load_lesion_data
    from rimscope.weights import shipped

    pc = load_model(shipped()["default"]).patch_config
    return load_lesion_data(load_cohort(test / "manifest.tsv"), None, pc, cache_dir=out / ".patch_cache").x


def test_curve_refuses_bad_settings(cohorts, tmp_path):
    from rimscope.errors import InputError

    train, _ = cohorts
    with pytest.raises(InputError, match="must not be the training cohort"):
        FC.finetune_curve(train, train, tmp_path / "x", device="cpu", quiet=True)
    for bad in ("0,2", "two", "", "4,all"):  # 'all' would simulate 10**6 training subjects
        with pytest.raises(InputError, match="--sizes"):
            FC.parse_sizes(bad)
    from rimscope.evaluate.pipeline import parse_sizes

    assert parse_sizes("8,all,2") == [2, 8, 10 ** 6]  # the cross-validated curve has a cohort to take all of
    with pytest.raises(InputError, match="--starts"):
        FC.parse_starts("shipped,imagenet")


def test_fine_tune_flags_are_checked_before_any_work(tmp_path, capsys):
    from rimscope.cli import main

    out = tmp_path / "o"
    assert main(["transfer", "-o", str(out), "--presets", "none", "-q"]) == 2
    assert "--fine-tune" in capsys.readouterr().err
    assert main(["transfer", "-o", str(out), "--presets", "none", "--fine-tune", "aniso-9", "-q"]) == 2
    assert "unknown preset" in capsys.readouterr().err
    assert main(["transfer", "-o", str(out), "--presets", "none", "--fine-tune", "aniso-2", "--set", "lr=-1",
                 "-q"]) == 2
    capsys.readouterr()
    assert main(["transfer", "-o", str(out), "--presets", "none", "--fine-tune", "aniso-2", "--base",
                 str(tmp_path / "nowhere"), "-q"]) == 2
    assert "no model card" in capsys.readouterr().err
    assert not (out / "cohorts").exists()  # nothing simulated


def test_fine_tune_command_simulates_its_own_cohorts_away_from_the_table(tmp_path, monkeypatch):
    from rimscope.cli import main

    made, called = [], {}
    monkeypatch.setattr(TB, "_simulated", lambda folder, preset, n, seed, quiet, config=None:
                        made.append((folder.name, preset, n, seed)) or 0.0)
    monkeypatch.setattr(FC, "finetune_curve", lambda train, test, out, **kw: called.update(
        train=train, test=test, out=out, **kw) or {})
    argv = ["transfer", "-o", str(tmp_path / "o"), "--presets", "none", "--fine-tune", "strong-reg", "--sizes",
            "2,8", "--draws", "3", "--subjects", "5", "--set", "epochs=7", "-d", "cpu", "-q"]
    assert main(argv) == 0
    assert made == [("strong-reg-train-seed8100", "strong-reg", 8, 8100),
                    ("strong-reg-test-seed8200", "strong-reg", 5, 8200)]
    assert called["train"].name == "strong-reg-train-seed8100" and called["test"].name == "strong-reg-test-seed8200"
    assert called["out"] == tmp_path / "o" / "fine_tune-strong-reg"
    assert called["sizes"] == [2, 8] and called["draws"] == 3 and called["options"] == {"epochs": 7}
    assert called["starts"] == ["shipped", "scratch", "pretrained"] and called["base"] == "default"
