"""Attribution and model-internal views of one window, over Captum (see docs/explain.md).

Captum methods (Saliency, IntegratedGradients, Occlusion, FeatureAblation, Lime, KernelShap) explain
one estimate of the causal model at step t, of the bidirectional model at step t, or the pooled
model's window estimate, against a noise-only baseline; the internal views read attention
weights, hidden/cell states and gates. :func:`explain_window` is the one call a GUI needs.
"""

from models.attribution.api import (
    ATTRIBUTION_METHODS,
    EXPLAINERS,
    METHODS,
    VIEW_METHODS,
    available_methods,
    explain_window,
    make_explainer,
)
from models.attribution.internal import AttentionView, GateView, StateView, lstm_trace
from models.attribution.methods import (
    CaptumExplainer,
    ProgressFn,
    WindowExplainer,
    WindowFeatureAblation,
    WindowIntegratedGradients,
    WindowKernelShap,
    WindowLime,
    WindowOcclusion,
    WindowSaliency,
)
from models.attribution.results import (
    RAW_CHANNELS,
    AttentionWeights,
    Attribution,
    Explanation,
    GateActivations,
    StateTrace,
)
from models.attribution.targets import (
    BASELINES,
    FEATURE_NAMES,
    NOISE_ONLY,
    TARGETS,
    ZEROS,
    Baseline,
    EstimateAt,
    feature_space,
    time_segment_mask,
)

__all__ = [
    "ATTRIBUTION_METHODS", "AttentionView", "AttentionWeights", "Attribution", "BASELINES", "Baseline",
    "CaptumExplainer", "EXPLAINERS", "EstimateAt", "Explanation", "FEATURE_NAMES", "GateActivations", "GateView",
    "METHODS", "MethodCost", "NOISE_ONLY", "ProgressFn", "RAW_CHANNELS", "StateTrace", "StateView", "TARGETS",
    "VIEW_METHODS", "WindowExplainer", "WindowFeatureAblation", "WindowIntegratedGradients", "WindowKernelShap",
    "WindowLime", "WindowOcclusion", "WindowSaliency", "ZEROS", "available_methods", "explain_window",
    "feature_space", "lstm_trace", "make_explainer", "time_methods", "time_segment_mask",
]

_MOVED = {"MethodCost": "bench.explain", "time_methods": "bench.explain"}
"""Names that moved out of the attribution layer (the explanation benchmark, issue 12): still importable."""


def __getattr__(name: str):
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
