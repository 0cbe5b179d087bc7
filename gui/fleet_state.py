"""The fleet's latest state, one row per sensor, in numpy arrays (no Qt).

The window writes into it as batches arrive (a few array stores per sensor and batch: the last
sample's arrival, the best estimate, the events) and calls :meth:`FleetState.refresh` from its
redraw timer, which derives every row's health (live / silent / out of domain / restarted …) and
the "last sample N s ago" clock in a handful of vectorised operations, however many sensors. The
Qt table model (:mod:`gui.fleet_model`) reads these arrays for the rows on screen only.

Times are ``time.monotonic()`` seconds passed in by the caller (``now``), so tests drive the clock.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np

from gui.stream import SERVICE_SENSOR, natural_key


class Health(IntEnum):
    """A row's health, in increasing severity (the state column sorts by it)."""

    LIVE = 0
    WAITING = 1
    """Seen in an event only: no sample or prediction yet."""
    LAGGING = 2
    """The service reports a backlog (``lag``): every live sensor's output is late."""
    MALFORMED = 3
    """Malformed input from this sensor in the last ``recent_s``."""
    RESTARTED = 4
    """Epoch change, seq going back or the monitor's history restarted, in the last ``recent_s``."""
    OUT_OF_DOMAIN = 5
    """The service flagged the stream as outside the model's radar profile."""
    SILENT = 6
    """No sample for the silence interval, or a ``sensor_silent`` event not yet followed by data."""


HEALTH_TEXT = {Health.LIVE: "live", Health.WAITING: "waiting", Health.LAGGING: "lagging",
               Health.MALFORMED: "malformed input", Health.RESTARTED: "restarted",
               Health.OUT_OF_DOMAIN: "out of domain", Health.SILENT: "silent"}

KIND_NONE, KIND_CAUSAL, KIND_HYBRID = 0, 1, 2
KIND_TEXT = {KIND_NONE: "", KIND_CAUSAL: "causal", KIND_HYBRID: "hybrid"}


@dataclass(frozen=True)
class FleetConfig:
    silence_min_s: float = 1.0
    """A sensor is silent after max(this, ``silence_intervals`` × its usual interval between
    arrivals) without a sample or prediction (the service's own rule is 3 intervals, ≥ 0.5 s;
    the monitor adds its 30 ms batching)."""
    silence_intervals: float = 3.0
    recent_s: float = 10.0
    """How long "restarted" and "malformed input" stay on a row after the event."""
    initial_capacity: int = 64


@dataclass(frozen=True)
class Alert:
    """One near-miss event as the GUI lists it."""

    sensor: str
    type: str  # near_miss | near_miss_cleared
    wall_s: float  # time of the sample that raised it (sample_t_ns), else of the event
    margin_m: float
    dmin_m: float
    std_m: float
    probability: float
    threshold_m: float

    @property
    def active(self) -> bool:
        return self.type == "near_miss"

    def summary(self) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(self.wall_s)) if self.wall_s > 0 else "--:--:--"
        sigma = f" ± {self.std_m:.0f}" if math.isfinite(self.std_m) else ""
        if self.active:
            return f"near miss: margin {self.margin_m:.0f} m (Dmin {self.dmin_m:.0f}{sigma} m < {self.threshold_m:g} m) at {stamp}"
        return f"cleared at {stamp} (Dmin {self.dmin_m:.0f}{sigma} m)"


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


def alert_from_event(ev) -> Alert | None:
    """An :class:`Alert` from an ``event/<sensor>`` near_miss / near_miss_cleared record."""
    if ev.type not in ("near_miss", "near_miss_cleared"):
        return None
    m = ev.meta
    t_ns = m.get("sample_t_ns")
    t_ns = int(t_ns) if isinstance(t_ns, (int, float)) and t_ns > 0 else int(ev.t_ns)
    dmin, thr = _num(m.get("dmin_m")), _num(m.get("threshold_m"))
    margin = _num(m.get("margin_m"))
    if not math.isfinite(margin) and math.isfinite(dmin) and math.isfinite(thr):
        margin = thr - dmin
    return Alert(ev.sensor, ev.type, t_ns / 1e9, margin, dmin, _num(m.get("std_m")), _num(m.get("probability")), thr)


