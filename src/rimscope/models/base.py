"""The one interface every model offers, neural or classical, so training, evaluation and
prediction never branch on the kind of model.

A RimModel maps raw patches (N, 4, S, S, S) — QSM ppm, FLAIR normalised, mask, signed distance,
exactly as rimscope.patches makes them — to rim probabilities, and carries its operating
threshold and the configuration needed to rebuild it from a card.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch

from ..patches import PatchConfig


class RimModel(ABC):
    """Base class. Subclasses set `name`, `config`, and implement `_proba` and the state.

    Whether a model is neural is the registry's answer (`registry.is_neural(name)`); saving and
    loading are `rimscope.models.card`'s job (`save_model`, `load_model`).
    """

    def __init__(self, name: str, config: dict):
        self.name = name
        self.config = dict(config)
        self.threshold = 0.5
        self.rim_threshold = 0.5  # voxel head: the voxel probability at which a voxel is rim
        self.patch_config = PatchConfig()
        self.card_extra: dict = {}  # training record, metrics: written into the card by save_model

    def predict_proba(self, x, device: str = "cpu", batch_size: int = 64) -> np.ndarray:
        """(N, 4, S, S, S) raw patches -> (N,) rim probabilities in [0, 1]."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 5 or x.shape[1] != 4:
            raise ValueError(f"patches must be (N, 4, S, S, S), got {x.shape}")
        if len(x) == 0:
            return np.zeros(0, np.float32)
        return self._proba(x, device, batch_size).astype(np.float32)

    def predict(self, x, device: str = "cpu") -> np.ndarray:
        return (self.predict_proba(x, device) >= self.threshold).astype(np.int64)

    @property
    def has_voxel_head(self) -> bool:
        """Whether predict_with_rims gives voxel rim probabilities (a network's rim head)."""
        return False

    def predict_with_rims(self, x, device: str = "cpu", batch_size: int = 64):
        """(proba (N,), rim_proba (N, S, S, S) voxel probabilities in patch space, or None for a
        model without a voxel head), from one pass over the patches."""
        return self.predict_proba(x, device, batch_size), None

    @abstractmethod
    def _proba(self, x, device, batch_size):
        """(N, 4, S, S, S) float32 patches -> (N,) probabilities."""

    @abstractmethod
    def state_dict(self) -> dict:
        """Tensors only: saved with torch.save, loaded with weights_only=True."""

    @abstractmethod
    def load_state_dict(self, state: dict) -> None:
        """Inverse of state_dict."""


class NeuralRimModel(RimModel):
    """Wraps an nn.Module whose forward(x_raw) returns {"logit": (N,), "proj": (N, P), ...}."""

    def __init__(self, name: str, config: dict, net: torch.nn.Module):
        super().__init__(name, config)
        self.net = net
        # (scale, shift) applied to the logit, set after training (train.finetune.prior_shift):
        # balanced batches leave raw probabilities centred on 1/2, which would make Brier scores
        # and per-subject expected Rim+ counts meaningless. Monotone: rankings are unchanged.
        self.calibration = (1.0, 0.0)

    @property
    def has_voxel_head(self) -> bool:
        return getattr(self.net, "rim_decoder", None) is not None

    def _forward(self, x, device, batch_size, rims: bool):
        """Calibrated probabilities and, with `rims` and a voxel head, the sigmoid of the voxel
        rim logits, batch by batch in one pass."""
        net = self.net.to(device).eval()
        logits, voxels = [], []
        with torch.inference_mode():
            for i in range(0, len(x), batch_size):
                xb = torch.from_numpy(x[i:i + batch_size]).to(device)
                out = net(xb)
                logits.append(out["logit"].double().cpu().numpy())
                if rims and "rim_logits" in out:
                    voxels.append(torch.sigmoid(out["rim_logits"].float()).cpu().numpy())
        a, b = self.calibration
        proba = 1.0 / (1.0 + np.exp(-(a * np.concatenate(logits) + b)))
        return proba, (np.concatenate(voxels) if voxels else None)

    def _proba(self, x, device, batch_size):
        return self._forward(x, device, batch_size, rims=False)[0]

    def predict_with_rims(self, x, device: str = "cpu", batch_size: int = 64):
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 5 or x.shape[1] != 4:
            raise ValueError(f"patches must be (N, 4, S, S, S), got {x.shape}")
        if len(x) == 0:
            return np.zeros(0, np.float32), (np.zeros((0, *x.shape[2:]), np.float32) if self.has_voxel_head else None)
        proba, voxels = self._forward(x, device, batch_size, rims=True)
        return proba.astype(np.float32), voxels

    def state_dict(self) -> dict:
        return {k: v.detach().cpu() for k, v in self.net.state_dict().items()}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())
