"""Model-internal views: attention weights, hidden/cell state traces and gate activations.

Unlike the Captum methods these do not perturb anything: they read what the model computed on
the window. State and gates come from :class:`~models.gates.GateLevelLSTM` (the seed's
equations) run on the normalised features with the model's own weights, layer by layer and, for
bidirectional LSTMs, direction by direction, so every layer is visible (``nn.LSTM`` only
returns the top layer over time).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from models.attribution.methods import ProgressFn, WindowExplainer
from models.attribution.results import AttentionWeights, GateActivations, StateTrace, frozen_array, frozen_mapping
from models.attribution.targets import as_window, r_max_of, resolve_step
from models.gates import GateLevelLSTM, LayerWeights

GATES: tuple[str, ...] = ("i", "f", "g", "o")


def lstm_trace(
    lstm: nn.LSTM, features: np.ndarray, initial_state: tuple[np.ndarray, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Every layer's h, c and gates over time: ``{name: [layers, T, directions * H]}``.

    ``features [T, I]`` are the LSTM's inputs (already normalised); ``initial_state`` (h, c) each
    [layers, 1, H] for a unidirectional LSTM.
    """
    if getattr(lstm, "proj_size", 0):
        raise ValueError("LSTMs with projections are not supported")
    dirs = 2 if lstm.bidirectional else 1
    if initial_state is not None and dirs == 2:
        raise ValueError("initial_state applies to unidirectional LSTMs only")
    inp = np.asarray(features, np.float64)
    layers: dict[str, list[np.ndarray]] = {k: [] for k in ("h", "c", *GATES)}
    for k in range(lstm.num_layers):
        per_dir: dict[str, list[np.ndarray]] = {k2: [] for k2 in layers}
        for d, suffix in enumerate(("", "_reverse")[:dirs]):
            get = lambda name: getattr(lstm, f"{name}_l{k}{suffix}").detach().cpu().numpy()  # noqa: E731
            bias = get("bias_ih") + get("bias_hh") if lstm.bias else np.zeros(4 * lstm.hidden_size)
            cell = GateLevelLSTM([LayerWeights(get("weight_ih"), get("weight_hh"), bias)])
            seq = inp if d == 0 else inp[::-1]
            state = None if initial_state is None else (initial_state[0][k : k + 1], initial_state[1][k : k + 1])
            trace, _ = cell.run(seq, state)
            for name in per_dir:
                a = getattr(trace, name)[:, 0, 0, :]  # [T, H]
                per_dir[name].append(a if d == 0 else a[::-1])
        for name in layers:
            layers[name].append(np.concatenate(per_dir[name], axis=1))
        inp = layers["h"][-1]
    return {name: np.stack(v) for name, v in layers.items()}


class _TraceView(WindowExplainer):
    """Runs the gate-level LSTM over the window; subclasses keep the part they show."""

    def _trace(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        norm = getattr(self.model, "normalizer", nn.Identity())
        with torch.no_grad():
            feats = norm(x)[0].double().numpy()
        init = None
        if self.initial_state is not None:
            init = tuple(s.detach().double().numpy() for s in self.initial_state)
        return lstm_trace(self.model.lstm, feats, init)

    def _common(self, x: torch.Tensor, step: int | None, t0: float) -> dict[str, Any]:
        seconds = time.perf_counter() - t0
        return dict(method=self.name, target=self.kind, step=step, estimate=self.estimate(x, step), seconds=seconds, r_max_m=r_max_of(self.model),
                    params=frozen_mapping({"layers": self.model.lstm.num_layers, "hidden": self.model.lstm.hidden_size}))


class StateView(_TraceView):
    """Hidden and cell state of every layer over the window (the seed's "EEG of the model")."""

    name, title = "state", "LSTM state"

    def explain(self, x: np.ndarray | torch.Tensor, step: int | None = None, *, progress: ProgressFn | None = None) -> StateTrace:
        x = as_window(x)
        step = resolve_step(self.kind, step, x.shape[1])
        t0 = time.perf_counter()
        tr = self._trace(x)
        common = self._common(x, step, t0)
        return StateTrace(**common, h=frozen_array(tr["h"]), c=frozen_array(tr["c"]),
                          directions=2 if self.model.lstm.bidirectional else 1)


class GateView(_TraceView):
    """Input, forget, candidate and output gates of every layer over the window."""

    name, title = "gates", "LSTM gates"

    def explain(self, x: np.ndarray | torch.Tensor, step: int | None = None, *, progress: ProgressFn | None = None) -> GateActivations:
        x = as_window(x)
        step = resolve_step(self.kind, step, x.shape[1])
        t0 = time.perf_counter()
        tr = self._trace(x)
        common = self._common(x, step, t0)
        return GateActivations(**common, **{g: frozen_array(tr[g]) for g in GATES},
                               directions=2 if self.model.lstm.bidirectional else 1)


class AttentionView(WindowExplainer):
    """The attention weights of a pooled model with ``attention`` or ``multihead`` pooling."""

    name, title = "attention", "Attention weights"

    def __init__(self, model: nn.Module, kind: str | None = None, **kw: Any):
        super().__init__(model, kind, **kw)
        pooling = getattr(model, "pooling", None)
        if self.kind != "pooled" or pooling not in ("attention", "multihead"):
            what = f"a pooled model with {pooling!r} pooling" if self.kind == "pooled" else f"the {self.kind} model"
            raise ValueError(f"attention weights exist only for a pooled model with attention or multihead "
                             f"pooling; {what} has none")
        self.pooling = pooling

    def explain(self, x: np.ndarray | torch.Tensor, step: int | None = None, *, progress: ProgressFn | None = None) -> AttentionWeights:
        x = as_window(x)
        t0 = time.perf_counter()
        with torch.no_grad():
            y, w = self.model(x)
        w = w[0].double().numpy()
        per_head = matrix = None
        if self.pooling == "multihead":
            matrix = w  # [heads, T(query), T(key)]
            per_head = w.mean(axis=1)  # attention received by each key step, per head
            weights = per_head.mean(axis=0)
        else:
            weights = w
        return AttentionWeights(
            method=self.name, target=self.kind, step=None, estimate=float(y[0]), seconds=time.perf_counter() - t0,
            r_max_m=r_max_of(self.model), params=frozen_mapping({"pooling": self.pooling}),
            weights=frozen_array(weights), per_head=None if per_head is None else frozen_array(per_head),
            matrix=None if matrix is None else frozen_array(matrix), pooling=self.pooling,
        )
