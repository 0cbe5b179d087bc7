"""Recording ZeroMQ streams to MCAP: the writer, the live recorder, and the simulator-to-file.

The recorder SUBscribes to one or more feeds, decodes every message with the protocol's decoder
(malformed ones are counted, never written), and appends the exact wire frames to an MCAP file
(layout: :mod:`streamer.recording.format`, docs/recording.md).

Bounded loss: the MCAP writer only puts a chunk on disk when it closes it, and a killed process
leaves no footer. So every ``flush_interval_s`` the recorder closes the chunk in progress, writes
it with its message indexes, flushes Python's buffer and ``fsync``s: after ``kill -9`` (or a power
cut) a sequential scan (``radarstream recording repair``) recovers everything received up to the
last flush, so at most one flush interval (plus one bounded drain batch) is lost.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO

import zmq
from mcap.records import MessageIndex
from mcap.writer import CompressionType, Writer

from streamer.wire import protocol as P
from streamer.sim.publisher import FeedConfig, SimulatedFeed
from streamer.recording.format import (
    CHUNK_SIZE,
    DEFAULT_KINDS,
    RecordingError,
    ENCODING,
    GAP_KINDS,
    LIBRARY,
    META_RECORDING,
    META_STATS,
    PROFILE,
    pack_frames,
    parse_kinds,
    schema_data,
    schema_name,
)

__all__ = [
    "RecordingWriter",
    "RecorderConfig",
    "RecorderStats",
    "Recorder",
    "SimulateFileResult",
    "simulate_to_file",
    "COMPRESSIONS",
    "MAX_CHANNELS",
    "ChannelLimitError",
    "part_path",
]

log = logging.getLogger("radarstream.record")

_MESSAGE_HEAD = struct.Struct("<BQHIQQ")  # opcode, record length, channel, sequence, log, publish
_OP_MESSAGE = 0x05

COMPRESSIONS: Mapping[str, CompressionType] = MappingProxyType({
    "zstd": CompressionType.ZSTD,
    "lz4": CompressionType.LZ4,
    "none": CompressionType.NONE,
})

MAX_CHANNELS = 65_535
"""Channels one MCAP file can hold: channel ids are u16 and the writer numbers them from 1. With
``samples``, ``pred`` and ``event`` per sensor that is 21,845 sensors; the recorder rolls over to
a new file before the limit (docs/recording.md §1, "Parts")."""


class ChannelLimitError(RecordingError):
    """A new channel would exceed the file's channel limit (:data:`MAX_CHANNELS`)."""


def part_path(out: str | Path, part: int) -> Path:
    """File of part ``part`` (1-based) of a recording written to ``out``: part 1 is ``out``
    itself, then ``run.2.mcap``, ``run.3.mcap``, ... next to it."""
    out = Path(out)
    if part <= 1:
        return out
    return out.with_name(f"{out.stem}.{part}{out.suffix}") if out.suffix else out.with_name(f"{out.name}.{part}")


