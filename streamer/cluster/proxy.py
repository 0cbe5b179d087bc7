"""The cluster's one output endpoint: an XSUB/XPUB proxy that every shard publishes into.

Shards connect their XPUB sockets to the proxy's XSUB (``inbound``); clients — the GUI, a
recorder, scripts — connect their SUB sockets to its XPUB (``pub``), once, whatever shards come
and go. The XSUB subscribes to everything itself, so each shard always has a subscriber (a shard
waits for that subscription before it sends, so nothing it sends is dropped for want of a
connection); the XPUB filters per client by topic prefix, as ``serve``'s PUB does.
"""

from __future__ import annotations

import threading

import zmq

from streamer.wire.endpoints import attach


class OutputProxy:
    def __init__(self, inbound: str, pub: str, *, context: zmq.Context | None = None, hwm: int = 1_000_000):
        self.ctx = context or zmq.Context.instance()
        self._xsub = self.ctx.socket(zmq.XSUB)
        self._xpub = self.ctx.socket(zmq.XPUB)
        for sock in (self._xsub, self._xpub):
            sock.setsockopt(zmq.RCVHWM, hwm)
            sock.setsockopt(zmq.SNDHWM, hwm)
            sock.setsockopt(zmq.LINGER, 0)
        try:
            self.inbound = attach(self._xsub, inbound, "bind")
            self.pub = attach(self._xpub, pub, "bind")
        except BaseException:
            self._xsub.close(0)
            self._xpub.close(0)
            raise
        self._xsub.send(b"\x01")  # subscribe to everything upstream
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.forwarded = 0

    def start(self) -> "OutputProxy":
        self._thread = threading.Thread(target=self._run, name="radarstream-proxy", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._xsub, zmq.POLLIN)
        poller.register(self._xpub, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(100))
                if self._xsub in ready:
                    for _ in range(10_000):
                        try:
                            self._xpub.send_multipart(self._xsub.recv_multipart(zmq.NOBLOCK, copy=False), copy=False)
                            self.forwarded += 1
                        except zmq.Again:
                            break
                if self._xpub in ready:  # client (un)subscriptions: upstream already has everything
                    while True:
                        try:
                            self._xpub.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
        finally:
            self._xsub.close(0)
            self._xpub.close(0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
