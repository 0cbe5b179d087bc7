"""ZeroMQ feed → intake log: every ``samples/`` and ``event/`` message, unchanged, under its partition.

A bridge keeps no state of its own: it SUBscribes to a feed, drains what has arrived (up to
``max_batch`` messages), appends the drain to the log and waits for the server's
acknowledgement of every message before it reads the next drain. An append that fails (server
restarting, network) is retried with the same messages: their ids (framing.message_id) make the
retry harmless, and so they make several bridges on one feed harmless — the log keeps one copy.

Loss window (docs/cluster.md): when a bridge dies, the messages in its ZeroMQ receive queue and
those of the drain being appended (unacknowledged) are lost, and so is everything the feed
publishes until a bridge is subscribed again (PUB/SUB keeps nothing for an absent subscriber).
Two bridges on the same feed close that window: the survivor has appended everything.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import zmq

from streamer.cluster.log import IntakeLog
from streamer.wire import protocol as P
from streamer.wire.endpoints import attach

log = logging.getLogger("radarstream.bridge")


@dataclass(frozen=True)
class BridgeConfig:
    feeds: tuple[str, ...]
    log_url: str
    partitions: int = 256
    max_batch: int = 4096
    rcvhwm: int = 1_000_000
    poll_ms: int = 50
    stats_interval_s: float = 5.0


class Bridge:
    def __init__(self, cfg: BridgeConfig, *, context: zmq.Context | None = None):
        self.cfg = cfg
        self.log = IntakeLog(cfg.log_url, partitions=cfg.partitions)
        self.ctx = context or zmq.Context.instance()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.RCVHWM, cfg.rcvhwm)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, P.topic_prefix(P.Kind.SAMPLES))
        self.sub.setsockopt(zmq.SUBSCRIBE, P.topic_prefix(P.Kind.EVENT))
        try:
            self.feeds = [attach(self.sub, ep, "connect") for ep in cfg.feeds]
        except BaseException:
            self.sub.close(0)
            self.log.close()
            raise
        self._stop = threading.Event()
        self.ready = threading.Event()
        self.received = self.stored = self.duplicates = self.retries = 0

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        log.info("bridge: %s -> %s (%d partitions)", self.feeds, self.log.address.server, self.cfg.partitions)
        next_stats = time.monotonic() + self.cfg.stats_interval_s
        self.ready.set()
        try:
            while not self._stop.is_set():
                batch = []
                if self.sub.poll(self.cfg.poll_ms):
                    for _ in range(self.cfg.max_batch):
                        try:
                            batch.append(self.sub.recv_multipart(zmq.NOBLOCK))
                        except zmq.Again:
                            break
                if batch:
                    self.received += len(batch)
                    self._append(batch)
                if time.monotonic() >= next_stats:
                    next_stats = time.monotonic() + self.cfg.stats_interval_s
                    log.info("bridge: received %d, stored %d, duplicates %d, retries %d", self.received, self.stored,
                             self.duplicates, self.retries)
        finally:
            self.sub.close(0)
            self.log.close()

    def _append(self, batch: list) -> None:
        delay = 0.05
        while True:
            try:
                stored, dup = self.log.append(batch)
                self.stored += stored
                self.duplicates += dup
                return
            except Exception as exc:  # noqa: BLE001 - server away: retry the same messages (ids dedup)
                if self._stop.is_set():
                    raise
                self.retries += 1
                log.warning("append of %d messages failed (%s: %s); retrying", len(batch), type(exc).__name__, exc)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
