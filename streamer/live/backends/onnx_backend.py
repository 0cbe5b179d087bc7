"""onnxruntime backend: the exported step/chunk graph, run through IOBinding with output buffers
preallocated per (batch, time) shape, so a step allocates nothing on the hot path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from models.weights import check_onnx_file
from streamer.live.backends.base import StepBackend


def session_options(threads: int = 1) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def checked_session(path: str | Path, threads: int = 1) -> ort.InferenceSession:
    """An InferenceSession of a model that passed :func:`models.weights.check_onnx_file` (for
    every ONNX file this project opens, the bidirectional re-scorer's included)."""
    check_onnx_file(path)
    return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])


class OnnxBackend(StepBackend):
    name = "onnx"

    def __init__(self, onnx_path: str | Path, *, r_max_m: float, threads: int = 1, max_cached_shapes: int = 64,
                 profile=None):
        self.path = Path(onnx_path)
        check_onnx_file(self.path)  # external data outside the model's folder: refused first
        self.session = ort.InferenceSession(str(self.path), session_options(threads), providers=["CPUExecutionProvider"])
        shapes = {i.name: i.shape for i in self.session.get_inputs()}
        if set(shapes) != {"x", "h0", "c0"}:
            raise ValueError(f"{self.path}: not a causal step graph (inputs {sorted(shapes)})")
        self.num_layers = int(shapes["h0"][0])
        self.hidden_size = int(shapes["h0"][2])
        self.input_size = int(shapes["x"][2])
        self.r_max_m = float(r_max_m)
        self.profile = profile
        self.has_std = "y_std" in {o.name for o in self.session.get_outputs()}
        self._bindings: dict[tuple[int, int], tuple[ort.IOBinding, dict[str, np.ndarray]]] = {}
        self._max_cached = max_cached_shapes

    @classmethod
    def from_weights(cls, weights_dir: str | Path | None = None, *, threads: int = 1, profile=None) -> "OnnxBackend":
        """The exported graph next to the weights when it was exported with the model's profile;
        otherwise (no graph, a graph from before profiles, or one baked with another R_max /
        noise RMS / period) a fresh export into a temp folder, so that R_max and the normaliser
        come from the one profile in both backends."""
        from models.export import onnx_for

        model, path = onnx_for("causal", weights_dir, profile=profile)
        return cls(path, r_max_m=float(model.profile.r_max_m), threads=threads, profile=model.profile)

    def _binding(self, b: int, t: int):
        key = (b, t)
        hit = self._bindings.get(key)
        if hit is None:
            if len(self._bindings) >= self._max_cached:
                self._bindings.clear()
            io = self.session.io_binding()
            outs = {"y": np.empty((b, t), np.float32)}
            if self.has_std:
                outs["y_std"] = np.empty((b, t), np.float32)
            outs["hn"] = np.empty((self.num_layers, b, self.hidden_size), np.float32)
            outs["cn"] = np.empty_like(outs["hn"])
            for name, arr in outs.items():
                io.bind_output(name, "cpu", 0, np.float32, list(arr.shape), arr.ctypes.data)
            hit = self._bindings[key] = (io, outs)
        return hit

    def run_full(self, x, h, c):
        x = np.ascontiguousarray(x, np.float32)
        h = np.ascontiguousarray(h, np.float32)
        c = np.ascontiguousarray(c, np.float32)
        b, t = x.shape[0], x.shape[1]
        io, outs = self._binding(b, t)
        for name, arr in (("x", x), ("h0", h), ("c0", c)):
            io.bind_input(name, "cpu", 0, np.float32, list(arr.shape), arr.ctypes.data)
        self.session.run_with_iobinding(io)
        return outs["y"], outs.get("y_std"), outs["hn"], outs["cn"]
