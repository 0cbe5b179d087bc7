"""Receiving side of the monitor, free of Qt: sockets, decoding, batching, the live gate trace.

The Qt worker (:mod:`gui.worker`) and the headless demo summary both drive a
:class:`StreamReceiver`: one ``poll()`` drains whatever is pending on the sockets (bounded in
messages and time) and returns one :class:`Batch` of numpy arrays per sensor, so the GUI thread
receives a handful of batches per second however many messages arrive.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import zmq

from gui.buffers import GATE_NAMES, Ring
from radarstream.online import Block
from streamer.wire import protocol as P

SERVICE_SENSOR = "_service"
"""Pseudo sensor of service-wide events (stats); never listed as a sensor."""


def natural_key(text: str) -> list:
    """Sort key that puts ``radar-2`` before ``radar-10``."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text)]


# --------------------------------------------------------------------------- #
# What a poll hands over
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class SamplesChunk:
    """Consecutive-in-arrival samples of one sensor, one row per sample."""

    t_ns: np.ndarray
    seq: np.ndarray
    epoch: np.ndarray
    amplitude: np.ndarray
    distance_m: np.ndarray
    dmin_m: np.ndarray  # NaN outside encounters or without a truth frame
    true_range_m: np.ndarray
    snr_db: np.ndarray
    period_ns: int

    def __len__(self) -> int:
        return len(self.t_ns)


PRED_METRES: tuple[tuple[str, int], ...] = (
    ("classical_m", 3), ("hybrid_m", 4), ("std_m", 5), ("classical_std_m", 6), ("hybrid_std_m", 7))
PRED_TIME_TO_CPA = 8
"""Channel of the seconds to the classical fit's CPA (not scaled)."""
"""Optional ``pred`` channels (docs/protocol.md), normalised on the wire, in metres in a chunk:
(PredChunk field, channel). A block with fewer channels leaves them NaN."""


@dataclass(frozen=True)
class PredChunk:
    """Causal estimate and latency, plus the classical and hybrid estimates and the σ of each
    (metres; NaN where the service does not publish them: a 3-channel block, no σ yet)."""

    t_ns: np.ndarray
    y_m: np.ndarray
    latency_us: np.ndarray
    classical_m: np.ndarray | None = None
    hybrid_m: np.ndarray | None = None
    std_m: np.ndarray | None = None
    classical_std_m: np.ndarray | None = None
    hybrid_std_m: np.ndarray | None = None
    time_to_cpa_s: np.ndarray | None = None
    """Seconds from each sample to the classical fit's closest approach (negative once past)."""

    def __len__(self) -> int:
        return len(self.t_ns)

    def column(self, name: str) -> np.ndarray:
        """A field, NaN-filled when the chunk was built without it."""
        v = getattr(self, name)
        return np.full(len(self.t_ns), np.nan, np.float32) if v is None else v

    def best(self) -> tuple[np.ndarray, np.ndarray]:
        """The product's best estimate and its σ (metres): hybrid where published, else causal."""
        hyb, hs = self.column("hybrid_m"), self.column("hybrid_std_m")
        has = np.isfinite(hyb)
        return np.where(has, hyb, self.y_m), np.where(has, hs, self.column("std_m"))


@dataclass(frozen=True)
class RescoreChunk:
    """One re-scored window: replaces earlier re-scores from ``t_ns[0]`` on."""

    t_ns: np.ndarray
    bidir_m: np.ndarray
    causal_m: np.ndarray  # NaN where the message did not carry it (the GUI joins with pred)
    disagreement_m: np.ndarray  # NaN where not carried (the GUI computes |bidir - causal|)
    summary: dict[str, Any]


@dataclass(frozen=True)
class GateChunk:
    """h, c and the gates of ``layer`` for ``sensor``; ``replace`` restarts the heatmaps."""

    sensor: str
    layer: int
    replace: bool
    t_ns: np.ndarray
    traces: dict[str, np.ndarray]  # name -> [n, hidden]; names as gui.buffers.GATE_NAMES


