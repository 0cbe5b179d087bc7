"""Helpers for tests over real sockets: a running service, a feed socket, a pred collector."""

from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np
import zmq

from streamer.wire import protocol as P
from streamer.live.backends import make_backend
from streamer.live.service import ServiceConfig, StreamService


@contextmanager
def running_service(weights, backend="onnx", **config):
    """A service on random 127.0.0.1 ports, fed by a PUB socket the test owns."""
    ctx = zmq.Context()
    feed = ctx.socket(zmq.PUB)
    feed.setsockopt(zmq.SNDHWM, 0)
    port = feed.bind_to_random_port("tcp://127.0.0.1")
    cfg = ServiceConfig(feeds=(f"tcp://127.0.0.1:{port}",), pub="tcp://127.0.0.1:*", **config)
    service = StreamService(cfg, make_backend(backend, weights), context=ctx, weights_dir=weights)
    thread = service.start_thread()
    out = ctx.socket(zmq.SUB)
    out.setsockopt(zmq.RCVHWM, 0)
    out.setsockopt(zmq.SUBSCRIBE, b"")
    out.connect(service.pub_endpoint)
    try:
        _handshake(feed, out)
        yield service, feed, out
    finally:
        service.stop()
        thread.join(5)
        feed.close(0)
        out.close(0)
        ctx.term()


def _handshake(feed, out, timeout=10.0):
    """Send a probe sensor until its prediction comes back: both connections are then live (no
    slow-joiner loss in the test itself). The probe sensor's messages are then drained."""
    deadline = time.monotonic() + timeout
    seq = 0
    while time.monotonic() < deadline:
        blk = P.make_block(P.Kind.SAMPLES, np.ones((1, 2), np.float32), epoch=1, seq=seq, t0_ns=0, period_ns=1)
        feed.send_multipart(P.encode_message(P.Message(P.Kind.SAMPLES, "probe", blk)))
        seq += 1
        if out.poll(100) and _is_probe(out.recv_multipart()):
            # only the probe's own answer proves the feed is connected: a stats or heartbeat
            # message can come first, and the probe blocks sent before the feed's connection
            # was live were dropped (the slow joiner)
            while out.poll(200):
                out.recv_multipart()
            return
    raise TimeoutError("service did not answer the probe")


def _is_probe(frames) -> bool:
    m = P.decode_message(frames)
    return not isinstance(m, P.DecodeError) and m.sensor == "probe"


def collect(out, until, timeout=20.0):
    """Decode messages from ``out`` until ``until(messages)`` is true; returns them (not probe)."""
    msgs = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not until(msgs):
        if out.poll(100):
            m = P.decode_message(out.recv_multipart())
            assert not isinstance(m, P.DecodeError), m
            if m.sensor != "probe":
                msgs.append(m)
    return msgs


def preds_by_sensor(msgs):
    got: dict[str, dict[int, np.ndarray]] = {}
    for m in msgs:
        if m.kind is P.Kind.PRED:
            d = got.setdefault(m.sensor, {})
            for k in range(m.block.count):
                d[m.block.seq + k] = m.block.data[k]
    return got


def events(msgs, type_=None):
    return [m for m in msgs if m.kind is P.Kind.EVENT and (type_ is None or m.meta.get("type") == type_)]
