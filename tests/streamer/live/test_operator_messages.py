"""What the service tells its operator (issue 16.13): a subscriber leaving is ordinary life, not a
warning; a plain ``serve`` refused by a CURVE peer is told which option it lacks."""

from __future__ import annotations

import logging
import time

import zmq

from streamer.live.backends import make_backend
from streamer.live.service import ServiceConfig, StreamService
from streamer.wire import protocol as P
from tests.streamkit import running_service


def _events(sock: zmq.Socket, type_: str, timeout: float = 15.0, **fields) -> list[P.Message]:
    got, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline and not got:
        if sock.poll(100):
            m = P.decode_message(sock.recv_multipart())
            if m.kind is P.Kind.EVENT and m.meta.get("type") == type_ and all(m.meta.get(k) == v for k, v in fields.items()):
                got.append(m)
    return got


def test_a_subscriber_leaving_is_reported_but_not_warned_about(tiny_weights, caplog):
    caplog.set_level(logging.INFO)
    with running_service(tiny_weights, "onnx") as (service, pub, out):
        ctx = zmq.Context.instance()
        viewer = ctx.socket(zmq.SUB)
        viewer.setsockopt(zmq.SUBSCRIBE, b"")
        viewer.connect(service.pub_endpoint)
        assert _events(out, "peer_connected", socket="pub")
        viewer.close(0)
        left = _events(out, "peer_disconnected", socket="pub")
    assert left, "the service did not report the subscriber leaving"
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING and "peer_disconnected" in r.getMessage()]
    assert not warned, [r.getMessage() for r in warned]


def test_a_plain_service_refused_by_a_curve_feed_is_told_to_use_curve_keys(tiny_weights):
    ctx = zmq.Context()
    public, secret = zmq.curve_keypair()
    feed = ctx.socket(zmq.PUB)  # a CurveZMQ publisher: the service connects without keys
    feed.curve_server = True
    feed.curve_secretkey = secret
    feed.curve_publickey = public
    port = feed.bind_to_random_port("tcp://127.0.0.1")
    cfg = ServiceConfig(feeds=(f"tcp://127.0.0.1:{port}",), pub="tcp://127.0.0.1:*")
    service = StreamService(cfg, make_backend("onnx", tiny_weights), context=ctx, weights_dir=tiny_weights)
    thread = service.start_thread()
    out = ctx.socket(zmq.SUB)
    out.setsockopt(zmq.SUBSCRIBE, b"event/")
    out.connect(service.pub_endpoint)
    try:
        refused = _events(out, "peer_refused", timeout=20, socket="feed")
    finally:
        service.stop()
        thread.join(5)
        for s in (feed, out):
            s.close(0)
        ctx.term()
    assert refused, "no peer_refused event for the CURVE feed"
    assert "--curve-keys" in refused[0].meta["detail"], refused[0].meta
