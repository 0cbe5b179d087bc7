"""Saving and loading weights without pickle: safetensors + a JSON side file.

A ``.pt``/``.pth`` state dict is read only with ``torch.load(weights_only=True)``; anything that
needs arbitrary unpickling is refused with :class:`UnsafeWeightsError` before it can run code.
An ONNX file whose tensors point at external data outside its own folder is refused with
:class:`UnsafeModelError` before any runtime opens it (:func:`check_onnx_file`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file

from radarstream.errors import RadarstreamError


class WeightsError(RadarstreamError, RuntimeError):
    """A weights file is missing, corrupt, or does not match its model."""


class UnsafeWeightsError(WeightsError):
    """A weights file would need pickle (arbitrary code execution) to load: refused."""


class UnsafeModelError(WeightsError):
    """A model file would make the runtime read files outside the model's folder: refused."""


def save_weights(model: torch.nn.Module, path: str | Path, meta: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``path.safetensors`` and ``path.json`` (config, normalisation, metrics...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    st = path.with_suffix(".safetensors")
    save_file(tensors, str(st))
    js = path.with_suffix(".json")
    js.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return st, js


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file, or a pickle-free ``torch.save`` state dict."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise WeightsError(f"{path}: not a valid safetensors file ({exc})") from exc
    if path.suffix in (".pt", ".pth", ".bin"):
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise UnsafeWeightsError(
                f"{path}: refused: loading it would need pickle beyond plain tensors "
                f"(weights_only=True failed: {type(exc).__name__}). Convert it to safetensors."
            ) from exc
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise WeightsError(f"{path}: expected a flat state dict of tensors")
        return state
    raise WeightsError(f"{path}: unknown weights format (use .safetensors)")


def read_meta(path: str | Path) -> dict[str, Any]:
    js = Path(path).with_suffix(".json")
    if not js.is_file():
        raise WeightsError(f"metadata file not found: {js}")
    try:
        return json.loads(js.read_text())
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{js}: invalid JSON ({exc})") from exc


def load_into(model: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """Load weights into ``model`` strictly; a shape or key mismatch is a :class:`WeightsError`."""
    state = read_state_dict(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path}: does not match {type(model).__name__}: {exc}") from exc
    return model.eval()


def _onnx_tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of a graph: initializers, sparse initializers, node attributes and
    subgraphs (If/Loop/Scan bodies), recursively."""
    yield from graph.initializer
    for sp in graph.sparse_initializer:
        yield sp.values
        yield sp.indices
    yield from _node_tensors(graph.node)


def _node_tensors(nodes: Any) -> Iterator[Any]:
    from onnx import AttributeProto

    for node in nodes:
        for attr in node.attribute:
            if attr.type == AttributeProto.TENSOR:
                yield attr.t
            elif attr.type == AttributeProto.TENSORS:
                yield from attr.tensors
            elif attr.type == AttributeProto.SPARSE_TENSOR:
                yield attr.sparse_tensor.values
                yield attr.sparse_tensor.indices
            elif attr.type == AttributeProto.SPARSE_TENSORS:
                for sp in attr.sparse_tensors:
                    yield sp.values
                    yield sp.indices
            elif attr.type == AttributeProto.GRAPH:
                yield from _onnx_tensors(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _onnx_tensors(g)


def check_onnx_file(path: str | Path) -> int:
    """Refuse an ONNX model whose external-data locations leave its folder (absolute paths,
    ``..``, or symlinks pointing out), before an InferenceSession could read them: a model file
    must not become a way to read arbitrary files. Returns how many tensors use external data."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"model file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise WeightsError(f"{path}: not a valid ONNX model ({type(exc).__name__}: {exc})") from exc
    folder = path.resolve().parent
    tensors = [*_onnx_tensors(model.graph), *(t for f in model.functions for t in _node_tensors(f.node))]
    n = 0
    for tensor in tensors:
        if not uses_external_data(tensor):
            continue
        n += 1
        location = {e.key: e.value for e in tensor.external_data}.get("location", "")
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            raise UnsafeModelError(
                f"{path}: refused: tensor {tensor.name!r} reads external data from {location!r}, which is "
                f"outside the model's folder {folder} (external data must sit next to the model)")
    return n
