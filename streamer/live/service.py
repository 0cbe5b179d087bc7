"""The ZeroMQ service: SUB ``samples/`` -> engine -> PUB ``pred/``, ``event/`` (and stats).

One thread owns both sockets (ZeroMQ sockets are not thread-safe). Each loop iteration drains
every pending message (up to ``max_drain``), decodes them, runs the engine once over the whole
batch and publishes the results, so the cost per sample falls as load rises.

Around that hot path the service watches its own health (streamer/health.py, docs/reliability.md):
input lag, silent sensors, connection events from socket monitors (with ZMTP heartbeats), per-sensor
rate limits and event budgets; and, with ``curve`` set, encrypts and authenticates every socket
(streamer/security.py).
"""

from __future__ import annotations

import gc
import logging
import math
import os
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import zmq

from streamer.wire import protocol as P
from streamer.live.backends.base import StepBackend
from streamer.wire.endpoints import attach  # noqa: F401  (re-exported: streamer.live.service.attach)
from streamer.live.engine import Event, Run, StreamEngine, StreamPolicy, run_block
from models.classical import CPAFitConfig
from models.hybrid import HybridBank
from models.profile import RadarProfile
from radarstream.errors import RadarstreamError
from radarstream.online import Block
from streamer.live.alerts import AlertConfig, NearMissDetector
from streamer.live.domain import DomainBank
from streamer.live.health import EventBudget, HealthConfig, LagMonitor, SilenceMonitor, TokenBuckets, parse_monitor
from streamer.live.metrics import DelayedLabelMetrics
from streamer.live.rescore import RescoreConfig, Rescorer, make_rescorer  # noqa: F401  (Rescorer re-exported)
from streamer.wire.security import Curve, CurveConfig, RefusalRetry, endpoint_mode, exposure_warning, socket_role

log = logging.getLogger("radarstream.serve")

_NOBLOCK = int(zmq.NOBLOCK)  # a plain int: enum flag arithmetic costs µs per call on the hot path
_SNDMORE = int(zmq.SNDMORE)

SERVICE_SENSOR = "_service"
"""Pseudo sensor id of service-wide events (stats, malformed frames without a sensor)."""

BUDGETED_EVENTS = frozenset({"malformed", "duplicate", "peer_refused", "out_of_domain", "back_in_domain"})
"""Event types a hostile or broken peer can trigger once per message: published within the
``HealthConfig`` event budget, the rest counted and summarised (``events_suppressed``)."""

_QUIET_EVENTS = frozenset({"new_sensor", "stats", "peer_connected", "sensor_back", "lag_cleared",
                           "allow_list_reloaded", "events_suppressed"})
"""Published but not logged as warnings (normal life, or summaries of what was logged)."""

SUMMARY_INTERVAL_S = 1.0

STATE_FORMAT = "radarstream-serve-state-1"
"""``meta["format"]`` of a ``--state-file`` (a streamer/cluster/checkpoint.py checkpoint)."""

STATE_COST_FACTOR = 20.0
"""The state file is written at most every this many times the cost of its snapshot (5 %)."""

PRED_CHUNK = 64
"""Pred frames sent per latency stamp: ``latency_us`` is taken just before each chunk is sent."""

SENSOR_LIST_CAP = 100
"""Most sensors listed by name in one stats message (silent ones, per-sensor counters)."""
"""Longest time between two summaries (``rate_limited``, ``events_suppressed``)."""


