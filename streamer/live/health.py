"""Health of a live service: lag, silent sensors, per-key budgets, connection events.

Why: ZeroMQ PUB/SUB loses and stalls silently. It has no drop counter, no "peer is gone" signal
on a SUB socket and no backlog gauge, so the service derives each of them from what it can
observe (docs/reliability.md): the backlog from when its input queue was last seen empty, a silent
sensor from the absence of its messages, a dead connection from ZMTP heartbeats (socket monitor
events), and it bounds what any one sensor can cost with token buckets. No sockets here except the
parsing of monitor frames; everything is plain state owned by the service thread.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq

from streamer.wire.security import describe_refusal


@dataclass(frozen=True)
class HealthConfig:
    """Thresholds of the service's health alarms (``ServiceConfig.health``)."""

    lag_threshold_s: float = 0.5
    """``lag`` alarm when input may have waited longer than this (the input queue was not seen
    empty for this long); ``lag_cleared`` once the queue is drained empty again."""
    silence_intervals: float = 3.0
    """A sensor is ``sensor_silent`` after this many of its message intervals without a message..."""
    silence_min_s: float = 0.5
    """...and never sooner than this (scheduling jitter must not raise alarms at 1 kHz)."""
    check_interval_s: float = 0.05
    """How often silent sensors are looked for (vectorised over all sensors)."""
    heartbeat_ivl_ms: int = 1000
    """ZMTP PING interval (ZMQ_HEARTBEAT_IVL) on the output socket, and on the feed socket with
    ``feed_heartbeat``; 0 disables heartbeats."""
    feed_heartbeat: bool = False
    """ZMTP heartbeats on the feed socket too (a hung publisher is dropped within 3 intervals).
    Off by default: while the receive queue is full the feed is not read, a healthy publisher's
    heartbeat times out, and libzmq (≤ 4.3.5, issue #3937) aborts the process on that disconnect
    (``Assertion failed: _input_stopped``). Without them the feed uses TCP keepalive (a dead host
    is dropped after ~25 s) and silent sensors are reported by the silence monitor."""
    heartbeat_timeout_ms: int | None = None
    """Close a connection this long after a PING without any traffic (default 2 × interval, so a
    hung peer is dropped within 3 intervals of its last message)."""
    evict_after_s: float | None = 600.0
    """A sensor silent this long is evicted: its state (h, c, the classical fit, the domain and
    alert statistics) is dropped and its slot freed, so sensors that came and went never fill the
    table (``StreamPolicy.max_sensors``) for good. One that comes back later starts fresh
    (``new_sensor``). None: never evict."""
    silent_events_per_check: int = 256
    """Per-sensor ``sensor_silent`` / ``sensor_evicted`` events of one check at most; the rest is
    one ``sensors_silent`` / ``sensors_evicted`` summary on ``event/_service`` (count and the
    first names), so a fleet going quiet at once cannot overflow the output queue."""
    reconnect_ivl_ms: int = 100
    """ZMQ_RECONNECT_IVL: a returning peer is reconnected within this (no back-off)."""
    max_sensor_rate: float | None = None
    """Samples per second one sensor may feed (token bucket); None: unlimited. Excess messages are
    dropped whole and counted (``rate_limited``): one flooding sensor cannot starve the others."""
    sensor_burst_s: float = 1.0
    """Bucket depth in seconds of ``max_sensor_rate`` (must hold the largest message)."""
    events_per_s_per_key: float = 100.0
    """Budget of noisy events (malformed, duplicate, peer_refused) per (sensor, type) and second..."""
    events_per_s_total: float = 1000.0
    """...and for all keys together; the rest is counted and summarised at most once per second
    as one ``events_suppressed`` event, so garbage input cannot be amplified into an event flood."""

    def __post_init__(self) -> None:
        if self.lag_threshold_s <= 0 or self.silence_intervals <= 0 or self.silence_min_s < 0 or self.check_interval_s <= 0:
            raise ValueError("lag_threshold_s, silence_intervals and check_interval_s must be > 0")
        if self.heartbeat_ivl_ms < 0 or self.reconnect_ivl_ms < 0:
            raise ValueError("heartbeat_ivl_ms and reconnect_ivl_ms must be >= 0")
        if self.max_sensor_rate is not None and (self.max_sensor_rate <= 0 or self.sensor_burst_s <= 0):
            raise ValueError("max_sensor_rate and sensor_burst_s must be > 0")
        if self.events_per_s_per_key <= 0 or self.events_per_s_total <= 0:
            raise ValueError("event budgets must be > 0")
        if self.evict_after_s is not None and not self.evict_after_s > 0:
            raise ValueError("evict_after_s must be > 0 (or None: never evict)")
        if self.silent_events_per_check < 0:
            raise ValueError("silent_events_per_check must be >= 0")

    @property
    def heartbeat_timeout(self) -> int:
        return self.heartbeat_timeout_ms if self.heartbeat_timeout_ms is not None else 2 * self.heartbeat_ivl_ms


