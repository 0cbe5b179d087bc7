"""Issue 16.1: a burst that keeps the input queue full must not cost the feed connection.

With ZMTP heartbeats on the feed, a full receive queue stops libzmq reading the connection, a
healthy publisher's heartbeat times out, the feed is dropped (its queued messages with it) and
libzmq ≤ 4.3.5 can abort the process on that disconnect (``Assertion failed: _input_stopped``,
libzmq #3937; 2 of 3 runs of 100,000 new sensors in 5 s). The feed now uses TCP keepalive by
default; ``--feed-heartbeat`` brings the heartbeats back for who needs hung-peer detection."""

from __future__ import annotations

import time

import numpy as np
import pytest
import zmq

from streamer.live.health import HealthConfig
from streamer.wire import protocol as P
from tests.faults import free_port, probe_until_live, serve_process

N = 20_000


def test_the_feed_socket_uses_keepalive_not_heartbeats_by_default(tiny_weights):
    from streamer.live.backends import make_backend
    from streamer.live.service import ServiceConfig, StreamService

    ctx = zmq.Context()
    try:
        for health, ivl, keepalive in ((HealthConfig(), 0, 1), (HealthConfig(feed_heartbeat=True), 1000, -1)):
            service = StreamService(ServiceConfig(feeds=("tcp://127.0.0.1:1",), health=health),
                                    make_backend("onnx", tiny_weights), context=ctx, weights_dir=tiny_weights)
            sub, pub = ctx.socket(zmq.SUB), ctx.socket(zmq.PUB)
            service._tune(sub)
            service._tune(pub)
            assert (sub.getsockopt(zmq.HEARTBEAT_IVL), sub.getsockopt(zmq.TCP_KEEPALIVE)) == (ivl, keepalive)
            assert pub.getsockopt(zmq.HEARTBEAT_IVL) == 1000  # subscribers are still watched
            sub.close(0)
            pub.close(0)
    finally:
        ctx.term()


@pytest.mark.timeout(240)
def test_a_burst_of_new_sensors_against_a_full_queue_keeps_the_feed(tmp_path, tiny_weights, figures):
    """20,000 one-sample messages from distinct sensors in ~1 s into ``serve --rcvhwm 1000``:
    the queue sits full for seconds; every message is predicted, the feed never drops, serve lives."""
    ctx = zmq.Context()
    feed = ctx.socket(zmq.PUB)
    feed.setsockopt(zmq.SNDHWM, 0)
    ep = f"tcp://127.0.0.1:{free_port()}"
    feed.bind(ep)
    x = np.ones((1, 2), np.float32)
    msgs = [P.encode_message(P.Message(P.Kind.SAMPLES, f"n{k:05d}", P.make_block(
        P.Kind.SAMPLES, x, epoch=1, seq=0, t0_ns=0, period_ns=50_000_000))) for k in range(N)]
    try:
        with serve_process(tiny_weights, (ep,), "--rcvhwm", "1000", "--stats-interval", "0.5",
                           log_path=tmp_path / "serve.log") as (proc, col):
            probe_until_live(feed, col)
            t0 = time.monotonic()
            for m in msgs:
                feed.send_multipart(m)
            def finished() -> bool:
                return len(col.msgs) > 0 and sum(1 for s in col._preds if s.startswith("n")) >= N or proc.poll() is not None

            done = col.wait(finished, 180)
            served = sum(1 for k in range(N) if col.preds(f"n{k:05d}"))
            alive = proc.poll() is None
            disconnects = len(col.events("peer_disconnected"))
            elapsed = time.monotonic() - t0
    finally:
        feed.close(0)
        ctx.term()
    figures["16.1 burst of new sensors"] = {"messages": N, "served": served, "feed_disconnects": disconnects,
                                            "serve_alive": alive, "seconds": round(elapsed, 1)}
    assert done and alive, (tmp_path / "serve.log").read_text()[-2000:]
    assert disconnects == 0 and served == N, (disconnects, served)
