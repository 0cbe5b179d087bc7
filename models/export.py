"""ONNX export with the TorchScript exporter (``dynamo=False``: the dynamo exporter breaks on
LSTMs with a dynamic time axis). Recurrent state is an explicit graph input and output.

The model's radar profile (R_max, noise RMS, nominal period) is baked into the graph and recorded
in its metadata (``radarstream.profile``), so a backend can tell a graph exported for another
profile and re-export it (:func:`onnx_profile`). Models with an uncertainty head export a second
output ``y_std`` (standard deviation, Dmin / R_max units) after ``y``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.pooled import DminRegressorLSTM
from models.regressors import BidirectionalRegressor, CausalRegressor

OPSET = 17
PROFILE_KEY = "radarstream.profile"
CONFIG_KEY = "radarstream.config"


class _PooledOutput(nn.Module):
    """The pooled model with a fixed output signature (y, or y and attention weights)."""

    def __init__(self, model: DminRegressorLSTM):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x)
        return out if isinstance(out, tuple) else (out,)


class _CausalStep(nn.Module):
    """(x, h0, c0) -> (y, [y_std,] hn, cn): explicit state tensors in and out."""

    def __init__(self, model: CausalRegressor):
        super().__init__()
        self.model = model

    def forward(self, x, h0, c0):
        if self.model.uncertainty:
            y, std, (h, c) = self.model(x, (h0, c0), return_std=True)
            return y, std, h, c
        y, (h, c) = self.model(x, (h0, c0))
        return y, h, c


class _BidirWithStd(nn.Module):
    def __init__(self, model: BidirectionalRegressor):
        super().__init__()
        self.model = model

    def forward(self, x):
        if self.model.uncertainty:
            return self.model(x, return_std=True)
        return self.model(x)


def _export(module, args, path, input_names, output_names, dynamic_axes, model: nn.Module) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter warns about batch_first LSTMs
        torch.onnx.export(
            module, args, str(path), input_names=input_names, output_names=output_names,
            dynamic_axes=dynamic_axes, opset_version=OPSET, dynamo=False, do_constant_folding=True,
        )
    _write_metadata(path, model)
    return path


def _write_metadata(path: Path, model: nn.Module) -> None:
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    profile = getattr(model, "profile", None)
    for key, value in ((PROFILE_KEY, profile.to_dict() if profile is not None else None), (CONFIG_KEY, model.config)):
        if value is not None:
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, json.dumps(value, sort_keys=True)
    onnx.save(proto, str(path))


def onnx_profile(path: str | Path) -> dict[str, Any] | None:
    """The profile a graph was exported with (its metadata), or None for graphs made before."""
    import onnx

    from models.weights import WeightsError

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own DecodeError on a corrupt file
        raise WeightsError(f"{path}: not a valid ONNX file ({type(exc).__name__}: {exc}); "
                           "delete it or write it again with `radarstream export`") from None
    for entry in proto.metadata_props:
        if entry.key == PROFILE_KEY:
            return json.loads(entry.value)
    return None


def _x_axes(model: nn.Module) -> dict[int, str]:
    """Batch and time are dynamic; so is the channel axis of 3-channel window models (their
    graph takes ``[amplitude, distance]`` windows too, at the profile's nominal period)."""
    axes = {0: "batch", 1: "time"}
    if model.config["input_size"] == 3 and not isinstance(model, CausalRegressor):
        axes[2] = "channels"
    return axes


def export_causal(model: CausalRegressor, path: str | Path) -> Path:
    """Step/chunk graph: (x [B, T, C], h0, c0 [L, B, H]) -> (y [B, T], [y_std [B, T],] hn, cn)."""
    model = model.eval()
    h0, c0 = model.zero_state(1)
    x = torch.zeros(1, 4, model.config["input_size"])
    x[..., 0] = 1.0
    if model.config["input_size"] == 3:
        x[..., 2] = 0.05
    std = model.uncertainty
    outs = ["y", "y_std", "hn", "cn"] if std else ["y", "hn", "cn"]
    axes = {"x": _x_axes(model), "h0": {1: "batch"}, "c0": {1: "batch"}, "y": {0: "batch", 1: "time"},
            "hn": {1: "batch"}, "cn": {1: "batch"}}
    if std:
        axes["y_std"] = {0: "batch", 1: "time"}
    return _export(_CausalStep(model), (x, h0, c0), path, ["x", "h0", "c0"], outs, axes, model)


def export_bidir(model: BidirectionalRegressor, path: str | Path) -> Path:
    """Window graph: x [B, W, C] -> y [B, W] (and y_std [B, W]) with a dynamic window length."""
    model = model.eval()
    x = torch.zeros(1, 8, model.config["input_size"])
    if model.config["input_size"] == 3:
        x[..., 2] = 0.05
    std = model.uncertainty
    outs = ["y", "y_std"] if std else ["y"]
    axes = {"x": _x_axes(model), **{o: {0: "batch", 1: "time"} for o in outs}}
    return _export(_BidirWithStd(model), (x,), path, ["x"], outs, axes, model)


def export_pooled(model: DminRegressorLSTM, path: str | Path) -> Path:
    """x [B, T, C] -> y [B] (and ``attention`` weights for the attention poolings)."""
    model = model.eval()
    x = torch.zeros(1, 8, model.config["input_size"])
    if model.config["input_size"] == 3:
        x[..., 2] = 0.05
    attn = model.pooling in ("attention", "multihead")
    names = ["y", "attention"] if attn else ["y"]
    axes = {"x": _x_axes(model), "y": {0: "batch"}}
    if attn:
        axes["attention"] = {0: "batch", 1: "time"} if model.pooling == "attention" else {0: "batch", 2: "time", 3: "time2"}
    return _export(_PooledOutput(model), (x,), path, ["x"], names, axes, model)


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


def onnx_for(kind: str, weights_dir: str | Path | None = None, *, profile=None) -> tuple[nn.Module, Path]:
    """``(torch model, ONNX graph path)`` of ``kind`` with the same profile in both: the graph
    next to the weights when it was exported with the model's profile, otherwise (no graph, a
    graph from before profiles, or one baked for another R_max / noise RMS / period, e.g. after
    ``--radar``) a fresh export into a temp folder. Use it for every ONNX session of a model."""
    import tempfile

    from models.bundle import load_model, shipped_weights_dir

    base = Path(weights_dir) if weights_dir is not None else shipped_weights_dir()
    model, _ = load_model(kind, base, profile=profile)
    path = base / f"{kind}.onnx"
    if path.is_file() and onnx_profile(path) == model.profile.to_dict():
        return model, path
    fn = {"causal": export_causal, "bidir": export_bidir, "pooled": export_pooled}[kind]
    return model, fn(model, Path(tempfile.mkdtemp(prefix="radarstream-onnx-")) / f"{kind}.onnx")
