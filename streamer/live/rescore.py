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

import json
import logging
import os
import queue
import tempfile
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
    process: bool = False
    """Score in a child process (:class:`RescoreProcess`, what ``serve --rescore`` runs) instead
    of a thread of the service's process: the causal loop then owns its core, and a crash of the
    re-scorer is reported (``rescore_restarted`` on ``event/_service``) and restarted."""
    restart_backoff_s: float = 1.0
    """Least time between two restarts of a crashed re-scoring process (a crash loop costs a
    restart per this interval, never the causal path)."""

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
        out = rescore_messages(batch, y, self.config, self.r_max_m, per_window_ms)
        self.counters["windows_scored"] += len(out)
        return out


def rescore_messages(batch: list[Window], y: np.ndarray, config: RescoreConfig, r_max_m: float,
                     per_window_ms: float) -> list[list[bytes]]:
    """The ``rescore/<sensor>`` messages of scored windows (the same in a thread or a process)."""
    out = []
    thr = config.threshold_m / r_max_m
    for w, yb in zip(batch, y):
        dis = yb - w.y_causal
        data = np.stack([yb, w.y_causal, dis], axis=1).astype(np.float32)
        meta = {
            "channels": list(RESCORE_CHANNELS),
            "window": int(w.x.shape[0]),
            "hop": config.hop,
            "seq_start": w.seq,
            "seq_end": w.seq + w.x.shape[0] - 1,
            "mean_abs_m": round(float(np.abs(dis).mean() * r_max_m), 3),
            "max_abs_m": round(float(np.abs(dis).max() * r_max_m), 3),
            "threshold_m": config.threshold_m,
            "regions": regions_above(dis, thr, w.seq),
            "cost_ms": round(per_window_ms, 3),
            "r_max_m": r_max_m,
        }
        block = P.Block(P.Kind.RESCORE, w.epoch, w.seq, w.t0_ns, w.period_ns, data)
        out.append(P.encode_message(P.Message(P.Kind.RESCORE, w.sensor, block, meta=meta)))
    return out


# ----------------------------------------------------------------------------- process


def _window_frames(w: Window) -> list[bytes]:
    head = json.dumps([w.sensor, w.epoch, w.seq, w.t0_ns, w.period_ns, int(w.x.shape[0])]).encode()
    return [head, np.ascontiguousarray(w.x, np.float32).tobytes(), np.ascontiguousarray(w.y_causal, np.float32).tobytes()]


def _frames_window(frames: list[bytes]) -> Window:
    sensor, epoch, seq, t0, period, n = json.loads(frames[0])
    return Window(sensor, epoch, seq, t0, period, np.frombuffer(frames[1], np.float32).reshape(n, 2),
                  np.frombuffer(frames[2], np.float32))


