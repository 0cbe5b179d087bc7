"""The LSTM cell written out from the seed's equations, reading an ``nn.LSTM``'s weights.

    f_t = σ(W_f·[h_{t-1}, x_t] + b_f)      forget: what to keep of c_{t-1}
    i_t = σ(W_i·[h_{t-1}, x_t] + b_i)      input: which cells to update
    ĉ_t = tanh(W_c·[h_{t-1}, x_t] + b_c)   candidate values
    c_t = f_t * c_{t-1} + i_t * ĉ_t
    o_t = σ(W_o·[h_{t-1}, x_t] + b_o)      output: what to expose
    h_t = o_t * tanh(c_t)

PyTorch stores the four blocks of W_ih / W_hh / biases in the order i, f, g (= ĉ), o. This module
is numpy-only at run time (the GUI uses it to show gates live without torch on its hot path).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GATE_NAMES = ("i", "f", "g", "o")
"""Gate order as stored by PyTorch; ``g`` is the seed's candidate ĉ."""


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


@dataclass(frozen=True)
class LayerWeights:
    w_ih: np.ndarray  # [4H, I]
    w_hh: np.ndarray  # [4H, H]
    bias: np.ndarray  # [4H] = b_ih + b_hh


@dataclass(frozen=True)
class GateStep:
    """One time step of every layer: arrays [layers, batch, hidden]."""

    h: np.ndarray
    c: np.ndarray
    i: np.ndarray
    f: np.ndarray
    g: np.ndarray
    o: np.ndarray


@dataclass(frozen=True)
class GateTrace:
    """A sequence: arrays [T, layers, batch, hidden]."""

    h: np.ndarray
    c: np.ndarray
    i: np.ndarray
    f: np.ndarray
    g: np.ndarray
    o: np.ndarray


class GateLevelLSTM:
    """Explicit, unidirectional, multi-layer LSTM step that exposes its gates."""

    def __init__(self, layers: list[LayerWeights], dtype=np.float64):
        self.layers = [
            LayerWeights(l.w_ih.astype(dtype), l.w_hh.astype(dtype), l.bias.astype(dtype)) for l in layers
        ]
        self.hidden_size = self.layers[0].w_hh.shape[1]
        self.num_layers = len(self.layers)
        self.dtype = dtype

    @classmethod
    def from_lstm(cls, lstm, dtype=np.float64) -> "GateLevelLSTM":
        """Read the weights of a unidirectional ``torch.nn.LSTM`` (no projections)."""
        if lstm.bidirectional or getattr(lstm, "proj_size", 0):
            raise ValueError("gate-level step supports unidirectional LSTMs without projection")
        layers = []
        for k in range(lstm.num_layers):
            get = lambda name: getattr(lstm, f"{name}_l{k}").detach().cpu().numpy()  # noqa: E731
            bias = get("bias_ih") + get("bias_hh") if lstm.bias else np.zeros(4 * lstm.hidden_size)
            layers.append(LayerWeights(get("weight_ih"), get("weight_hh"), bias))
        return cls(layers, dtype)

    def zero_state(self, batch: int = 1) -> tuple[np.ndarray, np.ndarray]:
        shape = (self.num_layers, batch, self.hidden_size)
        return np.zeros(shape, self.dtype), np.zeros(shape, self.dtype)

    def step(self, x: np.ndarray, h: np.ndarray, c: np.ndarray) -> GateStep:
        """x [B, I] (already normalised features), h/c [layers, B, H] -> the next step."""
        H = self.hidden_size
        inp = np.asarray(x, self.dtype)
        out = {k: [] for k in ("h", "c", "i", "f", "g", "o")}
        for k, lw in enumerate(self.layers):
            z = inp @ lw.w_ih.T + h[k] @ lw.w_hh.T + lw.bias
            i = _sigmoid(z[:, 0:H])
            f = _sigmoid(z[:, H : 2 * H])
            g = np.tanh(z[:, 2 * H : 3 * H])
            o = _sigmoid(z[:, 3 * H : 4 * H])
            c_new = f * c[k] + i * g
            h_new = o * np.tanh(c_new)
            for name, v in zip(("h", "c", "i", "f", "g", "o"), (h_new, c_new, i, f, g, o)):
                out[name].append(v)
            inp = h_new
        return GateStep(**{k: np.stack(v) for k, v in out.items()})

    def run(
        self, x: np.ndarray, state: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[GateTrace, tuple[np.ndarray, np.ndarray]]:
        """x [T, I] or [B, T, I] -> (trace with arrays [T, layers, B, H], final (h, c))."""
        x = np.asarray(x, self.dtype)
        if x.ndim == 2:
            x = x[None]
        h, c = state if state is not None else self.zero_state(x.shape[0])
        steps = []
        for t in range(x.shape[1]):
            s = self.step(x[:, t], h, c)
            h, c = s.h, s.c
            steps.append(s)
        trace = GateTrace(**{k: np.stack([getattr(s, k) for s in steps]) for k in ("h", "c", "i", "f", "g", "o")})
        return trace, (h, c)