class TokenBuckets:
    """Per-key token buckets (``rate`` per second, depth ``burst``) in one dict.

    Memory is bounded: past ``max_keys`` keys the table is cleared, which only refills buckets."""

    def __init__(self, rate: float, burst: float, max_keys: int = 65536):
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_keys = max_keys
        self._b: dict[Hashable, tuple[float, float]] = {}

    def forget(self, key: Hashable) -> None:
        self._b.pop(key, None)

    def take(self, key: Hashable, n: float, now: float) -> bool:
        """Spend ``n`` tokens of ``key`` at time ``now`` (s); False (nothing spent) if short."""
        b = self._b.get(key)
        if b is None:
            if len(self._b) >= self.max_keys:
                self._b.clear()
            tokens = self.burst
        else:
            tokens = min(self.burst, b[0] + (now - b[1]) * self.rate)
        if tokens >= n:
            self._b[key] = (tokens - n, now)
            return True
        self._b[key] = (tokens, now)
        return False


class EventBudget:
    """Caps events per key and in total; counts what it suppressed (why: see HealthConfig)."""

    def __init__(self, per_key: float, total: float):
        self._keys = TokenBuckets(per_key, per_key)
        self._total = TokenBuckets(total, total)
        self.suppressed: Counter = Counter()  # by event type, since the last summary
        self.suppressed_total = 0

    def allow(self, sensor: str, type_: str, now: float) -> bool:
        if self._keys.take((sensor, type_), 1.0, now) and self._total.take(None, 1.0, now):
            return True
        self.suppressed[type_] += 1
        self.suppressed_total += 1
        return False

    def take_summary(self) -> dict[str, int]:
        out = dict(self.suppressed)
        self.suppressed.clear()
        return out


class SilenceMonitor:
    """Which sensors stopped sending. A sensor is silent once no message came for
    ``max(intervals × its message interval, min_s)``; it is back at its next message.

    Why vectorised: the check runs every few tens of ms over all sensors (65,536 at most)."""

    def __init__(self, intervals: float, min_s: float):
        self.intervals = intervals
        self.min_s = min_s
        self._index: dict[str, int] = {}
        self._names: list[str] = []
        self._last = np.zeros(64)
        self._limit = np.zeros(64)
        self._silent = np.zeros(64, bool)

    def __len__(self) -> int:
        return len(self._names)

    def _slot(self, sensor: str) -> int:
        k = self._index.get(sensor)
        if k is None:
            k = self._index[sensor] = len(self._names)
            self._names.append(sensor)
            if k >= self._last.shape[0]:
                grow = lambda a: np.concatenate([a, np.zeros_like(a)])  # noqa: E731
                self._last, self._limit, self._silent = grow(self._last), grow(self._limit), grow(self._silent)
        return k

    def seen(self, sensors: list[str], intervals_s: list[float], now: float) -> list[tuple[str, float]]:
        """Messages of ``sensors`` arrived at ``now``, each carrying ``intervals_s`` worth of
        samples (one vectorised update per drain). Returns ``(sensor, silent_for_s)`` for those
        that had been marked silent: they are back."""
        if not sensors:
            return []
        if len(sensors) <= 8:  # few sensors per drain (high message rates): scalar updates are cheaper
            back = []
            for sensor, interval in zip(sensors, intervals_s):
                k = self._slot(sensor)  # may grow the arrays: read them after
                if self._silent[k]:
                    back.append((sensor, now - float(self._last[k])))
                    self._silent[k] = False
                self._last[k] = now
                self._limit[k] = max(self.intervals * interval, self.min_s)
            return back
        idx = np.fromiter((self._slot(s) for s in sensors), np.int64, len(sensors))
        back = []
        was = self._silent[idx]
        if was.any():
            for k in np.flatnonzero(was):
                back.append((sensors[k], float(now - self._last[idx[k]])))
            self._silent[idx] = False
        self._last[idx] = now
        self._limit[idx] = np.maximum(self.intervals * np.asarray(intervals_s, np.float64), self.min_s)
        return back

    def check(self, now: float) -> list[tuple[str, float, float]]:
        """Sensors that just became silent: ``(sensor, silent_for_s, threshold_s)``."""
        n = len(self._names)
        if not n:
            return []
        quiet = (now - self._last[:n] > self._limit[:n]) & ~self._silent[:n]
        idx = np.flatnonzero(quiet)
        if not idx.size:
            return []
        self._silent[idx] = True
        return [(self._names[k], float(now - self._last[k]), float(self._limit[k])) for k in idx]

    def silent(self) -> list[str]:
        return [self._names[k] for k in np.flatnonzero(self._silent[: len(self._names)])]

    def stale(self, now: float, older_than_s: float) -> list[str]:
        """Sensors without a message for more than ``older_than_s`` (eviction candidates)."""
        n = len(self._names)
        return [self._names[k] for k in np.flatnonzero(now - self._last[:n] > older_than_s)]

    def forget(self, sensors: list[str]) -> None:
        """Stop watching these sensors (the last slot moves into each freed one)."""
        for sensor in sensors:
            k = self._index.pop(sensor, None)
            if k is None:
                continue
            last = len(self._names) - 1
            if k != last:
                moved = self._names[last]
                self._names[k] = moved
                self._index[moved] = k
                self._last[k], self._limit[k], self._silent[k] = self._last[last], self._limit[last], self._silent[last]
            self._names.pop()


