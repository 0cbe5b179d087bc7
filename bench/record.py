"""Measured throughput of recording and replay (``radarstream bench-record``).

Both figures cross a real TCP socket on 127.0.0.1 and a second process, so that the publisher
(or the receiver) does not share the recorder's (or the replayer's) interpreter lock:

* record: a publisher process pushes ``samples`` messages (with truth) as fast as it can, or at a
  paced rate, into a :class:`~streamer.recording.writer.Recorder`; sent vs received vs written are counted.
  PUB/SUB drops at the high-water mark, so ``sent - received`` is exactly what the recorder could not
  keep up with (and the recorder's own ``record_gap`` events say the same).
* replay: a file made by :func:`~streamer.recording.writer.simulate_to_file` is published at ``--speed max``
  into a receiver process that counts what arrives.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from streamer.sim.publisher import FeedConfig
from streamer.sources.simulated import SimulatedSource
from streamer.recording.writer import Recorder, RecorderConfig, simulate_to_file
from streamer.recording.replay import Replayer, publish_recording

__all__ = ["RecordBenchRow", "RecordingBench", "bench_recording"]

_SEQ_T0 = struct.Struct("<Qq")
_END_TOPIC = b"event/_bench_end"


@dataclass(frozen=True)
class RecordBenchRow:
    label: str
    target_sps: float | None
    """Offered rate in samples/s (None: as fast as the publisher can)."""
    sent_samples: int
    received_samples: int
    written_messages: int
    seconds: float
    """From the first to the last received message."""
    gaps: int
    cpu_s: float
    """CPU time of the recorder thread: ``received / cpu_s`` is its capacity on one free core."""

    @property
    def drops(self) -> int:
        return self.sent_samples - self.received_samples

    @property
    def received_sps(self) -> float:
        return self.received_samples / self.seconds if self.seconds > 0 else 0.0

    @property
    def capacity_sps(self) -> float:
        return self.received_samples / self.cpu_s if self.cpu_s > 0 else 0.0


@dataclass(frozen=True)
class RecordingBench:
    samples_per_message: int
    sensors: int
    record: tuple[RecordBenchRow, ...]
    replay_samples: int
    replay_messages: int
    replay_send_s: float
    """Time to read the file and hand every message to the socket."""
    replay_received_samples: int
    replay_end_to_end_s: float
    """From the first send to the receiver having everything."""
    simulate_sps: float
    file_bytes_per_sample: float
    replay_cpu_s: float
    load: tuple[float, float, float]
    """Load average when the benchmark ended: the machine may be shared."""

    @property
    def replay_sps(self) -> float:
        return self.replay_samples / self.replay_send_s if self.replay_send_s > 0 else 0.0

    @property
    def replay_capacity_sps(self) -> float:
        return self.replay_samples / self.replay_cpu_s if self.replay_cpu_s > 0 else 0.0

    def markdown(self, command: str, machine: str) -> str:
        spm = self.samples_per_message
        load = ", ".join(f"{x:.1f}" for x in self.load)
        lines = [
            "## Recording and replay",
            "",
            f"`samples` messages of {spm} samples (with the simulator's truth frame, or without as from "
            f"a real sensor), {self.sensors} sensors, over "
            "tcp://127.0.0.1 between two processes; MCAP with lz4 chunks (the recorder's default), "
            "fsync every 1 s. *Rate* is what went through in wall time on this machine (load average "
            f"{load} at the end: the CPUs were shared); *capacity* is samples per CPU-second of the "
            "recording (or replaying) thread, i.e. the rate on one free core.",
            "",
            f"Command: `{command}` ({machine}).",
            "",
            "| recording | offered (samples/s) | sent | received | dropped | written msgs | rate (samples/s) "
            "| CPU µs/sample | capacity (samples/s) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in self.record:
            offered = "max" if r.target_sps is None else f"{r.target_sps:,.0f}"
            lines.append(f"| {r.label} | {offered} | {r.sent_samples:,} | {r.received_samples:,} | "
                         f"{r.drops:,} ({100 * r.drops / max(r.sent_samples, 1):.1f}%) | "
                         f"{r.written_messages:,} | {r.received_sps:,.0f} | "
                         f"{1e6 * r.cpu_s / max(r.received_samples, 1):.2f} | {r.capacity_sps:,.0f} |")
        lines += [
            "",
            "| replay `--speed max` | samples | messages | file -> socket rate (samples/s) | received "
            "| end to end (samples/s) | capacity (samples/s) |",
            "|---|---:|---:|---:|---:|---:|---:|",
            f"| simulate_to_file recording | {self.replay_samples:,} | {self.replay_messages:,} | "
            f"{self.replay_sps:,.0f} | {self.replay_received_samples:,} | "
            f"{self.replay_received_samples / max(self.replay_end_to_end_s, 1e-9):,.0f} | "
            f"{self.replay_capacity_sps:,.0f} |",
            "",
            f"simulate_to_file wrote {self.simulate_sps:,.0f} samples/s "
            f"({self.file_bytes_per_sample:.1f} bytes per sample on disk with truth, zstd).",
        ]
        return "\n".join(lines)


# --------------------------------------------------------------------------- worker processes


def _publisher_main(endpoint: str, sensors: int, spm: int, duration_s: float, rate_sps: float | None,
                    truth: bool, conn: Any) -> None:
    """Child process: PUB connected to the recorder, pushing for ``duration_s``."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.XPUB)  # a PUB that sees the recorder's subscription arrive
    sock.connect(endpoint)
    source = SimulatedSource(FeedConfig(sensors=sensors, samples_per_message=spm, seed=7, realtime=False))
    templates = [(f[0], bytearray(f[1]), bytearray(f[2])) for f in source.next_batch()]
    period = source.period_ns
    if sock.poll(60_000):
        sock.recv()  # subscribed: nothing sent from now on is lost to the slow-joiner effect
    conn.send("go")
    sent = seq = 0
    start = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - start
        if elapsed >= duration_s:
            break
        if rate_sps is not None:
            ahead = sent / rate_sps - elapsed
            if ahead > 0:
                time.sleep(ahead)
        t0 = source.epoch + seq * period
        for topic, block, truth_block in templates:
            _SEQ_T0.pack_into(block, 16, seq, t0)
            if truth:
                _SEQ_T0.pack_into(truth_block, 16, seq, t0)
                sock.send_multipart((topic, bytes(block), bytes(truth_block)))
            else:
                sock.send_multipart((topic, bytes(block)))
        seq += spm
        sent += spm * sensors
    conn.send((sent, time.perf_counter() - start))
    sock.close(linger=2000)
    ctx.term()


