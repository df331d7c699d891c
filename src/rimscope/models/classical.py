"""Classical baselines: `rim-contrast` (an analytic rule with a learned logistic map) and
`radiomics` (lesion statistics + gradient-boosted trees).

Both serialise to tensors only (no pickle): the logistic map is two numbers; the boosted trees
are exported from scikit-learn into padded node arrays and evaluated by our own traversal, so
`torch.load(weights_only=True)` is enough to load them and no scikit-learn version pinning is
needed at prediction time.
"""
from __future__ import annotations

import numpy as np
import torch

from .base import RimModel
from .features import FEATURES, RIM_CONTRAST_PRIOR, lesion_features


RIM_CONTRAST_DEFAULTS: dict = {}  # no options
RADIOMICS_DEFAULTS = {"n_estimators": 150, "max_depth": 3, "learning_rate": 0.05, "subsample": 0.8}


class RimContrast(RimModel):
    """p = sigmoid(a·(shell mean − surround mean in ppm) + b); a, b by logistic regression."""

    def __init__(self, name: str = "rim-contrast", config: dict | None = None):
        super().__init__(name, config or {})
        self.a, self.b = RIM_CONTRAST_PRIOR

    @staticmethod
    def score(x) -> np.ndarray:
        return lesion_features(x)[:, FEATURES.index("shell_minus_sur")]

    def fit_arrays(self, x, y, seed: int = 0) -> None:
        from sklearn.linear_model import LogisticRegression

        s = self.score(x)[:, None]
        if len(np.unique(y)) < 2:
            return
        lr = LogisticRegression(C=1e4, class_weight="balanced").fit(s, y)
        self.a, self.b = float(lr.coef_[0, 0]), float(lr.intercept_[0])

    def _proba(self, x, device, batch_size):
        return 1.0 / (1.0 + np.exp(-(self.a * self.score(x) + self.b)))

    def state_dict(self):
        return {"a": torch.tensor(self.a, dtype=torch.float64), "b": torch.tensor(self.b, dtype=torch.float64)}

    def load_state_dict(self, state):
        self.a, self.b = float(state["a"]), float(state["b"])


class Radiomics(RimModel):
    """Gradient-boosted trees (scikit-learn to fit, own traversal to predict) on FEATURES."""

    def __init__(self, name: str = "radiomics", config: dict | None = None):
        super().__init__(name, {**RADIOMICS_DEFAULTS, **(config or {})})
        self.trees: dict = {}

    def fit_arrays(self, x, y, seed: int = 0) -> None:
        from sklearn.ensemble import GradientBoostingClassifier

        f = lesion_features(x)
        w = np.where(y == 1, 0.5 / max(1, (y == 1).sum()), 0.5 / max(1, (y == 0).sum())) * len(y)
        gb = GradientBoostingClassifier(init="zero", random_state=seed, **self.config).fit(f, y, sample_weight=w)
        trees = [e[0].tree_ for e in gb.estimators_]
        n = max(t.node_count for t in trees)

        def pad(attr, fill, dtype):
            return torch.tensor(np.stack([np.pad(getattr(t, attr).reshape(t.node_count).astype(dtype),
                                                 (0, n - t.node_count), constant_values=fill) for t in trees]))

        self.trees = {"left": pad("children_left", -1, np.int64), "right": pad("children_right", -1, np.int64),
                      "feature": pad("feature", -2, np.int64), "threshold": pad("threshold", 0.0, np.float64),
                      "value": pad("value", 0.0, np.float64),
                      "learning_rate": torch.tensor(float(self.config["learning_rate"]), dtype=torch.float64)}

    def decision(self, f: np.ndarray) -> np.ndarray:
        t = {k: v.numpy() for k, v in self.trees.items()}
        raw = np.zeros(len(f))
        rows = np.arange(len(f))
        for k in range(t["left"].shape[0]):
            node = np.zeros(len(f), np.int64)
            while True:
                leaf = t["left"][k, node] < 0
                if leaf.all():
                    break
                feat = np.where(leaf, 0, t["feature"][k, node])
                go_left = f[rows, feat] <= t["threshold"][k, node]
                nxt = np.where(go_left, t["left"][k, node], t["right"][k, node])
                node = np.where(leaf, node, nxt)
            raw += t["value"][k, node]
        return raw * float(t["learning_rate"])

    def _proba(self, x, device, batch_size):
        if not self.trees:
            return np.full(len(x), 0.5)
        return 1.0 / (1.0 + np.exp(-self.decision(lesion_features(x))))

    def state_dict(self):
        return dict(self.trees)

    def load_state_dict(self, state):
        need = {"left", "right", "feature", "threshold", "value", "learning_rate"}
        if not need <= set(state):
            raise KeyError(f"radiomics weights lack {sorted(need - set(state))}")
        self.trees = dict(state)