class FleetState:
    """Arrays of every sensor's latest state; rows in first-seen order, never removed."""

    FLOAT_COLUMNS = ("last_rx", "interval_s", "est_m", "std_m", "silent_event_at", "restarted_at", "malformed_at",
                     "alert_wall_s", "alert_margin_m", "age_s", "cpa_s")
    INT_COLUMNS = ("last_t_ns", "kind", "health", "alerting", "alerts", "ood", "order")

    def __init__(self, config: FleetConfig = FleetConfig()):
        self.config = config
        self.names: list[str] = []
        self.index: dict[str, int] = {}
        self.reasons: dict[int, str] = {}  # out-of-domain reason per row
        self.last_alert: dict[int, Alert] = {}
        self.lagging = False
        self.live_text = "live"
        """What a healthy row says ("replaying" in a replay: never "live" there)."""
        self.version = 0  # bumped when rows are added (the model resets its row count)
        self.changed = False  # anything written since the last refresh
        self._cap = 0
        self._alloc(config.initial_capacity)

    # ------------------------------------------------------------------ storage

    def _alloc(self, cap: int) -> None:
        old = self._cap
        for name in self.FLOAT_COLUMNS:
            arr = np.full(cap, np.nan)
            if old:
                arr[:old] = getattr(self, name)
            setattr(self, name, arr)
        for name in self.INT_COLUMNS:
            arr = np.zeros(cap, np.int64)
            if old:
                arr[:old] = getattr(self, name)
            setattr(self, name, arr)
        self._cap = cap

    def __len__(self) -> int:
        return len(self.names)

    def row(self, sensor: str) -> int:
        """The row of ``sensor``, added (WAITING) when new."""
        k = self.index.get(sensor)
        if k is not None:
            return k
        k = len(self.names)
        if k >= self._cap:
            self._alloc(2 * self._cap)
        self.names.append(sensor)
        self.index[sensor] = k
        self.health[k] = Health.WAITING
        # natural order ("radar-2" before "radar-10") as a sortable rank
        ranks = sorted(range(len(self.names)), key=lambda i: natural_key(self.names[i]))
        self.order[ranks] = np.arange(len(ranks))
        self.version += 1
        self.changed = True
        return k

    # ------------------------------------------------------------------ writes (GUI thread, at ingest)

    def touch(self, sensor: str, now: float, t_last_ns: int) -> int:
        """A sample or prediction of ``sensor`` arrived at ``now``: a sign of life."""
        k = self.row(sensor)
        prev = self.last_rx[k]
        if math.isfinite(prev) and now > prev:
            dt = now - prev
            iv = self.interval_s[k]
            self.interval_s[k] = dt if not math.isfinite(iv) else 0.8 * iv + 0.2 * dt
        self.last_rx[k] = now
        self.last_t_ns[k] = max(int(self.last_t_ns[k]), int(t_last_ns))
        self.silent_event_at[k] = np.nan  # data again: a sensor_silent is over
        self.changed = True
        return k

    def set_estimate(self, sensor: str, est_m: float, std_m: float, kind: int, time_to_cpa_s: float = math.nan) -> None:
        """The latest best estimate, its σ and source, and the seconds from the latest sample to
        the classical fit's CPA (NaN when unknown)."""
        k = self.row(sensor)
        self.est_m[k], self.std_m[k], self.kind[k], self.cpa_s[k] = est_m, std_m, kind, time_to_cpa_s
        self.changed = True

    def time_to_cpa(self) -> np.ndarray:
        """Seconds to each row's CPA now (the value at its latest sample, aged since it arrived)."""
        n = len(self)
        return self.cpa_s[:n] - np.nan_to_num(self.age_s[:n], nan=0.0)

    def restarted(self, sensor: str, now: float) -> None:
        self.restarted_at[self.row(sensor)] = now
        self.changed = True

    def event(self, ev, now: float) -> Alert | None:
        """Apply one stream event; returns the :class:`Alert` when it is a near-miss event."""
        t = ev.type
        if ev.sensor == SERVICE_SENSOR:
            if t == "lag":
                self.lagging = True
            elif t == "lag_cleared":
                self.lagging = False
            self.changed = True
            return None
        if t not in _FLEET_EVENTS:
            return None
        k = self.row(ev.sensor)
        self.changed = True
        if t == "sensor_silent":
            self.silent_event_at[k] = now
        elif t == "sensor_back":
            self.silent_event_at[k] = np.nan
        elif t == "out_of_domain":
            self.ood[k] = 1
            self.reasons[k] = str(ev.meta.get("reason", ""))
        elif t == "back_in_domain":
            self.ood[k] = 0
            self.reasons.pop(k, None)
        elif t in ("epoch_change", "backwards"):
            self.restarted_at[k] = now
        elif t == "malformed":
            self.malformed_at[k] = now
        else:
            alert = alert_from_event(ev)
            if alert is not None:
                self.last_alert[k] = alert
                self.alerting[k] = 1 if alert.active else 0
                self.alert_wall_s[k] = alert.wall_s
                if alert.active:
                    self.alert_margin_m[k] = alert.margin_m
                    self.alerts[k] += 1
            return alert
        return None

    def set_lagging(self, lagging: bool) -> None:
        if lagging != self.lagging:
            self.lagging = lagging
            self.changed = True

    def clear_estimates(self) -> None:
        n = len(self)
        self.est_m[:n] = self.std_m[:n] = np.nan
        self.kind[:n] = KIND_NONE
        self.changed = True

    # ------------------------------------------------------------------ derived, per frame

    def silence_after_s(self) -> np.ndarray:
        n = len(self)
        iv = np.nan_to_num(self.interval_s[:n], nan=0.0)
        return np.maximum(self.config.silence_min_s, self.config.silence_intervals * iv)

    def refresh(self, now: float) -> None:
        """Recompute age and health of every row at ``now`` (vectorised)."""
        n = len(self)
        if n == 0:
            return
        cfg = self.config
        age = now - self.last_rx[:n]
        self.age_s[:n] = age
        seen = np.isfinite(age)
        h = np.full(n, int(Health.LIVE), np.int64)
        if self.lagging:
            h[:] = Health.LAGGING
        recent = lambda a: np.isfinite(a) & (now - a <= cfg.recent_s)  # noqa: E731
        h[recent(self.malformed_at[:n])] = Health.MALFORMED
        h[recent(self.restarted_at[:n])] = Health.RESTARTED
        h[self.ood[:n] == 1] = Health.OUT_OF_DOMAIN
        silent = (seen & (age > self.silence_after_s())) | np.isfinite(self.silent_event_at[:n])
        h[silent] = Health.SILENT
        h[~seen & ~silent] = Health.WAITING
        self.health[:n] = h
        self.changed = False

    # ------------------------------------------------------------------ text

    def state_text(self, k: int) -> str:
        h = Health(int(self.health[k]))
        if h is Health.SILENT:
            age = self.age_s[k]
            return f"silent for {age:.0f} s" if math.isfinite(age) else "silent"
        if h is Health.OUT_OF_DOMAIN and self.reasons.get(k):
            return f"out of domain ({self.reasons[k]})"
        return self.live_text if h is Health.LIVE else HEALTH_TEXT[h]

    def age_text(self, k: int) -> str:
        age = self.age_s[k]
        if not math.isfinite(age):
            return "–"
        return f"{age:.1f} s ago" if age < 10 else f"{age:.0f} s ago"

    def alert_text(self, k: int) -> str:
        a = self.last_alert.get(k)
        return "" if a is None else a.summary()

    def counts(self) -> dict[Health, int]:
        n = len(self)
        vals, cnt = np.unique(self.health[:n], return_counts=True)
        return {Health(int(v)): int(c) for v, c in zip(vals, cnt)}


_FLEET_EVENTS = frozenset({"sensor_silent", "sensor_back", "out_of_domain", "back_in_domain", "epoch_change",
                           "backwards", "malformed", "near_miss", "near_miss_cleared"})
