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
from streamer.recording.format import GAP_KINDS, RecordingError, block_header, parse_topic, unpack_frames

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
    orphan_messages: int = 0

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
                     + (f", {self.bad_chunks} corrupt chunk(s) skipped" if self.bad_chunks else "")
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
            try:
                _handle(opcode, body, report, schemas, channels, sink)
            except _Skip as exc:  # a whole, CRC-failing chunk: skip it, keep going
                report.bad_chunks += 1
                report.problem = f"corrupt chunk at byte {pos} skipped ({exc})"
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
        if first:
            raise RecordingError(f"{path}: truncated: {size} bytes, no complete MCAP header record")
    report.complete = report.data_end and is_complete(path)
    if not report.complete and report.messages == 0:
        raise RecordingError(f"{path}: truncated ({size} bytes): no complete chunk, nothing to recover"
                             + (f" ({report.problem})" if report.problem else ""))
    if report.complete:
        report.problem = f"{report.bad_chunks} corrupt chunk(s) skipped" if report.bad_chunks else None
    elif report.data_end:
        report.problem = "data complete but the summary/footer is damaged"
    return report


class _Skip(Exception):
    pass


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
        try:
            records = breakup_chunk(chunk, validate_crc=True)
        except Exception as exc:  # noqa: BLE001 - CRC or decompression failure of a whole chunk
            raise _Skip(str(exc)) from None
        report.chunks += 1
        for rec in records:
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


def repair(src: str | Path, dst: str | Path, *, chunk_size: int = 1 << 20) -> FileReport:
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
