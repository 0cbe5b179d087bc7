"""The ZeroMQ service: SUB ``samples/`` -> engine -> PUB ``pred/``, ``event/`` (and stats).

One thread owns both sockets (ZeroMQ sockets are not thread-safe). Each loop iteration drains
every pending message (up to ``max_drain``), decodes them, runs the engine once over the whole
batch and publishes the results, so the cost per sample falls as load rises.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import zmq

from streamer import protocol as P
from streamer.backends.base import StepBackend
from streamer.engine import Event, Run, StreamEngine, StreamPolicy
from models.hybrid import OnlineHybrid
from streamer.metrics import DelayedLabelMetrics
from streamer.rescore import RescoreConfig, Rescorer

log = logging.getLogger("radarstream.serve")

_NOBLOCK = int(zmq.NOBLOCK)  # a plain int: enum flag arithmetic costs µs per call on the hot path

SERVICE_SENSOR = "_service"
"""Pseudo sensor id of service-wide events (stats, malformed frames without a sensor)."""


def attach(sock: zmq.Socket, endpoint: str, default: str) -> str:
    """Bind or connect by the czmq convention: ``@endpoint`` binds, ``>endpoint`` connects, a
    bare endpoint does ``default``. Returns the resolved endpoint (ports chosen with ``:*``)."""
    mode = default
    if endpoint.startswith("@"):
        mode, endpoint = "bind", endpoint[1:]
    elif endpoint.startswith(">"):
        mode, endpoint = "connect", endpoint[1:]
    if mode == "bind":
        sock.bind(endpoint)
        return sock.getsockopt_string(zmq.LAST_ENDPOINT)
    sock.connect(endpoint)
    return endpoint


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
    checkpoint_every: int | None = None
    """Publish each sensor's (h, c) on ``state/<sensor>`` once at least this many samples have
    passed since its last checkpoint (at the end of a run), so replay can seek and resume."""


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
        self.stats = ServiceStats()
        self.ctx = context or zmq.Context.instance()
        self.on_runs = on_runs
        self.ready = threading.Event()
        self.pub_endpoint: str | None = None
        self.feed_endpoints: list[str] = []
        self._stop = threading.Event()
        self._last_log: dict[str, float] = {}
        self._suppressed: Counter = Counter()
        self._epoch = time.time_ns()
        self._last_checkpoint: dict[str, int] = {}
        self.decoder = P.Decoder(max_samples=config.max_samples_per_message, with_truth=config.metrics)
        self.metrics = DelayedLabelMetrics(backend.r_max_m) if config.metrics else None
        self.rescorer = Rescorer(config.rescore, weights_dir, self.ctx) if config.rescore else None
        self._hybrids: dict[str, OnlineHybrid] = {}

    # ------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        self._stop.set()

    def start_thread(self) -> threading.Thread:
        """Run in a background thread (tests, demo); waits until the sockets are attached."""
        th = threading.Thread(target=self.run, name="radarstream-serve", daemon=True)
        th.start()
        if not self.ready.wait(10.0):
            raise RuntimeError("service did not start")
        return th

    def _open(self) -> tuple[zmq.Socket, zmq.Socket]:
        cfg = self.config
        sub = self.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, cfg.rcvhwm)
        sub.setsockopt(zmq.MAXMSGSIZE, P.max_block_size(cfg.max_samples_per_message) * 2 + 4096)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, P.topic_prefix(P.Kind.SAMPLES))
        sub.setsockopt(zmq.SUBSCRIBE, P.topic_prefix(P.Kind.EVENT))
        self.feed_endpoints = [attach(sub, f, "connect") for f in cfg.feeds]
        pub = self.ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.SNDHWM, cfg.sndhwm)
        pub.setsockopt(zmq.LINGER, 500)
        self.pub_endpoint = attach(pub, cfg.pub, "bind")
        return sub, pub

    def run(self) -> None:
        sub, pub = self._open()
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        results = None
        if self.rescorer is not None:
            results = self.rescorer.bind_results()
            poller.register(results, zmq.POLLIN)
            self.rescorer.start()
        log.info("serving %s: feeds %s -> pub %s", self.backend.describe(), self.feed_endpoints, self.pub_endpoint)
        self.ready.set()
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(self.config.poll_ms))
                try:
                    if results is not None and results in ready:
                        self._forward_rescores(results, pub)
                    if sub in ready:
                        self._drain_once(sub, pub)
                except Exception:  # a bug must cost one batch, not the service
                    self.stats.decode_errors["internal_error"] += 1
                    log.exception("internal error while processing a batch (dropped, continuing)")
                now = time.monotonic()
                if now - self.stats.last_emit >= self.config.stats_interval_s:
                    self._emit_stats(pub, now)
        finally:
            if self.rescorer is not None:
                self.rescorer.stop()
                self._forward_rescores(results, pub)
                results.close(0)
            sub.close(0)
            pub.close()
            log.info("stopped: %s", dict(self.engine.counters))

    # ------------------------------------------------------------ hot path

    def _drain_once(self, sub: zmq.Socket, pub: zmq.Socket) -> None:
        items: list[tuple[str, P.Block, int]] = []
        events: list[Event] = []
        cfg = self.config
        for _ in range(cfg.max_drain):
            try:
                frames = sub.recv_multipart(_NOBLOCK)
            except zmq.Again:
                break
            recv_ns = time.perf_counter_ns()
            if self.stats.first_recv_ns is None:
                self.stats.first_recv_ns = recv_ns
            self.stats.messages += 1
            msg = self.decoder.decode(frames)
            if isinstance(msg, P.DecodeError):
                events.append(self._bad_input(msg))
                continue
            if msg.kind is P.Kind.SAMPLES:
                items.append((msg.sensor, msg.block, recv_ns, msg.truth))
            elif msg.kind is P.Kind.EVENT and (msg.meta or {}).get("type") == "reset":
                items.append((msg.sensor, None, recv_ns))  # ordered with the samples around it
        runs: list[Run] = []
        if items:
            runs, engine_events = self.engine.process(items)
            events.extend(engine_events)
        self._publish(pub, runs, events)
        if runs:
            if self.rescorer is not None:
                self.rescorer.submit(runs)
            if self.metrics is not None:
                for run in runs:
                    if run.truth is not None:
                        self.metrics.observe(run)
            if self.on_runs is not None:
                self.on_runs(runs)

    def _hybrid(self, run: Run) -> tuple[np.ndarray, np.ndarray]:
        """Classical and hybrid estimates of a run (see models/hybrid.py for the rule)."""
        hyb = self._hybrids.get(run.sensor)
        if hyb is None:
            hyb = self._hybrids[run.sensor] = OnlineHybrid()
        elif run.reset_before:
            hyb.reset()
        t_s = (run.t0_ns + run.period_ns * np.arange(run.y.shape[0], dtype=np.float64)) * 1e-9
        try:
            return hyb.process(t_s, run.x[:, 1].astype(np.float64), run.y)
        except ValueError:  # times went backwards without a reset (bad sensor clock): start over
            hyb.reset()
            return hyb.process(t_s, run.x[:, 1].astype(np.float64), run.y)

    def _forward_rescores(self, results: zmq.Socket, pub: zmq.Socket) -> None:
        """Publish what the re-scoring thread finished (this thread owns the PUB socket)."""
        while True:
            try:
                frames = results.recv_multipart(_NOBLOCK)
            except zmq.Again:
                return
            pub.send_multipart(frames)
            if self.metrics is not None:
                msg = P.decode_message(frames)
                if isinstance(msg, P.Message):
                    self.metrics.observe_rescore(msg.sensor, msg.block.seq, msg.block.data[:, 0])

    def _publish(self, pub: zmq.Socket, runs: list[Run], events: list[Event]) -> None:
        # events first: a reset or gap precedes the predictions it concerns
        now_ns = time.time_ns()
        for ev in events:
            st = self.engine.sensors.get(ev.sensor)
            epoch = st.epoch if st is not None else self._epoch
            msg = P.make_event(ev.sensor, ev.type, epoch=epoch, seq=max(ev.seq, 0), t_ns=now_ns, **ev.fields)
            pub.send_multipart(P.encode_message(msg), copy=False)
            if ev.type not in ("new_sensor", "stats"):
                self._log_limited(ev.type, "%s %s seq=%d %s", ev.type, ev.sensor, ev.seq, ev.fields)
        r_max = self.backend.r_max_m
        lat_window = self.stats.latencies_us
        channels = P.PRED_CHANNELS + (2 if self.config.hybrid else 0)
        for run in runs:
            t = run.y.shape[0]
            data = np.empty((t, channels), np.float32)
            data[:, 0] = run.y
            data[:, 1] = run.y * r_max
            if self.config.hybrid:
                data[:, 3], data[:, 4] = self._hybrid(run)
            lat = (time.perf_counter_ns() - run.recv_ns) * 1e-3
            data[:, 2] = lat
            block = P.Block(P.Kind.PRED, run.epoch, run.seq, run.t0_ns, run.period_ns, data)
            pub.send_multipart([P.topic(P.Kind.PRED, run.sensor), P.encode_block(block)], copy=False)
            lat_window.extend(lat.tolist() if t < 64 else lat[:: max(1, t // 64)].tolist())
            self.stats.samples += t
            self.stats.preds += 1
        if runs:
            self.stats.last_pub_ns = time.perf_counter_ns()
        if self.config.checkpoint_every:
            self._checkpoint(pub, runs)

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
        st = self.engine.sensors.get(sensor)
        if st is not None:
            st.counters[f"malformed_{reason}"] += 1
        return Event(sensor, "malformed", 0, {"reason": reason, "detail": err.detail[:200]})

    def _log_limited(self, key: str, fmt: str, *args) -> None:
        now = time.monotonic()
        if now - self._last_log.get(key, -1e9) >= self.config.log_interval_s:
            more = self._suppressed.pop(key, 0)
            log.warning(fmt + (f" (+{more} similar suppressed)" if more else ""), *args)
            self._last_log[key] = now
        else:
            self._suppressed[key] += 1

    def snapshot(self, now: float | None = None) -> dict:
        """The stats message body: rates since the last one, latency percentiles, all counters."""
        now = time.monotonic() if now is None else now
        s = self.stats
        dt = max(now - s.last_emit, 1e-9)
        lat = np.fromiter(s.latencies_us, np.float64, len(s.latencies_us))
        pct = (lambda q: round(float(np.percentile(lat, q)), 1)) if lat.size else (lambda q: None)
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
            **({"rescore": self.rescorer.snapshot()} if self.rescorer is not None else {}),
            **({"quality": self.metrics.snapshot()} if self.metrics is not None else {}),
        }

    def _emit_stats(self, pub: zmq.Socket, now: float) -> None:
        body = self.snapshot(now)
        s = self.stats
        s.last_emit, s.last_samples, s.last_messages = now, s.samples, s.messages
        s.latencies_us.clear()
        msg = P.make_event(SERVICE_SENSOR, "stats", epoch=self._epoch, seq=0, t_ns=time.time_ns(),
                           **{k: v for k, v in body.items() if k != "type"})
        pub.send_multipart(P.encode_message(msg), copy=False)
        if body["samples"]:
            log.info("stats: %.0f samples/s, latency p50 %s us p99 %s us, %d sensors, counters %s, bad %s",
                     body["samples_per_s"], body["latency_us"]["p50"], body["latency_us"]["p99"],
                     body["sensors"], body["counters"], body["decode_errors"])
