"""One conformance suite over every stepping backend (river-style): stepping == one sequence call
== nn.LSTM over the whole stream, for any split of the stream into messages and any interleaving
of sensors, through the engine that the service uses."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.bundle import load_model
from streamer.wire import protocol as P
from streamer.live.backends import BACKENDS, make_backend
from streamer.live.engine import StreamEngine, StreamPolicy
from streamer.sim.simulator import RadarConfig, StreamSimulator

TOL = 1e-5


@pytest.fixture(scope="module", params=BACKENDS)  # onnx, torch, fused, auto (fused_backend.py)
def backend(request, tiny_weights):
    return make_backend(request.param, tiny_weights)


@pytest.fixture(scope="module")
def reference(tiny_weights):
    model, _ = load_model("causal", tiny_weights)
    return model


def _stream(n: int, seed: int) -> np.ndarray:
    return StreamSimulator(RadarConfig(), seed).read(n).samples


def _whole(reference, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return reference(torch.from_numpy(x[None]))[0][0].numpy()


def test_interface(backend):
    assert backend.name in BACKENDS
    h, c = backend.zero_state(3)
    assert h.shape == (backend.num_layers, 3, backend.hidden_size) and not h.any()
    y, hn, cn = backend.run(np.ones((3, 5, 2), np.float32), h, c)
    assert y.shape == (3, 5) and hn.shape == h.shape and cn.shape == c.shape
    assert np.all((y >= 0) & (y <= 1))


def test_step_by_step_equals_one_call_equals_nn_lstm(backend, reference):
    x = _stream(600, seed=1)
    ref = _whole(reference, x)
    h, c = backend.zero_state(1)
    y_all, _, _ = backend.run(x[None], h, c)
    assert np.abs(y_all[0] - ref).max() < TOL
    steps = []
    for t in range(x.shape[0]):
        y, h, c = backend.run(x[None, t : t + 1], h, c)
        steps.append(float(y[0, 0]))
        h, c = h.copy(), c.copy()
    assert np.abs(np.array(steps) - ref).max() < TOL


def test_batched_step_equals_separate_streams(backend, reference):
    xs = np.stack([_stream(50, seed=s) for s in range(4)])
    h, c = backend.zero_state(4)
    out = []
    for t in range(50):
        y, h, c = backend.run(xs[:, t : t + 1], h, c)
        out.append(y.copy())
        h, c = h.copy(), c.copy()
    got = np.concatenate(out, 1)
    for s in range(4):
        assert np.abs(got[s] - _whole(reference, xs[s])).max() < TOL


def _messages(x: np.ndarray, cuts: list[int], sensor: str, epoch: int = 1):
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < x.shape[0])), x.shape[0]]
    return [
        (sensor, P.Block(P.Kind.SAMPLES, epoch, a, a * 50_000_000, 50_000_000, x[a:b]))
        for a, b in zip(bounds[:-1], bounds[1:])
    ]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.data(),
    n_sensors=st.integers(1, 4),
    drain=st.integers(1, 6),
)
def test_any_split_and_interleaving_through_the_engine(backend, reference, data, n_sensors, drain):
    length = 120
    streams = {f"s{k}": _stream(length, seed=10 + k) for k in range(n_sensors)}
    queues = {}
    for s, x in streams.items():
        cuts = data.draw(st.lists(st.integers(1, length - 1), max_size=12), label=f"cuts-{s}")
        queues[s] = _messages(x, cuts, s)
    # interleave the sensors' messages in a random order that keeps each sensor's own order
    order = data.draw(st.permutations([s for s, q in queues.items() for _ in q]), label="order")
    arrival = [queues[s].pop(0) for s in order]
    engine = StreamEngine(backend, StreamPolicy())
    got = {s: np.full(length, np.nan) for s in streams}
    for i in range(0, len(arrival), drain):  # the service drains several messages at a time
        runs, events = engine.process([(s, b, 0) for s, b in arrival[i : i + drain]])
        assert {e.type for e in events} <= {"new_sensor"}
        for r in runs:
            got[r.sensor][r.seq : r.seq + r.y.shape[0]] = r.y
    for s, x in streams.items():
        assert np.abs(got[s] - _whole(reference, x)).max() < TOL


def test_shipped_weights_conform(reference):
    """The shipped ONNX graph and the shipped torch weights are the same model."""
    from streamer.live.engine import model_input

    onnx_b, torch_b = make_backend("onnx"), make_backend("torch")
    x = model_input(_stream(300, seed=5)[None], [50_000_000], onnx_b.input_size)  # + the period channel
    h, c = onnx_b.zero_state(1)
    a = onnx_b.run(x, h, c)[0].copy()
    b = torch_b.run(x, h, c)[0]
    assert np.abs(a - b).max() < TOL
