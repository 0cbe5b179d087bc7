"""ONNX export with the TorchScript exporter (``dynamo=False``: the dynamo exporter breaks on
LSTMs with a dynamic time axis). Recurrent state is an explicit graph input and output."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from models.pooled import DminRegressorLSTM
from models.regressors import BidirectionalRegressor, CausalRegressor

OPSET = 17


class _PooledOutput(nn.Module):
    """The pooled model with a fixed output signature (y, or y and attention weights)."""

    def __init__(self, model: DminRegressorLSTM):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x)
        return out if isinstance(out, tuple) else (out,)


def _export(module, args, path, input_names, output_names, dynamic_axes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter warns about batch_first LSTMs
        torch.onnx.export(
            module, args, str(path), input_names=input_names, output_names=output_names,
            dynamic_axes=dynamic_axes, opset_version=OPSET, dynamo=False, do_constant_folding=True,
        )
    return path


def export_causal(model: CausalRegressor, path: str | Path) -> Path:
    """Step/chunk graph: (x [B, T, 2], h0, c0 [L, B, H]) -> (y [B, T], hn, cn)."""
    model = model.eval()
    h0, c0 = model.zero_state(1)
    x = torch.zeros(1, 4, model.config["input_size"])
    return _export(
        model, (x, (h0, c0)), path, ["x", "h0", "c0"], ["y", "hn", "cn"],
        {"x": {0: "batch", 1: "time"}, "h0": {1: "batch"}, "c0": {1: "batch"},
         "y": {0: "batch", 1: "time"}, "hn": {1: "batch"}, "cn": {1: "batch"}},
    )


def export_bidir(model: BidirectionalRegressor, path: str | Path) -> Path:
    """Window graph: x [B, W, 2] -> y [B, W] with a dynamic window length."""
    model = model.eval()
    x = torch.zeros(1, 8, model.config["input_size"])
    return _export(model, (x,), path, ["x"], ["y"], {"x": {0: "batch", 1: "time"}, "y": {0: "batch", 1: "time"}})


def export_pooled(model: DminRegressorLSTM, path: str | Path) -> Path:
    """x [B, T, 2] -> y [B] (and ``attention`` weights for the attention poolings)."""
    model = model.eval()
    x = torch.zeros(1, 8, model.config["input_size"])
    attn = model.pooling in ("attention", "multihead")
    names = ["y", "attention"] if attn else ["y"]
    axes = {"x": {0: "batch", 1: "time"}, "y": {0: "batch"}}
    if attn:
        axes["attention"] = {0: "batch", 1: "time"} if model.pooling == "attention" else {0: "batch", 2: "time", 3: "time2"}
    return _export(_PooledOutput(model), (x,), path, ["x"], names, axes)


def export_all(weights_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Export every model found in ``weights_dir`` next to its weights (or into ``out_dir``)."""
    from models.bundle import load_model
    from models.weights import WeightsError

    out = Path(out_dir) if out_dir is not None else Path(weights_dir)
    written = []
    for kind, fn in (("causal", export_causal), ("bidir", export_bidir), ("pooled", export_pooled)):
        try:
            model, _ = load_model(kind, weights_dir)
        except WeightsError:
            continue
        written.append(fn(model, out / f"{kind}.onnx"))
    return written
