"""Fault-injection kit of the reliability campaign (docs/reliability.md): a deterministic test
signal, publisher and simulator subprocesses, a collecting subscriber, a service runner and the
exact-coverage check. The campaign's tests live beside the modules they exercise
(tests/streamer/wire/test_malformed_input.py, tests/streamer/wire/test_security.py,
tests/streamer/live/test_network_faults.py, test_sensor_isolation.py, test_soak.py,
tests/models/test_model_files.py); their figures are collected by the ``figures`` fixture
(tests/conftest.py). ``RADARSTREAM_FULL=1`` runs the full-size variants.
"""

from __future__ import annotations

import inspect
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import zmq

from streamer.live.backends import make_backend
from streamer.live.service import ServiceConfig, StreamService
from streamer.wire import protocol as P

ROOT = Path(__file__).resolve().parents[1]
FULL = os.environ.get("RADARSTREAM_FULL") == "1"
MARGIN_S = 0.5
"""Added to the timing bounds of alarms in assertions (a shared 2-CPU machine can stall a thread
that long); the measured figures are reported (docs/reliability.md) next to the bounds themselves."""


def wave(seq0: int, n: int, k: int = 0) -> np.ndarray:
    """A deterministic test signal of sensor ``k`` for samples ``seq0 .. seq0+n-1``, shared (as
    source) with the publisher subprocess: the test rebuilds exactly what any publisher life sent
    from the sequence numbers alone."""
    s = np.arange(seq0, seq0 + n, dtype=np.float64)
    return np.stack([1.5 + np.sin(s * 0.013 + k), 400.0 + 300.0 * np.cos(s * 0.0021 + k)], 1).astype(np.float32)


WAVE_SRC = inspect.getsource(wave)

PUBLISHER = (r'''
import argparse, sys, time
import numpy as np, zmq
sys.path.insert(0, ROOT)
from streamer.wire import protocol as P
''' + WAVE_SRC + r'''
ap = argparse.ArgumentParser()
ap.add_argument("endpoint")
ap.add_argument("--sensors", type=int, default=1)
ap.add_argument("--first", type=int, default=0)
ap.add_argument("--prefix", default="s")
ap.add_argument("--rate", type=float, default=1000.0)
ap.add_argument("--spm", type=int, default=1)
ap.add_argument("--seq0", type=int, default=0)
ap.add_argument("--duration", type=float, default=1e9)
ap.add_argument("--nowait", action="store_true")
ap.add_argument("--sndhwm", type=int, default=0)
ap.add_argument("--sndbuf", type=int, default=-1)
ap.add_argument("--mode", choices=["normal", "garbage"], default="normal")
a = ap.parse_args()
ctx = zmq.Context()
sock = ctx.socket(zmq.XPUB)  # XPUB: sees the subscription, so nothing is lost to the slow joiner
sock.setsockopt(zmq.SNDHWM, a.sndhwm)
if a.sndbuf > 0:
    sock.setsockopt(zmq.SNDBUF, a.sndbuf)
deadline = time.monotonic() + 20
while True:  # a successor started early waits for its predecessor's port
    try:
        sock.bind(a.endpoint)
        break
    except zmq.ZMQError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.002)
epoch = time.time_ns()
print("bound", epoch, flush=True)
if not a.nowait:
    while sock.recv()[:1] != b"\x01":
        pass
print("subscribed", flush=True)
period = int(round(1e9 / a.rate))
topics = [(k, P.topic(P.Kind.SAMPLES, f"{a.prefix}{k}")) for k in range(a.first, a.first + a.sensors)]
rng = np.random.default_rng(epoch % 2**32)
seq, n, start = a.seq0, 0, time.perf_counter()
t_base = time.time_ns() - a.seq0 * period + (a.spm - 1) * period  # a message leaves when its last sample is due
CHUNK = 256  # messages whose samples are computed at once (keeps the load generator cheap)
chunk = {}
try:  # until --duration, or SIGINT: then say how far it got
    while time.perf_counter() - start < a.duration:
        delay = start + (n * a.spm + a.spm - 1) / a.rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        if n % CHUNK == 0:
            chunk = {k: wave(seq, a.spm * CHUNK, k) for k, _ in topics}
        off = (n % CHUNK) * a.spm
        for k, t in topics:
            if a.mode == "garbage":
                sock.send_multipart([t, rng.bytes(int(rng.integers(0, 200)))])
            else:
                blk = P.Block(P.Kind.SAMPLES, epoch, seq, t_base + seq * period - (a.spm - 1) * period, period,
                              chunk[k][off : off + a.spm])
                sock.send_multipart([t, P.encode_block(blk)])
        seq += a.spm
        n += 1
        if n % 16 == 0:
            while sock.poll(0):
                sock.recv()
except KeyboardInterrupt:
    pass
print("sent", seq, flush=True)
sock.close(linger=1000)
''').replace("sys.path.insert(0, ROOT)", f"sys.path.insert(0, {str(ROOT)!r})")


