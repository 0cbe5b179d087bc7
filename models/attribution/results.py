"""Frozen result types of every explanation, with their JSON / NPZ views.

Every result carries what the figure title and the GUI need (method, target, step, estimate) and
the seconds it took, so that callers never re-run the model to label a plot. Arrays are made
read-only: a frozen dataclass whose arrays could be edited in place would not be frozen.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

RAW_CHANNELS: tuple[str, ...] = ("amplitude", "distance")
"""The raw wire channels every attribution is expressed over."""


def frozen_array(a: Any, dtype: type = np.float32) -> np.ndarray:
    """A read-only copy, so that results cannot be edited behind their frozen dataclass."""
    out = np.array(a, dtype=dtype, copy=True)
    out.flags.writeable = False
    return out


def frozen_mapping(d: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(d or {}))


def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.floating, float)):
        return None if not np.isfinite(v) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


@dataclass(frozen=True)
class Explanation:
    """What every explanation of one window shares.

    ``estimate`` is the model output being explained, in the model's normalised unit (Dmin/R_max);
    ``r_max_m`` converts it (and attributions) to metres. ``step`` is None for the pooled model,
    whose one estimate covers the whole window.
    """

    method: str
    target: str
    step: int | None
    estimate: float
    seconds: float
    r_max_m: float
    params: Mapping[str, Any] = field(default_factory=frozen_mapping)

    @property
    def estimate_m(self) -> float:
        return self.estimate * self.r_max_m

    def arrays(self) -> dict[str, np.ndarray]:
        """The numeric arrays of this result (what goes into the NPZ)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), np.ndarray)}

    def summary(self) -> dict[str, Any]:
        """JSON-ready scalars and small metadata (arrays are summarised by shape only)."""
        out: dict[str, Any] = {"kind": type(self).__name__}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = {"shape": list(v.shape)} if isinstance(v, np.ndarray) and v.size > 64 else _jsonable(v)
        out["estimate_m"] = _jsonable(self.estimate_m)
        return out


@dataclass(frozen=True)
class Attribution(Explanation):
    """A Captum attribution of one estimate to the raw samples of the window.

    ``attributions [T, C]`` over the raw channels (amplitude, distance), in the model's output unit:
    for IG, occlusion, ablation, LIME and SHAP an entry says how much of the estimate (Dmin/R_max;
    × ``r_max_m`` for metres) that sample's channel accounts for, relative to ``baseline``. Saliency
    is a local gradient magnitude instead (per unit of the model's input features).
    ``feature_attributions [T, F]`` keeps the per-feature split for the gradient methods, which
    work on the normalised features (log-amplitude, range/R_max, detection flag; see docs/explain.md).
    ``feature_mask [T, C]`` numbers the interpretable features of the mask-based methods (one id per
    time segment and channel, or per segment); ``delta`` is IG's convergence delta (completeness
    error: sum of attributions − (f(x) − f(baseline))).
    """

    attributions: np.ndarray = field(default_factory=lambda: frozen_array(np.zeros((0, 2))))
    channels: tuple[str, ...] = RAW_CHANNELS
    baseline: np.ndarray = field(default_factory=lambda: frozen_array(np.zeros(2)))
    baseline_name: str = "noise"
    baseline_estimate: float = float("nan")
    delta: float | None = None
    feature_attributions: np.ndarray | None = None
    feature_names: tuple[str, ...] = ()
    feature_mask: np.ndarray | None = None

    @property
    def total(self) -> float:
        """Sum of the attributions, counting each interpretable feature once (mask-based methods
        spread a feature's value over all its samples)."""
        a = np.asarray(self.attributions, np.float64)
        if self.feature_mask is None:
            return float(a.sum())
        ids, first = np.unique(self.feature_mask.ravel(), return_index=True)
        return float(a.ravel()[first].sum())


@dataclass(frozen=True)
class AttentionWeights(Explanation):
    """Where an attention-pooled model looked: ``weights [T]`` sum to 1 over the window.

    For multi-head self-attention, ``weights`` is the attention each step *receives*, averaged
    over heads and query steps (the pooled context is the mean over queries, so this is the
    share of each step in it); ``per_head [heads, T]`` keeps the heads apart and ``matrix
    [heads, T, T]`` is the full query × key matrix.
    """

    weights: np.ndarray = field(default_factory=lambda: frozen_array(np.zeros(0)))
    per_head: np.ndarray | None = None
    matrix: np.ndarray | None = None
    pooling: str = "attention"


@dataclass(frozen=True)
class StateTrace(Explanation):
    """The LSTM's hidden and cell state over the window: ``h``, ``c`` [layers, T, units].

    For a bidirectional LSTM the units are ``[forward 0..H-1, backward H..2H-1]``; the backward
    half at step t summarises the samples *after* t.
    """

    h: np.ndarray = field(default_factory=lambda: frozen_array(np.zeros((0, 0, 0))))
    c: np.ndarray = field(default_factory=lambda: frozen_array(np.zeros((0, 0, 0))))
    directions: int = 1


@dataclass(frozen=True)
class GateActivations(Explanation):
    """The seed's gates over the window, each [layers, T, units]: input ``i``, forget ``f``,
    candidate ``g`` (= ĉ, in [-1, 1]) and output ``o``; same unit layout as :class:`StateTrace`."""

    i: np.ndarray = field(default_factory=lambda: frozen_array(np.zeros((0, 0, 0))))
    f: np.ndarray = field(default_factory=lambda: frozen_array(np.zeros((0, 0, 0))))
    g: np.ndarray = field(default_factory=lambda: frozen_array(np.zeros((0, 0, 0))))
    o: np.ndarray = field(default_factory=lambda: frozen_array(np.zeros((0, 0, 0))))
    directions: int = 1
