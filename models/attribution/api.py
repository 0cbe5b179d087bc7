"""One call to explain a window with any method: what the CLI and a GUI worker thread use."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from models.attribution.internal import AttentionView, GateView, StateView
from models.attribution.methods import (
    ProgressFn,
    WindowExplainer,
    WindowFeatureAblation,
    WindowIntegratedGradients,
    WindowKernelShap,
    WindowLime,
    WindowOcclusion,
    WindowSaliency,
)
from models.attribution.results import Explanation
from models.attribution.targets import model_kind as _model_kind

EXPLAINERS: Mapping[str, type[WindowExplainer]] = MappingProxyType({
    cls.name: cls for cls in (
        WindowSaliency, WindowIntegratedGradients, WindowOcclusion, WindowFeatureAblation, WindowLime,
        WindowKernelShap, AttentionView, StateView, GateView,
    )
})
"""Method name -> explainer class (read-only)."""

ATTRIBUTION_METHODS: tuple[str, ...] = ("saliency", "ig", "occlusion", "ablation", "lime", "shap")
VIEW_METHODS: tuple[str, ...] = ("attention", "state", "gates")
METHODS: tuple[str, ...] = ATTRIBUTION_METHODS + VIEW_METHODS


def available_methods(model: nn.Module, model_kind: str | None = None) -> tuple[str, ...]:
    """The methods that apply to ``model`` (attention needs an attention-pooled model)."""
    kind = _model_kind(model, model_kind)
    has_attention = kind == "pooled" and getattr(model, "pooling", None) in ("attention", "multihead")
    return tuple(m for m in METHODS if m != "attention" or has_attention)


def make_explainer(method: str, model: nn.Module, model_kind: str | None = None, **opts: Any) -> WindowExplainer:
    """The explainer for ``method``; ``opts`` are its constructor's keyword arguments."""
    if method not in EXPLAINERS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    return EXPLAINERS[method](model, model_kind, **opts)


def explain_window(
    model_kind: str | None,
    model: nn.Module,
    x: np.ndarray | torch.Tensor,
    method: str,
    step: int | None = None,
    *,
    progress: ProgressFn | None = None,
    **opts: Any,
) -> Explanation:
    """Explain one window ``x [T, 2]`` of raw samples (amplitude, distance; -1 = no detection).

    ``model_kind`` is "causal", "bidir" or "pooled" (None: the model's own ``kind``); ``step``
    the estimate to explain (default: the last step; the pooled model has one estimate and
    ignores it). Captum methods return an :class:`Attribution`, the internal views an
    :class:`AttentionWeights`, :class:`StateTrace` or :class:`GateActivations`. ``progress(done,
    total)`` is called from this thread as model evaluations complete. Never modifies ``model``
    (gradient methods work on a copy), so a GUI may keep using it meanwhile from another thread.
    """
    return make_explainer(method, model, model_kind, **opts).explain(x, step, progress=progress)


@dataclass(frozen=True)
class MethodCost:
    """Wall time of one method on one window (median of ``repeats`` runs, first run excluded
    when repeated: it pays one-off allocations)."""

    method: str
    target: str
    window: int
    seconds: float
    repeats: int
    params: Mapping[str, Any]


def time_methods(
    models: Mapping[str, nn.Module],
    x: np.ndarray | torch.Tensor,
    *,
    methods: Sequence[str] = METHODS,
    step: int | None = None,
    repeats: int = 3,
    slow_repeats: int = 1,
    opts: Mapping[str, Mapping[str, Any]] | None = None,
    progress: ProgressFn | None = None,
) -> list[MethodCost]:
    """Time every applicable method on window ``x`` for each model in ``models`` (kind -> model).

    ``opts[method]`` overrides that method's options. ``progress(done, total)`` counts timed runs.
    """
    opts = opts or {}
    plan = [(kind, m) for kind, model in models.items() for m in methods if m in available_methods(model, kind)]
    out: list[MethodCost] = []
    for n, (kind, method) in enumerate(plan):
        explainer = make_explainer(method, models[kind], kind, **dict(opts.get(method, {})))
        runs = slow_repeats if getattr(explainer, "slow", False) else repeats
        times, params = [], {}
        for _ in range(max(runs, 1) + (1 if runs > 1 else 0)):
            t0 = time.perf_counter()
            res = explainer.explain(x, step)
            times.append(time.perf_counter() - t0)
            params = dict(res.params)
        kept = times[1:] if len(times) > 1 else times
        out.append(MethodCost(method, kind, int(np.asarray(x).shape[-2]), statistics.median(kept), len(kept),
                              MappingProxyType(params)))
        if progress is not None:
            progress(n + 1, len(plan))
    return out
