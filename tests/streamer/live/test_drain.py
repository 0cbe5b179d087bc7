"""The array drain (ServiceConfig.fast_drain) against the per-message drain: the same input
gives the same predictions, events and counters, whatever mix of in-order and anomalous messages
(gaps, duplicates, overlaps, restarts, epochs, explicit resets, malformed frames, truth frames,
period changes, jittered times, new sensors). Both services publish on real inproc sockets."""

from __future__ import annotations

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.live.backends import make_backend
from streamer.live.service import ServiceConfig, StreamService
from streamer.wire import protocol as P
from tests.streamkit import collect, preds_by_sensor, running_service

PERIOD = 50_000_000
KINDS = ("next", "next", "next", "next", "next", "gap", "big_gap", "duplicate", "overlap", "backwards", "epoch",
         "reset", "malformed", "nan", "truth", "period", "jitter", "new")


@pytest.fixture(scope="module")
def backend(tiny_weights):
    return make_backend("onnx", tiny_weights)


class Feeds:
    """Per-sensor stream position; ``message(kind)`` makes the next message of that kind."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.pos: dict[str, list[int]] = {}  # sensor -> [epoch, next seq, next t0, period]
        self.new = 0

    def _samples(self, sensor, epoch, seq, t0, period, n, truth=False):
        x = np.abs(self.rng.normal(0, 3, (n, 2))).astype(np.float32)
        x[self.rng.random(n) < 0.3, 1] = -1.0
        blk = P.make_block(P.Kind.SAMPLES, x, epoch=epoch, seq=seq, t0_ns=t0, period_ns=period)
        tr = None
        if truth:
            tr = P.make_block(P.Kind.TRUTH, self.rng.random((n, 4)), epoch=epoch, seq=seq, t0_ns=t0, period_ns=period)
        return P.encode_message(P.Message(P.Kind.SAMPLES, sensor, blk, truth=tr))

    def message(self, sensor: str, kind: str, n: int) -> list[bytes]:
        if kind == "new" or sensor not in self.pos:
            self.new += 1
            sensor = sensor if sensor not in self.pos else f"{sensor}n{self.new}"
            self.pos[sensor] = [1, int(self.rng.integers(0, 1000)), 1_000_000_000, PERIOD]
        p = self.pos[sensor]
        epoch, seq, t0, period = p
        if kind == "reset":
            return P.encode_message(P.make_event(sensor, "reset", epoch=epoch, seq=seq, t_ns=t0))
        if kind == "malformed":
            return [P.topic(P.Kind.SAMPLES, sensor), b"RSTM-not-a-block"]
        if kind == "nan":
            blk = P.make_block(P.Kind.SAMPLES, np.full((n, 2), np.nan), epoch=epoch, seq=seq, t0_ns=t0, period_ns=period)
            return P.encode_message(P.Message(P.Kind.SAMPLES, sensor, blk))
        if kind == "gap":
            seq, t0 = seq + 3, t0 + 3 * period
        elif kind == "big_gap":
            seq, t0 = seq + 500, t0 + 500 * period
        elif kind == "duplicate":
            seq, t0 = max(seq - n, 0), t0 - min(n, seq) * period
        elif kind == "overlap":
            seq, t0 = max(seq - 1, 0), t0 - min(1, seq) * period
        elif kind == "backwards":
            seq, t0 = max(seq - 10_000, 0), t0 + period
        elif kind == "epoch":
            epoch, seq = epoch + 1, 0
        elif kind == "period":
            period = PERIOD // 2 if period == PERIOD else PERIOD
        elif kind == "jitter":
            t0 += 1_000
        frames = self._samples(sensor, epoch, seq, t0, period, n, truth=kind == "truth")
        end = seq + n
        if end >= p[1] or kind in ("epoch", "backwards"):
            self.pos[sensor] = [epoch, end, t0 + n * period, period]
        return frames


def _service(backend, fast: bool, ctx, **cfg):
    svc = StreamService(ServiceConfig(feeds=("tcp://127.0.0.1:1",), fast_drain=fast, **cfg), backend, context=ctx)
    svc._epoch = 1  # the service's own epoch (events of unknown sensors) is its start time: pin it
    return svc


def _published(sock) -> list:
    out = []
    while sock.poll(0):
        frames = sock.recv_multipart()
        msg = P.decode_message(frames)
        if isinstance(msg, P.Message) and msg.kind is P.Kind.PRED:  # the reusable buffers: protocol bytes
            assert frames[1] == P.encode_block(msg.block)
        out.append(msg)
    return out


def _comparable(msgs: list) -> list:
    """Published messages without what depends on the clock (latency channel, event times)."""
    rows = []
    for m in msgs:
        assert isinstance(m, P.Message)
        b = m.block
        if m.kind is P.Kind.PRED:
            data = np.delete(np.asarray(b.data), 2, axis=1)  # channel 2: receive -> publish latency
            rows.append(("pred", m.sensor, b.epoch, b.seq, b.t0_ns, b.period_ns, data.tobytes()))
        else:
            rows.append((m.kind.word, m.sensor, b.epoch, b.seq, tuple(sorted(m.meta.items())) if m.meta else None))
    return rows


def _run_both(backend, drains, **cfg):
    ctx = zmq.Context()
    socks, services = [], []
    try:
        for fast in (True, False):
            pub, sub = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
            ep = f"inproc://drain-{fast}-{id(drains)}"
            sub.bind(ep)
            pub.connect(ep)
            pub.setsockopt(zmq.SNDHWM, 0)
            sub.setsockopt(zmq.RCVHWM, 0)
            socks += [pub, sub]
            svc = _service(backend, fast, ctx, **cfg)
            out = []
            for k, drain in enumerate(drains):
                svc.handle(drain, [1_000 * k + j for j in range(len(drain))], pub)
                out += _published(sub)
            services.append((svc, out))
    finally:
        for s in socks:
            s.close(0)
        ctx.term()
    return services


def _assert_same(a, b):
    (fa, out_a), (fb, out_b) = a, b
    assert _comparable(out_a) == _comparable(out_b)
    assert dict(fa.engine.counters) == dict(fb.engine.counters)
    assert {s: dict(v.counters) for s, v in fa.engine.sensors.items()} == {s: dict(v.counters) for s, v in fb.engine.sensors.items()}
    assert {s: (v.epoch, v.next_seq, v.period_ns, v.samples) for s, v in fa.engine.sensors.items()} == \
        {s: (v.epoch, v.next_seq, v.period_ns, v.samples) for s, v in fb.engine.sensors.items()}
    assert dict(fa.stats.decode_errors) == dict(fb.stats.decode_errors)
    assert (fa.stats.messages, fa.stats.samples, fa.stats.preds) == (fb.stats.messages, fb.stats.samples, fb.stats.preds)
    for s, v in fa.engine.sensors.items():
        np.testing.assert_array_equal(fa.engine.pool.h[:, v.slot], fb.engine.pool.h[:, fb.engine.sensors[s].slot])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), seed=st.integers(0, 2**31 - 1), metrics=st.booleans())
def test_fast_and_slow_drains_publish_the_same(backend, data, seed, metrics):
    rng = np.random.default_rng(seed)
    feeds = Feeds(rng)
    sensors = [f"s{k}" for k in range(data.draw(st.integers(1, 5), label="sensors"))]
    drains = []
    for _ in range(data.draw(st.integers(1, 8), label="drains")):
        drain = []
        for _ in range(data.draw(st.integers(1, 12), label="messages")):
            kind = data.draw(st.sampled_from(KINDS))
            n = data.draw(st.sampled_from([1, 1, 2, 5]))
            drain.append(feeds.message(data.draw(st.sampled_from(sensors)), kind, n))
        drains.append(drain)
    fast, slow = _run_both(backend, drains, metrics=metrics, hybrid=data.draw(st.booleans(), label="hybrid"))
    _assert_same(fast, slow)
    assert slow[0].engine.fast_samples == 0


def test_in_order_drains_take_the_fast_path_and_still_agree(backend):
    rng = np.random.default_rng(1)
    feeds = Feeds(rng)
    sensors = [f"s{k}" for k in range(20)]
    drains = [[feeds.message(s, "next", 1) for s in sensors]]  # first sight: new sensors, slow
    for _ in range(10):
        drain = [feeds.message(s, "next", int(rng.integers(1, 4))) for s in sensors for _ in range(int(rng.integers(1, 3)))]
        drains.append(drain)
    fast, slow = _run_both(backend, drains, metrics=False)
    _assert_same(fast, slow)
    total = fast[0].engine.counters["samples"]
    assert fast[0].engine.fast_samples == total - 20  # all but the first samples of each sensor


def test_the_array_drain_over_real_sockets(tiny_weights):
    """A running service (fast drain on, the default) over TCP: every row equals one pass."""
    import torch

    from models.bundle import load_model

    model, _ = load_model("causal", tiny_weights)
    rng = np.random.default_rng(5)
    x = {s: np.abs(rng.normal(0, 3, (60, 2))).astype(np.float32) for s in ("a", "b", "c")}
    def send(k):
        for s in x:
            pub.send_multipart(P.encode_message(P.Message(P.Kind.SAMPLES, s, P.make_block(
                P.Kind.SAMPLES, x[s][k : k + 1], epoch=1, seq=k, t0_ns=k * PERIOD, period_ns=PERIOD))))

    with running_service(tiny_weights, "onnx", metrics=False, hybrid=False) as (service, pub, out):
        send(0)  # new sensors take the per-message path; once known, their next messages the array path
        msgs = collect(out, lambda ms: all(len(preds_by_sensor(ms).get(s, {})) >= 1 for s in x))
        for k in range(1, 60):
            send(k)
        msgs += collect(out, lambda ms: all(len(preds_by_sensor(msgs + ms).get(s, {})) >= 60 for s in x))
        fast = service.engine.fast_samples
    got = preds_by_sensor(msgs)
    for s, xs in x.items():
        with torch.no_grad():
            ref = model(torch.from_numpy(xs[None]))[0][0].numpy()
        assert np.abs(np.array([got[s][k][0] for k in range(60)]) - ref).max() < 1e-5
    assert fast > 0


@pytest.mark.parametrize("count", [1, 3])
def test_uniform_drains_equal_the_per_message_drain(backend, count):
    """Every sensor once per drain, all continuing, one length: the drain runs without
    per-message objects (StreamEngine._uniform), and publishes what the per-message drain does."""
    rng = np.random.default_rng(count)
    feeds = Feeds(rng)
    sensors = [f"u{k}" for k in range(30)]
    drains = [[feeds.message(s, "period" if (d, s) == (3, "u3") else "next", count) for s in sensors]
              for d in range(7)]  # drain 3: u3 changes its period (between drains: still in order)
    fast, slow = _run_both(backend, drains, metrics=False)
    _assert_same(fast, slow)
    assert fast[0].engine.counters["samples"] == 7 * 30 * count
    assert fast[0].engine.fast_samples == 6 * 30 * count  # all but drain 0 (new sensors)