def _receiver_main(endpoint: str, conn: Any) -> None:
    """Child process: SUB counting replayed samples until the end marker."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(endpoint)
    conn.send("ready")
    samples = 0
    while sock.poll(30_000):
        frames = sock.recv_multipart()
        if frames[0] == _END_TOPIC:
            break
        samples += struct.unpack_from("<I", frames[1], 40)[0]
    conn.send((samples, time.perf_counter()))
    sock.close(0)
    ctx.term()


# --------------------------------------------------------------------------- measurements


def _bench_record(workdir: Path, label: str, sensors: int, spm: int, duration_s: float,
                  rate_sps: float | None, truth: bool = True) -> RecordBenchRow:
    ctx = zmq.Context()
    slug = "".join(c if c.isalnum() else "-" for c in label)
    cfg = RecorderConfig(feeds=("@tcp://127.0.0.1:*",), out=str(workdir / f"record-{slug}.mcap"),
                         kinds=("samples",), flush_interval_s=1.0)
    rec = Recorder(cfg, context=ctx)
    th = rec.start_thread()
    mpctx = mp.get_context("spawn")
    parent, child = mpctx.Pipe()
    proc = mpctx.Process(target=_publisher_main, args=(rec.feed_endpoints[0], sensors, spm, duration_s, rate_sps, truth, child))
    proc.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("publisher did not start")
        parent.recv()
        first = last = None
        seen = 0
        result = None
        give_up = time.perf_counter() + duration_s + 60
        while time.perf_counter() < give_up:
            n = rec.stats.received
            now = time.perf_counter()
            if n > seen:
                first = first if first is not None else now
                last, seen = now, n
            if result is None and parent.poll(0):
                result = parent.recv()
            if result is not None and last is not None and now - last > 0.5:
                break
            if result is not None and last is None and now > give_up - 55:
                break  # the publisher finished and nothing ever arrived
            time.sleep(0.01)
        if result is None:
            raise RuntimeError("publisher did not report")
        sent, _elapsed = result
    finally:
        proc.join(10)
        rec.stop()
        th.join(30)
        ctx.term()
    received = sum(rec.stats.samples.values())
    seconds = (last - first) if first is not None and last is not None and last > first else 0.0
    return RecordBenchRow(label, rate_sps, sent, received, rec.stats.recorded, seconds, rec.stats.gaps,
                          rec.stats.cpu_s)


def _bench_replay(path: Path) -> tuple[int, int, float, int, float, float]:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.XPUB)
    sock.setsockopt(zmq.SNDHWM, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    mpctx = mp.get_context("spawn")
    parent, child = mpctx.Pipe()
    proc = mpctx.Process(target=_receiver_main, args=(f"tcp://127.0.0.1:{port}", child))
    proc.start()
    try:
        if not sock.poll(60_000):
            raise RuntimeError("receiver did not subscribe")
        sock.recv()  # its subscription: the receiver is attached
        replayer = Replayer(path, speed="max")
        t0 = time.perf_counter()
        stats = publish_recording(replayer, sock)
        send_s = time.perf_counter() - t0
        sock.send_multipart([_END_TOPIC, b""])
        if not parent.poll(120):
            raise RuntimeError("receiver did not finish")
        parent.recv()  # "ready"
        received, t_end = parent.recv() if parent.poll(120) else (0, time.perf_counter())
        end_to_end = max(t_end - t0, 1e-9)  # perf_counter is system-wide (CLOCK_MONOTONIC) on Linux
    finally:
        proc.join(10)
        sock.close(0)
        ctx.term()
    return stats.samples, stats.messages, send_s, received, end_to_end, stats.cpu_s


@dataclass(frozen=True)
class RecordBenchConfig:
    """What ``radarstream bench record`` measures (its flags have these defaults)."""

    duration_s: float = 3.0
    """Seconds per recording run."""
    samples_per_message: int = 64
    """Samples per message."""
    sensors: int = 4
    """Sensors in the streams."""
    paced_sps: float = 500_000.0
    """Offered rate of the paced recording run, samples/s."""
    replay_samples: int = 2_000_000
    """Samples in the replay file."""


def bench_recording(
    *,
    duration_s: float = RecordBenchConfig.duration_s,
    samples_per_message: int = RecordBenchConfig.samples_per_message,
    sensors: int = RecordBenchConfig.sensors,
    paced_sps: float = RecordBenchConfig.paced_sps,
    replay_samples: int = RecordBenchConfig.replay_samples,
    workdir: str | Path | None = None,
) -> RecordingBench:
    """Measure recording (unpaced and paced at ``paced_sps``) and replay at max speed."""
    with tempfile.TemporaryDirectory(prefix="radarstream-bench-") as tmp:
        wd = Path(workdir) if workdir is not None else Path(tmp)
        rows = (
            _bench_record(wd, "unpaced, with truth", sensors, samples_per_message, duration_s, None),
            _bench_record(wd, "paced, with truth (simulator)", sensors, samples_per_message, duration_s, paced_sps),
            _bench_record(wd, "paced, no truth (sensor)", sensors, samples_per_message, duration_s, paced_sps,
                          truth=False),
        )
        msgs_per_sensor = max(1, replay_samples // (sensors * samples_per_message))
        feed_cfg = FeedConfig(sensors=sensors, samples_per_message=samples_per_message, seed=3, realtime=False,
                              duration_s=msgs_per_sensor * samples_per_message / 20.0)
        t0 = time.perf_counter()
        sim = simulate_to_file(wd / "replay.mcap", feed_cfg)
        sim_s = time.perf_counter() - t0
        size = (wd / "replay.mcap").stat().st_size
        samples, messages, send_s, received, e2e, cpu_s = _bench_replay(wd / "replay.mcap")
    return RecordingBench(samples_per_message, sensors, rows, samples, messages, send_s, received, e2e,
                          sim.samples / sim_s, size / max(sim.samples, 1), cpu_s, os.getloadavg())
