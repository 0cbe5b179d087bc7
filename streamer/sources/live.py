"""A live ZeroMQ feed as a sample source: a SUB socket on the samples topics."""

from __future__ import annotations

import time
from collections.abc import Sequence

import zmq

from streamer.sources.base import Frames, SampleSource, SourceError, SourcePosition
from streamer.wire.endpoints import attach


class LiveSource(SampleSource):
    """Subscribes to ``topics`` (prefixes, default every ``samples/``) on ``endpoint`` (czmq
    convention: ``>`` connects, the default; ``@`` binds). ``next_batch`` waits up to ``wait_s``
    for the first message, then drains what is queued (at most ``batch``); it returns ``None``
    only after :meth:`close`. A live feed cannot seek."""

    def __init__(self, endpoint: str, *, topics: Sequence[str] = ("samples/",), batch: int = 1024,
                 wait_s: float = 0.1, rcvhwm: int = 100_000, context: zmq.Context | None = None):
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.RCVHWM, rcvhwm)
        self._sock.setsockopt(zmq.LINGER, 0)
        for t in topics:
            self._sock.setsockopt(zmq.SUBSCRIBE, t.encode())
        try:
            resolved = attach(self._sock, endpoint, default="connect")
        except (zmq.ZMQError, ValueError) as exc:
            self._sock.close(0)
            raise SourceError(f"cannot attach to {endpoint!r}: {exc}") from None
        self.endpoint = resolved
        self.batch, self.wait_s = batch, wait_s
        self._messages = 0
        self._last_ns: int | None = None

    def next_batch(self) -> list[Frames] | None:
        if self._sock.closed:
            return None
        out: list[Frames] = []
        if self._sock.poll(int(self.wait_s * 1000)):
            while len(out) < self.batch:
                try:
                    out.append(self._sock.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break
        if out:
            self._messages += len(out)
            self._last_ns = time.time_ns()
        return out

    def position(self) -> SourcePosition:
        return SourcePosition(self._messages, self._last_ns)

    def close(self) -> None:
        if not self._sock.closed:
            self._sock.close(0)
