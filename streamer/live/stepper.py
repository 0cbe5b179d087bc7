"""One stream's causal model in the online vocabulary (radarstream.online).

The engine batches many sensors through a :class:`~streamer.live.backends.base.StepBackend`; these
wrap the same pieces for a single stream so that they can be checked (and used) like every other
online object: ``CausalStepper`` over any backend, ``GateStepper`` over the gate-level LSTM the
GUI shows (h, c and the gates i, f, g, o).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from radarstream.online import Block
from streamer.live.backends.base import StepBackend
from streamer.live.engine import model_input, raw_channels

__all__ = ["CausalStepper", "GateStepper", "GATE_OUTPUTS", "block_period_ns"]

GATE_OUTPUTS: tuple[str, ...] = ("h", "c", "i", "f", "g", "o")
"""Axis 1 of :meth:`GateStepper.update`'s output ``[T, 6, layers, hidden]``."""


def block_period_ns(block: Block) -> int:
    """The block's declared period, or its median sample spacing; 0 when neither is known."""
    if block.period_ns:
        return int(block.period_ns)
    if len(block) >= 2:
        return int(np.median(np.diff(np.asarray(block.t_ns, np.int64))))
    return 0


class CausalStepper:
    """The causal model of ``backend`` stepped over one stream, carrying ``(h, c)``.

    ``update(block)`` returns the estimate ``y [T]`` (normalised Dmin), exactly what the engine
    publishes for the same samples however they were split into blocks."""

    def __init__(self, backend: StepBackend):
        self.backend = backend
        self.reset()

    def reset(self) -> None:
        h, c = self.backend.zero_state(1)
        self._h, self._c = h.copy(), c.copy()

    def update(self, block: Block) -> np.ndarray:
        if len(block) == 0:
            return np.empty(0, np.float32)
        x = np.ascontiguousarray(np.asarray(block.x, np.float32)[None, :, :2])
        x = model_input(x, [block_period_ns(block)], self.backend.input_size)
        y, h, c = self.backend.run(x, self._h, self._c)
        self._h, self._c = np.array(h, np.float32), np.array(c, np.float32)
        return np.array(y[0], np.float32)

    def get_state(self) -> dict[str, np.ndarray]:
        return {"h": self._h.copy(), "c": self._c.copy()}

    def set_state(self, state: dict[str, Any]) -> None:
        h, c = np.asarray(state["h"], np.float32), np.asarray(state["c"], np.float32)
        if h.shape != self._h.shape or c.shape != self._c.shape:
            raise ValueError(f"state shapes {h.shape}/{c.shape} do not fit the model's {self._h.shape}")
        self._h, self._c = h.copy(), c.copy()


class GateStepper:
    """The explicit gate-level LSTM (``models.gates.GateLevelLSTM``) of a causal torch model,
    stepped over one stream: ``update(block)`` returns ``[T, 6, layers, hidden]`` float32 with
    axis 1 = :data:`GATE_OUTPUTS`. This is what the GUI's gate view runs per sensor."""

    def __init__(self, model: Any):
        from models.gates import GateLevelLSTM

        self.model = model
        self.lstm = GateLevelLSTM.from_lstm(model.lstm, dtype=np.float32)
        self.layers = self.lstm.num_layers
        self.hidden = self.lstm.hidden_size
        self.reset()

    def features(self, block: Block) -> np.ndarray:
        """The model's normalised input features for the block's samples ``[T, F]``."""
        import torch

        x = np.asarray(block.x, np.float32)[None, :, :2]
        x = model_input(x, [block_period_ns(block)], raw_channels(self.model))
        with torch.no_grad():
            return self.model.normalizer(torch.from_numpy(np.ascontiguousarray(x[0]))).numpy()

    def reset(self) -> None:
        self._state: tuple[np.ndarray, np.ndarray] | None = None

    def update(self, block: Block) -> np.ndarray:
        if len(block) == 0:
            return np.empty((0, len(GATE_OUTPUTS), self.layers, self.hidden), np.float32)
        trace, self._state = self.lstm.run(self.features(block), self._state)
        return np.stack([getattr(trace, g)[:, :, 0, :] for g in GATE_OUTPUTS], axis=1).astype(np.float32)

    def get_state(self) -> tuple[np.ndarray, np.ndarray] | None:
        return None if self._state is None else (self._state[0].copy(), self._state[1].copy())

    def set_state(self, state: tuple[np.ndarray, np.ndarray] | None) -> None:
        self._state = None if state is None else (np.array(state[0], np.float32), np.array(state[1], np.float32))