@dataclass(frozen=True)
class EventRecord:
    sensor: str
    type: str
    t_ns: int
    seq: int
    meta: dict[str, Any]


@dataclass(frozen=True)
class ReceiverCounters:
    """Cumulative counters of the receiving side (what the GUI itself saw and lost)."""

    messages: int = 0
    samples: int = 0
    decode_errors: int = 0
    feed_gap_samples: int = 0
    """Samples missing between consecutive feed messages (lost before reaching the GUI)."""
    dropped_batches: int = 0
    """Batches the GUI thread was too slow to take (bounded hand-off full)."""
    dropped_samples: int = 0
    max_in_flight: int = 0
    ignored_sensors: int = 0
    checkpoints_adopted: int = 0
    refusals: int = 0
    """Handshakes the publishers refused (CURVE: this monitor's key not admitted)."""
    reconnect_after_refusal: int = 0


@dataclass(frozen=True)
class Batch:
    created: float
    samples: dict[str, SamplesChunk] = field(default_factory=dict)
    preds: dict[str, PredChunk] = field(default_factory=dict)
    rescores: dict[str, list[RescoreChunk]] = field(default_factory=dict)
    events: list[EventRecord] = field(default_factory=list)
    stats: dict[str, Any] | None = None
    gates: GateChunk | None = None
    counters: ReceiverCounters = ReceiverCounters()
    r_max_m: float = 1000.0
    refusal: str | None = None
    """While a publisher refuses this monitor's handshake (CURVE key not admitted): a short line
    for the status display (:meth:`StreamReceiver.refusal_status`); the refusals themselves come
    as ``peer_refused`` events."""

    @property
    def n_samples(self) -> int:
        return sum(len(c) for c in self.samples.values())

    def is_empty(self) -> bool:
        return not (self.samples or self.preds or self.rescores or self.events or self.stats or self.gates)


# --------------------------------------------------------------------------- #
# Bounded hand-off between threads
# --------------------------------------------------------------------------- #


class Handoff:
    """Counts batches handed to the GUI thread and not yet taken; refuses beyond ``limit``.

    Qt's queued signals are an unbounded queue: if the GUI thread stalls, signals would pile up and
    the display would lag further and further behind. The worker asks ``try_acquire()`` before
    emitting and drops (and counts) the batch when the GUI is ``limit`` batches behind.
    """

    def __init__(self, limit: int = 8):
        self.limit = max(1, int(limit))
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0

    def try_acquire(self) -> bool:
        with self._lock:
            if self.in_flight >= self.limit:
                return False
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return True

    def release(self) -> None:
        with self._lock:
            self.in_flight = max(0, self.in_flight - 1)


# --------------------------------------------------------------------------- #
# Rescore channels (the re-scoring stage names them in its JSON frame)
# --------------------------------------------------------------------------- #


def rescore_columns(meta: dict[str, Any] | None, channels: int) -> dict[str, tuple[int, float | None]]:
    """Map ``bidir``/``causal``/``disagreement`` to ``(column, scale)``: scale None means metres,
    a float means "normalised, multiply by R_max". Unknown layouts fall back to column 0 = bidir
    y_norm (the pred convention)."""
    names = [str(n).lower() for n in (meta or {}).get("channels", [])][:channels]
    out: dict[str, tuple[int, float | None]] = {}
    for key, words in (("bidir", ("bidir",)), ("causal", ("causal",)), ("disagreement", ("disagree", "delta", "diff"))):
        hits = [k for k, n in enumerate(names) if any(w in n for w in words)]
        metres = [k for k in hits if n_is_metres(names[k])]
        if metres:
            out[key] = (metres[0], None)
        elif hits:
            out[key] = (hits[0], 1.0)
    if "bidir" not in out and channels >= 1:
        out["bidir"] = (0, 1.0)
    return out


def n_is_metres(name: str) -> bool:
    return name.endswith("_m") or name.endswith("(m)") or name.endswith("_metres") or name.endswith("_meters")