def child_main(config: RescoreConfig, weights_dir, profile: dict | None, windows_ep: str, results_ep: str) -> None:
    """The re-scoring process: PULL windows, score them in batches (up to ``max_batch`` that are
    waiting), PUSH the ``rescore`` messages back; a ``b"stop"`` frame (or SIGTERM) ends it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the service, which stops us
    try:
        import torch

        torch.set_num_threads(1)
    except Exception:  # pragma: no cover
        pass
    from models.profile import RadarProfile

    scorer = BidirScorer(weights_dir, config.backend, profile=RadarProfile.from_dict(profile) if profile else None)
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 0)
    pull.connect(windows_ep)
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 0)
    push.setsockopt(zmq.LINGER, 1000)
    push.connect(results_ep)
    push.send_multipart([b"ready", str(os.getpid()).encode()])
    stop = threading.Event()
    try:
        while True:
            frames = pull.recv_multipart()
            if frames[0] == b"stop":
                return
            batch = [_frames_window(frames)]
            while len(batch) < config.max_batch:
                try:
                    more = pull.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if more[0] == b"stop":
                    return
                batch.append(_frames_window(more))
            t = time.perf_counter()
            try:
                y = scorer.score(np.stack([w.x for w in batch]), [w.period_ns for w in batch])
                if config.slowdown_s:
                    stop.wait(config.slowdown_s * len(batch))
                per_window_ms = (time.perf_counter() - t) * 1e3 / len(batch)
                msgs = rescore_messages(batch, y, config, scorer.r_max_m, per_window_ms)
            except Exception:
                log.exception("re-scoring failed for %d window(s)", len(batch))
                push.send_multipart([b"failed", str(len(batch)).encode()])
                continue
            for frames in msgs:
                push.send_multipart(frames)
    finally:
        pull.close(0)
        push.close()
        ctx.term()


class RescoreProcess:
    """:class:`Rescorer`'s interface, with the scoring in a child process (``spawn``).

    The service thread keeps the :class:`WindowAssembler` and sends each completed window over a
    PUSH socket (``ipc://`` where the platform has it, else ``tcp://127.0.0.1``); the child
    returns the ``rescore`` messages on the service's results PULL socket. At most
    ``queue_size`` windows are in flight (sent, not yet answered): beyond that a window is
    dropped and counted, so a slow or dead re-scorer never makes the causal path wait.
    :meth:`check` (called by the service loop) notices a dead child: it counts the windows lost
    with it, starts a new one (at most once per ``restart_backoff_s``) and returns the
    ``rescore_restarted`` event for ``event/_service``."""

    def __init__(self, config: RescoreConfig, weights_dir: str | Path | None, context: zmq.Context,
                 endpoint: str | None = None, *, profile=None):
        from models.bundle import load_model

        self.config = config
        self.assembler = WindowAssembler(config.window, config.hop)
        self.weights_dir = None if weights_dir is None else str(weights_dir)
        model, _ = load_model("bidir", weights_dir, profile=profile)  # fail here, not in the child
        self.profile = model.profile
        self.r_max_m = float(model.profile.r_max_m)
        self.ctx = context
        self.counters: Counter = Counter()
        self.cost_ms: list[float] = []
        self.in_flight = 0
        self.proc = None
        self.pid: int | None = None
        self._windows: zmq.Socket | None = None
        self._results: zmq.Socket | None = None
        self._dir: str | None = None
        self._windows_ep = self._results_ep = ""
        self._next_restart = 0.0
        self._stopping = False

    # ---------------- sockets and the child

    def _endpoints(self, sock: zmq.Socket, name: str) -> str:
        if zmq.has("ipc"):
            if self._dir is None:
                self._dir = tempfile.mkdtemp(prefix="radarstream-rescore-")
            ep = f"ipc://{self._dir}/{name}"
            sock.bind(ep)
            return ep
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        return f"tcp://127.0.0.1:{port}"

    def bind_results(self) -> zmq.Socket:
        """The PULL socket the service polls for finished re-scores; also binds the windows' PUSH."""
        self._results = self.ctx.socket(zmq.PULL)
        self._results.setsockopt(zmq.RCVHWM, 0)
        self._results_ep = self._endpoints(self._results, "results")
        self._windows = self.ctx.socket(zmq.PUSH)
        self._windows.setsockopt(zmq.SNDHWM, 0)  # bounded by in_flight instead (exact, any transport)
        self._windows.setsockopt(zmq.LINGER, 0)
        self._windows_ep = self._endpoints(self._windows, "windows")
        return self._results

    def start(self) -> None:
        import multiprocessing as mp

        prof = self.profile.to_dict() if self.profile is not None else None
        self.proc = mp.get_context("spawn").Process(
            target=child_main, args=(self.config, self.weights_dir, prof, self._windows_ep, self._results_ep),
            name="radarstream-rescore", daemon=True)
        self.proc.start()
        self.pid = self.proc.pid
        self.in_flight = 0
        self.counters["processes_started"] += 1

    def stop(self) -> None:
        """Stop the child (a stop frame, then terminate); windows in flight are abandoned (counted)."""
        self._stopping = True
        proc = self.proc
        if proc is not None:
            if proc.is_alive() and self._windows is not None:
                try:
                    self._windows.send_multipart([b"stop"], zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass
                proc.join(2.0)
            if proc.is_alive():
                proc.terminate()
                proc.join(2.0)
        self.counters["windows_abandoned"] += self.in_flight
        self.in_flight = 0
        if self._windows is not None:
            self._windows.close(0)
            self._windows = None
        if self._dir is not None:
            import shutil

            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def check(self, now: float | None = None) -> list:
        """A dead child is restarted (``rescore_restarted`` event, service sensor); [] otherwise."""
        proc = self.proc
        if self._stopping or proc is None or proc.is_alive():
            return []
        now = time.monotonic() if now is None else now
        if now < self._next_restart:
            return []
        from streamer.live.engine import Event

        self._next_restart = now + self.config.restart_backoff_s
        lost, code, old = self.in_flight, proc.exitcode, self.pid
        self.counters["windows_lost"] += lost
        self.counters["restarts"] += 1
        proc.join(0)
        log.warning("re-scoring process %s ended (exit code %s, %d window(s) lost): restarting", old, code, lost)
        self.start()
        return [Event("_service", "rescore_restarted", 0, {"old_pid": old, "pid": self.pid, "exitcode": code,
                                                           "windows_lost": lost, "restarts": self.counters["restarts"]})]

    # ---------------- service-thread side

    def submit(self, runs) -> None:
        """Never blocks: more than ``queue_size`` windows in flight -> window dropped and counted."""
        for run in runs:
            for w in self.assembler.add(run):
                if self.in_flight >= self.config.queue_size or self._windows is None:
                    self.counters["windows_dropped"] += 1
                    continue
                try:
                    self._windows.send_multipart(_window_frames(w), zmq.NOBLOCK)
                except zmq.Again:
                    self.counters["windows_dropped"] += 1
                    continue
                self.in_flight += 1
                self.counters["windows_queued"] += 1

    def on_result(self, frames: list) -> bool:
        """Account for one message from the child; True if it is a ``rescore`` message to publish."""
        head = bytes(frames[0])
        if head == b"ready":
            self.counters["processes_ready"] += 1
            return False
        if head == b"failed":
            n = int(frames[1])
            self.counters["windows_failed"] += n
            self.in_flight = max(0, self.in_flight - n)
            return False
        self.in_flight = max(0, self.in_flight - 1)
        self.counters["windows_scored"] += 1
        if len(frames) == 3:
            try:
                self.cost_ms.append(float(json.loads(bytes(frames[2]))["cost_ms"]))
            except (ValueError, KeyError, TypeError):
                pass
            if len(self.cost_ms) > 10_000:
                del self.cost_ms[:5_000]
        return True

    def snapshot(self) -> dict:
        cost = np.array(self.cost_ms[-1000:])
        return {
            **dict(self.counters),
            "queue": self.in_flight,
            "pid": self.pid,
            "cost_ms_p50": round(float(np.median(cost)), 2) if cost.size else None,
            "cost_ms_max": round(float(cost.max()), 2) if cost.size else None,
        }


def make_rescorer(config: RescoreConfig, weights_dir, context: zmq.Context, *, profile=None):
    """The re-scorer ``config`` asks for: :class:`RescoreProcess` or the in-process :class:`Rescorer`."""
    cls = RescoreProcess if config.process else Rescorer
    return cls(config, weights_dir, context, profile=profile)
