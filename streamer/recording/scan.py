"""Reading what a recording really holds, even a torn one: ``recording info`` and ``repair``.

A recorder killed with ``kill -9`` leaves a file without summary or footer, which indexed MCAP
readers refuse. This scanner walks the records from the start instead, checks that each record's
declared length fits in the file before reading it, verifies chunk CRCs, and stops at the first
torn record: everything before it (every chunk the recorder flushed) is recovered. ``repair``
writes the recovered records to a fresh, indexed file. Each failure becomes a
:class:`RecordingError` with a sentence for the user, never a traceback.
"""

from __future__ import annotations

import io
import json
import os
import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mcap.data_stream import ReadDataStream
from mcap.opcode import Opcode
from mcap.reader import make_reader
from mcap.records import Channel, Chunk, Header, Message, Metadata, Schema
from mcap.stream_reader import breakup_chunk
from mcap.writer import Writer

from streamer.wire import protocol as P
from streamer.recording.format import CHUNK_SIZE, GAP_KINDS, RecordingError, block_header, parse_topic, unpack_frames
from streamer.recording.integrity import OP_MESSAGE, OP_SCHEMA, DamagedChunk, check, decompress, salvage

__all__ = ["ChannelReport", "FileReport", "scan", "repair", "is_complete", "recorded_record_gaps", "MAX_LISTED_GAPS"]

MAGIC = b"\x89MCAP0\r\n"
MAX_LISTED_GAPS = 1000
"""Gaps listed per channel in reports (all are counted)."""
_RECORD_HEAD = struct.Struct("<BQ")


@dataclass
class ChannelReport:
    """What one channel holds: counts, sequence range, and the holes in it."""

    topic: str
    kind: str
    sensor: str
    messages: int = 0
    samples: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    """Sequence number of the last row of the last block."""
    first_log_ns: int | None = None
    last_log_ns: int | None = None
    epochs: list[int] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    """Missing sequence ranges ``(from_seq, to_seq)`` inclusive, for samples and pred."""
    gap_count: int = 0
    gap_samples: int = 0
    restarts: int = 0
    bad_payloads: int = 0
    record_gap_events: int = 0
    _next: tuple[int, int] | None = field(default=None, repr=False)

    def add(self, epoch: int, seq: int, count: int, log_ns: int) -> None:
        self.messages += 1
        self.samples += count
        if self.first_log_ns is None:
            self.first_log_ns = log_ns
        self.last_log_ns = log_ns
        if epoch not in self.epochs:
            self.epochs.append(epoch)
        if self.first_seq is None:
            self.first_seq = seq
        if count:
            self.last_seq = seq + count - 1
        if self.kind not in GAP_KINDS or count == 0:
            return
        exp = self._next
        if exp is not None:
            if epoch != exp[0] or seq < exp[1]:
                self.restarts += 1
            elif seq > exp[1]:
                self.gap_count += 1
                self.gap_samples += seq - exp[1]
                if len(self.gaps) < MAX_LISTED_GAPS:
                    self.gaps.append((exp[1], seq - 1))
        self._next = (epoch, seq + count)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("_next", None)
        d["gaps"] = [list(g) for g in self.gaps]
        return d


