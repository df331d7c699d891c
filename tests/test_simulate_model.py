"""The lesion model's rules (NAIMS truth, rater noise) and reproducibility across processes."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from rimscope.simulate.config import SimConfig
from rimscope.simulate.difficulty import expected_kappa, summarise
from rimscope.simulate.lesions_model import rater_probability


def _t(kind, coverage=0.0, rim=0.0, hard="none"):
    return {"kind": kind, "coverage": coverage, "rim_ppm": rim, "hard_negative": hard}


def test_rater_follows_naims_threshold_and_mimics_are_rarely_called():
    cfg = SimConfig()
    p = [rater_probability(_t("partial_rim", c, 0.05), cfg) for c in (0.3, 0.55, 0.667, 0.8, 0.95)]
    assert p == sorted(p) and p[0] < 0.05 and p[-1] > 0.9 and 0.3 < p[2] < 0.7
    weak, strong = (rater_probability(_t("rim", 0.8, r), cfg) for r in (0.005, 0.08))
    assert weak < strong
    assert rater_probability(_t("vein_touch", hard="vein_touching"), cfg) < 0.05
    assert rater_probability(_t("plain"), cfg) <= rater_probability(_t("hyper_norim", hard="hyperintense_no_rim"), cfg)


def test_expected_kappa():
    assert expected_kappa(np.array([0.0, 1.0, 0.0, 1.0])) == 1.0
    assert abs(expected_kappa(np.full(100, 0.3))) < 1e-9
    mid = expected_kappa(np.r_[np.full(90, 0.02), np.full(10, 0.9)])
    assert 0.5 < mid < 0.95


def test_summary_counts_and_aucs():
    rows = [{"subject": s, "lesion_id": i, "volume_mm3": 10.0 * i, "contrast": c, "label": y, "true_rim": y,
             "p_rater": 0.5, "kind": "rim" if y else "plain", "rim_ppm": 0.0}
            for s, i, c, y in [("a", 1, 0.03, 1), ("a", 2, 0.0, 0), ("b", 1, 0.01, 0), ("b", 2, 0.02, 1),
                               ("b", 3, -0.01, 0)]]
    m = summarise(rows, 2)
    assert m["lesions"] == 5 and m["lesions_per_subject"]["median"] == 2.5
    assert m["label"]["prevalence"] == 0.4 and m["label"]["subjects_with_rim"] == 1.0
    assert m["label"]["rim_contrast_auc"] == 1.0
    assert abs(m["label"]["volume_auc"] - 2 / 6) < 1e-9  # ties count 1/2


def test_same_subject_in_a_process_with_another_hash_seed():
    """str hashes are salted per process: nothing random may depend on them."""
    import hashlib

    from rimscope.simulate.subject import simulate_subject

    kw = {"crop_mm": 40, "model_mm": 1.0, "n_veins": [2, 3], "n_medullary": [2, 3], "lesions_median": 5}
    code = ("import hashlib;from rimscope.simulate.config import SimConfig;"
            "from rimscope.simulate.subject import simulate_subject;"
            f"s=simulate_subject(SimConfig(**{kw!r}), 2, 0);"
            "print(hashlib.sha256(s.qsm.tobytes()+s.lesions.tobytes()).hexdigest())")
    seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}, check=True)
    s = simulate_subject(SimConfig(**kw), 2, 0)
    here = hashlib.sha256(s.qsm.tobytes() + s.lesions.tobytes()).hexdigest()
    assert r.stdout.strip() == here