def _str_map(values: Mapping[str, Any]) -> dict[str, str]:
    """MCAP metadata is str -> str: keep strings, JSON-encode the rest."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


class RecordingWriter:
    """One MCAP file in the radarstream layout: a channel per topic, a schema per kind.

    ``flush()`` closes the current chunk and makes everything written so far durable, which is
    what bounds the loss of a killed recorder. Not thread-safe: one owner thread.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        chunk_size: int = 1 << 20,
        compression: str = "zstd",
        metadata: Mapping[str, Any] | None = None,
        fast: bool = True,
        max_channels: int = MAX_CHANNELS,
    ):
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {sorted(COMPRESSIONS)}")
        if not 1 <= max_channels <= MAX_CHANNELS:
            raise ValueError(f"max_channels must be in 1..{MAX_CHANNELS} (MCAP channel ids are u16)")
        self.max_channels = max_channels
        self.path = Path(path)
        self._file: BinaryIO = open(self.path, "wb")  # noqa: SIM115 - owned until close()
        self._writer = Writer(self._file, chunk_size=chunk_size, compression=COMPRESSIONS[compression])
        self._writer.start(profile=PROFILE, library=LIBRARY)
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self._sequence: Counter = Counter()
        self.messages = 0
        self.bytes = 0
        self._unflushed = 0
        self._closed = False
        self._fast = self._fast_path() if fast else None
        if metadata:
            self._writer.add_metadata(META_RECORDING, _str_map(metadata))

    # ------------------------------------------------------------ channels

    def channel(self, kind: str, sensor: str) -> int:
        """Channel id of ``<kind>/<sensor>``, registered (with its kind's schema) on first use."""
        topic = f"{kind}/{sensor}"
        cid = self._channels.get(topic)
        if cid is None:
            if len(self._channels) >= self.max_channels:
                raise ChannelLimitError(
                    f"{self.path}: cannot add channel {topic!r}: the file holds {len(self._channels)} channels, "
                    f"the most one MCAP file can (channel ids are 16-bit); the recorder rolls over to a new file")
            sid = self._schemas.get(kind)
            if sid is None:
                sid = self._schemas[kind] = self._writer.register_schema(
                    schema_name(kind), ENCODING, schema_data(kind))
            cid = self._channels[topic] = self._writer.register_channel(
                topic, ENCODING, sid, {"kind": kind, "sensor": sensor, "framing": "u32le-length-prefixed frames 1..n"})
        return cid

    @property
    def topics(self) -> list[str]:
        return list(self._channels)

    def has_channel(self, kind: str, sensor: str) -> bool:
        return f"{kind}/{sensor}" in self._channels

    @property
    def channels_left(self) -> int:
        """New channels this file can still take (see :data:`MAX_CHANNELS`)."""
        return self.max_channels - len(self._channels)

    # ------------------------------------------------------------ writing

    def write_frames(
        self, kind: str, sensor: str, frames: Sequence[bytes], log_time_ns: int, publish_time_ns: int
    ) -> None:
        """Append one message given its wire frames 1..n (the topic frame excluded)."""
        self.write_to(self.channel(kind, sensor), frames, log_time_ns, publish_time_ns)

    def write_to(self, cid: int, frames: Sequence[bytes], log_time_ns: int, publish_time_ns: int) -> None:
        """``write_frames`` for a channel id already obtained from :meth:`channel` (hot path)."""
        data = pack_frames(frames)
        seq = self._sequence[cid]
        self._sequence[cid] = (seq + 1) & 0xFFFFFFFF
        if publish_time_ns < 0:
            publish_time_ns = 0
        if self._fast is not None:
            self._append_fast(cid, log_time_ns, data, publish_time_ns, seq)
        else:
            self._writer.add_message(cid, log_time=log_time_ns, data=data, publish_time=publish_time_ns, sequence=seq)
        self.messages += 1
        self._unflushed += 1
        self.bytes += len(data)

    def _fast_path(self) -> tuple[Any, Any, Callable[[], None]] | None:
        """The writer internals that ``Writer.add_message`` touches, if this mcap version has them.

        ``Writer.add_message`` costs ~25 Python calls per message (a dataclass, a record builder
        patching lengths in a BytesIO); appending the record in one ``struct.pack`` is about 5x
        cheaper, which is what lets the recorder keep up at high rates. The bytes are identical
        (tested against ``add_message``); any other mcap layout falls back to the public method.
        """
        w = self._writer
        try:
            stats = w._Writer__statistics  # type: ignore[attr-defined]
            builder = w._Writer__chunk_builder  # type: ignore[attr-defined]
            finalize = w._Writer__maybe_finalize_chunk  # type: ignore[attr-defined]
            ok = (builder is not None and isinstance(builder.message_indices, dict) and callable(finalize)
                  and hasattr(stats, "channel_message_counts") and hasattr(builder.record_writer._buffer, "tell"))
        except AttributeError:
            return None
        return (stats, builder, finalize) if ok else None

    def _append_fast(self, cid: int, log: int, data: bytes, pub: int, seq: int) -> None:
        """Exactly what Writer.add_message + ChunkBuilder.add_message + Message.write do."""
        stats, builder, finalize = self._fast  # type: ignore[misc]
        if stats.message_count == 0:
            stats.message_start_time = log
        elif log < stats.message_start_time:
            stats.message_start_time = log
        if log > stats.message_end_time:
            stats.message_end_time = log
        stats.channel_message_counts[cid] += 1
        stats.message_count += 1
        if builder.num_messages == 0:
            builder.message_start_time = log
        elif log < builder.message_start_time:
            builder.message_start_time = log
        if log > builder.message_end_time:
            builder.message_end_time = log
        index = builder.message_indices.get(cid)
        if not index:
            index = builder.message_indices[cid] = MessageIndex(channel_id=cid, records=[])
        buf = builder.record_writer._buffer  # replaced by a fresh BytesIO after each chunk
        index.records.append((log, buf.tell()))
        builder.num_messages += 1
        buf.write(_MESSAGE_HEAD.pack(_OP_MESSAGE, 22 + len(data), cid, seq, log, pub))
        buf.write(data)
        finalize()

    def write_message(self, msg: P.Message, log_time_ns: int) -> None:
        """Encode and append a decoded message (recorder events, tools, tests)."""
        frames = P.encode_message(msg)
        self.write_frames(msg.kind.word, msg.sensor, frames[1:], log_time_ns, msg.block.t0_ns)

    def flush(self, fsync: bool = True) -> bool:
        """Close the chunk in progress and make it durable; False when nothing was pending."""
        if self._unflushed == 0:
            return False
        flush = getattr(self._writer, "flush", None)
        if flush is not None:  # mcap >= 1.3: public, closes the chunk in progress
            flush()
        else:  # older mcap: the same steps through the private chunk finaliser
            self._writer._Writer__finalize_chunk()  # type: ignore[attr-defined]
            self._file.flush()
        if fsync:
            os.fsync(self._file.fileno())
        self._unflushed = 0
        return True

    def close(self, stats: Mapping[str, Any] | None = None) -> None:
        """Write the summary and footer (the file is then indexed) and close it."""
        if self._closed:
            return
        self._closed = True
        try:
            if stats:
                self._writer.add_metadata(META_STATS, _str_map(stats))
            self._writer.finish()
            self._file.flush()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- recorder