@dataclass
class FileReport:
    """The outcome of a scan: is the file finished, how much was readable, per-channel reports."""

    path: str
    size: int
    complete: bool = False
    """The file has its summary and footer (an indexed reader can open it)."""
    data_end: bool = False
    recovered_bytes: int = 0
    """Bytes up to the end of the last readable record."""
    problem: str | None = None
    profile: str = ""
    library: str = ""
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    channels: dict[str, ChannelReport] = field(default_factory=dict)
    messages: int = 0
    chunks: int = 0
    bad_chunks: int = 0
    """Damaged chunks (CRC mismatch or corrupt compression), recovered message by message."""
    orphan_messages: int = 0
    damaged: list[DamagedChunk] = field(default_factory=list)
    """One entry per damaged chunk: where, why, messages recovered and lost."""

    @property
    def recovered_from_damaged(self) -> int:
        return sum(d.recovered for d in self.damaged)

    @property
    def lost_in_damaged(self) -> int:
        return sum(d.lost or 0 for d in self.damaged)

    def damage_text(self) -> str | None:
        """One line on the damaged chunks, or None."""
        if not self.damaged:
            return None
        unknown = "+" if any(d.lost is None for d in self.damaged) else ""
        return (f"{self.bad_chunks} damaged chunk(s) (CRC mismatch or corrupt compression): "
                f"{self.recovered_from_damaged} message(s) recovered from them (payload unverified), "
                f"{self.lost_in_damaged}{unknown} lost; first: {self.damaged[0].text()}")

    @property
    def start_ns(self) -> int | None:
        times = [c.first_log_ns for c in self.channels.values() if c.first_log_ns is not None]
        return min(times) if times else None

    @property
    def end_ns(self) -> int | None:
        times = [c.last_log_ns for c in self.channels.values() if c.last_log_ns is not None]
        return max(times) if times else None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path, "size": self.size, "complete": self.complete, "data_end": self.data_end,
            "recovered_bytes": self.recovered_bytes, "problem": self.problem, "profile": self.profile,
            "library": self.library, "metadata": self.metadata, "messages": self.messages,
            "chunks": self.chunks, "bad_chunks": self.bad_chunks, "orphan_messages": self.orphan_messages,
            "recovered_from_damaged": self.recovered_from_damaged, "lost_in_damaged": self.lost_in_damaged,
            "damaged": [d.__dict__.copy() for d in self.damaged],
            "start_ns": self.start_ns, "end_ns": self.end_ns,
            "channels": {t: c.to_json() for t, c in sorted(self.channels.items())},
        }

    def format_text(self) -> str:
        lines = [f"file: {self.path} ({self.size} bytes)"]
        if self.complete:
            lines.append("status: complete (summary and footer present, indexed)")
        else:
            lost = self.size - self.recovered_bytes
            lines.append(f"status: NOT FINISHED - {self.problem or 'no footer'}; recovered the first "
                         f"{self.recovered_bytes} bytes ({lost} bytes unreadable). "
                         "`radarstream recording repair` writes a clean, indexed copy")
        lines.append(f"writer: {self.library or '?'} (profile {self.profile or '-'})")
        rec = self.metadata.get("radarstream.recording")
        if rec:
            lines.append("recording: " + ", ".join(f"{k}={v}" for k, v in rec.items()))
        if self.start_ns is not None and self.end_ns is not None:
            lines.append(f"time: {self.start_ns} .. {self.end_ns} ns ({(self.end_ns - self.start_ns) / 1e9:.3f} s)")
        lines.append(f"messages: {self.messages} in {len(self.channels)} channel(s), {self.chunks} chunk(s)"
                     + (f", {self.bad_chunks} damaged chunk(s): {self.recovered_from_damaged} message(s) "
                        f"recovered from them, {self.lost_in_damaged}"
                        f"{'+' if any(d.lost is None for d in self.damaged) else ''} lost" if self.bad_chunks else "")
                     + (f", {self.orphan_messages} message(s) without channel" if self.orphan_messages else ""))
        head = f"{'channel':<32} {'messages':>9} {'rows':>10} {'first_seq':>12} {'last_seq':>12}  gaps"
        lines.append(head)
        for topic, c in sorted(self.channels.items()):
            first = "-" if c.first_seq is None else str(c.first_seq)
            last = "-" if c.last_seq is None else str(c.last_seq)
            if c.kind in GAP_KINDS:
                gaps = f"{c.gap_count} ({c.gap_samples} missing)"
                if c.gaps:
                    shown = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in c.gaps[:8])
                    gaps += f": {shown}" + (" ..." if c.gap_count > 8 else "")
                if c.restarts:
                    gaps += f"; {c.restarts} restart(s)"
            else:
                gaps = "n/a"
            extra = []
            if c.record_gap_events:
                extra.append(f"{c.record_gap_events} record_gap event(s)")
            if c.bad_payloads:
                extra.append(f"{c.bad_payloads} undecodable")
            lines.append(f"{topic:<32} {c.messages:>9} {c.samples:>10} {first:>12} {last:>12}  {gaps}"
                         + (f"  [{'; '.join(extra)}]" if extra else ""))
        return "\n".join(lines)