# --------------------------------------------------------------------------- #
# Live gate trace of the selected sensor
# --------------------------------------------------------------------------- #


class GateModel(Protocol):
    """What the tracker needs from ``models.regressors.CausalRegressor``."""

    normalizer: Any
    lstm: Any


class GateTracker:
    """Steps :class:`models.gates.GateLevelLSTM` over the selected sensor's samples.

    It keeps a short raw history of every sensor so that selecting another sensor (or layer) can
    show a heatmap at once (computed from a zero state over that history), follows the service's
    reset rules (epoch change, seq going back, gap > ``max_gap``) and adopts the service's
    ``state/<sensor>`` checkpoints when they land on the next step, so h and c match the service's.
    """

    def __init__(self, model: GateModel, *, backfill: int = 2048, max_gap: int = 100, max_sensors: int = 256):
        from streamer.live.stepper import GateStepper

        self.model = model
        self.stepper = GateStepper(model)  # the gate-level LSTM in the online vocabulary
        self.lstm = self.stepper.lstm
        self.layers = self.lstm.num_layers
        self.hidden = self.lstm.hidden_size
        self.backfill = backfill
        self.max_gap = max_gap
        self.max_sensors = max_sensors
        self._hist: dict[str, Ring] = {}
        self.sensor: str | None = None
        self.layer = self.layers - 1
        self.stride = 1
        self._state: tuple[np.ndarray, np.ndarray] | None = None
        self._expected: tuple[int, int] | None = None  # (epoch, next seq)
        self._pending: list[tuple[int, int, np.ndarray, np.ndarray]] = []  # (epoch, seq, h, c)
        self.adopted = 0

    # -- configuration (called from the worker thread on GUI requests)

    def select(self, sensor: str | None, layer: int | None = None, stride: int | None = None) -> GateChunk | None:
        """Follow ``sensor`` from now on; returns the heatmap history from the raw backlog."""
        if layer is not None:
            self.layer = int(np.clip(layer, 0, self.layers - 1))
        if stride is not None:
            self.stride = max(1, int(stride))
        self.sensor = sensor
        self._state, self._expected, self._pending = None, None, []
        if sensor is None:
            return None
        hist = self._hist.get(sensor)
        if hist is None or not len(hist):
            return GateChunk(sensor, self.layer, True, np.empty(0, np.int64), self._empty())
        chunk = self._run(hist.view("t_ns"), hist.view("seq"), hist.view("epoch"), hist.view("x"))
        return GateChunk(sensor, self.layer, True, chunk[0], chunk[1])

    def set_stride(self, stride: int) -> None:
        self.stride = max(1, int(stride))

    def checkpoint(self, sensor: str, epoch: int, next_seq: int, h: np.ndarray, c: np.ndarray) -> None:
        """A service state (h, c [layers, hidden]) valid before sample ``next_seq``."""
        if sensor != self.sensor or h.shape != (self.layers, self.hidden):
            return
        self._pending = (self._pending + [(epoch, next_seq, h, c)])[-4:]

    def reset_at(self, sensor: str, epoch: int, seq: int) -> None:
        """The service zeroed this sensor's state before ``seq`` (explicit reset event)."""
        z = np.zeros((self.layers, self.hidden), np.float32)
        self.checkpoint(sensor, epoch, seq, z, z)

    # -- streaming

    def feed(self, samples: dict[str, SamplesChunk], raw: dict[str, np.ndarray]) -> GateChunk | None:
        """Record every sensor's raw samples, step the selected one; ``raw`` is [n, 2] per sensor."""
        for sensor, ch in samples.items():
            hist = self._hist.get(sensor)
            if hist is None:
                if len(self._hist) >= self.max_sensors:
                    continue
                hist = self._hist[sensor] = Ring(self.backfill, {"t_ns": np.int64, "seq": np.int64, "epoch": np.int64,
                                                                 "x": np.float32}, {"x": (2,)})
            hist.append(t_ns=ch.t_ns, seq=ch.seq, epoch=ch.epoch, x=raw[sensor])
        if self.sensor is None or self.sensor not in samples:
            return None
        ch = samples[self.sensor]
        t, traces = self._run(ch.t_ns, ch.seq, ch.epoch, raw[self.sensor])
        return GateChunk(self.sensor, self.layer, False, t, traces)

    def _empty(self) -> dict[str, np.ndarray]:
        return {g: np.empty((0, self.hidden), np.float32) for g in GATE_NAMES}

    def _run(self, t_ns: np.ndarray, seq: np.ndarray, epoch: np.ndarray, x_raw: np.ndarray):
        """Step over rows in order, splitting at resets and adopted checkpoints."""
        n = len(seq)
        out_t: list[np.ndarray] = []
        out: dict[str, list[np.ndarray]] = {g: [] for g in GATE_NAMES}
        if n == 0:
            return np.empty(0, np.int64), self._empty()
        x = self.stepper.features(Block(np.asarray(t_ns, np.int64), np.asarray(x_raw, np.float32)))
        a = 0
        while a < n:
            self._sync(int(epoch[a]), int(seq[a]))
            # extend b while contiguous, same epoch, and no pending checkpoint inside the run
            b = a + 1
            stops = [s for (e, s, _, _) in self._pending if e == epoch[a] and s > seq[a]]
            stop_at = min(stops) if stops else None
            while b < n and epoch[b] == epoch[a] and seq[b] == seq[b - 1] + 1 and (stop_at is None or seq[b] < stop_at):
                b += 1
            trace, state = self.lstm.run(x[a:b], self._state)
            self._state = state
            self._expected = (int(epoch[b - 1]), int(seq[b - 1]) + 1)
            keep = (seq[a:b] % self.stride) == 0
            if keep.any():
                out_t.append(t_ns[a:b][keep])
                for g in GATE_NAMES:
                    out[g].append(getattr(trace, g)[keep, self.layer, 0, :].astype(np.float32))
            a = b
        if not out_t:
            return np.empty(0, np.int64), self._empty()
        return np.concatenate(out_t), {g: np.concatenate(v) for g, v in out.items()}

    def _sync(self, epoch: int, seq: int) -> None:
        """Before stepping sample ``seq``: apply a matching checkpoint, or the reset policy."""
        for item in self._pending:
            if item[0] == epoch and item[1] == seq:
                self._state = (item[2][:, None, :].astype(np.float32), item[3][:, None, :].astype(np.float32))
                self._pending = [p for p in self._pending if p[1] > seq and p[0] == epoch]
                self.adopted += 1
                return
        self._pending = [p for p in self._pending if not (p[0] == epoch and p[1] < seq)]
        exp = self._expected
        if exp is None or exp[0] != epoch or seq < exp[1] or seq - exp[1] > self.max_gap:
            self._state = None  # the service resets here too (docs/reliability.md)


