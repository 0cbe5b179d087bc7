"""Shared fixtures. Tests run offscreen, one torch thread, real sockets on 127.0.0.1."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A small, randomly initialised weights directory (fast; used where quality is irrelevant)."""
    from models.bundle import build_model
    from models.export import export_causal
    from models.weights import save_weights

    out = tmp_path_factory.mktemp("tiny-weights")
    torch.manual_seed(123)
    for kind in ("causal", "bidir", "pooled"):
        cfg = {"hidden_size": 16, "num_layers": 2, "r_max_m": 1000.0}
        model = build_model(kind, cfg)
        save_weights(model, out / kind, {"kind": kind, "config": model.config})
        if kind == "causal":
            export_causal(model.eval(), out / "causal.onnx")
    return out