def is_complete(path: str | Path) -> bool:
    """True if an indexed reader can open the file (summary + footer)."""
    try:
        with open(path, "rb") as f:
            return make_reader(f).get_summary() is not None
    except Exception:  # any parse failure of the tail means "not finished": the caller says so
        return False


Sink = Callable[[Any], None]


def scan(path: str | Path, sink: Sink | None = None) -> FileReport:
    """Walk the records of ``path`` in order, recovering everything before the first torn one.

    ``sink`` receives each recovered Header, Schema, Channel, Metadata and Message record (what
    ``repair`` copies). Raises RecordingError when the file is not MCAP or has no readable header.
    """
    path = Path(path)
    try:
        f = open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise RecordingError(f"{path}: cannot open: {exc.strerror or exc}") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        report = FileReport(str(path), size)
        head = f.read(8)
        if len(head) < 8:
            raise RecordingError(f"{path}: {size} bytes, too short to be an MCAP file (truncated?)")
        if head != MAGIC:
            raise RecordingError(f"{path}: not an MCAP file (bad magic bytes {head[:8]!r})")
        schemas: dict[int, Schema] = {}
        channels: dict[int, Channel] = {}
        pos = 8
        first = True
        damaged: _Damaged | None = None
        while True:
            raw = f.read(9)
            if not raw:
                report.problem = "file ends without summary/footer"
                break
            if len(raw) < 9:
                report.problem = f"truncated record at byte {pos}"
                break
            opcode, length = _RECORD_HEAD.unpack(raw)
            if length > size - pos - 9:
                report.problem = (f"truncated record at byte {pos} (opcode 0x{opcode:02x} declares {length} bytes, "
                                  f"{size - pos - 9} left)")
                break
            body = f.read(length)
            if first and opcode != Opcode.HEADER:
                raise RecordingError(f"{path}: corrupt MCAP file: first record is opcode 0x{opcode:02x}, not a header")
            if damaged is not None:
                if opcode == Opcode.MESSAGE_INDEX:  # the damaged chunk's index: where its messages were
                    _index_entries(body, damaged.index)
                    pos += 9 + length
                    report.recovered_bytes = pos
                    continue
                _salvage(damaged, report, schemas, channels, sink)
                damaged = None
            try:
                _handle(opcode, body, report, schemas, channels, sink)
            except _Damaged as exc:  # CRC or decompression failure: recover it message by message
                damaged = exc
                damaged.offset = pos
            except Exception as exc:  # noqa: BLE001 - any parse error ends the readable part
                if first:
                    raise RecordingError(f"{path}: corrupt MCAP header record: {exc}") from None
                report.problem = f"unreadable record at byte {pos} (opcode 0x{opcode:02x}): {exc}"
                break
            first = False
            pos += 9 + length
            report.recovered_bytes = pos
            if opcode == Opcode.DATA_END:
                report.data_end = True
                break
        if damaged is not None:
            _salvage(damaged, report, schemas, channels, sink)
        if first:
            raise RecordingError(f"{path}: truncated: {size} bytes, no complete MCAP header record")
    report.complete = report.data_end and is_complete(path)
    if not report.complete and report.messages == 0:
        raise RecordingError(f"{path}: truncated ({size} bytes): no complete chunk, nothing to recover"
                             + (f" ({report.problem})" if report.problem else ""))
    if report.complete:
        report.problem = report.damage_text()
    elif report.data_end:
        report.problem = "data complete but the summary/footer is damaged"
    return report


class _Damaged(Exception):
    """A chunk whose CRC or decompression failed: what is needed to recover it."""

    def __init__(self, chunk: Chunk, records: bytes, problem: str):
        super().__init__(problem)
        self.chunk, self.records, self.problem = chunk, records, problem
        self.offset = 0
        self.index: dict[int, tuple[int, int]] = {}


def _index_entries(body: bytes, out: dict[int, tuple[int, int]]) -> None:
    """Add a MessageIndex record's (offset -> (channel, log time)) entries to ``out``."""
    try:
        cid, n = struct.unpack_from("<HI", body, 0)
        if n % 16 or 6 + n > len(body):
            return
        for k in range(6, 6 + n, 16):
            log_time, offset = struct.unpack_from("<QQ", body, k)
            out[offset] = (cid, log_time)
    except struct.error:
        return