# --------------------------------------------------------------------------- #
# Sockets
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class ReceiverConfig:
    """Where to listen and how much to take per poll."""

    feeds: tuple[str, ...] = ("tcp://127.0.0.1:5555",)
    """Sample feeds (``samples/``); connected, ``@`` binds."""
    services: tuple[str, ...] = ("tcp://127.0.0.1:5556",)
    """Service outputs (``pred/``, ``rescore/``, ``state/``, ``event/``); connected, ``@`` binds."""
    rcvhwm: int = 20_000
    """Messages ZeroMQ queues per socket before dropping: bounds the lag when the GUI falls behind."""
    max_messages: int = 20_000
    """Messages taken per poll at most (the rest waits for the next poll)."""
    max_poll_s: float = 0.02
    """Time budget of one poll's draining, so batches stay about one timer period apart."""
    max_samples: int = P.DEFAULT_MAX_SAMPLES
    r_max_m: float | None = None
    """R_max for truth and normalised re-scores; None: the weights', else inferred from pred."""
    curve: Any = None
    """A :class:`streamer.wire.security.CurveConfig`: the sockets are CURVE clients (servers
    where they bind); None: plain ZeroMQ."""


class StreamReceiver:
    """Owns the SUB sockets (use from one thread only) and turns pending messages into a Batch."""

    def __init__(self, config: ReceiverConfig, *, context: zmq.Context | None = None,
                 gates: GateTracker | None = None, max_sensors: int = 256):
        self.config = config
        self._own_ctx = context is None
        self.ctx = context or zmq.Context()
        self.gates = gates
        self.max_sensors = max_sensors
        self.r_max_m = config.r_max_m or 1000.0
        self._r_max_known = config.r_max_m is not None
        self._socks: list[zmq.Socket] = []
        self._watches: list = []  # RefusalWatch of each socket that connects (reconnect after a refusal)
        self._curve = None
        self._expected: dict[str, tuple[int, int]] = {}
        self._sensors: set[str] = set()
        self.counters = Counter()
        self.closed = False

    def set_r_max(self, r_max_m: float) -> None:
        """R_max known from the weights: truth and normalised re-scores use it from now on."""
        self.r_max_m = float(r_max_m)
        self._r_max_known = True

    def open(self) -> None:
        from streamer.live.service import attach
        from streamer.wire.security import Curve, RefusalWatch, endpoint_mode, socket_role

        if self.config.curve is not None and self._curve is None:
            self._curve = Curve(self.config.curve, self.ctx)

        def sub(endpoints: tuple[str, ...], kinds: tuple[P.Kind, ...]) -> None:
            if not endpoints:
                return
            s = self.ctx.socket(zmq.SUB)
            self._socks.append(s)  # closed by close() whatever fails below
            s.setsockopt(zmq.RCVHWM, self.config.rcvhwm)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.MAXMSGSIZE, -1)  # pred/rescore may grow channels (protocol §10)
            for k in kinds:
                s.setsockopt(zmq.SUBSCRIBE, P.topic_prefix(k))
            if self._curve is not None:
                self._curve.secure(s, socket_role(endpoints, "connect"))
            connected = []
            for e in endpoints:
                resolved = attach(s, e, "connect")
                if endpoint_mode(e, "connect")[0] == "connect":
                    connected.append(resolved)
            if connected:
                self._watches.append(RefusalWatch(s, connected, what="monitor"))

        sub(self.config.feeds, (P.Kind.SAMPLES,))
        sub(self.config.services, (P.Kind.PRED, P.Kind.RESCORE, P.Kind.STATE, P.Kind.EVENT))

    def close(self) -> None:
        for w in self._watches:
            w.close()
            self.counters["refusals_closed"] += w.refusals
            self.counters["reconnects_closed"] += w.reconnects
        self._watches = []
        for s in self._socks:
            s.close(0)
        self._socks = []
        if self._curve is not None:
            self._curve.stop()
            self._curve = None
        if self._own_ctx:
            self.ctx.term()
        self.closed = True

    def wait(self, timeout_ms: int) -> bool:
        """Block until something is pending on any socket (headless loop)."""
        if not self._socks:
            return False
        poller = zmq.Poller()
        for s in self._socks:
            poller.register(s, zmq.POLLIN)
        return bool(poller.poll(timeout_ms))

    def poll(self) -> Batch:
        """Drain pending messages (bounded) into one Batch; never raises for bad input."""
        cfg = self.config
        deadline = time.perf_counter() + cfg.max_poll_s
        samples: dict[str, list[tuple[P.Block, P.Block | None]]] = {}
        preds: dict[str, list[P.Block]] = {}
        rescores: dict[str, list[RescoreChunk]] = {}
        events: list[EventRecord] = []
        stats = None
        n = 0
        if self._watches:
            events.extend(self._refusals())
        for sock in self._socks:
            while n < cfg.max_messages and time.perf_counter() < deadline:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                n += 1
                msg = P.decode_message(frames, max_samples=cfg.max_samples)
                if isinstance(msg, P.DecodeError):
                    self.counters["decode_errors"] += 1
                    continue
                kind, sensor = msg.kind, msg.sensor
                if kind is P.Kind.EVENT:
                    meta = msg.meta or {}
                    if sensor == SERVICE_SENSOR and meta.get("type") == "stats":
                        stats = meta
                    else:
                        events.append(EventRecord(sensor, str(meta.get("type")), msg.block.t0_ns, msg.block.seq, meta))
                        if meta.get("type") == "reset" and self.gates is not None:
                            self.gates.reset_at(sensor, msg.block.epoch, msg.block.seq)
                    continue
                if sensor not in self._sensors:
                    if len(self._sensors) >= self.max_sensors:
                        self.counters["ignored_sensors"] += 1
                        continue
                    self._sensors.add(sensor)
                if kind is P.Kind.SAMPLES:
                    samples.setdefault(sensor, []).append((msg.block, msg.truth))
                elif kind is P.Kind.PRED:
                    preds.setdefault(sensor, []).append(msg.block)
                elif kind is P.Kind.RESCORE:
                    ch = self._rescore(msg)
                    if ch is not None:
                        rescores.setdefault(sensor, []).append(ch)
                elif kind is P.Kind.STATE:
                    self._state(msg)
        self.counters["messages"] += n
        pred_chunks = {s: self._preds(v) for s, v in preds.items()}
        sample_chunks, raw = {}, {}
        for s, v in samples.items():
            sample_chunks[s], raw[s] = self._samples(s, v)
        gates = self.gates.feed(sample_chunks, raw) if self.gates is not None and sample_chunks else None
        return Batch(time.monotonic(), sample_chunks, pred_chunks, rescores, events, stats, gates,
                     self.snapshot(), self.r_max_m, self.refusal_status() if self._watches else None)

    def snapshot(self, **extra: int) -> ReceiverCounters:
        c = self.counters
        return ReceiverCounters(
            messages=c["messages"], samples=c["samples"], decode_errors=c["decode_errors"],
            feed_gap_samples=c["feed_gap_samples"], dropped_batches=c["dropped_batches"],
            dropped_samples=c["dropped_samples"], max_in_flight=c["max_in_flight"],
            ignored_sensors=c["ignored_sensors"],
            refusals=sum(w.refusals for w in self._watches) + c["refusals_closed"],
            reconnect_after_refusal=sum(w.reconnects for w in self._watches) + c["reconnects_closed"],
            checkpoints_adopted=self.gates.adopted if self.gates is not None else 0, **extra,
        )

    def refusal_status(self) -> str | None:
        """While a publisher refuses this monitor's handshake: a short line for the status display."""
        for w in self._watches:
            text = w.status()
            if text is not None:
                return text
        return None

    def _refusals(self) -> list[EventRecord]:
        """Refused handshakes (reconnected with back-off) as ``_service`` events: ``peer_refused``
        at the alarm's pace (the first refusal, then one per interval; not one per attempt) and
        ``peer_connected`` when a refused publisher lets us in."""
        out = []
        now_ns = time.time_ns()
        for w in self._watches:
            before = dict(w.refused_now)
            for r in w.poll():
                if r.logged:
                    out.append(EventRecord(SERVICE_SENSOR, "peer_refused", now_ns, 0,
                                           {"type": "peer_refused", "socket": "monitor", **r.meta()}))
            for ep in before.keys() - w.refused_now.keys():
                out.append(EventRecord(SERVICE_SENSOR, "peer_connected", now_ns, 0,
                                       {"type": "peer_connected", "socket": "monitor", "endpoint": ep,
                                        "after_refusals": before[ep].refusals}))
        return out

    # -- per kind

    def _samples(self, sensor: str, blocks: list[tuple[P.Block, P.Block | None]]) -> tuple[SamplesChunk, np.ndarray]:
        parts_x, parts_t, parts_seq, parts_ep, parts_truth = [], [], [], [], []
        for blk, truth in blocks:
            state, lost = P.continuity(self._expected.get(sensor), blk)
            if state is P.Continuity.GAP:
                self.counters["feed_gap_samples"] += lost
            self._expected[sensor] = (blk.epoch, blk.seq + blk.count)
            parts_x.append(blk.data)
            parts_t.append(blk.times_ns)
            parts_seq.append(blk.seqs.astype(np.int64))
            parts_ep.append(np.full(blk.count, blk.epoch & ((1 << 63) - 1), np.int64))
            parts_truth.append(truth.data if truth is not None else np.full((blk.count, 4), np.nan, np.float32))
        x = np.concatenate(parts_x).astype(np.float32, copy=False)
        tr = np.concatenate(parts_truth)
        self.counters["samples"] += len(x)
        chunk = SamplesChunk(
            t_ns=np.concatenate(parts_t), seq=np.concatenate(parts_seq), epoch=np.concatenate(parts_ep),
            amplitude=x[:, 0].copy(), distance_m=x[:, 1].copy(), dmin_m=(tr[:, 0] * self.r_max_m).astype(np.float32),
            true_range_m=tr[:, 2].copy(), snr_db=tr[:, 3].copy(), period_ns=blocks[-1][0].period_ns,
        )
        return chunk, x

    def _preds(self, blocks: list[P.Block]) -> PredChunk:
        """Blocks may carry 3, 5 or 8 channels (the header says): missing ones become NaN."""
        width = PRED_TIME_TO_CPA + 1
        parts = []
        for b in blocks:
            d = b.data[:, :width].astype(np.float32, copy=False)
            if d.shape[1] < width:
                d = np.concatenate([d, np.full((len(d), width - d.shape[1]), np.nan, np.float32)], axis=1)
            parts.append(d)
        data = np.concatenate(parts)
        if not self._r_max_known:
            ok = np.abs(data[:, 0]) > 1e-3
            if ok.any():
                self.r_max_m = float(np.median(data[ok, 1] / data[ok, 0]))
                self._r_max_known = True
        r_max = np.float32(self.r_max_m)
        extra = {name: data[:, k] * r_max for name, k in PRED_METRES}
        extra["time_to_cpa_s"] = data[:, PRED_TIME_TO_CPA].copy()
        return PredChunk(np.concatenate([b.times_ns for b in blocks]), data[:, 1].copy(), data[:, 2].copy(), **extra)

    def _rescore(self, msg: P.Message) -> RescoreChunk | None:
        blk = msg.block
        if blk.count == 0 or blk.channels == 0:
            return None
        meta = msg.meta or {}
        cols = rescore_columns(meta, blk.channels)
        r_max = meta.get("r_max_m")
        r_max = float(r_max) if isinstance(r_max, (int, float)) and r_max > 0 else self.r_max_m
        nan = np.full(blk.count, np.nan, np.float32)

        def col(key: str) -> np.ndarray:
            if key not in cols:
                return nan
            k, scale = cols[key]
            v = blk.data[:, k].astype(np.float32)
            return v * np.float32(r_max) if scale is not None else v.copy()

        summary = {k: v for k, v in meta.items() if k != "channels" and not isinstance(v, (list, dict))}
        # the stage may publish a signed difference (bidir - causal): the GUI shades its magnitude
        return RescoreChunk(blk.times_ns, col("bidir"), col("causal"), np.abs(col("disagreement")), summary)

    def _state(self, msg: P.Message) -> None:
        if self.gates is None or msg.block.count < 1:
            return
        meta = msg.meta or {}
        layers, hidden = int(meta.get("layers", 0)), int(meta.get("hidden", 0))
        row = msg.block.data[0]
        if layers * hidden * 2 != row.size:
            return
        h = row[: layers * hidden].reshape(layers, hidden)
        c = row[layers * hidden:].reshape(layers, hidden)
        self.gates.checkpoint(msg.sensor, msg.block.epoch & ((1 << 63) - 1), int(meta.get("next_seq", msg.block.seq)), h, c)
