"""Model files from outside: ONNX external data is confined to the model folder (campaign case 10)."""

from __future__ import annotations

import numpy as np
import pytest

# ------------------------------------------------------------------ 10. model files


def test_onnx_external_data_outside_the_model_folder_is_refused(tmp_path, tiny_weights):
    """(Pickle weights: tests/models/test_models.py::test_a_pickle_file_is_refused_and_runs_nothing.)"""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from models.weights import UnsafeModelError, check_onnx_file
    from streamer.live.backends.onnx_backend import OnnxBackend

    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(np.ones(64, np.float32).tobytes())
    w = numpy_helper.from_array(np.arange(64, dtype=np.float32).reshape(8, 8), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(model, str(folder / "ok.onnx"), save_as_external_data=True, location="ok.data", size_threshold=0)
    assert check_onnx_file(folder / "ok.onnx") == 1  # external data next to the model: fine
    (folder / "link.data").symlink_to(tmp_path / "secret.bin")
    for name, location in (("up", "../secret.bin"), ("abs", str(tmp_path / "secret.bin")), ("link", "link.data")):
        evil = onnx.load(str(folder / "ok.onnx"), load_external_data=False)
        for entry in evil.graph.initializer[0].external_data:
            if entry.key == "location":
                entry.value = location
        path = folder / f"{name}.onnx"
        onnx.save(evil, str(path))
        with pytest.raises(UnsafeModelError, match="outside the model's folder"):
            OnnxBackend(path, r_max_m=1000.0)
    # the real causal graph with its weights as external data still serves
    real = onnx.load(str(tiny_weights / "causal.onnx"))
    onnx.save_model(real, str(folder / "causal.onnx"), save_as_external_data=True, location="causal.data", size_threshold=0)
    be = OnnxBackend(folder / "causal.onnx", r_max_m=1000.0)
    y, _, _ = be.run(np.ones((1, 3, 2), np.float32), np.zeros((be.num_layers, 1, be.hidden_size), np.float32),
                     np.zeros((be.num_layers, 1, be.hidden_size), np.float32))
    assert y.shape == (1, 3)


