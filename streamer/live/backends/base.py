"""The stepping interface every backend implements (river-style: tiny, explicit)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np


class StepBackend(ABC):
    """Runs the causal model over ``x [B, T, C]`` from explicit states ``h, c [L, B, H]``.

    ``run`` returns ``(y [B, T], h_new, c_new)`` as float32 numpy arrays. Outputs may be views of
    buffers the backend reuses: they are valid until the next ``run`` call, so callers copy what
    they keep (the engine scatters states into its own pool right away). Stepping one sample at a
    time must equal one call over the whole sequence, for any split (the conformance suite checks).
    """

    name: str = "?"
    num_layers: int
    hidden_size: int
    input_size: int
    """Raw channels of ``x``: 2 = ``[amplitude, distance]``; 3 = plus ``period_s`` (the engine
    appends the sample period, in seconds, of each run)."""
    r_max_m: float
    """Metres per unit of ``y``: the model's profile's R_max (the same number in every backend)."""
    has_std: bool = False
    """The model predicts a standard deviation too (``run_full``)."""

    def run(self, x: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y, _, hn, cn = self.run_full(x, h, c)
        return y, hn, cn

    @abstractmethod
    def run_full(
        self, x: np.ndarray, h: np.ndarray, c: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
        """``(y, y_std or None, h_new, c_new)``; ``y_std`` [B, T] in Dmin / R_max units."""

    def zero_state(self, batch: int = 1) -> tuple[np.ndarray, np.ndarray]:
        shape = (self.num_layers, batch, self.hidden_size)
        return np.zeros(shape, np.float32), np.zeros(shape, np.float32)

    def describe(self) -> str:
        return f"{self.name} ({self.num_layers}x{self.hidden_size} LSTM)"


BACKENDS = ("onnx", "torch", "fused", "auto")
"""Known backends; the first is the default (chosen from ``radarstream bench stream``).

``fused``: the whole model in one numba kernel (fast at batch 1–8, streamer/live/backends/
fused_backend.py); ``auto``: ``fused`` below the crossover measured at start-up, ``onnx`` above."""


def make_backend(
    name: str = BACKENDS[0], weights_dir: str | Path | None = None, *, threads: int = 1, profile=None
) -> StepBackend:
    """A backend over the causal model in ``weights_dir`` (default: the shipped weights).

    ``profile`` (a ``RadarProfile`` or a path to its JSON) declares the radar; see
    ``models.bundle.load_model`` for the order profiles are looked up in."""
    if name == "torch":
        from streamer.live.backends.torch_backend import TorchBackend

        return TorchBackend.from_weights(weights_dir, threads=threads, profile=profile)
    if name == "onnx":
        from streamer.live.backends.onnx_backend import OnnxBackend

        return OnnxBackend.from_weights(weights_dir, threads=threads, profile=profile)
    if name == "fused":
        from streamer.live.backends.fused_backend import FusedBackend

        return FusedBackend.from_weights(weights_dir, threads=threads, profile=profile)
    if name == "numpy-fused":  # the benchmark's candidate (not listed: slower than both above)
        from streamer.live.backends.fused_backend import NumpyFusedBackend

        return NumpyFusedBackend.from_weights(weights_dir, threads=threads, profile=profile)
    if name == "auto":
        from streamer.live.backends.fused_backend import AutoBackend

        return AutoBackend.from_weights(weights_dir, threads=threads, profile=profile)
    raise ValueError(f"unknown backend {name!r} (choose from {', '.join(BACKENDS)})")
