"""Simulated sensors on the wire: N independent simulated radars publishing ``samples/<id>``.

Each message carries the ground truth of its samples as a second block (kind ``truth``, frame 2),
so monitors and metrics can show it; a real sensor simply omits that frame.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import zmq

from streamer.wire import protocol as P
from streamer.sim.simulator import RadarConfig, StreamSimulator, sensor_seeds


@dataclass(frozen=True)
class FeedConfig:
    sensors: int = 1
    rate_hz: float | None = None
    """Samples per second per sensor; None = the radar's measurement rate. ``max`` pacing: see
    ``realtime``."""
    samples_per_message: int = 1
    duration_s: float | None = None
    """Simulated seconds to publish (None: forever)."""
    seed: int = 0
    realtime: bool = True
    """Pace messages at the sample rate; False publishes as fast as possible."""
    truth: bool = True
    sensor_prefix: str = "radar-"
    radar: RadarConfig = RadarConfig()


class SimulatedFeed:
    """Generates and encodes the messages of N sensors; sockets stay with the caller."""

    def __init__(self, config: FeedConfig, epoch: int | None = None):
        if config.sensors < 1 or config.samples_per_message < 1:
            raise ValueError("sensors and samples_per_message must be >= 1")
        self.config = config
        rate = config.rate_hz or config.radar.rate_hz
        self.period_ns = int(round(1e9 / rate))
        self.epoch = epoch if epoch is not None else time.time_ns()
        self.sensor_ids = [f"{config.sensor_prefix}{k}" for k in range(config.sensors)]
        self.topics = [P.topic(P.Kind.SAMPLES, s) for s in self.sensor_ids]
        self.sims = [StreamSimulator(config.radar, s) for s in sensor_seeds(config.seed, config.sensors)]
        self.seq = 0
        self._buf: list = [None] * config.sensors
        self._buf_pos = 0
        self._chunk = max(1024, config.samples_per_message)

    def _refill(self) -> None:
        self._buf = [sim.read(self._chunk) for sim in self.sims]
        self._buf_pos = 0

    def next_messages(self) -> list[list[bytes]]:
        """One message (frames) per sensor with the next ``samples_per_message`` samples."""
        k = self.config.samples_per_message
        if self._buf[0] is None or self._buf_pos + k > self._chunk:
            self._refill()
        a, b = self._buf_pos, self._buf_pos + k
        t0 = self.epoch + self.seq * self.period_ns
        out = []
        for topic, blk in zip(self.topics, self._buf):
            frames = [topic, P.encode_block(P.Block(P.Kind.SAMPLES, self.epoch, self.seq, t0, self.period_ns, blk.samples[a:b]))]
            if self.config.truth:
                frames.append(P.encode_block(P.Block(P.Kind.TRUTH, self.epoch, self.seq, t0, self.period_ns, blk.truth[a:b])))
            out.append(frames)
        self._buf_pos = b
        self.seq += k
        return out

    def total_messages(self) -> int | None:
        if self.config.duration_s is None:
            return None
        n = int(round(self.config.duration_s * 1e9 / self.period_ns))
        return -(-n // self.config.samples_per_message)


HOUSEKEEPING_S = 0.05
"""How often ``publish`` calls its ``housekeeping`` hook at most (and at least, between messages)."""


def publish(
    feed: SimulatedFeed, sock: zmq.Socket, stop: threading.Event | None = None, *, warmup_s: float = 0.3,
    housekeeping: Callable[[float], object] | None = None,
) -> int:
    """Send the feed on ``sock`` (paced on absolute deadlines, so no drift); returns messages sent.

    ``warmup_s`` waits once before the first message so that subscribers already connecting are
    attached (ZeroMQ's slow-joiner); receivers never report a gap for what they never saw anyway.
    ``housekeeping(now)`` (monotonic seconds) is called about every :data:`HOUSEKEEPING_S` from
    the sending thread, also while waiting: e.g. a :class:`streamer.wire.security.RefusalWatch`'s
    ``poll`` that reconnects a refused ``>`` endpoint.
    """
    stop = stop or threading.Event()
    next_hk = 0.0

    def wait(seconds: float) -> None:
        nonlocal next_hk
        if housekeeping is None:
            time.sleep(seconds)
            return
        end = time.perf_counter() + seconds
        while True:
            now = time.monotonic()
            if now >= next_hk:
                housekeeping(now)
                next_hk = now + HOUSEKEEPING_S
            left = end - time.perf_counter()
            if left <= 0 or stop.is_set():
                return
            time.sleep(min(left, HOUSEKEEPING_S))

    if warmup_s:
        wait(warmup_s)
    total = feed.total_messages()
    interval = feed.period_ns * feed.config.samples_per_message / 1e9
    start = time.perf_counter()
    sent = n = 0
    while not stop.is_set() and (total is None or n < total):
        if feed.config.realtime:
            delay = start + n * interval - time.perf_counter()
            if delay > 0:
                wait(delay)
        if housekeeping is not None and time.monotonic() >= next_hk:
            now = time.monotonic()
            housekeeping(now)
            next_hk = now + HOUSEKEEPING_S
        for frames in feed.next_messages():
            sock.send_multipart(frames, copy=False)
            sent += 1
        n += 1
    return sent
