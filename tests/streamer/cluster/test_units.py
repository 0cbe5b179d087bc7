"""Partitions, record framing, the checkpoint format, ``StreamService.get_state``/``set_state``
(a service resumed from a checkpoint publishes exactly what one uninterrupted service does), the
batch invariance the cluster relies on, and the CLI's errors. No Ray and no log server needed."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
import time
import zlib
from collections import Counter, deque

import numpy as np
import pytest

from streamer.cluster import checkpoint as C
from streamer.cluster import framing
from streamer.cluster.partitions import PARTITIONS, partition_of, shard_of, shard_partitions
from streamer.sim.publisher import FeedConfig, SimulatedFeed
from streamer.wire import protocol as P
from tests.faults import ROOT
from tests.streamer.cluster.kit import _Sink


def test_partitions_are_crc32_of_the_utf8_id_and_stable():
    assert PARTITIONS == 256
    assert partition_of("radar-0") == zlib.crc32(b"radar-0") % 256 == 21
    assert partition_of("radar-1") == 131 and partition_of("a") == 67  # pinned: a log outlives processes
    # the same in a fresh interpreter (Python's hash() would not be: it is salted per process)
    out = subprocess.run([sys.executable, "-c", "from streamer.cluster.partitions import partition_of;"
                          "print(partition_of('radar-0'), partition_of('radar-1'))"],
                         cwd=ROOT, capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "123"}).stdout
    assert out.split() == ["21", "131"]


def test_shards_own_disjoint_partitions_covering_all():
    for n in (1, 2, 3, 7, 256):
        owned = [shard_partitions(k, n) for k in range(n)]
        flat = sorted(p for o in owned for p in o)
        assert flat == list(range(PARTITIONS))
        assert all(shard_of(s, n) == next(k for k, o in enumerate(owned) if partition_of(s) in o)
                   for s in ("radar-0", "x", "sensor-12"))
    with pytest.raises(ValueError):
        shard_partitions(0, 0)
    with pytest.raises(ValueError):
        shard_partitions(0, 257)


def test_framing_round_trips_the_frames_unchanged():
    frames = [b"samples/a", bytes(range(256)) * 3, b""]
    rec = framing.pack(frames)
    assert framing.unpack(rec) == frames
    assert framing.message_id(frames) == framing.message_id([bytearray(f) for f in frames])
    assert framing.message_id(frames) != framing.message_id(frames[:2])
    for bad in (b"", rec[:-1], rec + b"x"):
        with pytest.raises(ValueError):
            framing.unpack(bad)


def test_checkpoint_format_round_trips_exactly_and_runs_no_code():
    rng = np.random.default_rng(7)
    rng.random(3)
    state = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "n": 2 ** 70, "f": math.nan, "i": -math.inf,
             "t": (1, 0.1, None), "q": deque([(1.0, 2.0)], maxlen=4), "c": Counter({"x": 2}), "rng": rng,
             "s": np.float32(0.1), "k": {1: "int key", "$x": 1}, "b": b"\x00\x01", "l": [True, "s"]}
    got = C.decode(C.encode(C.Checkpoint(42, state, {"shard": 0})))
    assert got.position == 42 and got.meta == {"shard": 0}
    s = got.state
    assert np.array_equal(s["a"], state["a"]) and s["a"].dtype == np.float32
    assert s["n"] == 2 ** 70 and math.isnan(s["f"]) and s["i"] == -math.inf and s["t"] == (1, 0.1, None)
    assert s["q"] == state["q"] and s["q"].maxlen == 4 and s["c"] == Counter({"x": 2})
    assert s["rng"].random() == rng.random()  # the generator resumes where it was
    assert s["s"] == np.float32(0.1) and s["k"] == {1: "int key", "$x": 1} and s["b"] == b"\x00\x01"
    with pytest.raises(C.CheckpointError):
        C.decode(b"\x80\x04pickle")
    with pytest.raises(TypeError):
        C.encode(C.Checkpoint(0, {"o": object()}, {}))


def _messages(sensors=4, seconds=30, seed=3):
    feed = SimulatedFeed(FeedConfig(sensors=sensors, duration_s=seconds, realtime=False, seed=seed), epoch=1)
    msgs = []
    for _ in range(feed.total_messages()):
        msgs += feed.next_messages()
    reset = P.encode_message(P.make_event("radar-1", "reset", epoch=1, seq=0, t_ns=0))
    msgs.insert(len(msgs) // 3, reset)  # an explicit reset, ordered with the samples
    return msgs


def _preds(sink):
    out = {}
    for frames in sink.frames:
        if frames[0].startswith(b"pred/"):
            m = P.decode_message(frames)
            d = m.block.data.copy()
            d[:, 2] = 0  # latency
            for k in range(m.block.count):
                out[(m.sensor, m.block.seq + k)] = d[k].view(np.uint32)
    return out


@pytest.mark.timeout(240)
def test_a_service_resumed_from_a_checkpoint_publishes_what_one_service_does():
    """serve's drain over a stream, in drains of random sizes, stopped at a point, its state
    through the checkpoint bytes into a fresh service that goes on: the same bits as one
    service, one message per drain (the fused backend: batch and split invariant)."""
    from streamer.cluster.shard import ShardConfig, make_service

    cfg = ShardConfig(shard=0, shards=1, log_url="", proxy="", alert_dmin_m=150.0)
    msgs = _messages()
    one, sink1 = make_service(cfg), _Sink()
    for m in msgs:
        one.handle([m], [time.perf_counter_ns()], sink1)
    rng = np.random.default_rng(0)
    cut = len(msgs) // 2 + 5
    first, sink2 = make_service(cfg), _Sink()
    i = 0
    while i < cut:
        k = min(int(rng.integers(1, 40)), cut - i)
        first.handle(msgs[i:i + k], [time.perf_counter_ns()] * k, sink2)
        i += k
    data = C.encode(C.Checkpoint(cut, first.get_state(), {}))
    second = make_service(cfg)
    second.set_state(C.decode(data).state)
    while i < len(msgs):
        k = int(rng.integers(1, 40))
        second.handle(msgs[i:i + k], [time.perf_counter_ns()] * k, sink2)
        i += k
    a, b = _preds(sink1), _preds(sink2)
    assert a.keys() == b.keys() and len(a) > 2000
    assert all(np.array_equal(a[k], b[k]) for k in a)
    ev = lambda s: [P.decode_message(f).meta for f in s.frames if f[0].startswith(b"event/")]  # noqa: E731
    assert ev(sink1) == ev(sink2)  # new_sensor, reset, near_miss … once each, in the same order
    assert one.engine.counters == second.engine.counters


@pytest.mark.parametrize("backend", ["fused", "onnx", "torch"])
def test_which_backends_are_batch_and_split_invariant(backend):
    """A sensor's output must not depend on which sensors share its call or how its samples were
    split into calls: replayed rows are then identical. fused: both hold (the cluster's default);
    onnx: batch yes, split no (a T-sample call differs from T steps in the last bits); torch: a
    batch of 1 differs from larger batches. docs/cluster.md."""
    from streamer.live.backends import make_backend

    be = make_backend(backend, threads=1)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(17, 12, be.input_size)).astype(np.float32)
    x[..., 1] = np.abs(x[..., 1]) * 500
    if be.input_size == 3:
        x[..., 2] = 0.05
    h = (rng.normal(size=(be.num_layers, 17, be.hidden_size)) * 0.3).astype(np.float32)
    c = (rng.normal(size=h.shape) * 0.3).astype(np.float32)
    full = be.run(x, h, c)[0].copy()
    batch_ok = all(np.array_equal(be.run(x[:b], h[:, :b], c[:, :b])[0][0], full[0]) for b in (1, 2, 5, 16))
    hh, cc, steps = h[:, :1].copy(), c[:, :1].copy(), []
    for t in range(x.shape[1]):
        y, hh, cc = (a.copy() for a in be.run(x[:1, t:t + 1], hh, cc))
        steps.append(y[0, 0])
    split_ok = np.array_equal(np.array(steps, np.float32), full[0])
    assert (batch_ok, split_ok) == {"fused": (True, True), "onnx": (True, False), "torch": (False, False)}[backend]


def test_cli_errors_are_one_line_and_exit_2():
    def run(*args):
        p = subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=ROOT, capture_output=True, text=True,
                           timeout=120)
        return p.returncode, p.stderr.strip().splitlines()

    rc, err = run("cluster", "--shards", "0")
    assert rc == 2 and err == ["error: --shards must be >= 1, got 0"]
    rc, err = run("cluster", "--log", "http://x")
    assert rc == 2 and err[-1].startswith("error: --log must look like nats://")
    rc, err = run("bridge", "--log", "nats://127.0.0.1:1")
    if importlib.util.find_spec("nats") is None or importlib.util.find_spec("ray") is None:
        assert rc == 2 and "pip install -e '.[cluster]'" in err[-1]
    else:
        assert rc == 2 and err[-1].startswith("error: cannot reach the log at nats://127.0.0.1:1")
