"""Re-scoring in its own process (RescoreConfig.process, what ``serve --rescore`` runs): the same
``rescore/<sensor>`` content as the in-process re-scorer; a killed re-scoring process is
restarted and reported (``rescore_restarted`` on ``event/_service``) while predictions keep
flowing; a slow one never delays them. Real sockets (TCP feed, ipc/tcp to the child)."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
import torch

from models.bundle import load_model
from streamer.live.rescore import RescoreConfig, RescoreProcess, regions_above
from streamer.sim.publisher import FeedConfig, SimulatedFeed
from streamer.wire import protocol as P
from tests.streamkit import collect, events, preds_by_sensor, running_service


def _bidir(weights, x):
    model, _ = load_model("bidir", weights)
    with torch.no_grad():
        return model(torch.from_numpy(x[None]))[0].numpy()


def _wait_ready(service, timeout=60.0):
    """The child is up once it has said so (spawn + imports take seconds on a busy machine)."""
    deadline = time.monotonic() + timeout
    while service.rescorer.counters["processes_ready"] < service.rescorer.counters["processes_started"]:
        if time.monotonic() > deadline:
            raise TimeoutError("re-scoring process did not start")
        time.sleep(0.05)


def _send(pub, feed, sent, n):
    for _ in range(n):
        for frames in feed.next_messages():
            m = P.decode_message(frames)
            sent[m.sensor].append(np.array(m.block.data))
            pub.send_multipart(frames)


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_rescores_from_the_process_equal_the_model(tiny_weights, backend):
    feed = SimulatedFeed(FeedConfig(sensors=2, samples_per_message=5, seed=9, realtime=False))
    cfg = RescoreConfig(window=64, hop=32, threshold_m=20.0, backend=backend, process=True)
    sent = {s: [] for s in feed.sensor_ids}
    with running_service(tiny_weights, backend, rescore=cfg) as (service, pub, out):
        assert isinstance(service.rescorer, RescoreProcess)
        _wait_ready(service)
        _send(pub, feed, sent, 40)  # 200 samples per sensor -> windows at 0, 32, ..., 128
        msgs = collect(out, lambda ms: sum(m.kind is P.Kind.RESCORE for m in ms) >= 10, timeout=60)
        pid = service.rescorer.pid
    assert pid != os.getpid()
    live = preds_by_sensor(msgs)
    for s in feed.sensor_ids:
        x = np.concatenate(sent[s])
        res = sorted((m for m in msgs if m.kind is P.Kind.RESCORE and m.sensor == s), key=lambda m: m.block.seq)
        assert [m.block.seq for m in res] == [0, 32, 64, 96, 128]
        for m in res:
            a, w = m.block.seq, m.meta["window"]
            assert (m.meta["seq_start"], m.meta["seq_end"], w, m.meta["hop"]) == (a, a + 63, 64, 32)
            yb, yc, dis = m.block.data[:, 0], m.block.data[:, 1], m.block.data[:, 2]
            assert np.array_equal(yc, np.array([live[s][k][0] for k in range(a, a + w)]))
            assert np.abs(yb - _bidir(tiny_weights, x[a : a + w])).max() < 1e-5
            assert np.allclose(dis, yb - yc, atol=1e-7)
            assert m.meta["regions"] == regions_above(dis, 20.0 / 1000, a)


def test_a_killed_rescoring_process_is_restarted_and_reported(tiny_weights):
    feed = SimulatedFeed(FeedConfig(sensors=1, samples_per_message=8, seed=3, realtime=False))
    cfg = RescoreConfig(window=32, hop=16, process=True, restart_backoff_s=0.0)
    sent = {s: [] for s in feed.sensor_ids}
    s = feed.sensor_ids[0]
    with running_service(tiny_weights, "onnx", rescore=cfg) as (service, pub, out):
        _wait_ready(service)
        _send(pub, feed, sent, 10)  # 80 samples: windows at 0, 16, 32, 48
        first = collect(out, lambda ms: sum(m.kind is P.Kind.RESCORE for m in ms) >= 4, timeout=60)
        old = service.rescorer.pid
        os.kill(old, signal.SIGKILL)
        msgs = collect(out, lambda ms: len(events(ms, "rescore_restarted")) >= 1, timeout=60)
        _wait_ready(service)
        new = service.rescorer.pid
        _send(pub, feed, sent, 10)  # the causal path never stopped; re-scores resume in the new process
        msgs += collect(out, lambda ms: len(preds_by_sensor(ms).get(s, {})) >= 80
                        and any(m.kind is P.Kind.RESCORE and m.block.seq >= 96 for m in ms), timeout=60)
        snap = service.snapshot()
    ev = events(msgs, "rescore_restarted")[0]
    assert ev.sensor == "_service" and ev.meta["old_pid"] == old and ev.meta["pid"] == new != old
    assert ev.meta["restarts"] == 1 and ev.meta["exitcode"] == -signal.SIGKILL
    got = {**preds_by_sensor(first).get(s, {}), **preds_by_sensor(msgs).get(s, {})}
    assert sorted(got) == list(range(160))  # every prediction, before, during and after the crash
    assert snap["rescore"]["restarts"] == 1 and snap["rescore"]["processes_started"] == 2


def test_a_slow_rescoring_process_never_delays_predictions(tiny_weights):
    cfg = RescoreConfig(window=20, hop=10, slowdown_s=5.0, queue_size=4, max_batch=1, process=True)
    x = np.abs(np.random.default_rng(0).normal(size=(200, 2))).astype(np.float32)
    with running_service(tiny_weights, "onnx", rescore=cfg) as (service, pub, out):
        _wait_ready(service)
        for k in range(0, 200, 5):
            pub.send_multipart(P.encode_message(P.Message(P.Kind.SAMPLES, "a", P.make_block(
                P.Kind.SAMPLES, x[k : k + 5], epoch=1, seq=k, t0_ns=k, period_ns=1))))
        msgs = collect(out, lambda ms: len(preds_by_sensor(ms).get("a", {})) >= 200)
        snap = service.snapshot()
    assert len(preds_by_sensor(msgs)["a"]) == 200
    assert [m.kind for m in msgs].count(P.Kind.RESCORE) <= 1
    assert snap["rescore"]["windows_dropped"] > 0 and snap["rescore"]["queue"] <= 4