@dataclass(frozen=True)
class _Topic:
    """What the recorder caches per received topic frame (saves a parse per message)."""

    kind: str
    sensor: str
    topic: str
    channel: int


@dataclass(frozen=True)
class RecorderConfig:
    """Everything ``radarstream record`` is told; nothing global."""

    feeds: tuple[str, ...] = ("tcp://127.0.0.1:5556",)
    """Endpoints to SUBscribe to; connected by default (``@`` prefix binds)."""
    out: str = "recording.mcap"
    kinds: tuple[str, ...] = DEFAULT_KINDS
    """Topic words to record (SUB prefixes); the recorder's own gap events are always written."""
    flush_interval_s: float = 1.0
    """Close the chunk and fsync this often: the most a ``kill -9`` can lose."""
    chunk_size: int = 1 << 20
    compression: str = "lz4"
    """lz4 costs a third of zstd's CPU per chunk (files ~25% larger): a live recorder must keep up."""
    rcvhwm: int = 1_000_000
    """Receive queue in messages: bursts queue here rather than being dropped."""
    max_samples_per_message: int = P.DEFAULT_MAX_SAMPLES
    check_every: int = 256
    """Messages between two looks at the flush clock while draining (bounds the loss window)."""
    fsync: bool = True
    max_channels: int = MAX_CHANNELS
    """Channels per file; a topic that would exceed it finishes the file and continues in the next
    part (:func:`part_path`: ``run.mcap``, ``run.2.mcap``, ...). MCAP's own limit is the default."""
    curve: Any = None
    """A :class:`streamer.wire.security.CurveConfig` (``--curve-keys``): CURVE on the SUB socket
    (client keypair when it connects, the allow-list when it binds); None: plain ZeroMQ."""
    refusal_first_s: float = 0.5
    refusal_max_s: float = 30.0
    """Back-off of the reconnection after a refused handshake (libzmq itself never retries one)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", parse_kinds(self.kinds))
        if self.flush_interval_s <= 0:
            raise ValueError("flush_interval_s must be > 0")
        if not 2 <= self.max_channels <= MAX_CHANNELS:
            raise ValueError(f"max_channels must be in 2..{MAX_CHANNELS}")


@dataclass
class RecorderStats:
    """Counters since start. Written to the file's ``radarstream.recorder_stats`` metadata."""

    started_ns: int = field(default_factory=time.time_ns)
    received: int = 0
    recorded: int = 0
    durable: int = 0
    """Messages (recorder events included) on disk as of the last completed flush."""
    flushes: int = 0
    messages: Counter = field(default_factory=Counter)
    """Recorded messages by topic."""
    samples: Counter = field(default_factory=Counter)
    """Recorded rows (block counts) by topic."""
    malformed: Counter = field(default_factory=Counter)
    gaps: int = 0
    gap_samples: int = 0
    restarts: int = 0
    cpu_s: float = 0.0
    """CPU time of the recording thread (benchmarks: capacity = samples / cpu_s)."""
    parts: list[str] = field(default_factory=list)
    """The files written, in order: ``config.out``, then one per rollover (channel limit)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "started_ns": self.started_ns, "stopped_ns": time.time_ns(), "received": self.received,
            "recorded": self.recorded, "flushes": self.flushes, "malformed": dict(self.malformed),
            "gaps": self.gaps, "gap_samples": self.gap_samples, "restarts": self.restarts,
            "cpu_s": round(self.cpu_s, 3), "messages": dict(self.messages), "parts": len(self.parts) or 1,
        }


class Recorder:
    """SUB feeds -> decode -> MCAP, with periodic durable flushes and recorded gap events.

    One thread owns the socket and the file. ``run`` until ``stop()`` (SIGINT/SIGTERM in the CLI);
    the file is then finished with its summary and footer.
    """

    def __init__(
        self,
        config: RecorderConfig,
        *,
        context: zmq.Context | None = None,
        on_flush: Callable[[RecorderStats], None] | None = None,
        on_ready: Callable[[Recorder], None] | None = None,
        on_rollover: Callable[[str, str], None] | None = None,
    ):
        self.config = config
        self.on_rollover = on_rollover
        """Called with (finished file, next file) at each rollover (channel limit)."""
        self._writer: RecordingWriter | None = None
        self._generation = 0
        self.ctx = context or zmq.Context.instance()
        self.on_flush = on_flush
        self.on_ready = on_ready
        self.stats = RecorderStats()
        self.ready = threading.Event()
        self.feed_endpoints: list[str] = []
        self._stop = threading.Event()
        self._expected: dict[tuple[str, str], tuple[int, int]] = {}
        self._topics: dict[bytes, _Topic] = {}
        self._warned: set[str] = set()
        self._curve = None
        self.refusal_watch = None
        """The :class:`streamer.wire.security.RefusalWatch` of the connected feeds (while running):
        refused handshakes, reconnections."""
        # decode_message with a topic cache and a fast path for samples without truth (same results)
        self._decoder = P.Decoder(max_samples=config.max_samples_per_message, with_truth=True)

    def stop(self) -> None:
        self._stop.set()

    def start_thread(self) -> threading.Thread:
        """Run in a background thread (tests, GUI); waits until the sockets are attached."""
        th = threading.Thread(target=self.run, name="radarstream-record", daemon=True)
        th.start()
        if not self.ready.wait(10.0):
            raise RuntimeError("recorder did not start")
        return th

    def _open(self) -> zmq.Socket:
        from streamer.recording.format import attach

        cfg = self.config
        sub = self.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, cfg.rcvhwm)
        sub.setsockopt(zmq.MAXMSGSIZE, P.max_block_size(cfg.max_samples_per_message) * 2 + 4096)
        sub.setsockopt(zmq.LINGER, 0)
        for kind in cfg.kinds:
            sub.setsockopt(zmq.SUBSCRIBE, f"{kind}/".encode())
        try:
            if cfg.curve is not None:
                from streamer.wire.security import Curve, socket_role

                self._curve = Curve(cfg.curve, self.ctx)
                self._curve.secure(sub, socket_role(cfg.feeds, "connect"))
            self.feed_endpoints = [attach(sub, f, "connect") for f in cfg.feeds]
            self.refusal_watch = self._watch(sub)
        except BaseException:
            sub.close(0)
            self._stop_curve()
            raise
        return sub

    def _watch(self, sub: zmq.Socket):
        """Reconnect-after-refusal of the feeds this socket connects to (None if it binds them all)."""
        from streamer.wire.security import RefusalWatch, endpoint_mode

        cfg = self.config
        connected = [ep for f, ep in zip(cfg.feeds, self.feed_endpoints) if endpoint_mode(f, "connect")[0] == "connect"]
        if not connected:
            return None
        return RefusalWatch(sub, connected, what="record feed", first_s=cfg.refusal_first_s,
                            max_s=cfg.refusal_max_s, logger=log)

    def _stop_curve(self) -> None:
        if self.refusal_watch is not None:
            self.refusal_watch.close()
        if self._curve is not None:
            self._curve.stop()
            self._curve = None

    def _meta(self, part: int) -> dict[str, Any]:
        cfg = self.config
        meta = {"feeds": self.feed_endpoints, "kinds": list(cfg.kinds), "flush_interval_s": cfg.flush_interval_s,
                "started_ns": self.stats.started_ns, "source": "recorder",
                "framing": "u32le-length-prefixed frames 1..n; topic = channel topic"}
        if part > 1:  # a rollover: say where this part sits in the recording
            meta.update(part=part, first_part=str(cfg.out), previous_part=str(part_path(cfg.out, part - 1)),
                        max_channels=cfg.max_channels)
        return meta

    def _new_writer(self, part: int) -> RecordingWriter:
        cfg = self.config
        path = part_path(cfg.out, part)
        writer = RecordingWriter(path, chunk_size=cfg.chunk_size, compression=cfg.compression,
                                 metadata=self._meta(part), max_channels=cfg.max_channels)
        self.stats.parts.append(str(path))
        return writer

    def run(self) -> None:
        cfg = self.config
        sub = self._open()
        try:
            self._writer = self._new_writer(1)
        except BaseException:
            sub.close(0)
            self._stop_curve()
            self.ready.set()
            raise
        log.info("recording %s from %s -> %s", ",".join(cfg.kinds), self.feed_endpoints, cfg.out)
        self.ready.set()
        if self.on_ready is not None:
            self.on_ready(self)
        interval = cfg.flush_interval_s
        next_flush = time.monotonic() + interval
        cpu0 = time.thread_time()
        watch = self.refusal_watch
        next_watch = 0.0
        try:
            while not self._stop.is_set():
                wait = max(0.0, min(next_flush - time.monotonic(), 0.1))
                if sub.poll(int(wait * 1000)):
                    self._drain(sub, next_flush)
                now = time.monotonic()
                if watch is not None and now >= next_watch:  # refused handshakes: alarm, reconnect when due
                    watch.poll(now)
                    next_watch = now + 0.05
                if now >= next_flush:
                    self._flush(self._writer)
                    next_flush = now + interval
        finally:
            if watch is not None:
                watch.close()
            sub.close(0)
            self._stop_curve()
            self.stats.cpu_s = time.thread_time() - cpu0
            writer = self._writer
            try:
                writer.close(self._part_stats())
            except OSError as exc:
                log.error("could not finish %s: %s (run `radarstream recording repair`)", writer.path, exc)
                raise
            self.stats.durable = self.stats.recorded
            log.info("stopped: %d messages recorded, %d malformed, %d gaps (%d samples) -> %s",
                     self.stats.recorded, sum(self.stats.malformed.values()), self.stats.gaps,
                     self.stats.gap_samples, ", ".join(self.stats.parts))

    def _part_stats(self, next_part: str | None = None) -> dict[str, Any]:
        d = self.stats.as_dict()
        d["part"] = len(self.stats.parts)
        d["part_messages"] = self._writer.messages
        if next_part is not None:
            d["next_part"] = next_part
        return d

    def _rollover(self) -> None:
        """Finish the current file (summary, footer, fsync) and continue in the next part: the
        current one has no room for another channel. Sequence state carries over, so the next
        part shows no false gap or restart."""
        old = self._writer
        part = len(self.stats.parts) + 1
        nxt = part_path(self.config.out, part)
        old.close(self._part_stats(str(nxt)))
        self.stats.durable = self.stats.recorded
        self._topics.clear()  # channel ids are per file
        self._writer = self._new_writer(part)
        self._generation += 1
        log.warning("%s holds %d channels (the most one MCAP file can hold is %d): continuing in %s",
                    old.path, len(old.topics), MAX_CHANNELS, nxt)
        if self.on_rollover is not None:
            self.on_rollover(str(old.path), str(nxt))

    def _topic(self, frame0: bytes, kind: str, sensor: str) -> _Topic:
        """The cached channel of a topic frame, registered (rolling over first if the file is full)."""
        w = self._writer
        if not w.has_channel(kind, sensor) and w.channels_left < 1:
            self._rollover()
            w = self._writer
        t = self._topics[frame0] = _Topic(kind, sensor, frame0.decode("ascii"), w.channel(kind, sensor))
        return t

    def _flush(self, writer: RecordingWriter) -> None:
        if writer.flush(self.config.fsync):
            self.stats.flushes += 1
            self.stats.durable = self.stats.recorded
            if self.on_flush is not None:
                self.on_flush(self.stats)

    # ------------------------------------------------------------ hot path

    def _drain(self, sub: zmq.Socket, next_flush: float) -> None:
        cfg, st = self.config, self.stats
        topics = self._topics
        recv, noblock, decode, time_ns = sub.recv_multipart, int(zmq.NOBLOCK), self._decoder.decode, time.time_ns
        messages, samples = st.messages, st.samples
        writer = self._writer
        n = 0
        while True:
            try:
                frames = recv(noblock)
            except zmq.Again:
                return
            recv_ns = time_ns()
            st.received += 1
            msg = decode(frames)
            if msg.__class__ is P.DecodeError:
                self._malformed(msg)  # type: ignore[arg-type]
            else:
                t = topics.get(frames[0])
                if t is None:
                    t = self._topic(frames[0], msg.kind.word, msg.sensor)
                    writer = self._writer  # a rollover replaced it
                block = msg.block
                if t.kind in GAP_KINDS and block.count:
                    generation = self._generation
                    self._continuity(t.kind, t.sensor, block, recv_ns)
                    if generation != self._generation:  # the event's channel rolled the file over
                        t = self._topic(frames[0], t.kind, t.sensor)
                        writer = self._writer
                writer.write_to(t.channel, frames[1:], recv_ns, block.t0_ns)
                st.recorded += 1
                messages[t.topic] += 1
                samples[t.topic] += block.count
            n += 1
            if n % cfg.check_every == 0 and (self._stop.is_set() or time.monotonic() >= next_flush):
                return  # let the loop flush: the loss bound must not wait for a quiet moment

    def _continuity(self, kind: str, sensor: str, block: P.Block, recv_ns: int) -> None:
        key = (kind, sensor)
        state, missing = P.continuity(self._expected.get(key), block)
        self._expected[key] = (block.epoch, block.seq + block.count)
        if state is P.Continuity.GAP:
            next_seq = block.seq - missing
            ev = P.make_event(sensor, "record_gap", epoch=block.epoch, seq=next_seq, t_ns=block.t0_ns,
                              kind=kind, from_seq=next_seq, to_seq=block.seq - 1, count=missing, source="recorder")
            self.stats.gaps += 1
            self.stats.gap_samples += missing
        elif state is P.Continuity.RESTART:
            ev = P.make_event(sensor, "record_restart", epoch=block.epoch, seq=block.seq, t_ns=block.t0_ns,
                              kind=kind, seq_start=block.seq, source="recorder")
            self.stats.restarts += 1
        else:
            return
        w = self._writer
        if not w.has_channel("event", sensor) and w.channels_left < 1:
            self._rollover()
            w = self._writer
        w.write_message(ev, recv_ns)
        self.stats.recorded += 1
        self.stats.messages[f"event/{sensor}"] += 1

    def _malformed(self, err: P.DecodeError) -> None:
        reason = str(err.reason)
        self.stats.malformed[reason] += 1
        if reason not in self._warned:  # one line per reason; the totals go into the file
            self._warned.add(reason)
            log.warning("malformed message not recorded (%s: %s); further ones are only counted",
                        reason, err.detail[:200])


# --------------------------------------------------------------------------- simulator to file


@dataclass(frozen=True)
class SimulateFileResult:
    path: Path
    messages: int
    samples: int
    epoch: int
    duration_s: float


def simulate_to_file(
    path: str | Path,
    config: FeedConfig,
    *,
    epoch: int | None = None,
    chunk_size: int = CHUNK_SIZE,
    compression: str = "zstd",
) -> SimulateFileResult:
    """Write a simulated recording without sockets, as fast as the simulator goes.

    The messages are the ones ``radarstream simulate`` would publish (same seed, same epoch: same
    bytes), with log time = publish time = the sample time of each message, so replaying the file
    paces it like the live feed.
    """
    if config.duration_s is None or config.duration_s <= 0:
        raise ValueError("simulate_to_file needs a finite duration_s > 0")
    feed = SimulatedFeed(config, epoch=epoch)
    total = feed.total_messages() or 0
    meta = {"source": "simulate_to_file", "sensors": config.sensors, "seed": config.seed,
            "samples_per_message": config.samples_per_message, "duration_s": config.duration_s,
            "period_ns": feed.period_ns, "epoch": feed.epoch, "truth": config.truth}
    messages = 0
    with RecordingWriter(path, chunk_size=chunk_size, compression=compression, metadata=meta) as w:
        sensors = feed.sensor_ids
        for _ in range(total):
            t0 = feed.epoch + feed.seq * feed.period_ns
            for sensor, frames in zip(sensors, feed.next_messages()):
                w.write_frames("samples", sensor, frames[1:], t0, t0)
                messages += 1
    return SimulateFileResult(Path(path), messages, messages * config.samples_per_message, feed.epoch,
                              total * config.samples_per_message * feed.period_ns / 1e9)
