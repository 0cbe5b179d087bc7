"""Window re-scoring: the bidirectional model beside the causal path.

Per sensor, completed windows of ``window`` samples (hop ``hop``, aligned to sequence numbers:
window k covers ``[k·hop, k·hop + window)``) are handed to a worker thread that runs the
bidirectional model on them and compares its per-sample estimates with the causal estimates that
were published live for the same samples. The causal path only appends to per-sensor buffers and
puts windows in a bounded queue: when the worker falls behind, windows are dropped and counted,
the causal path never waits. Results go back to the service thread over an inproc socket, and the
service publishes them on ``rescore/<sensor>`` (a PUB socket belongs to one thread).

Defaults: at the default 20 Hz an encounter lasts 11–50 s (mean ≈ 23 s ≈ 460 samples), so a
512-sample window (25.6 s) holds a typical encounter, and a hop of half a window puts every
encounter shorter than 256 samples wholly inside at least one window and scores every sample
twice.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zmq

from streamer.live.engine import model_input, raw_channels
from streamer.wire import protocol as P

log = logging.getLogger("radarstream.rescore")

RESCORE_CHANNELS = ("y_bidir", "y_causal", "disagreement")
"""Per-sample channels of a ``rescore`` block (normalised Dmin; disagreement = bidir − causal)."""


@dataclass(frozen=True)
class RescoreConfig:
    window: int = 512
    """Samples per re-scored window (25.6 s at 20 Hz: a typical encounter)."""
    hop: int = 256
    """Samples between window starts (half a window)."""
    threshold_m: float = 50.0
    """|bidir − causal| above this (metres) marks a disagreement region."""
    backend: str = "onnx"
    """``onnx`` or ``torch`` for the bidirectional model."""
    queue_size: int = 256
    """Windows waiting for the worker; beyond this they are dropped (counted)."""
    max_batch: int = 32
    """Windows scored together in one call when several are waiting."""
    slowdown_s: float = 0.0
    """Extra sleep per window: only for tests that prove a slow re-scorer never delays the
    causal path."""

    def __post_init__(self) -> None:
        if self.window < 2 or not 0 < self.hop <= self.window:
            raise ValueError("need window >= 2 and 0 < hop <= window")


@dataclass(frozen=True)
class Window:
    sensor: str
    epoch: int
    seq: int
    t0_ns: int
    period_ns: int
    x: np.ndarray  # [W, 2]
    y_causal: np.ndarray  # [W]


@dataclass
class _SensorBuffer:
    epoch: int
    start_seq: int  # seq of x[0]
    t0_ns: int  # time of x[0]
    period_ns: int
    x: list[np.ndarray] = field(default_factory=list)
    y: list[np.ndarray] = field(default_factory=list)
    size: int = 0
    next_window: int = 0  # seq where the next window starts


class WindowAssembler:
    """Cuts each sensor's contiguous predictions into aligned windows (no model, no threads)."""

    def __init__(self, window: int, hop: int):
        self.window = window
        self.hop = hop
        self._buf: dict[str, _SensorBuffer] = {}
        self.discarded = Counter()  # partial windows lost to gaps/resets, per sensor

    def add(self, run) -> list[Window]:
        """Append a causal run (``engine.Run``); returns the windows it completes."""
        b = self._buf.get(run.sensor)
        contiguous = (
            b is not None and not run.reset_before and b.epoch == run.epoch and b.start_seq + b.size == run.seq
        )
        if not contiguous:
            if b is not None and b.size:
                self.discarded[run.sensor] += 1
            first = -(-run.seq // self.hop) * self.hop  # first aligned window start >= run.seq
            b = self._buf[run.sensor] = _SensorBuffer(run.epoch, run.seq, run.t0_ns, run.period_ns, next_window=first)
        b.x.append(np.asarray(run.x, np.float32))
        b.y.append(np.asarray(run.y, np.float32))
        b.size += run.y.shape[0]
        out = []
        end = b.start_seq + b.size
        if b.next_window + self.window <= end:
            x = np.concatenate(b.x)
            y = np.concatenate(b.y)
            while b.next_window + self.window <= end:
                off = b.next_window - b.start_seq
                out.append(Window(run.sensor, b.epoch, b.next_window, b.t0_ns + off * b.period_ns, b.period_ns,
                                  x[off : off + self.window].copy(), y[off : off + self.window].copy()))
                b.next_window += self.hop
            keep = b.next_window - b.start_seq  # drop what no future window needs
            b.x, b.y = [x[keep:]], [y[keep:]]
            b.start_seq += keep
            b.t0_ns += keep * b.period_ns
            b.size -= keep
        return out


def regions_above(values: np.ndarray, threshold: float, seq0: int) -> list[list[int]]:
    """``[[first_seq, last_seq], ...]`` of the runs where ``|values| > threshold``."""
    above = np.abs(values) > threshold
    if not above.any():
        return []
    edges = np.diff(np.concatenate([[0], above.astype(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1) - 1
    return [[seq0 + int(a), seq0 + int(b)] for a, b in zip(starts, stops)]


class BidirScorer:
    """The bidirectional model behind ``score(x [B, W, 2], period_ns) -> y [B, W]`` (onnx or
    torch), with the same radar profile in both (``profile``: a ``RadarProfile``, the path of its
    JSON, or None for the one stored with the weights; an ONNX graph baked for another profile is
    re-exported, see ``models.export.onnx_for``)."""

    def __init__(self, weights_dir: str | Path | None, backend: str = "onnx", *, profile=None):
        from models.export import onnx_for

        if backend not in ("onnx", "torch"):
            raise ValueError(f"unknown backend {backend!r}")
        model, path = onnx_for("bidir", weights_dir, profile=profile) if backend == "onnx" else (None, None)
        if model is None:
            from models.bundle import load_model

            model, _ = load_model("bidir", weights_dir, profile=profile)
        self.profile = model.profile
        self.r_max_m = float(model.profile.r_max_m)
        self.input_size = raw_channels(model)
        self.backend = backend
        if backend == "onnx":
            from streamer.live.backends.onnx_backend import checked_session

            self._session = checked_session(path, 1)
            self._outputs = ["y"]
        else:
            self._model = model

    def score(self, x: np.ndarray, period_ns: list[int] | None = None) -> np.ndarray:
        """``y [B, W]`` of windows ``x [B, W, 2]``; ``period_ns`` per window (a model that reads
        the sample period gets it as a third channel; None: the profile's nominal period)."""
        x = np.ascontiguousarray(x, np.float32)
        if period_ns is not None:
            x = model_input(x, list(period_ns), self.input_size)
        if self.backend == "onnx":
            return self._session.run(self._outputs, {"x": x})[0]
        import torch

        with torch.inference_mode():
            out = self._model(torch.from_numpy(x.copy()))
        return (out[0] if isinstance(out, tuple) else out).numpy()


class Rescorer:
    """Owns the assembler (service thread side) and the worker thread (model side)."""

    def __init__(self, config: RescoreConfig, weights_dir: str | Path | None, context: zmq.Context,
                 endpoint: str | None = None, *, profile=None):
        self.config = config
        self.assembler = WindowAssembler(config.window, config.hop)
        self.scorer = BidirScorer(weights_dir, config.backend, profile=profile)
        self.r_max_m = self.scorer.r_max_m
        self.endpoint = endpoint or f"inproc://radarstream-rescore-{id(self)}"
        self.ctx = context
        self.counters: Counter = Counter()
        self.cost_ms: list[float] = []  # per window, for stats/benchmarks (bounded below)
        self._queue: queue.Queue[Window | None] = queue.Queue(config.queue_size)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # ---------------- service-thread side

    def bind_results(self) -> zmq.Socket:
        """The PULL socket the service polls for finished re-scores (bind before the worker starts)."""
        sock = self.ctx.socket(zmq.PULL)
        sock.bind(self.endpoint)
        return sock

    def submit(self, runs) -> None:
        """Never blocks: full queue -> window dropped and counted."""
        for run in runs:
            for w in self.assembler.add(run):
                try:
                    self._queue.put_nowait(w)
                    self.counters["windows_queued"] += 1
                except queue.Full:
                    self.counters["windows_dropped"] += 1

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="radarstream-rescore", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the worker now; windows still queued are abandoned (counted)."""
        self._stopping.set()
        if self._thread is not None:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                pass
            self._thread.join(10)
        self.counters["windows_abandoned"] += self._queue.qsize()

    def snapshot(self) -> dict:
        cost = np.array(self.cost_ms[-1000:])
        return {
            **dict(self.counters),
            "queue": self._queue.qsize(),
            "cost_ms_p50": round(float(np.median(cost)), 2) if cost.size else None,
            "cost_ms_max": round(float(cost.max()), 2) if cost.size else None,
        }

    # ---------------- worker side

    def _work(self) -> None:
        push = self.ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.SNDHWM, 0)
        push.connect(self.endpoint)
        try:
            while True:
                first = self._queue.get()
                if first is None or self._stopping.is_set():
                    return
                batch = [first]
                while len(batch) < self.config.max_batch:
                    try:
                        w = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if w is None:
                        self._queue.put_nowait(None)
                        break
                    batch.append(w)
                try:
                    for frames in self._score(batch):
                        push.send_multipart(frames)
                except Exception:
                    self.counters["windows_failed"] += len(batch)
                    log.exception("re-scoring failed for %d window(s)", len(batch))
        finally:
            push.close(linger=1000)

    def _score(self, batch: list[Window]) -> list[list[bytes]]:
        t = time.perf_counter()
        y = self.scorer.score(np.stack([w.x for w in batch]), [w.period_ns for w in batch])
        if self.config.slowdown_s:
            self._stopping.wait(self.config.slowdown_s * len(batch))
        per_window_ms = (time.perf_counter() - t) * 1e3 / len(batch)
        self.cost_ms.append(per_window_ms)
        if len(self.cost_ms) > 10_000:
            del self.cost_ms[:5_000]
        out = []
        thr = self.config.threshold_m / self.r_max_m
        for w, yb in zip(batch, y):
            dis = yb - w.y_causal
            data = np.stack([yb, w.y_causal, dis], axis=1).astype(np.float32)
            meta = {
                "channels": list(RESCORE_CHANNELS),
                "window": int(w.x.shape[0]),
                "hop": self.config.hop,
                "seq_start": w.seq,
                "seq_end": w.seq + w.x.shape[0] - 1,
                "mean_abs_m": round(float(np.abs(dis).mean() * self.r_max_m), 3),
                "max_abs_m": round(float(np.abs(dis).max() * self.r_max_m), 3),
                "threshold_m": self.config.threshold_m,
                "regions": regions_above(dis, thr, w.seq),
                "cost_ms": round(per_window_ms, 3),
                "r_max_m": self.r_max_m,
            }
            block = P.Block(P.Kind.RESCORE, w.epoch, w.seq, w.t0_ns, w.period_ns, data)
            out.append(P.encode_message(P.Message(P.Kind.RESCORE, w.sensor, block, meta=meta)))
            self.counters["windows_scored"] += 1
        return out