SIMULATOR = (r'''
import signal, sys, threading
import zmq
sys.path.insert(0, ROOT)
from streamer.sim.publisher import FeedConfig, SimulatedFeed, publish
# what `radarstream simulate --sensors 16 --rate 1000 --samples-per-message 10` runs, without the
# CLI's start-up (the CLI imports the model stack: seconds of CPU on a shared 2-core machine)
feed = SimulatedFeed(FeedConfig(sensors=16, rate_hz=1000.0, samples_per_message=10, realtime=True))
sock = zmq.Context().socket(zmq.PUB)
sock.setsockopt(zmq.SNDHWM, 1_000_000)
sock.bind(sys.argv[1])
stop = threading.Event()
signal.signal(signal.SIGINT, lambda *_: stop.set())
print("sent", publish(feed, sock, stop), flush=True)
sock.close(linger=2000)
''').replace("sys.path.insert(0, ROOT)", f"sys.path.insert(0, {str(ROOT)!r})")


# ------------------------------------------------------------------ fixtures and helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Collector:
    """Everything a service publishes, received in a thread and stamped with the arrival time.

    The thread only stores raw frames (it shares the GIL with an in-process service); messages
    are decoded, and predictions indexed, when the test looks."""

    def __init__(self, ctx: zmq.Context, endpoint: str, *, curve: dict | None = None):
        self._raw: list[tuple[float, int, list[bytes]]] = []
        self._msgs: list[tuple[float, P.Message]] = []
        self._wall: list[int] = []
        self._preds: dict[str, dict[int, tuple[int, np.ndarray]]] = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ctx, endpoint, curve or {}), daemon=True)
        self._thread.start()
        assert self._ready.wait(5)

    def _run(self, ctx, endpoint, curve) -> None:
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.LINGER, 0)
        for opt, value in curve.items():
            sock.setsockopt(opt, value)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(endpoint)
        self._ready.set()
        try:
            while not self._stop.is_set():
                if sock.poll(50):
                    while True:
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._raw.append((time.monotonic(), time.time_ns(), frames))
        finally:
            sock.close(0)

    def _sync(self) -> None:
        for t, wall, frames in self._raw[len(self._msgs) : len(self._raw)]:
            m = P.decode_message(frames)
            assert not isinstance(m, P.DecodeError), m
            self._msgs.append((t, m))
            self._wall.append(wall)
            if m.kind is P.Kind.PRED:
                rows = self._preds.setdefault(m.sensor, {})
                for k in range(m.block.count):
                    rows[m.block.seq + k] = (m.block.epoch, m.block.data[k])

    @property
    def msgs(self) -> list[tuple[float, P.Message]]:
        """(monotonic arrival time, message), in arrival order."""
        self._sync()
        return self._msgs

    @property
    def wall_ns(self) -> list[int]:
        """time.time_ns() at the arrival of each message, same order as ``msgs``."""
        self._sync()
        return self._wall

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def events(self, type_: str | None = None, sensor: str | None = None) -> list[tuple[float, P.Message]]:
        return [(t, m) for t, m in self.msgs if m.kind is P.Kind.EVENT
                and (type_ is None or m.meta["type"] == type_) and (sensor is None or m.sensor == sensor)]

    def preds(self, sensor: str) -> dict[int, tuple[int, np.ndarray]]:
        """seq -> (epoch, row) of every prediction row of ``sensor`` (the last one per seq)."""
        self._sync()
        return self._preds.get(sensor, {})

    def wait(self, cond: Callable[[], bool], timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            time.sleep(0.02)
        return cond()


@contextmanager
def serving(weights, *, feeds: tuple[str, ...] | None = None, feed_sndhwm: int = 0, collect: bool = True,
            collector_curve: dict | None = None, **config) -> Iterator[tuple[StreamService, zmq.Socket | None, Collector | None]]:
    """A service on 127.0.0.1: fed by a PUB socket of the test (or ``feeds``), watched by a
    Collector that is connected before this returns (it has received a stats message)."""
    ctx = zmq.Context()
    feed = None
    if feeds is None:
        feed = ctx.socket(zmq.PUB)
        feed.setsockopt(zmq.SNDHWM, feed_sndhwm)
        feed.setsockopt(zmq.LINGER, 0)
        feeds = (f"tcp://127.0.0.1:{feed.bind_to_random_port('tcp://127.0.0.1')}",)
    config.setdefault("stats_interval_s", 0.25)
    cfg = ServiceConfig(feeds=feeds, pub="tcp://127.0.0.1:*", **config)
    service = StreamService(cfg, make_backend("onnx", weights), context=ctx, weights_dir=weights)
    thread = service.start_thread()
    col = Collector(ctx, service.pub_endpoint, curve=collector_curve) if collect else None
    try:
        if col is not None:
            assert col.wait(lambda: bool(col.events("stats")), 10), "collector not connected"
        yield service, feed, col
    finally:
        service.stop()
        thread.join(10)
        if col is not None:
            col.close()
        if feed is not None:
            feed.close(0)
        ctx.term()


def probe_until_live(feed: zmq.Socket, col: Collector, timeout: float = 10.0) -> None:
    """Send a probe sensor until its prediction comes back: the feed connection is live."""
    deadline = time.monotonic() + timeout
    seq = 0
    while time.monotonic() < deadline:
        blk = P.make_block(P.Kind.SAMPLES, np.ones((1, 2), np.float32), epoch=1, seq=seq, t0_ns=0, period_ns=1)
        feed.send_multipart(P.encode_message(P.Message(P.Kind.SAMPLES, "probe", blk)))
        seq += 1
        if col.wait(lambda: bool(col.preds("probe")), 0.1):
            return
    raise TimeoutError("the service did not answer the probe")


def pin_cpus(cpus: set[int] | None) -> Callable[[], None] | None:
    """A preexec_fn that pins the child to ``cpus`` (load generators away from the service)."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return None
    usable = cpus & os.sched_getaffinity(0)
    return (lambda: os.sched_setaffinity(0, usable)) if usable else None


class Publisher:
    """The PUBLISHER script in a subprocess; ``lines`` collects its stdout."""

    def __init__(self, endpoint: str, *args: str, cpus: set[int] | None = None):
        self.proc = subprocess.Popen([sys.executable, "-c", PUBLISHER, endpoint, *args], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     preexec_fn=pin_cpus(cpus))
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.strip()))

    def wait_line(self, prefix: str, timeout: float = 20.0) -> tuple[float, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, line in list(self.lines):
                if line.startswith(prefix):
                    return t, line
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.005)
        raise TimeoutError(f"publisher never printed {prefix!r}: {self.lines} {self.proc.stderr.read() if self.proc.poll() is not None else ''}")

    @property
    def epoch(self) -> int:
        return int(self.wait_line("bound")[1].split()[1])

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()


@contextmanager
def killing(procs: list[Publisher]) -> Iterator[None]:
    """Whatever happens, no publisher outlives the test."""
    try:
        yield
    finally:
        for p in procs:
            p.kill()


def coverage_is_exact(received: set[int], gaps: list[tuple[int, int]], first: int, last: int) -> bool:
    """Received seqs and reported gap ranges tile [first, last] exactly, without overlap."""
    covered = np.zeros(last - first + 1, np.int32)
    for s in received:
        covered[s - first] += 1
    for a, b in gaps:
        covered[a - first : b - first + 1] += 1
    return bool((covered == 1).all())


@contextmanager
def serve_process(weights, feeds: tuple[str, ...], *extra: str, log_path: Path, out: str | None = None,
                  cpus: set[int] | None = None) -> Iterator[tuple[subprocess.Popen, Collector]]:
    """``radarstream serve`` in its own process (nothing of the test shares its GIL), watched by a
    Collector connected before this returns."""
    out = out or f"tcp://127.0.0.1:{free_port()}"
    args = [sys.executable, "-m", "tools.cli", "serve", "--pub", out, "--weights", str(weights), *extra]
    for f in feeds:
        args += ["--feed", f]
    ctx = zmq.Context()
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=pin_cpus(cpus))
        col = Collector(ctx, out)
        try:
            assert col.wait(lambda: bool(col.events("stats")), 60), log_path.read_text()
            yield proc, col
        finally:
            stop_process(proc)
            col.close()
            ctx.term()


def stop_process(proc: subprocess.Popen, timeout: float = 15) -> None:
    """SIGINT (a clean stop: files finished, sockets closed), then kill if it does not exit."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def last_stats(col: Collector) -> dict:
    return col.events("stats")[-1][1].meta
