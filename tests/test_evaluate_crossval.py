"""Cross-validation orchestration with in-test scorers: no leakage, thresholds from training folds,
the summary, the files of a run."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rimscope.evaluate import crossval, report, summarise
from rimscope.train.data import LesionData
from rimscope.metrics import choose_threshold


def _data(n_subj=24, seed=0, s=4):
    rng = np.random.default_rng(seed)
    subj, y = [], []
    for i in range(n_subj):
        k = int(rng.integers(4, 12))
        subj += [f"{i:03d}"] * k
        y += list((rng.random(k) < 0.15).astype(int))
    y = np.array(y)
    y[0] = 1
    n = y.size
    x = rng.normal(0, 1, (n, 4, s, s, s)).astype(np.float32)
    x[:, 0, s // 2, s // 2, s // 2] += 2.5 * y  # the signal a scorer can find
    lid = np.concatenate([np.arange(1, (np.array(subj) == u).sum() + 1) for u in dict.fromkeys(subj)])
    return LesionData(x=x, y=y, subject=np.array(subj, dtype=object), lesion_id=lid.astype(np.int64),
                      volume_mm3=np.ones(n), flags=[[] for _ in range(n)])


class CentreScorer:
    """Reads the centre QSM voxel; 'fits' a scale; threshold by F1 on the inner validation set."""

    def __init__(self, name, train, val, log):
        self.name, self.scale = name, 1.0 / max(train.x[:, 0, 2, 2, 2].std(), 1e-6)
        ref = val if val is not None and (val.y == 1).any() else train
        self.threshold = choose_threshold(ref.y, self.predict_proba(ref.x), "f1")
        log.append({"train": set(train.subject), "val": set(val.subject) if val is not None else set()})

    def predict_proba(self, x, device="cpu"):
        return 1 / (1 + np.exp(-self.scale * (x[:, 0, 2, 2, 2] - 1.2)))


class Memoriser:
    """Calls Rim+ exactly the training lesions it has seen: only leakage can make it score."""

    def __init__(self, train):
        self.seen = {float(v) for v in train.x[train.y == 1, 1, 0, 0, 0]}
        self.threshold = 0.5

    def predict_proba(self, x, device="cpu"):
        return np.array([1.0 if float(v) in self.seen else 0.0 for v in x[:, 1, 0, 0, 0]])


def test_crossval_is_grouped_and_thresholds_come_from_training_folds():
    data = _data()
    log = []

    def fit_fn(name, train, val, **kw):
        return CentreScorer(name, train, val, log)

    variants = [crossval.Variant("a", "asymmetric"), crossval.Variant("b", "rim-contrast")]
    rows, records = crossval.run_crossval(data, variants, folds=4, repeats=2, seed=1, fit_fn=fit_fn, quiet=True)
    assert len(rows) == len(data) * 2 * 2 and len(records) == 4 * 2 * 2
    tested = {}
    for r in rows:
        tested.setdefault((r["variant"], r["repeat"]), []).append((r["subject"], r["lesion_id"]))
    for keys in tested.values():  # every labelled lesion scored exactly once per variant and repeat
        assert len(keys) == len(set(keys)) == len(data)
    # each fit saw neither its fold's test subjects nor (for the threshold) anything but its own split
    by_fold = {}
    for r in rows:
        by_fold.setdefault((r["repeat"], r["fold"], r["variant"]), set()).add(r["subject"])
    for entry, ((rep, fold, var), test_subj) in zip(log, sorted(by_fold.items(), key=lambda kv: (
            kv[0][0], kv[0][1], [v.label for v in variants].index(kv[0][2])))):
        assert not (entry["train"] | entry["val"]) & test_subj
        assert not entry["train"] & entry["val"]
    s = summarise.summarise(rows, n_boot=100, seed=0, reference="a")
    assert s["variants"]["a"]["metrics"]["roc_auc"] > 0.8
    assert s["variants"]["b"]["delong_vs_reference"]["p_median"] == 1.0  # same scorer, same folds


def test_memoriser_cannot_score_out_of_fold():
    data = _data(seed=4)
    data.x[:, 1, 0, 0, 0] = np.arange(len(data), dtype=np.float32)  # a unique tag per lesion
    rows, _ = crossval.run_crossval(data, [crossval.Variant("m", "m")], folds=4, seed=0, quiet=True,
                                    fit_fn=lambda name, train, val, **kw: Memoriser(train))
    s = summarise.summarise(rows, n_boot=0, bands=False, reference="m")
    assert s["variants"]["m"]["metrics"]["roc_auc"] == pytest.approx(0.5)


def test_plan_variants_ablations():
    v = crossval.plan_variants(["asymmetric", "asymmetric-frodo", "radiomics"], pretrain=True, ablations=True)
    labels = [x.label for x in v]
    assert labels[:3] == ["asymmetric", "asymmetric-frodo", "radiomics"]
    assert v[0].pretrained and not v[2].pretrained
    assert "asymmetric w/o pre-training" in labels and "rimnet" in labels
    nc = next(x for x in v if x.label == "asymmetric w/o contrastive")
    assert nc.options == {"supcon": False} and nc.pretrained
    nr = next(x for x in v if x.label == "asymmetric w/o rim probe")
    assert nr.options == {"rim_probe": False, "model": {"rim_skip": False}} and nr.pretrained
    po = next(x for x in v if x.label == "asymmetric probe only")
    assert po.options == {"epochs": 0} and not po.pretrained


def test_label_efficiency_and_report_files(tmp_path):
    data = _data(n_subj=30, seed=2)

    def fit_fn(name, train, val, init=None, **kw):
        m = CentreScorer(name, train, val, [])
        m.n = len(set(train.subject) | (set(val.subject) if val is not None else set()))
        return m

    le = crossval.run_label_efficiency(data, [4, 10 ** 6], folds=3, seed=0, init={"w": 1}, fit_fn=fit_fn,
                                       quiet=True)
    used = {(r["n_subjects"], r["pretrained"]): r["n_used"] for r in le}
    assert used[(4, 0)] == 4 and used[(10 ** 6, 1)] > 15
    pts = summarise.summarise_label_efficiency(le, n_boot=50)
    assert len(pts) == 4 and all(0.5 < p["roc_auc"] <= 1 for p in pts)

    rows, records = crossval.run_crossval(data, [crossval.Variant("asymmetric", "asymmetric"),
                                                 crossval.Variant("other", "x")], folds=3, seed=0,
                                          fit_fn=lambda n, tr, va, **kw: CentreScorer(n, tr, va, []), quiet=True)
    kinds = {(r["subject"], r["lesion_id"]): ("vein_touching" if r["lesion_id"] % 3 == 0 else "none")
             for r in rows}
    s = summarise.summarise(rows, n_boot=60, seed=0, kinds=kinds)
    results = {"summary": s, "label_efficiency": pts, "config": {"folds": 3}, "versions": {}, "folds": records}
    report.write_results(tmp_path, results)
    path = report.write_report(tmp_path, results, montage=report.montage_items(data, rows, "asymmetric", k=3))
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["summary"]["variants"]["asymmetric"]["ci95"]["roc_auc"]["lo"] <= \
        doc["summary"]["variants"]["asymmetric"]["metrics"]["roc_auc"]
    md = (tmp_path / "results.md").read_text()
    assert "| asymmetric |" in md and "vein_touching" in md and "Label efficiency" in md
    html = path.read_text()
    assert html.count("data:image/png;base64,") >= 4 and "<script" not in html and "src=\"http" not in html


def test_label_efficiency_all_point_reuses_the_main_fits_exactly():
    data = _data(n_subj=20, seed=6)

    def fit_fn(name, train, val, init=None, seed=0, **kw):
        m = CentreScorer(name, train, val, [])
        m.scale *= 1 + 0.01 * seed + (0.5 if init is not None else 0)  # seed/init-dependent fits
        return m

    variants = [crossval.Variant("asymmetric", "asymmetric", pretrained=True),
                crossval.Variant("asymmetric w/o pre-training", "asymmetric")]
    rows, records = crossval.run_crossval(data, variants, folds=4, seed=3, inits={"asymmetric": {"w": 1}},
                                          fit_fn=fit_fn, quiet=True)
    reused, have = crossval.reuse_full_points(rows, records, "asymmetric", "asymmetric w/o pre-training", 10 ** 6)
    fitted = crossval.run_label_efficiency(data, [10 ** 6], folds=4, seed=3, init={"w": 1}, fit_fn=fit_fn,
                                           quiet=True)
    assert have == {(10 ** 6, True), (10 ** 6, False)}
    key = lambda r: (r["pretrained"], r["subject"], r["lesion_id"])  # noqa: E731
    a = {key(r): (r["probability"], r["n_used"], r["fold"]) for r in reused}
    b = {key(r): (r["probability"], r["n_used"], r["fold"]) for r in fitted}
    assert a == b  # same folds, same seeds, same training subjects: the reuse is exact
    assert crossval.run_label_efficiency(data, [10 ** 6], folds=4, seed=3, init={"w": 1}, fit_fn=fit_fn,
                                         quiet=True, skip=have) == []