def _salvage(d: _Damaged, report: FileReport, schemas: dict[int, Schema], channels: dict[int, Channel],
             sink: Sink | None) -> None:
    """Keep the plausible records of a damaged chunk (streamer.recording.integrity), in order."""
    from streamer.recording.reader import plausible_message

    chunk = d.chunk

    def message_ok(cid: int, log_time: int, pub: int, data: bytes) -> bool:
        ch = channels.get(cid)
        if ch is None or not chunk.message_start_time <= log_time <= chunk.message_end_time:
            return False
        return plausible_message(ch.topic, pub, data)

    def other(op: int, body: bytes) -> None:  # a schema or channel inside the chunk: register it now
        try:
            stream = ReadDataStream(io.BytesIO(body))
            rec = Schema.read(stream) if op == OP_SCHEMA else Channel.read(stream)
        except Exception:  # noqa: BLE001 - damaged beyond parsing: its messages become orphans
            return
        if isinstance(rec, Channel) and parse_topic(rec.topic) is None:
            return
        _record(rec, report, schemas, channels, sink)

    index = d.index or None
    kept, _n = salvage(d.records, index, message_ok, other)
    kept_msgs = 0
    for op, _pos, body in kept:
        if op != OP_MESSAGE:
            continue
        try:
            rec = Message.read(ReadDataStream(io.BytesIO(body)), len(body))
        except Exception:  # noqa: BLE001
            continue
        kept_msgs += 1
        _record(rec, report, schemas, channels, sink)
    expected = len(index) if index is not None else None
    report.bad_chunks += 1
    report.damaged.append(DamagedChunk(d.offset, d.problem, expected, kept_msgs,
                                       None if expected is None else max(0, expected - kept_msgs)))


def _handle(opcode: int, body: bytes, report: FileReport, schemas: dict[int, Schema],
            channels: dict[int, Channel], sink: Sink | None) -> None:
    stream = ReadDataStream(io.BytesIO(body))
    if opcode == Opcode.HEADER:
        header = Header.read(stream)
        report.profile, report.library = header.profile, header.library
        if sink:
            sink(header)
    elif opcode == Opcode.CHUNK:
        chunk = Chunk.read(stream)
        report.chunks += 1
        raw, problem = decompress(chunk.compression, chunk.data, chunk.uncompressed_size)
        if problem is None:
            problem = check(raw, chunk.uncompressed_crc, chunk.uncompressed_size)
        if problem is not None:  # recovered message by message once its index has been read
            raise _Damaged(chunk, raw, problem)
        plain = Chunk(compression="", data=raw, message_end_time=chunk.message_end_time,
                      message_start_time=chunk.message_start_time, uncompressed_crc=0, uncompressed_size=len(raw))
        for rec in breakup_chunk(plain, validate_crc=False):
            _record(rec, report, schemas, channels, sink)
    elif opcode in (Opcode.SCHEMA, Opcode.CHANNEL, Opcode.MESSAGE, Opcode.METADATA):
        rec = {Opcode.SCHEMA: lambda: Schema.read(stream), Opcode.CHANNEL: lambda: Channel.read(stream),
               Opcode.MESSAGE: lambda: Message.read(stream, len(body)),
               Opcode.METADATA: lambda: Metadata.read(stream)}[Opcode(opcode)]()
        _record(rec, report, schemas, channels, sink)
    # message indexes, chunk indexes, statistics, attachments...: rebuilt by the writer or ignored


def _record(rec: Any, report: FileReport, schemas: dict[int, Schema], channels: dict[int, Channel],
            sink: Sink | None) -> None:
    if isinstance(rec, Schema):
        schemas[rec.id] = rec
    elif isinstance(rec, Channel):
        if rec.id in channels:
            return  # repeated in a later chunk: already known
        channels[rec.id] = rec
        parsed = parse_topic(rec.topic)
        kind, sensor = parsed if parsed else ("?", rec.topic)
        report.channels.setdefault(rec.topic, ChannelReport(rec.topic, kind, sensor))
    elif isinstance(rec, Metadata):
        report.metadata[rec.name] = dict(rec.metadata)
    elif isinstance(rec, Message):
        ch = channels.get(rec.channel_id)
        if ch is None:
            report.orphan_messages += 1
            return
        report.messages += 1
        _account(report.channels[ch.topic], rec)
    if sink:
        sink(rec)