@dataclass(frozen=True)
class ServiceConfig:
    """Everything ``radarstream serve`` is told; nothing global."""

    feeds: tuple[str, ...] = ("tcp://127.0.0.1:5555",)
    """Sample feeds; connected by default (``@`` prefix binds)."""
    pub: str = "tcp://127.0.0.1:5556"
    """Output endpoint; bound by default (``>`` prefix connects, e.g. to an XSUB proxy)."""
    policy: StreamPolicy = StreamPolicy()
    stats_interval_s: float = 1.0
    rcvhwm: int = 100_000
    sndhwm: int = 100_000
    max_samples_per_message: int = P.DEFAULT_MAX_SAMPLES
    max_drain: int = 4096
    """Most messages handled per loop iteration: large enough to batch, small enough that a
    backlog does not make every prediction of the batch wait for thousands of others."""
    max_drain_bytes: int = 16 << 20
    """Most bytes of received frames per drain (the drain stops at the message that reaches
    it): ``max_drain`` bounds messages, this bounds rows — 4,096 maximum-size messages are 2 GiB
    of samples, and every row costs ~150 bytes more of outputs on its way through."""
    poll_ms: int = 50
    log_interval_s: float = 5.0
    """Minimum time between two log lines about the same kind of bad input (rate limit)."""
    rescore: RescoreConfig | None = None
    """Re-score completed windows with the bidirectional model beside the causal path."""
    metrics: bool = True
    """Decode the truth frame when a source sends one and keep delayed-label metrics."""
    hybrid: bool = True
    """Run the classical CPA fit per sensor beside the LSTM and publish the classical and hybrid
    estimates as ``pred`` channels 3 and 4 (normalised; NaN when the classical fit has none)."""
    alert: AlertConfig | None = None
    """Near-miss alerts (``--alert-dmin-m``): ``near_miss`` / ``near_miss_cleared`` events from the
    hybrid estimate and its σ (streamer/live/alerts.py); needs ``hybrid``."""
    domain_check: bool = True
    """Compare every stream with the model's radar profile (rate, amplitude level, detections)
    and publish ``out_of_domain`` / ``back_in_domain`` events (docs/reliability.md)."""
    checkpoint_every: int | None = None
    """Publish each sensor's (h, c) on ``state/<sensor>`` once at least this many samples have
    passed since its last checkpoint (at the end of a run), so replay can seek and resume."""
    gc_freeze: bool = True
    """``gc.freeze()`` once the service is set up (``run``): the garbage collector then skips the
    start-up objects (torch, ORT, the models), which otherwise made every collection triggered
    by a drain's short-lived objects scan them (measured: ~3 µs per message at 1,000 sensors)."""
    fast_drain: bool = True
    """Decode each drain into arrays and admit in-order sensors with array checks (the array
    drain, issue 15); False: every message through the decoder and the engine one by one. Both
    give the same outputs, events and counters (tests/streamer/live/test_drain.py)."""
    health: HealthConfig = HealthConfig()
    """Lag and silence alarms, heartbeats, reconnection, per-sensor rate limit, event budgets."""
    curve: CurveConfig | None = None
    """CurveZMQ keys: binding sockets serve (allow-listed clients only), connecting ones are
    clients. None: plain TCP (a warning is logged when binding beyond loopback)."""
    state_file: str | None = None
    """Keep every sensor's state (stream position, LSTM (h, c), classical fit, domain, alerts) in
    this file: written atomically every --state-every seconds and at a clean stop, loaded at
    start, so that a restarted serve continues its streams; what it missed while down shows as
    one gap event per sensor."""
    state_every_s: float = 5.0
    """Seconds between two writes of the state file."""
    state_strict: bool = False
    """A state file that cannot be loaded (damaged, written for another model) is a configuration
    error (exit 2). Default: start fresh with a warning and keep the file aside as PATH.bad."""
    rejoin_s: float = 0.3
    """After a restore (or a supervised restart), wait this long after binding before reading the
    feed: subscribers reconnecting (every 0.1 s by default) re-join before the restarted and gap
    events and the first predictions; the samples wait in the receive queue meanwhile."""
    restart: dict | None = field(default=None, compare=False)
    """Set by ``serve --supervise`` in a restarted child (``restarts``, ``last_exit``, ``died_at``
    wall time): published once as a ``restarted`` event on ``event/_service``."""

    def __post_init__(self) -> None:
        if not self.feeds:
            raise ConfigError("give at least one --feed")
        for name in ("rcvhwm", "sndhwm"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0 (0 = no limit), got {getattr(self, name)}")
        if not 1 <= self.max_samples_per_message <= P.DEFAULT_MAX_SAMPLES:
            raise ConfigError(f"max samples per message must lie in 1..{P.DEFAULT_MAX_SAMPLES} (the protocol's limit), "
                              f"got {self.max_samples_per_message}")
        if not (self.stats_interval_s > 0 and math.isfinite(self.stats_interval_s)):
            raise ConfigError(f"stats interval must be > 0 seconds, got {self.stats_interval_s}")
        if self.max_drain < 1:
            raise ConfigError(f"max_drain must be >= 1, got {self.max_drain}")
        if self.max_drain_bytes < 1:
            raise ConfigError(f"max_drain_bytes must be >= 1, got {self.max_drain_bytes}")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ConfigError(f"checkpoint interval must be >= 1 sample, got {self.checkpoint_every}")
        if self.alert is not None and not self.hybrid:
            raise ConfigError("near-miss alerts need the hybrid estimate: drop --no-hybrid or --alert-dmin-m")
        if not (self.state_every_s > 0 and math.isfinite(self.state_every_s)):
            raise ConfigError(f"state interval must be > 0 seconds, got {self.state_every_s}")
        if not self.rejoin_s >= 0:
            raise ConfigError(f"rejoin wait must be >= 0 seconds, got {self.rejoin_s}")
        if self.state_file is not None and not os.path.isdir(os.path.dirname(os.path.abspath(self.state_file))):
            raise ConfigError(f"state file {self.state_file!r}: its directory does not exist")


class ConfigError(RadarstreamError, ValueError):
    """A ``serve`` setting that cannot work; the message names the option."""


@dataclass
class ServiceStats:
    """Counters since start plus a window of latencies since the last stats message."""

    started: float = field(default_factory=time.monotonic)
    samples: int = 0
    messages: int = 0
    preds: int = 0
    decode_errors: Counter = field(default_factory=Counter)
    latencies_us: deque = field(default_factory=lambda: deque(maxlen=200_000))
    last_emit: float = field(default_factory=time.monotonic)
    last_samples: int = 0
    last_messages: int = 0
    first_recv_ns: int | None = None
    """perf_counter_ns of the first message received (throughput benchmarks)."""
    last_pub_ns: int = 0
    """perf_counter_ns after the last prediction was published."""
    sample_age_ms: deque = field(default_factory=lambda: deque(maxlen=20_000))
    """Wall clock minus the time of each run's last sample, since the last stats message
    (meaningful when sensor clocks are synchronised with this host's)."""
    health: Counter = field(default_factory=Counter)
    """Service-level counters: lag alarms, silent sensors, rate-limited samples, suppressed
    events, socket monitor events (``<socket>_<event>``)."""


def state_message(engine: StreamEngine, sensor: str, t_ns: int, period_ns: int) -> P.Message:
    """A ``state/<sensor>`` checkpoint: one "sample" of 2·L·H channels, h then c, each
    [layers, hidden] row-major; ``seq`` is the next sample the state applies to."""
    h, c, epoch, next_seq = engine.get_state(sensor)
    data = np.concatenate([h.ravel(), c.ravel()])[None].astype(np.float32)
    layers, hidden = h.shape
    block = P.Block(P.Kind.STATE, epoch, next_seq, t_ns, period_ns, data)
    meta = {"layers": layers, "hidden": hidden, "layout": "h then c, each [layers, hidden] row-major",
            "next_seq": next_seq}
    return P.Message(P.Kind.STATE, sensor, block, meta=meta)


class StreamService:
    """Owns the sockets and the engine; ``run`` until ``stop()`` (or SIGINT/SIGTERM in the CLI)."""

    def __init__(
        self,
        config: ServiceConfig,
        backend: StepBackend,
        *,
        context: zmq.Context | None = None,
        on_runs: Callable[[list[Run]], None] | None = None,
        weights_dir: str | None = None,
    ):
        self.config = config
        self.backend = backend
        self.engine = StreamEngine(backend, config.policy)
        self.profile = getattr(backend, "profile", None) or RadarProfile.legacy(backend.r_max_m)
        self._domain = DomainBank(self.profile) if config.domain_check else None
        self._alerts: dict[str, NearMissDetector] = {}
        self.stats = ServiceStats()
        self.ctx = context or zmq.Context.instance()
        self.on_runs = on_runs
        self.ready = threading.Event()
        self.pub_endpoint: str | None = None
        self.feed_endpoints: list[str] = []
        self.warnings: list[str] = []
        """Start-up warnings (exposure without CURVE), also logged."""
        self._stop = threading.Event()
        self._last_log: dict[str, float] = {}
        self._suppressed: Counter = Counter()
        self._epoch = time.time_ns()
        self._last_checkpoint: dict[str, int] = {}
        self.decoder = P.Decoder(max_samples=config.max_samples_per_message, with_truth=config.metrics)
        self._topics: dict[bytes, str] = {}  # topic -> sensor ("" if not a samples topic): the array drain
        self._pred_topics: dict[str, bytes] = {}  # sensor -> pred topic
        self._pred_buffers: dict[tuple[int, int], np.ndarray] = {}  # (rows, channels) -> reusable pred frames
        self.metrics = DelayedLabelMetrics(backend.r_max_m) if config.metrics else None
        self.rescorer = make_rescorer(config.rescore, weights_dir, self.ctx, profile=self.profile) if config.rescore else None
        self._hybrids = HybridBank(CPAFitConfig.for_profile(self.profile))
        h = config.health
        self.lag = LagMonitor(h.lag_threshold_s, empty_at=time.monotonic())
        self.silence = SilenceMonitor(h.silence_intervals, h.silence_min_s)
        self._limiter = (TokenBuckets(h.max_sensor_rate, h.max_sensor_rate * h.sensor_burst_s, config.policy.max_sensors)
                         if h.max_sensor_rate else None)
        self._rate_dropped: Counter = Counter()  # sensor -> samples dropped since the last summary
        self._budget = EventBudget(h.events_per_s_per_key, h.events_per_s_total)
        self._pause_until = 0.0
        self._input_current = True  # the input queue was seen empty in this loop iteration
        self._next_silence_check = 0.0
        self._next_summary = 0.0
        self._reload_requested = False
        self._next_reload_check = 0.0
        self.curve: Curve | None = None
        self._bound: list[tuple[zmq.Socket, str]] = []
        self._monitors: dict[zmq.Socket, str] = {}
        self._retry: dict[str, RefusalRetry] = {}  # socket name -> reconnect-after-refusal of its connections
        self.restored = 0
        """Sensors restored from the state file at start."""
        self._next_state_write = math.inf
        self._state_writer: threading.Thread | None = None
        self._announce: Event | None = None  # the restarted event, sent when the rejoin wait is over

    # ------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        self._stop.set()

    def pause(self, seconds: float) -> None:
        """Stop reading the input for ``seconds`` while the loop keeps running (timers, alarms):
        the fault-injection hook of a stalled consumer (tests; the queue fills, then ZeroMQ drops)."""
        self._pause_until = time.monotonic() + seconds

    def reload_keys(self) -> None:
        """Re-read the CURVE allow-list at the next loop iteration (SIGHUP in ``serve``); clients no
        longer listed are disconnected. Thread-safe."""
        self._reload_requested = True

    def start_thread(self) -> threading.Thread:
        """Run in a background thread (tests, demo); waits until the sockets are attached."""
        th = threading.Thread(target=self.run, name="radarstream-serve", daemon=True)
        th.start()
        if not self.ready.wait(10.0):
            raise RuntimeError("service did not start")
        return th

    def _tune(self, sock: zmq.Socket) -> None:
        """Heartbeats and reconnection: a hung peer is dropped and a returning one re-joined."""
        h = self.config.health
        if sock.type == zmq.SUB and not h.feed_heartbeat:
            sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
            sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, 10)
            sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, 5)
            sock.setsockopt(zmq.TCP_KEEPALIVE_CNT, 3)
        elif h.heartbeat_ivl_ms > 0:
            sock.setsockopt(zmq.HEARTBEAT_IVL, h.heartbeat_ivl_ms)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, h.heartbeat_timeout)
            sock.setsockopt(zmq.HEARTBEAT_TTL, min(h.heartbeat_timeout + h.heartbeat_ivl_ms, 6_553_500))
        sock.setsockopt(zmq.RECONNECT_IVL, h.reconnect_ivl_ms)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 0)

    def _attach(self, sock: zmq.Socket, endpoints: tuple[str, ...], default: str) -> list[str]:
        curve = self.config.curve is not None
        for ep in endpoints:
            warning = exposure_warning(ep, default, curve)
            if warning is not None:
                self.warnings.append(warning)
                log.warning("%s", warning)
        if self.curve is not None:
            self.curve.secure(sock, socket_role(endpoints, default))
        name = "feed" if sock.type == zmq.SUB else "pub"
        self._monitors[sock.get_monitor_socket()] = name
        out, connected = [], []
        for ep in endpoints:
            resolved = attach(sock, ep, default)
            if endpoint_mode(ep, default)[0] == "bind":
                self._bound.append((sock, resolved))
            else:
                connected.append(resolved)
            out.append(resolved)
        if connected:
            self._retry[name] = RefusalRetry(sock, connected)
        return out

    def _open(self) -> tuple[zmq.Socket, zmq.Socket]:
        cfg = self.config
        if cfg.curve is not None and self.curve is None:
            self.curve = Curve(cfg.curve, self.ctx, log_interval_s=cfg.log_interval_s)
        sub = self.ctx.socket(zmq.SUB)
        pub = None
        try:
            sub.setsockopt(zmq.RCVHWM, cfg.rcvhwm)
            sub.setsockopt(zmq.MAXMSGSIZE, P.max_block_size(cfg.max_samples_per_message) * 2 + 4096)
            sub.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.SUBSCRIBE, P.topic_prefix(P.Kind.SAMPLES))
            sub.setsockopt(zmq.SUBSCRIBE, P.topic_prefix(P.Kind.EVENT))
            self._tune(sub)
            self.feed_endpoints = self._attach(sub, tuple(cfg.feeds), "connect")
            pub = self.ctx.socket(zmq.PUB)
            pub.setsockopt(zmq.SNDHWM, cfg.sndhwm)
            pub.setsockopt(zmq.LINGER, 500)
            self._tune(pub)
            self.pub_endpoint = self._attach(pub, (cfg.pub,), "bind")[0]
        except BaseException:  # a bad endpoint or key: leave no socket open (the context must term)
            self._close_monitors()
            for sock in (sub, pub):
                if sock is not None:
                    sock.close(0)
            raise
        return sub, pub

    def run(self) -> None:
        state_age = self._restore() if self.config.state_file is not None else None
        try:
            sub, pub = self._open()
        except BaseException:
            self._close_monitors()
            if self.curve is not None:
                self.curve.stop()
            raise
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        paused_poller = zmq.Poller()  # the same without the input, while paused
        for mon in self._monitors:
            poller.register(mon, zmq.POLLIN)
            paused_poller.register(mon, zmq.POLLIN)
        results = None
        if self.rescorer is not None:
            results = self.rescorer.bind_results()
            poller.register(results, zmq.POLLIN)
            paused_poller.register(results, zmq.POLLIN)
            self.rescorer.start()
        log.info("serving %s: feeds %s -> pub %s%s", self.backend.describe(), self.feed_endpoints, self.pub_endpoint,
                 " (CURVE)" if self.curve is not None else "")
        self.lag.emptied(time.monotonic())
        if self.config.gc_freeze:
            # everything allocated so far (models, sessions, modules) is long-lived: the collector
            # stops re-scanning it, so a drain's short-lived objects cost their own collections only
            gc.freeze()
        self._resume(state_age)
        self.ready.set()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                paused = now < self._pause_until
                if self._announce is not None and not paused:  # before the first drain's gaps and preds
                    self._announce_restart(pub)
                timeout = self.config.poll_ms if not paused else max(1, min(self.config.poll_ms, 50))
                ready = dict((paused_poller if paused else poller).poll(timeout))
                try:
                    if results is not None and results in ready:
                        self._forward_rescores(results, pub)
                    for mon, name in self._monitors.items():
                        if mon in ready:
                            self._on_monitor(mon, name, pub)
                    now = time.monotonic()
                    if paused:
                        self._input_current = not (sub.getsockopt(zmq.EVENTS) & zmq.POLLIN)
                        self._lag_check(pub, now, emptied_at=now if self._input_current else None)
                    elif sub in ready:
                        self._lag_check(pub, now, emptied_at=None)  # input waiting since the queue was last empty
                        emptied_at = self._drain_once(sub, pub)
                        self._input_current = emptied_at is not None
                        if emptied_at is not None:
                            self._lag_check(pub, emptied_at, emptied_at=emptied_at)
                    else:
                        self._input_current = True
                        self._lag_check(pub, now, emptied_at=now)
                    self._housekeeping(pub, time.monotonic())
                    if time.monotonic() >= self._next_state_write:
                        self._write_state()
                    if self.rescorer is not None and hasattr(self.rescorer, "check"):  # a dead re-scoring process
                        self._send_events(pub, self.rescorer.check())
                except Exception:  # a bug must cost one batch, not the service
                    self.stats.decode_errors["internal_error"] += 1
                    log.exception("internal error while processing a batch (dropped, continuing)")
                now = time.monotonic()
                if now - self.stats.last_emit >= self.config.stats_interval_s:
                    try:
                        self._emit_stats(pub, now)
                    except Exception:  # stats must never stop the service
                        self.stats.last_emit = now
                        self.stats.decode_errors["internal_error"] += 1
                        log.exception("internal error while publishing stats (skipped, continuing)")
        finally:
            if self.config.state_file is not None:
                self._write_state(final=True)  # a clean stop (or an escaping exception): the latest state
            if self.rescorer is not None:
                self.rescorer.stop()
                self._forward_rescores(results, pub)
                results.close(0)
            self._close_monitors()
            sub.close(0)
            pub.close()
            if self.curve is not None:
                self.curve.stop()
            log.info("stopped: %s", dict(self.engine.counters))

    # ------------------------------------------------------------ state file (issue 16.1)

    def _state_meta(self) -> dict:
        pool = self.engine.pool
        return {"format": STATE_FORMAT, "layers": int(pool.h.shape[0]), "hidden": int(pool.h.shape[2]),
                "r_max_m": float(self.backend.r_max_m)}

    def _restore(self) -> float | None:
        """Load ``state_file`` if it exists; returns its age in seconds (None: nothing restored).
        A file that cannot be loaded: ConfigError with ``state_strict``, else a warning, the file
        renamed to PATH.bad and a fresh start."""
        from streamer.cluster import checkpoint as C

        path = self.config.state_file
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            log.info("no state file %s yet: starting fresh", path)
            return None
        except OSError as exc:
            raise ConfigError(f"cannot read state file {path!r}: {exc}") from exc
        try:
            ckpt = C.decode(data)
            want = self._state_meta()
            got = {k: ckpt.meta.get(k) for k in want}
            if got != want:
                raise C.CheckpointError(f"written for another model or format: {got}, this serve has {want}")
            self.set_state(ckpt.state)
        except Exception as exc:  # any damage: the operator's choice below
            if self.config.state_strict:
                raise ConfigError(f"state file {path!r} cannot be loaded: {exc} (move it away to start "
                                  "fresh, or drop --state-strict)") from exc
            self.engine = StreamEngine(self.backend, self.config.policy)  # nothing half-restored
            self._hybrids = HybridBank(CPAFitConfig.for_profile(self.profile))
            self._domain = DomainBank(self.profile) if self.config.domain_check else None
            self._alerts = {}
            try:
                os.replace(path, path + ".bad")
                kept = f"kept as {path}.bad"
            except OSError as err:
                kept = f"could not be moved aside: {err}"
            log.error("STATE FILE %s CANNOT BE LOADED (%s: %s): starting every sensor fresh; the file is %s",
                      path, type(exc).__name__, exc, kept)
            self.stats.health["state_file_bad"] += 1
            return None
        self.restored = len(ckpt.state["sensors"])
        age = max(0.0, time.time() - float(ckpt.meta.get("wall_s", time.time())))
        log.info("restored %d sensor(s) from %s (written %.1f s ago)", self.restored, path, age)
        return age

    def _resume(self, state_age: float | None) -> None:
        """After the sockets are up: schedule the state writes; after a restore or a restart, wait
        ``rejoin_s`` before reading the feed and announce the restart first."""
        now = time.monotonic()
        if self.config.state_file is not None:
            self._next_state_write = now + self.config.state_every_s
        if self.restored:  # watched like any sensor: one that never comes back is reported, then evicted
            sensors = self.engine.sensors
            self.silence.seen(list(sensors), [max(st.period_ns, 1) * 1e-9 for st in sensors.values()], now)
        info = self.config.restart
        if state_age is None and not info:
            return
        self.pause(self.config.rejoin_s)
        if info:
            self._announce = Event(SERVICE_SENSOR, "restarted", 0, {
                "restarts": info.get("restarts"), "last_exit": info.get("last_exit"), "restored": self.restored,
                "state_age_s": None if state_age is None else round(state_age, 3)})

    def _announce_restart(self, pub: zmq.Socket) -> None:
        """The ``restarted`` event; ``downtime_s``: from the death of the previous child (the
        supervisor's clock) to now, when this one starts reading the feed."""
        ev, self._announce = self._announce, None
        died = (self.config.restart or {}).get("died_at")
        ev.fields["downtime_s"] = None if died is None else round(time.time() - float(died), 3)
        self.stats.health["restarted"] += 1
        self._send_events(pub, [ev])

    def _write_state(self, *, final: bool = False) -> None:
        """``get_state()`` to ``state_file``. The snapshot is taken here, between drains (it must
        be consistent); encoding and writing run in a thread (tmp file, fsync, rename: a crash
        leaves the old file or the new one, never half of one), one write at a time. The next
        write is due ``state_every_s`` later, or ``STATE_COST_FACTOR`` times this snapshot's
        cost if that is longer (at most ~5 % of the loop's time on snapshots: 1,000 sensors
        cost ~0.1 s). A failure is logged and counted, never fatal. ``final``: in this thread,
        after any write still running (the clean stop)."""
        writer = self._state_writer
        if writer is not None and writer.is_alive():
            if not final:
                self._next_state_write = time.monotonic() + 0.1
                return
            writer.join()
        t = time.perf_counter()
        try:
            state, meta = self.get_state(), {**self._state_meta(), "wall_s": time.time()}
        except Exception as exc:  # noqa: BLE001 - a bug here must not stop the predictions
            self._state_failed(exc)
            self._next_state_write = time.monotonic() + self.config.state_every_s
            return
        cost = time.perf_counter() - t
        every = max(self.config.state_every_s, STATE_COST_FACTOR * cost)
        if every > self.config.state_every_s:
            self._log_limited("state_slow", "state snapshot of %d sensors took %.2f s: writing the state file every "
                              "%.0f s instead of %g s", len(state["sensors"]), cost, every, self.config.state_every_s)
        self._next_state_write = time.monotonic() + every
        if final:
            self._store_state(state, meta)
        else:
            self._state_writer = threading.Thread(target=self._store_state, args=(state, meta), daemon=True,
                                                  name="radarstream-state")
            self._state_writer.start()

    def _store_state(self, state: dict, meta: dict) -> None:
        from streamer.cluster import checkpoint as C

        path = self.config.state_file
        tmp = f"{path}.tmp"
        try:
            data = C.encode(C.Checkpoint(0, state, meta))
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            try:  # the rename itself durable
                fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError:
                pass
            self.stats.health["state_writes"] += 1
        except Exception as exc:  # noqa: BLE001 - a full disk must not stop the predictions
            self._state_failed(exc)

    def _state_failed(self, exc: BaseException) -> None:
        self.stats.health["state_write_failed"] += 1
        self._log_limited("state_write", "cannot write state file %s: %s: %s", self.config.state_file,
                          type(exc).__name__, exc)

    def _close_monitors(self) -> None:
        for mon in self._monitors:
            mon.close(0)
        self._monitors = {}

    # ------------------------------------------------------------ hot path

    def _drain_once(self, sub: zmq.Socket, pub: zmq.Socket) -> float | None:
        """Receive up to ``max_drain`` messages, run them, publish. Returns the monotonic time at
        which the input queue was found empty, or None if the drain stopped at ``max_drain``."""
        msgs: list[list[bytes]] = []
        recvs: list[int] = []
        recv, clock = sub.recv_multipart, time.perf_counter_ns
        emptied_at = None
        budget = self.config.max_drain_bytes
        for _ in range(self.config.max_drain):
            try:
                frames = recv(_NOBLOCK)
            except zmq.Again:
                emptied_at = time.monotonic()
                break
            msgs.append(frames)
            recvs.append(clock())
            if len(frames) > 1:
                budget -= len(frames[1])
                if budget <= 0:
                    break
        if msgs:
            self.handle(msgs, recvs, pub)
        return emptied_at

    def handle(self, msgs: list, recvs: list[int], pub: zmq.Socket) -> None:
        """Decode, run and publish one drain of received messages (``recvs``: perf_counter_ns at
        each receive). ``ServiceConfig.fast_drain`` (and no rate limit) takes the array drain;
        otherwise every message goes through the decoder and the engine one by one. Both publish
        the same predictions, events and counters (tests/streamer/live/test_drain.py)."""
        if self.stats.first_recv_ns is None:
            self.stats.first_recv_ns = recvs[0]
        self.stats.messages += len(msgs)
        if self.config.fast_drain and self._limiter is None:
            runs, events = self._handle_arrays(msgs, recvs)
        else:
            runs, events = self._handle_items(msgs, recvs)
        if runs and self.rescorer is not None:
            # before publishing (a non-blocking queue put): once a consumer holds a prediction, the
            # stats already count the windows it completed, queued or dropped
            self.rescorer.submit(runs)
        self._publish(pub, runs, events)
        if runs:
            if self.metrics is not None:
                for run in runs:
                    if run.truth is not None:
                        self.metrics.observe(run)
            if self.on_runs is not None:
                self.on_runs(runs)

    def _handle_items(self, msgs: list, recvs: list[int]) -> tuple[list[Run], list[Event]]:
        """The per-message drain: decoder, rate limit, engine ``process``."""
        items: list[tuple[str, P.Block, int]] = []
        events: list[Event] = []
        seen: dict[str, P.Block] = {}  # last samples block of each sensor (silence monitor)
        limiter = self._limiter
        decode = self.decoder.decode
        for frames, recv_ns in zip(msgs, recvs):
            msg = decode(frames)
            if isinstance(msg, P.DecodeError):
                events.append(self._bad_input(msg))
                continue
            if msg.kind is P.Kind.SAMPLES:
                if limiter is not None and not limiter.take(msg.sensor, msg.block.count, recv_ns * 1e-9):
                    self._rate_dropped[msg.sensor] += msg.block.count
                    self.stats.health["rate_limited"] += msg.block.count
                    continue
                items.append((msg.sensor, msg.block, recv_ns, msg.truth))
                seen[msg.sensor] = msg.block
            elif msg.kind is P.Kind.EVENT and (msg.meta or {}).get("type") == "reset":
                items.append((msg.sensor, None, recv_ns))  # ordered with the samples around it
        runs: list[Run] = []
        if items:
            runs, engine_events = self.engine.process(items)
            self._attribute(events)
            events = self._seen({s: (b.seq, b.count, b.period_ns) for s, b in seen.items()}) + events + engine_events \
                + self._domain_events(runs)
        elif events:
            self._attribute(events)
        return runs, events

    def _handle_arrays(self, msgs: list, recvs: list[int]) -> tuple[list[Run], list[Event]]:
        """The array drain: plain samples messages decoded together (protocol.decode_sample_batch),
        in-order sensors admitted with array checks (engine.process_drain); everything else (bad
        frames, events, truth frames when metrics are on) through the decoder one by one."""
        batch, rest = P.decode_sample_batch(msgs, self._topics, max_samples=self.config.max_samples_per_message,
                                            ignore_truth=not self.config.metrics)
        batch.recv_ns = np.asarray(recvs, np.int64)[batch.index]
        events: list[Event] = []
        slow: list[tuple[int, tuple]] = []
        decode = self.decoder.decode
        slow_samples = False
        for pos in rest:
            msg = decode(msgs[pos])
            if isinstance(msg, P.DecodeError):
                events.append(self._bad_input(msg))
            elif msg.kind is P.Kind.SAMPLES:
                slow.append((pos, (msg.sensor, msg.block, recvs[pos], msg.truth)))
                slow_samples = True
            elif msg.kind is P.Kind.EVENT and (msg.meta or {}).get("type") == "reset":
                slow.append((pos, (msg.sensor, None, recvs[pos])))
        if not len(batch) and not slow:
            if events:
                self._attribute(events)
            return [], events
        # sensor -> (seq, count, period_ns) of its last samples block, in first-appearance order
        seq_l, count_l, per_l = batch.seq.tolist(), batch.count.tolist(), batch.period_ns.tolist()
        if slow_samples:  # both kinds of message, in arrival order
            arrivals = [(pos, s, (seq_l[k], count_l[k], per_l[k])) for k, (pos, s) in
                        enumerate(zip(batch.index.tolist(), batch.sensor))]
            arrivals += [(pos, item[0], (item[1].seq, item[1].count, item[1].period_ns))
                         for pos, item in slow if item[1] is not None]
            arrivals.sort(key=lambda e: e[0])
            seen = {s: v for _, s, v in arrivals}
        else:
            last = {s: k for k, s in enumerate(batch.sensor)}
            seen = {s: (seq_l[k], count_l[k], per_l[k]) for s, k in last.items()}
        runs, engine_events = self.engine.process_drain(batch, slow)
        self._attribute(events)
        events = self._seen(seen) + events + engine_events + self._domain_events(runs)
        return runs, events

    def _seen(self, seen: dict[str, tuple[int, int, int]]) -> list[Event]:
        """Feed the silence monitor (``seen``: sensor -> ``(seq, count, period_ns)`` of its last
        samples block in the drain); ``sensor_back`` events for sensors that were silent."""
        sensors = self.engine.sensors
        names = [s for s in seen if s in sensors]  # refused by the engine (sensor limit): not tracked
        intervals = [seen[s][1] * seen[s][2] * 1e-9 for s in names]
        out = []
        for sensor, silent_s in self.silence.seen(names, intervals, time.monotonic()):
            self.stats.health["sensor_back"] += 1
            out.append(Event(sensor, "sensor_back", seen[sensor][0], {"silent_s": round(silent_s, 3)}))
        return out

    def _domain_events(self, runs: list[Run]) -> list[Event]:
        """``out_of_domain`` when a sensor's stream leaves the profile's envelope, and
        ``back_in_domain`` once it has been back for a while (streamer/live/domain.py)."""
        if self._domain is None or not runs:
            return []
        out = []
        for sensor, seq, reason in self._domain.update(runs):
            st = self.engine.sensors.get(sensor)
            if reason is not None:
                if st is not None:
                    st.counters["out_of_domain"] += 1
                self.engine.counters["out_of_domain"] += 1
                out.append(Event(sensor, "out_of_domain", seq, {"reason": reason, "profile": self.profile.name}))
            else:
                out.append(Event(sensor, "back_in_domain", seq, {}))
        return out

    def _alert_events(self, run: Run, data: np.ndarray, r_max: float) -> list[Event]:
        """``near_miss`` / ``near_miss_cleared`` for this run's rows (hybrid estimate ± σ; the
        encounter is the classical fit's: it lasts while its estimate is defined). A fault
        boundary like :meth:`_hybrid`."""
        try:
            return self._alert_events_of(run, data, r_max)
        except Exception as exc:  # noqa: BLE001
            self._internal_error("alerts", run.sensor, exc)
            self._alerts.pop(run.sensor, None)
            return []

    def _alert_events_of(self, run: Run, data: np.ndarray, r_max: float) -> list[Event]:
        det = self._alerts.get(run.sensor)
        if det is None:
            det = self._alerts[run.sensor] = NearMissDetector(self.config.alert)
        std = np.where(np.isfinite(data[:, 7]), data[:, 7], data[:, 5]).astype(np.float64) * r_max
        est = np.stack([data[:, 4].astype(np.float64) * r_max, std, np.isfinite(data[:, 3])], axis=1)
        out = det.update(Block(np.zeros(len(data), np.int64), run.x, estimate=est))
        events = []
        cfg = self.config.alert
        num = lambda v, nd: round(v, nd) if math.isfinite(v) else None  # noqa: E731 - JSON has no NaN
        for k in np.flatnonzero(out[:, 2]).tolist():
            d, sd, prob = float(est[k, 0]), float(est[k, 1]), float(out[k, 0])
            fields = {"dmin_m": num(d, 2), "std_m": num(sd, 2), "probability": num(prob, 4),
                      "threshold_m": cfg.dmin_m, "sample_t_ns": int(run.t0_ns + k * run.period_ns)}
            if out[k, 2] > 0:
                fields.update(margin_m=round(cfg.dmin_m - d, 2), confidence=cfg.confidence)
                self.engine.counters["near_miss"] += 1
            events.append(Event(run.sensor, "near_miss" if out[k, 2] > 0 else "near_miss_cleared", run.seq + k, fields))
        return events

    def _hybrid(self, run: Run) -> np.ndarray:
        """``[T, 5]``: classical, its σ, hybrid, its σ, time to CPA of a run (models/hybrid.py).
        A fault boundary: a failure here costs this run's classical channels (NaN, the hybrid
        falls back to the causal estimate), counted as ``internal_error`` — never the batch."""
        try:
            return self._hybrids.update(run.sensor, run_block(run), reset_before=run.reset_before)
        except Exception as exc:  # noqa: BLE001 - one sensor's bad numbers must not cost the others
            self._internal_error("hybrid", run.sensor, exc)
            self._hybrids.forget(run.sensor)
            out = np.full((run.y.shape[0], 5), np.nan)
            out[:, 2] = run.y
            if run.y_std is not None:
                out[:, 3] = run.y_std
            return out

    def _internal_error(self, where: str, sensor: str, exc: BaseException) -> None:
        """Count and log (rate-limited, no traceback flood) a bug caught at a fault boundary."""
        self.stats.decode_errors["internal_error"] += 1
        self._log_limited(f"internal_{where}", "internal error in %s for sensor %s: %s: %s", where, sensor,
                          type(exc).__name__, exc)

    def _forward_rescores(self, results: zmq.Socket, pub: zmq.Socket) -> None:
        """Publish what the re-scoring thread (or process) finished (this thread owns the PUB socket)."""
        on_result = getattr(self.rescorer, "on_result", None)
        while True:
            try:
                frames = results.recv_multipart(_NOBLOCK)
            except zmq.Again:
                return
            if on_result is not None and not on_result(frames):
                continue  # the process's own bookkeeping (ready, failed)
            pub.send_multipart(frames)
            if self.metrics is not None:
                msg = P.decode_message(frames)
                if isinstance(msg, P.Message):
                    self.metrics.observe_rescore(msg.sensor, msg.block.seq, msg.block.data[:, 0])

    def _send_events(self, pub: zmq.Socket, events: list[Event]) -> None:
        """Publish events (within the budget for the noisy types) and log the notable ones."""
        if not events:
            return
        now_ns = time.time_ns()
        now = time.monotonic()
        budget = self._budget
        for ev in events:
            budgeted = ev.type in BUDGETED_EVENTS or (ev.type == "dropped" and ev.fields.get("reason") == "sensor_limit")
            if budgeted and not budget.allow(ev.sensor, ev.type, now):
                continue
            st = self.engine.sensors.get(ev.sensor)
            epoch = st.epoch if st is not None else self._epoch
            seq = min(max(ev.seq, 0), (1 << 64) - 1)  # an event about the end of a sensor's u64 range
            try:
                msg = P.make_event(ev.sensor, ev.type, epoch=epoch, seq=seq, t_ns=now_ns, **ev.fields)
            except (TypeError, ValueError) as exc:  # a field JSON cannot carry: lose this event, not the batch
                self.stats.decode_errors["internal_error"] += 1
                self._log_limited("event_error", "cannot encode %s event of %s: %s", ev.type, ev.sensor, exc)
                continue
            pub.send_multipart(P.encode_message(msg), copy=False)
            quiet = ev.type in _QUIET_EVENTS or (ev.type == "peer_disconnected" and ev.fields.get("socket") == "pub")
            if not quiet:  # a subscriber leaving the output is normal life, not a warning
                self._log_limited(ev.type, "%s %s seq=%d %s", ev.type, ev.sensor, ev.seq, ev.fields)

    def _publish(self, pub: zmq.Socket, runs: list[Run], events: list[Event]) -> None:
        # events first: a reset or gap precedes the predictions it concerns
        self._send_events(pub, events)
        if runs:
            self._send_preds(pub, runs)
            self.stats.last_pub_ns = time.perf_counter_ns()
        if self.config.checkpoint_every:
            self._checkpoint(pub, runs)

    def _pred_records(self, t: int, n: int, channels: int) -> np.ndarray:
        """``n`` reusable pred frames of ``t`` rows (header + payload records, protocol layout);
        safe to reuse because the sends copy them (``copy=True``)."""
        key = (t, channels)
        buf = self._pred_buffers.get(key)
        if buf is None or len(buf) < n:
            if len(self._pred_buffers) >= 256:
                self._pred_buffers.clear()
            buf = self._pred_buffers[key] = np.zeros(max(n, 16, 0 if buf is None else 2 * len(buf)),
                                                     P.record_dtype(t, channels))
            buf["magic"], buf["version"], buf["kind"], buf["channels"], buf["count"] = (
                P.MAGIC, P.VERSION, int(P.Kind.PRED), channels, t)
        return buf[:n]

    def _send_preds(self, pub: zmq.Socket, runs: list[Run]) -> None:
        """Every run's ``pred`` frame encoded into reusable record arrays, one per run length
        (header fields and channels filled column-wise for all runs of that length), then sent in
        the runs' order. ``latency_us`` is stamped per chunk of up to ``PRED_CHUNK`` frames, just
        before the chunk is sent (docs/protocol.md)."""
        r_max = self.backend.r_max_m
        hybrid = self.config.hybrid
        channels = P.PRED_CHANNELS + (len(P.PRED_OPTIONAL_CHANNEL_NAMES) if hybrid or self.backend.has_std else 0)
        by_t: dict[int, list[int]] = {}
        for i, run in enumerate(runs):
            by_t.setdefault(run.y.shape[0], []).append(i)
        place: list = [None] * len(runs)  # run -> (group, row, its frame's bytes)
        groups: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (records, their data view, recv [n, t])
        wall_ns = time.time_ns()
        ages = []
        for t, idx in by_t.items():
            group = [runs[i] for i in idx]
            n = len(group)
            rec = self._pred_records(t, n, channels)
            rec["epoch"] = np.fromiter((r.epoch for r in group), np.uint64, n)
            rec["seq"] = np.fromiter((r.seq for r in group), np.uint64, n)
            t0 = np.fromiter((r.t0_ns for r in group), np.int64, n)
            period = np.fromiter((r.period_ns for r in group), np.int64, n)
            rec["t0_ns"], rec["period_ns"] = t0, period
            data = rec["data"]  # [n, t, channels] view
            y = np.stack([r.y for r in group]) if n > 1 else group[0].y[None]
            data[:, :, 0] = y
            data[:, :, 1] = y * np.float32(r_max)
            if channels > P.PRED_CHANNELS:  # see docs/protocol.md: 3 classical, 4 hybrid, 5-7 their σ, 8 time to CPA
                for k, r in enumerate(group):
                    data[k, :, 5] = np.nan if r.y_std is None else r.y_std
                if hybrid:
                    for k, r in enumerate(group):
                        est = self._hybrid(r)
                        row = data[k]
                        row[:, 3], row[:, 6], row[:, 4], row[:, 7], row[:, 8] = est[:, 0], est[:, 1], est[:, 2], est[:, 3], est[:, 4]
                else:
                    data[:, :, 3:5] = np.nan
                    data[:, :, 6:9] = np.nan
            raw = memoryview(rec.view(np.uint8))  # 1-D bytes of the n frames
            size = rec.dtype.itemsize
            gid = len(groups)
            recv = (np.fromiter((r.recv_ns[0] for r in group), np.int64, n)[:, None] if t == 1
                    else np.stack([r.recv_ns for r in group]))
            groups.append((rec, data, recv))
            for k, i in enumerate(idx):
                place[i] = (gid, k, raw[k * size : (k + 1) * size])
            ages.append((wall_ns - t0 - (t - 1) * period) * 1e-6)
        topics = self._pred_topics
        lat_window = self.stats.latencies_us
        alerts = self.config.alert is not None and hybrid
        send = pub.send
        more = _SNDMORE
        lats = []
        for a in range(0, len(runs), PRED_CHUNK):
            chunk = place[a : a + PRED_CHUNK]
            now = time.perf_counter_ns()
            spans: dict[int, list[int]] = {}  # group -> [first row, last row] in this chunk (contiguous)
            for g, k, _ in chunk:
                span = spans.get(g)
                if span is None:
                    spans[g] = [k, k]
                else:
                    span[1] = k
            for g, (k0, k1) in spans.items():
                _, data, recv = groups[g]
                lat = (now - recv[k0 : k1 + 1]) * 1e-3
                data[k0 : k1 + 1, :, 2] = lat
                lats.append(lat.ravel() if lat.shape[1] < 64 else lat[:, :: max(1, lat.shape[1] // 64)].ravel())
            for j, (g, k, raw) in enumerate(chunk):
                run = runs[a + j]
                if alerts:  # an alert goes out before the rows it is about
                    self._send_events(pub, self._alert_events(run, groups[g][1][k], r_max))
                tp = topics.get(run.sensor)
                if tp is None:
                    if len(topics) >= 65536:
                        topics.clear()
                    tp = topics[run.sensor] = P.topic(P.Kind.PRED, run.sensor)
                send(tp, more, copy=True)
                send(raw, 0, copy=True)
        lat_window.extend((np.concatenate(lats) if len(lats) > 1 else lats[0]).tolist())
        self.stats.sample_age_ms.extend(np.concatenate(ages).tolist())
        self.stats.samples += sum(r.y.shape[0] for r in runs)
        self.stats.preds += len(runs)

    # ------------------------------------------------------------ health

    def _lag_check(self, pub: zmq.Socket, now: float, *, emptied_at: float | None) -> None:
        """``lag`` when input may have waited past the threshold, ``lag_cleared`` once drained."""
        if emptied_at is not None:
            fields = self.lag.emptied(emptied_at)
            if fields is not None:
                self.stats.health["lag_cleared"] += 1
                self._send_events(pub, [Event(SERVICE_SENSOR, "lag_cleared", 0, fields)])
            return
        fields = self.lag.pending(now)
        if fields is not None:
            self.stats.health["lag"] += 1
            self._send_events(pub, [Event(SERVICE_SENSOR, "lag", 0, fields)])

    def _on_monitor(self, mon: zmq.Socket, name: str, pub: zmq.Socket) -> None:
        """Socket monitor events: connections made, lost (heartbeat timeouts too) and refused."""
        events = []
        while True:
            try:
                frames = mon.recv_multipart(_NOBLOCK)
            except zmq.Again:
                break
            try:
                ev = parse_monitor(name, frames)
            except (ValueError, KeyError, IndexError):
                continue
            self.stats.health[f"{name}_{ev.name}"] += 1
            kind = ev.published_type
            if kind is None:
                continue
            fields = {"socket": name, "endpoint": ev.endpoint}
            retry = self._retry.get(name)
            if kind == "peer_connected" and retry is not None:
                retry.connected(ev.endpoint)
            if kind == "peer_refused":
                detail = ev.detail
                if self.curve is None and ev.name.startswith("handshake_failed"):  # any failed handshake of a plain socket
                    detail += " (the peer may require CurveZMQ: serve with --curve-keys DIR)"
                fields.update(reason=ev.name, detail=detail)
                delay = retry.refused(ev.endpoint, time.monotonic()) if retry is not None else None
                if delay is not None:  # libzmq gives up on a refused connection: we do not
                    fields["retry_in_s"] = round(delay, 3)
            events.append(Event(SERVICE_SENSOR, kind, 0, fields))
        self._send_events(pub, events)

    def _housekeeping(self, pub: zmq.Socket, now: float) -> None:
        """Silence checks, allow-list reloads and periodic summaries (between drains)."""
        h = self.config.health
        events: list[Event] = []
        if self._input_current and now >= self._next_silence_check:
            # only with the queue seen empty: a backlog (or a pause) is not the sensors' silence
            self._next_silence_check = now + h.check_interval_s
            cap = h.silent_events_per_check
            silent = self.silence.check(now)
            for sensor, quiet_s, limit_s in silent[:cap]:
                self.stats.health["sensor_silent"] += 1
                st = self.engine.sensors.get(sensor)
                seq = st.next_seq if st is not None else 0
                events.append(Event(sensor, "sensor_silent", seq, {"silent_s": round(quiet_s, 3),
                                                                    "threshold_s": round(limit_s, 3), "next_seq": seq}))
            if len(silent) > cap:
                self.stats.health["sensor_silent"] += len(silent) - cap
                events.append(Event(SERVICE_SENSOR, "sensors_silent", 0, {
                    "count": len(silent) - cap, "sensors": [name for name, _, _ in silent[cap : cap + 20]]}))
            if h.evict_after_s is not None:
                events += self._evict(self.silence.stale(now, h.evict_after_s), cap)
        for retry in self._retry.values():
            for ep in retry.tick(now):
                self.stats.health["reconnect_after_refusal"] += 1
                log.info("reconnecting to %s after a refused handshake", ep)
        auth = self.curve.authenticator if self.curve is not None else None
        if auth is not None:
            due = self.config.curve.reload_interval_s > 0 and now >= self._next_reload_check
            if due:
                self._next_reload_check = now + self.config.curve.reload_interval_s
            if self._reload_requested or (due and auth.changed()):
                self._reload_requested = False
                added, removed = auth.reload()
                rebound = self._rebind() if removed else 0
                self.stats.health["allow_list_reloads"] += 1
                events.append(Event(SERVICE_SENSOR, "allow_list_reloaded", 0, {
                    "keys": len(auth.keys), "added": len(added), "removed": len(removed), "rebound": rebound}))
        if now >= self._next_summary:
            self._next_summary = now + min(self.config.stats_interval_s, SUMMARY_INTERVAL_S)
            events.extend(self._summaries())
        self._send_events(pub, events)

    def _evict(self, sensors: list[str], cap: int) -> list[Event]:
        """Drop every per-sensor state of these long-silent sensors (``HealthConfig.evict_after_s``):
        the engine's slot, the classical fit, domain, alert, rate-limit and checkpoint records, the
        cached topics. A re-scoring process keeps its windows until they complete."""
        if not sensors:
            return []
        events = []
        gone = set(sensors)
        topics = [t for t, name in self._topics.items() if name in gone]
        for t in topics:
            del self._topics[t]
        for sensor in sensors:
            st = self.engine.sensors.get(sensor)
            if len(events) < cap:
                events.append(Event(sensor, "sensor_evicted", st.next_seq if st is not None else 0,
                                    {"silent_s": self.config.health.evict_after_s}))
            self.engine.forget(sensor)
            self._hybrids.forget(sensor)
            if self._domain is not None:
                self._domain.forget(sensor)
            if self._limiter is not None:
                self._limiter.forget(sensor)
            self._alerts.pop(sensor, None)
            self._last_checkpoint.pop(sensor, None)
            self._pred_topics.pop(sensor, None)
            self._rate_dropped.pop(sensor, None)
        self.silence.forget(sensors)
        self.stats.health["sensor_evicted"] += len(sensors)
        if len(sensors) > cap:
            events.append(Event(SERVICE_SENSOR, "sensors_evicted", 0, {
                "count": len(sensors) - cap, "sensors": sensors[cap : cap + 20]}))
        return events

    def _summaries(self) -> list[Event]:
        out = []
        rate = self.config.health.max_sensor_rate
        for sensor, n in sorted(self._rate_dropped.items()):
            st = self.engine.sensors.get(sensor)
            out.append(Event(sensor, "rate_limited", st.next_seq if st is not None else 0,
                             {"samples": n, "max_rate": rate, "action": "drop"}))
        self._rate_dropped.clear()
        suppressed = self._budget.take_summary()
        if suppressed:
            self.stats.health["events_suppressed"] += sum(suppressed.values())
            out.append(Event(SERVICE_SENSOR, "events_suppressed", 0, {"by_type": suppressed}))
        return out

    def _rebind(self) -> int:
        """Unbind and re-bind every bound endpoint: libzmq then drops the connections accepted
        there, so every peer must authenticate again against the reloaded allow-list."""
        for sock, endpoint in self._bound:
            sock.unbind(endpoint)
            deadline = time.monotonic() + 2.0
            while True:
                try:
                    sock.bind(endpoint)
                    break
                except zmq.ZMQError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
        log.warning("allow-list shrank: re-bound %d endpoint(s) so that every client authenticates again",
                    len(self._bound))
        return len(self._bound)

    def _checkpoint(self, pub: zmq.Socket, runs: list[Run]) -> None:
        every = self.config.checkpoint_every
        for run in runs:
            st = self.engine.sensors.get(run.sensor)
            last = self._last_checkpoint.get(run.sensor)
            if st is None or (last is not None and st.next_seq - last < every and not run.reset_before):
                continue
            self._last_checkpoint[run.sensor] = st.next_seq
            pub.send_multipart(P.encode_message(state_message(self.engine, run.sensor, run.t0_ns + run.period_ns * run.y.shape[0], run.period_ns)), copy=False)

    # ------------------------------------------------------------ bad input, logs, stats

    def _bad_input(self, err: P.DecodeError) -> Event:
        reason = err.reason.value if hasattr(err.reason, "value") else str(err.reason)
        self.stats.decode_errors[reason] += 1
        sensor = err.sensor if err.sensor and P.is_valid_sensor(err.sensor) else SERVICE_SENSOR
        return Event(sensor, "malformed", 0, {"reason": reason, "detail": err.detail[:200]})

    def _attribute(self, events: list[Event]) -> None:
        """Per-sensor ``malformed_<reason>`` counters, after the engine has admitted this drain's
        samples: a sensor whose first valid message shares the drain is known by then."""
        sensors = self.engine.sensors
        for ev in events:
            if ev.type == "malformed":
                st = sensors.get(ev.sensor)
                if st is not None:
                    st.counters[f"malformed_{ev.fields['reason']}"] += 1

    def _log_limited(self, key: str, fmt: str, *args) -> None:
        now = time.monotonic()
        if now - self._last_log.get(key, -1e9) >= self.config.log_interval_s:
            more = self._suppressed.pop(key, 0)
            log.warning(fmt + (f" (+{more} similar suppressed)" if more else ""), *args)
            self._last_log[key] = now
        else:
            self._suppressed[key] += 1

    def get_state(self) -> dict:
        """Everything that decides this service's future outputs, for every sensor: the engine's
        stream position and ``(h, c)``, the classical fit, the out-of-domain averages and the
        near-miss detector (plain values and arrays; streamer/cluster checkpoints it). Not
        included: health timers, event budgets, delayed-label metrics and stats (they describe
        this process's life, not the streams)."""
        eng = self.engine
        sensors = {}
        for s, st in eng.sensors.items():
            h, c, epoch, next_seq = eng.get_state(s)
            sensors[s] = {"h": h, "c": c, "epoch": epoch, "next_seq": next_seq, "period_ns": st.period_ns,
                          "samples": st.samples, "counters": dict(st.counters), "reset_pending": st.reset_pending}
        dom = self._domain
        return {
            "sensors": sensors, "counters": dict(eng.counters),
            "hybrid": {s: h.get_state() for s, h in self._hybrids._by_sensor.items()},
            "domain": None if dom is None else {"rows": {s: dom._state[k].copy() for s, k in dom._slot.items()},
                                                "out": dict(dom._out), "clean": dict(dom._clean)},
            "alerts": {s: a.get_state() for s, a in self._alerts.items()},
        }

    def set_state(self, state: dict) -> None:
        """Resume from :meth:`get_state` (of a service with the same model and options), in a
        service that has seen nothing yet."""
        from collections import Counter as _Counter

        eng = self.engine
        for s, v in state["sensors"].items():
            eng.set_state(s, v["h"], v["c"], int(v["epoch"]), int(v["next_seq"]))
            st = eng.sensors[s]
            st.period_ns, st.samples, st.reset_pending = int(v["period_ns"]), int(v["samples"]), bool(v["reset_pending"])
            st.counters = _Counter(v["counters"])
        eng.counters = _Counter(state["counters"])
        for s, v in state["hybrid"].items():
            hyb = self._hybrids._by_sensor[s] = self._hybrids._make()
            hyb.set_state(v)
        dom = self._domain
        if dom is not None and state.get("domain") is not None:
            rows = state["domain"]["rows"]
            slots = dom._slots(list(rows))
            for k, row in zip(slots.tolist(), rows.values()):
                dom._state[k] = row
            dom._out, dom._clean = dict(state["domain"]["out"]), dict(state["domain"]["clean"])
        if self.config.alert is not None:
            for s, v in state["alerts"].items():
                det = self._alerts[s] = NearMissDetector(self.config.alert)
                det.set_state(v)

    def snapshot(self, now: float | None = None) -> dict:
        """The stats message body: rates since the last one, latency percentiles, all counters."""
        now = time.monotonic() if now is None else now
        s = self.stats
        dt = max(now - s.last_emit, 1e-9)
        lat = np.fromiter(s.latencies_us, np.float64, len(s.latencies_us))
        pct = (lambda q: round(float(np.percentile(lat, q)), 1)) if lat.size else (lambda q: None)
        ages = np.fromiter(s.sample_age_ms, np.float64, len(s.sample_age_ms))
        age = (lambda q: round(float(np.percentile(ages, q)), 1)) if ages.size else (lambda q: None)
        return {
            "type": "stats",
            "interval_s": round(dt, 3),
            "uptime_s": round(now - s.started, 1),
            "samples_per_s": round((s.samples - s.last_samples) / dt, 1),
            "messages_per_s": round((s.messages - s.last_messages) / dt, 1),
            "latency_us": {"p50": pct(50), "p99": pct(99), "max": round(float(lat.max()), 1) if lat.size else None},
            "sensors": len(self.engine.sensors),
            "samples": s.samples,
            "messages": s.messages,
            "counters": dict(self.engine.counters),
            "decode_errors": dict(s.decode_errors),
            "backend": self.backend.name,
            "health": self._health_snapshot(now),
            "sample_age_ms": {"p50": age(50), "max": round(float(ages.max()), 1) if ages.size else None},
            "sensor_counters": self._sensor_counters(),
            **({"rescore": self.rescorer.snapshot()} if self.rescorer is not None else {}),
            **({"quality": self.metrics.snapshot()} if self.metrics is not None else {}),
        }

    def _health_snapshot(self, now: float) -> dict:
        lag = self.lag
        silent = self.silence.silent()
        out = {
            "lag": {"backlog_s": round(lag.backlog(now, not self._input_current), 3),
                    "max_backlog_s": round(lag.max_backlog_s, 3), "alarm": lag.in_alarm,
                    "threshold_s": lag.threshold_s},
            "silent_sensors": len(silent),
            "silent": silent[:SENSOR_LIST_CAP],
            **self._domain_snapshot(),
            "counters": dict(self.stats.health),
        }
        auth = self.curve.authenticator if self.curve is not None else None
        if self.curve is not None:
            out["curve"] = {"allow_list_keys": len(auth.keys) if auth else None,
                            "handshakes_allowed": auth.allowed if auth else None,
                            "handshakes_denied": auth.denied if auth else None}
        return out

    def _domain_snapshot(self) -> dict:
        if self._domain is None:
            return {}
        ood = self._domain.out_of_domain
        return {"out_of_domain_sensors": len(ood),
                "out_of_domain": dict(sorted(ood.items())[:SENSOR_LIST_CAP])}

    def _sensor_counters(self) -> dict[str, dict[str, int]]:
        """Per-sensor counters of the sensors that had anything beyond plain samples (the most
        affected first, at most SENSOR_LIST_CAP of them)."""
        rows = []
        for sensor, st in self.engine.sensors.items():
            issues = sum(v for k, v in st.counters.items() if k not in ("samples", "new_sensor"))
            if issues:
                rows.append((-issues, sensor, dict(st.counters)))
        rows.sort()
        return {sensor: c for _, sensor, c in rows[:SENSOR_LIST_CAP]}

    def _emit_stats(self, pub: zmq.Socket, now: float) -> None:
        body = self.snapshot(now)
        s = self.stats
        s.last_emit, s.last_samples, s.last_messages = now, s.samples, s.messages
        s.latencies_us.clear()
        s.sample_age_ms.clear()
        self.lag.max_backlog_s = 0.0
        msg = P.make_event(SERVICE_SENSOR, "stats", epoch=self._epoch, seq=0, t_ns=time.time_ns(),
                           **{k: v for k, v in body.items() if k != "type"})
        pub.send_multipart(P.encode_message(msg), copy=False)
        if body["samples"]:
            log.info("stats: %.0f samples/s, latency p50 %s us p99 %s us, %d sensors, counters %s, bad %s",
                     body["samples_per_s"], body["latency_us"]["p50"], body["latency_us"]["p99"],
                     body["sensors"], body["counters"], body["decode_errors"])
