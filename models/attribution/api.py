"""One call to explain a window with any method: what the CLI and a GUI worker thread use."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

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