def _account(c: ChannelReport, msg: Message) -> None:
    frames = unpack_frames(msg.data)
    head = block_header(frames[0]) if frames else None
    if head is None:
        c.bad_payloads += 1
        c.messages += 1
        return
    _kind, epoch, seq, _t0, _period, count = head
    c.add(epoch, seq, count, msg.log_time)
    if c.kind == "event" and frames and len(frames) > 1 and b"record_gap" in frames[1]:
        try:
            if json.loads(frames[1]).get("type") == "record_gap":
                c.record_gap_events += 1
        except ValueError:
            pass


# --------------------------------------------------------------------------- repair


def repair(src: str | Path, dst: str | Path, *, chunk_size: int = CHUNK_SIZE) -> FileReport:
    """Copy every recoverable record of ``src`` into a clean, indexed ``dst``.

    Messages keep their channel, schema, log/publish time, sequence and bytes; channel and schema
    ids are renumbered. A ``radarstream.repair`` metadata record says what was recovered.
    """
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise RecordingError("repair writes a new file: --out must differ from the input")
    tmp = dst.with_name(dst.name + ".partial")
    out = open(tmp, "wb")  # noqa: SIM115
    writer = Writer(out, chunk_size=chunk_size)
    started = False
    schema_ids: dict[int, int] = {}
    channel_ids: dict[int, int] = {}
    pending_schemas: dict[int, Schema] = {}

    def sink(rec: Any) -> None:
        nonlocal started
        if isinstance(rec, Header):
            writer.start(profile=rec.profile, library=rec.library)
            started = True
        elif isinstance(rec, Schema):
            pending_schemas[rec.id] = rec
        elif isinstance(rec, Channel):
            if rec.id in channel_ids:
                return
            sid = 0
            if rec.schema_id:
                if rec.schema_id not in schema_ids:
                    s = pending_schemas.get(rec.schema_id)
                    if s is None:
                        return  # channel without its schema: its messages become orphans
                    schema_ids[rec.schema_id] = writer.register_schema(s.name, s.encoding, s.data)
                sid = schema_ids[rec.schema_id]
            channel_ids[rec.id] = writer.register_channel(rec.topic, rec.message_encoding, sid, dict(rec.metadata))
        elif isinstance(rec, Metadata):
            writer.add_metadata(rec.name, dict(rec.metadata))
        elif isinstance(rec, Message):
            cid = channel_ids.get(rec.channel_id)
            if cid is not None:
                writer.add_message(cid, log_time=rec.log_time, data=rec.data,
                                   publish_time=rec.publish_time, sequence=rec.sequence)

    try:
        report = scan(src, sink)
        if not started:
            writer.start()
        writer.add_metadata("radarstream.repair", {
            "source": str(src), "source_complete": str(report.complete).lower(),
            "recovered_messages": str(report.messages), "recovered_bytes": str(report.recovered_bytes),
            "source_bytes": str(report.size), "problem": report.problem or ""})
        writer.finish()
        out.flush()
        os.fsync(out.fileno())
        out.close()
        os.replace(tmp, dst)
    except BaseException:
        out.close()
        tmp.unlink(missing_ok=True)
        raise
    return report


def recorded_record_gaps(path: str | Path) -> list[dict[str, Any]]:
    """The recorder's ``record_gap`` events of a (possibly torn) file, in file order."""
    found: list[dict[str, Any]] = []

    def sink(rec: Any) -> None:
        if isinstance(rec, Message) and rec.channel_id in event_channels:
            frames = unpack_frames(rec.data)
            if frames and len(frames) > 1:
                msg = P.decode_message([event_channels[rec.channel_id].encode(), *frames])
                if not isinstance(msg, P.DecodeError) and msg.meta and msg.meta.get("type") == "record_gap":
                    found.append({"sensor": msg.sensor, **msg.meta})
        elif isinstance(rec, Channel) and rec.topic.startswith("event/"):
            event_channels[rec.id] = rec.topic

    event_channels: dict[int, str] = {}
    scan(path, sink)
    return found
