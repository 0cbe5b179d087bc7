"""Models: the causal and bidirectional per-step regressors, the seed's ``DminRegressorLSTM``,
the gate-level LSTM step, training (``fit``), weights without pickle, and ONNX export."""

from models.bundle import ModelBundle, load_bundle, load_model, shipped_weights_dir
from models.gates import GateLevelLSTM
from models.pooled import DminRegressorLSTM
from models.regressors import BidirectionalRegressor, CausalRegressor
from models.training import History, fit
from models.weights import UnsafeWeightsError, WeightsError

__all__ = [
    "BidirectionalRegressor", "CausalRegressor", "DminRegressorLSTM", "GateLevelLSTM", "History",
    "ModelBundle", "UnsafeWeightsError", "WeightsError", "fit", "load_bundle", "load_model",
    "shipped_weights_dir",
]
