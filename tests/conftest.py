"""Shared fixtures. Tests run offscreen, one torch thread, real sockets on 127.0.0.1."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
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


# ---- the reliability campaign's shared fixtures (tests/faults.py has its helpers)

@pytest.fixture(scope="session")
def figures(request):
    """Figures measured by the tests (printed at the end; JSON with RADARSTREAM_RELIABILITY_JSON)."""
    out: dict = {}
    yield out
    if out:
        text = json.dumps(out, indent=2, sort_keys=True, default=str)
        print("\nreliability figures:\n" + text)
        path = os.environ.get("RADARSTREAM_RELIABILITY_JSON")
        if path:
            Path(path).write_text(text + "\n")


@pytest.fixture(scope="module")
def offline(tiny_weights):
    """The causal model run offline over a whole sequence from zero state (the reference)."""
    from models.bundle import load_model

    model, _ = load_model("causal", tiny_weights)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(x, np.float32)[None]))[0][0].numpy()

    return run
