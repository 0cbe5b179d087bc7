"""Models: the causal and bidirectional per-step regressors, the seed's ``DminRegressorLSTM``,
the gate-level LSTM step, the classical CPA fit and the hybrid estimator, training (``fit``),
weights without pickle, ONNX export and attribution.

Public names are re-exported lazily (PEP 562): ``from models import DminRegressorLSTM`` works,
while ``import models.classical`` (pure numpy) does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BidirectionalRegressor": "models.regressors",
    "CausalRegressor": "models.regressors",
    "DminRegressorLSTM": "models.pooled",
    "GateLevelLSTM": "models.gates",
    "History": "models.training",
    "fit": "models.training",
    "ModelBundle": "models.bundle",
    "load_bundle": "models.bundle",
    "load_model": "models.bundle",
    "shipped_weights_dir": "models.bundle",
    "UnsafeWeightsError": "models.weights",
    "WeightsError": "models.weights",
    "CPAFitConfig": "models.classical",
    "CPAFitResult": "models.classical",
    "fit_cpa": "models.classical",
    "RecursiveCPAFit": "models.classical",
    "StreamingCPAEstimator": "models.classical",
    "RadarProfile": "models.profile",
    "ProfileError": "models.profile",
    "StreamDomainChecker": "models.profile",
    "check_stream": "models.profile",
    "interval_coverage": "models.uncertainty",
    "HybridRule": "models.hybrid",
    "OnlineHybrid": "models.hybrid",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
