"""Reference backend: the torch ``CausalRegressor`` itself, under ``inference_mode``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models.bundle import load_model
from models.regressors import CausalRegressor
from streamer.live.backends.base import StepBackend


class TorchBackend(StepBackend):
    name = "torch"

    def __init__(self, model: CausalRegressor, *, threads: int = 1):
        if threads:
            torch.set_num_threads(threads)
        self.model = model.eval()
        self.num_layers = model.lstm.num_layers
        self.hidden_size = model.lstm.hidden_size
        self.input_size = int(model.config["input_size"])
        self.profile = model.profile
        self.r_max_m = float(model.profile.r_max_m)
        self.has_std = bool(model.uncertainty)

    @classmethod
    def from_weights(cls, weights_dir: str | Path | None = None, *, threads: int = 1, profile=None) -> "TorchBackend":
        model, _ = load_model("causal", weights_dir, profile=profile)
        return cls(model, threads=threads)

    def run(self, x, h, c):
        with torch.inference_mode():
            y, (hn, cn) = self.model(_tensor(x), (_tensor(h), _tensor(c)))
        return y.numpy(), hn.numpy(), cn.numpy()

    def run_full(self, x, h, c):
        if not self.has_std:
            y, hn, cn = self.run(x, h, c)
            return y, None, hn, cn
        with torch.inference_mode():
            y, std, (hn, cn) = self.model(_tensor(x), (_tensor(h), _tensor(c)), return_std=True)
        return y.numpy(), std.numpy(), hn.numpy(), cn.numpy()


def _tensor(a: np.ndarray) -> torch.Tensor:
    """Zero-copy when possible; read-only buffers (decoded straight from a socket) are copied."""
    a = np.ascontiguousarray(a, np.float32)
    return torch.from_numpy(a if a.flags.writeable else a.copy())
