"""The fused small-batch backend (streamer/live/backends/fused_backend.py) against nn.LSTM: the
normaliser with and without the period channel, the uncertainty head, any batch and run length,
the per-shape dispatch of the auto backend, and the numpy candidate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.bundle import build_model
from models.profile import RadarProfile
from models.weights import save_weights
from streamer.live.backends import make_backend
from streamer.live.backends.fused_backend import AutoBackend, FusedBackend, NumpyFusedBackend, measure_crossover
from streamer.live.engine import StreamEngine, model_input
from streamer.sim.simulator import RadarConfig, StreamSimulator
from streamer.wire import protocol as P

TOL = 1e-5


def _model(input_size: int, uncertainty: bool, hidden: int = 16, layers: int = 2, seed: int = 7):
    torch.manual_seed(seed)
    prof = RadarProfile.legacy(2000.0)
    cfg = {"input_size": input_size, "hidden_size": hidden, "num_layers": layers, "head_hidden": 8,
           "profile": prof.to_dict(), "uncertainty": uncertainty, "std_scale": 1.5}
    return build_model("causal", cfg).eval()


def _inputs(b: int, t: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.empty((b, t, channels), np.float32)
    x[..., 0] = np.abs(rng.normal(0, 5, (b, t)))
    x[..., 0][rng.random((b, t)) < 0.1] = 0.0  # below the log floor
    x[..., 1] = np.where(rng.random((b, t)) < 0.3, -1.0, rng.uniform(0, 2000, (b, t)))
    if channels == 3:
        x[..., 2] = rng.choice([0.01, 0.05, 0.2, 0.0], size=(b, t))  # 0: clamped to 1e-4
    return x


def _reference(model, x, h, c):
    with torch.no_grad():
        if model.uncertainty:
            y, s, (hn, cn) = model(torch.from_numpy(x), (torch.from_numpy(h), torch.from_numpy(c)), return_std=True)
            return y.numpy(), s.numpy(), hn.numpy(), cn.numpy()
        y, (hn, cn) = model(torch.from_numpy(x), (torch.from_numpy(h), torch.from_numpy(c)))
        return y.numpy(), None, hn.numpy(), cn.numpy()


@pytest.mark.parametrize("cls", [FusedBackend, NumpyFusedBackend])
@pytest.mark.parametrize("input_size,uncertainty", [(2, False), (3, False), (2, True), (3, True)])
@pytest.mark.parametrize("b,t", [(1, 1), (5, 1), (1, 33), (3, 9)])
def test_equals_nn_lstm(cls, input_size, uncertainty, b, t):
    model = _model(input_size, uncertainty)
    be = cls(model)
    assert (be.input_size, be.has_std, be.r_max_m) == (input_size, uncertainty, 2000.0)
    x = _inputs(b, t, input_size, seed=b * 100 + t)
    rng = np.random.default_rng(1)
    h = rng.normal(0, 0.3, (2, b, 16)).astype(np.float32)
    c = rng.normal(0, 0.3, (2, b, 16)).astype(np.float32)
    h0, c0 = h.copy(), c.copy()
    y, s, hn, cn = be.run_full(x, h, c)
    ry, rs, rh, rc = _reference(model, x, h0, c0)
    assert np.array_equal(h, h0) and np.array_equal(c, c0)  # inputs are never written
    assert np.abs(y - ry).max() < TOL and np.abs(hn - rh).max() < TOL and np.abs(cn - rc).max() < 1e-4
    if uncertainty:
        assert np.abs(s - rs).max() < TOL
    else:
        assert s is None


def test_two_channel_input_to_a_period_model_gets_the_nominal_period():
    model = _model(3, False)
    be = FusedBackend(model)
    x = _inputs(2, 5, 2)
    h, c = be.zero_state(2)
    assert np.abs(be.run_full(x, h, c)[0] - _reference(model, x, h, c)[0]).max() < TOL


def test_stepping_equals_one_call_with_the_period_channel():
    model = _model(3, True)
    be = FusedBackend(model)
    x = model_input(_inputs(1, 80, 2, seed=4), [20_000_000], 3)
    h, c = be.zero_state(1)
    whole = be.run_full(x, h, c)[0].copy()
    out = []
    for k in range(80):
        y, _, h, c = be.run_full(x[:, k : k + 1], h, c)
        out.append(float(y[0, 0]))
        h, c = h.copy(), c.copy()
    assert np.abs(np.array(out) - whole[0]).max() < TOL


def test_outputs_are_reused_per_shape_but_states_never_alias_the_inputs():
    be = FusedBackend(_model(2, False))
    x = _inputs(2, 1, 2)
    h, c = be.zero_state(2)
    y1, _, h1, _ = be.run_full(x, h, c)
    y2, _, h2, _ = be.run_full(x, h1, c)  # h1 is the output buffer: read before it is overwritten
    assert y1 is y2 and h1 is h2  # documented: outputs valid until the next call
    assert not np.shares_memory(h2, h)


def test_auto_dispatches_by_shape_and_matches_both(tiny_weights):
    auto = make_backend("auto", tiny_weights)
    assert isinstance(auto, AutoBackend) and auto.name == "auto"
    forced = AutoBackend(auto.fused, auto.big, crossover={1: 8, 16: 2})
    assert forced.pick(1, 1) is forced.fused and forced.pick(8, 1) is forced.fused
    assert forced.pick(9, 1) is forced.big and forced.pick(2, 16) is forced.fused
    assert forced.pick(3, 16) is forced.big and forced.pick(1, 17) is forced.big
    x = _inputs(8, 16, 2)
    h, c = forced.zero_state(8)
    a = forced.fused.run_full(x, h, c)[0].copy()
    b = forced.big.run_full(x, h, c)[0].copy()
    assert np.abs(a - b).max() < TOL
    cross = measure_crossover(auto.fused, auto.big, buckets=(1,), batches=(1, 2))
    assert set(cross) == {1} and cross[1] in (0, 1, 2)  # a measurement, never asserted on speed


def test_engine_with_auto_mixes_backends_and_equals_one_pass(tiny_weights):
    """Runs of 1 sample go through the fused kernel, longer ones through ORT: still one pass."""
    from models.bundle import load_model

    model, _ = load_model("causal", tiny_weights)
    auto = make_backend("auto", tiny_weights)
    auto = AutoBackend(auto.fused, auto.big, crossover={1: 64, 4: 64})  # fused up to T = 4
    eng = StreamEngine(auto)
    x = StreamSimulator(RadarConfig(), 2).read(200).samples
    got = np.full(200, np.nan)
    cuts = [0, 1, 2, 7, 8, 40, 41, 42, 46, 120, 121, 200]
    for a, b in zip(cuts[:-1], cuts[1:]):
        runs, _ = eng.process([("s", P.Block(P.Kind.SAMPLES, 1, a, a * 50_000_000, 50_000_000, x[a:b]), 0)])
        for r in runs:
            got[r.seq : r.seq + len(r.y)] = r.y
    with torch.no_grad():
        ref = model(torch.from_numpy(x[None]))[0][0].numpy()
    assert np.abs(got - ref).max() < TOL


def test_from_weights_reads_the_saved_model(tmp_path):
    model = _model(3, True)
    save_weights(model, tmp_path / "causal", {"kind": "causal", "config": model.config})
    be = make_backend("fused", tmp_path)
    x = _inputs(2, 3, 3)
    h, c = be.zero_state(2)
    ry, rs, _, _ = _reference(model, x, h, c)
    y, s, _, _ = be.run_full(x, h, c)
    assert np.abs(y - ry).max() < TOL and np.abs(s - rs).max() < TOL