@dataclass
class LagMonitor:
    """Input lag from when the input queue was last seen empty: messages waiting now arrived after
    that moment, so ``now - empty_at`` bounds the wait of the oldest one (why: ZeroMQ has no queue
    gauge, and sensor clocks need not agree with ours)."""

    threshold_s: float
    empty_at: float = 0.0
    in_alarm: bool = False
    alarm_since: float = 0.0
    max_backlog_s: float = 0.0
    """Largest backlog seen since the last stats message."""
    episode_max_s: float = 0.0

    def emptied(self, now: float) -> dict[str, Any] | None:
        """The queue was seen empty at ``now``; returns the ``lag_cleared`` fields if an alarm ends."""
        self.empty_at = now
        if not self.in_alarm:
            return None
        self.in_alarm = False
        return {"duration_s": round(now - self.alarm_since, 3), "max_backlog_s": round(self.episode_max_s, 3)}

    def pending(self, now: float) -> dict[str, Any] | None:
        """Input is waiting at ``now``; returns the ``lag`` fields if an alarm starts."""
        backlog = now - self.empty_at
        self.max_backlog_s = max(self.max_backlog_s, backlog)
        if self.in_alarm:
            self.episode_max_s = max(self.episode_max_s, backlog)
            return None
        if backlog <= self.threshold_s:
            return None
        self.in_alarm, self.alarm_since, self.episode_max_s = True, now, backlog
        return {"backlog_s": round(backlog, 3), "threshold_s": self.threshold_s}

    def backlog(self, now: float, pending: bool) -> float:
        return now - self.empty_at if pending or self.in_alarm else 0.0


# ------------------------------------------------------------------ socket monitor events

_EVENT_NAMES: Mapping[int, str] = {
    int(zmq.EVENT_CONNECTED): "connected",
    int(zmq.EVENT_CONNECT_DELAYED): "connect_delayed",
    int(zmq.EVENT_CONNECT_RETRIED): "connect_retried",
    int(zmq.EVENT_LISTENING): "listening",
    int(zmq.EVENT_BIND_FAILED): "bind_failed",
    int(zmq.EVENT_ACCEPTED): "accepted",
    int(zmq.EVENT_ACCEPT_FAILED): "accept_failed",
    int(zmq.EVENT_CLOSED): "closed",
    int(zmq.EVENT_CLOSE_FAILED): "close_failed",
    int(zmq.EVENT_DISCONNECTED): "disconnected",
    int(zmq.EVENT_MONITOR_STOPPED): "monitor_stopped",
    int(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL): "handshake_failed",
    int(zmq.EVENT_HANDSHAKE_SUCCEEDED): "handshake_succeeded",
    int(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL): "handshake_failed_protocol",
    int(zmq.EVENT_HANDSHAKE_FAILED_AUTH): "handshake_failed_auth",
}

@dataclass(frozen=True)
class PeerEvent:
    """One socket monitor event, reduced to what the service publishes or counts."""

    socket: str  # "feed" or "pub"
    name: str  # key of _EVENT_NAMES
    endpoint: str
    detail: str = ""

    @property
    def published_type(self) -> str | None:
        """Event type on ``event/_service``; None for events that are only counted."""
        if self.name == "handshake_succeeded":
            return "peer_connected"
        if self.name == "disconnected":
            return "peer_disconnected"
        if self.name.startswith("handshake_failed"):
            return "peer_refused"
        return None


def parse_monitor(socket_name: str, frames: list[bytes]) -> PeerEvent:
    """Decode a monitor message (libzmq's two-frame format) into a PeerEvent."""
    from zmq.utils.monitor import parse_monitor_message

    m = parse_monitor_message(frames)
    event, value = int(m["event"]), int(m["value"])
    name = _EVENT_NAMES.get(event, f"event_{event}")
    endpoint = m["endpoint"].decode("utf-8", "replace") if isinstance(m["endpoint"], bytes) else str(m["endpoint"])
    refused = describe_refusal(event, value)
    return PeerEvent(socket_name, name, endpoint, refused[1] if refused is not None else "")
