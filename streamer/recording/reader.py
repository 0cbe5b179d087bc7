"""Reading recordings: an indexed MCAP reader and one recorded message with its wire frames.

``Recording`` opens a finished (indexed) file and iterates its messages in log-time order, by topic
and time range, without decoding what the caller does not ask for. Replay (``streamer.recording.replay``)
and every offline consumer (score, explain, export, the GUI) read through it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from streamer.wire import protocol as P
from streamer.recording.format import RecordingError, block_header, parse_kinds, parse_topic, unpack_frames
from streamer.recording.integrity import DamagedChunk, Integrity, check, decompress, salvage

__all__ = ["Recorded", "Recording", "iter_messages"]

_EPOCH = struct.Struct("<Q")
_MAGIC = b"\x89MCAP0\r\n"


@dataclass(frozen=True)
class Recorded:
    """One recorded message: its times, its topic and its exact wire frames (topic first)."""

    log_time_ns: int
    """When the recorder received it (ns since the Unix epoch)."""
    publish_time_ns: int
    """The block's t0_ns: the time of its first sample."""
    topic: str
    kind: str
    sensor: str
    frames: tuple[bytes, ...]

    @cached_property
    def message(self) -> P.Message | P.DecodeError:
        """The decoded message (decoded once, on first use)."""
        return P.decode_message(self.frames)

    @property
    def count(self) -> int:
        head = block_header(self.frames[1]) if len(self.frames) > 1 else None
        return head[5] if head else 0



# --------------------------------------------------------------------------- indexed reader


class Recording:
    """A finished (indexed) recording: channels, time span, and message iterators.

    A torn file (recorder killed, disk full) is refused with a RecordingError that says to run
    ``radarstream recording repair``: an indexed read of it would silently stop at a random point.
    """

    def __init__(self, path: str | Path):
        from mcap.reader import make_reader

        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                head = f.read(8)
                if head != _MAGIC:
                    what = "empty" if not head else "too short" if len(head) < 8 else "bad magic bytes"
                    raise RecordingError(f"{self.path}: not an MCAP file ({what})")
                f.seek(0)
                try:
                    summary = make_reader(f).get_summary()
                except Exception:  # noqa: BLE001 - every tail parse failure means "not finished"
                    summary = None
        except OSError as exc:
            raise RecordingError(f"{self.path}: cannot open: {exc.strerror or exc}") from None
        if summary is None:
            raise RecordingError(
                f"{self.path}: not a finished recording (no MCAP summary/footer: the recorder was killed "
                f"or the file is truncated). Recover it with `radarstream recording repair {self.path} "
                f"--out CLEAN.mcap`")
        self._summary = summary
        self.integrity = Integrity()
        """What the chunk CRC checks found so far (damaged chunks, messages recovered and lost)."""
        self.channels = {c.id: c for c in summary.channels.values()}
        st = summary.statistics
        if st is not None and st.message_count:
            self.start_ns, self.end_ns = st.message_start_time, st.message_end_time
        elif summary.chunk_indexes:
            self.start_ns = min(c.message_start_time for c in summary.chunk_indexes)
            self.end_ns = max(c.message_end_time for c in summary.chunk_indexes)
        else:
            self.start_ns = self.end_ns = 0
        self.message_counts: dict[str, int] = {}
        if st is not None:
            for cid, n in st.channel_message_counts.items():
                if cid in self.channels:
                    self.message_counts[self.channels[cid].topic] = n
        self._parsed: dict[str, tuple[str, str]] = {}
        for c in self.channels.values():
            parsed = parse_topic(c.topic)
            if parsed is not None:
                self._parsed[c.topic] = parsed

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    def sensors(self, kind: str = "samples") -> list[str]:
        return sorted({s for k, s in self._parsed.values() if k == kind})

    def topics(self, kinds: Iterable[str] | None = None, sensors: Iterable[str] | None = None) -> list[str]:
        """Channel topics of the given kinds and sensors (None: all)."""
        kinds_set = set(kinds) if kinds is not None else None
        sensor_set = set(sensors) if sensors is not None else None
        return sorted(t for t, (k, s) in self._parsed.items()
                      if (kinds_set is None or k in kinds_set) and (sensor_set is None or s in sensor_set))

    def to_ns(self, t_s: float | None, default: int) -> int:
        """Seconds from the start of the recording -> log time in ns."""
        return default if t_s is None else self.start_ns + int(round(t_s * 1e9))

    def iter_recorded(self, topics: Sequence[str] | None = None, start_ns: int | None = None,
                      end_ns: int | None = None) -> Iterator[Recorded]:
        """Messages in log-time order, ``start_ns <= log_time < end_ns``, each iterator with its own
        file handle (several may run at once)."""
        if topics is not None and not topics:
            return
        try:
            if self._chunks_in_order:
                yield from self._iter_chunks(topics, start_ns, end_ns)
            else:
                yield from self._iter_mcap(topics, start_ns, end_ns)
        except RecordingError:
            raise
        except Exception as exc:  # noqa: BLE001 - corrupt chunk: a sentence, not a traceback
            raise RecordingError(f"{self.path}: unreadable data ({type(exc).__name__}: {exc}); "
                                 "`radarstream recording repair` recovers what is readable") from None

    @cached_property
    def _chunks_in_order(self) -> bool:
        """True when the chunks cover disjoint, increasing log-time ranges (what the recorder
        writes): reading them in turn, each sorted, is then the log-time order, without a heap."""
        idx = sorted(self._summary.chunk_indexes, key=lambda c: (c.message_start_time, c.chunk_start_offset))
        return bool(idx) and all(a.message_end_time <= b.message_start_time for a, b in zip(idx, idx[1:]))

    def _iter_mcap(self, topics: Sequence[str] | None, start_ns: int | None,
                   end_ns: int | None) -> Iterator[Recorded]:
        """General path (chunks whose time ranges overlap): a k-way merge in log-time order,
        loading a chunk only when the merge reaches its start time (as the mcap package's indexed
        reader does), every chunk CRC-checked like on the fast path."""
        import heapq

        lo, hi, wanted = self._selection(topics, start_ns, end_ns)
        chunks = sorted(self._summary.chunk_indexes, key=lambda c: (c.message_start_time, c.chunk_start_offset))
        heap: list[tuple[int, int, int, tuple]] = []
        i = 0
        with open(self.path, "rb") as f:
            while i < len(chunks) or heap:
                while i < len(chunks) and (not heap or chunks[i].message_start_time <= heap[0][0]):
                    for j, item in enumerate(self._chunk_found(f, chunks[i], wanted, lo, hi)):
                        heapq.heappush(heap, (item[0], i, j, item))
                    i += 1
                if heap:
                    yield from self._recorded((heapq.heappop(heap)[3],), wanted)

    def _selection(self, topics: Sequence[str] | None, start_ns: int | None,
                   end_ns: int | None) -> tuple[int, int, dict[int, tuple[str, str, str, bytes]]]:
        lo = -1 if start_ns is None else start_ns
        hi = 1 << 64 if end_ns is None else end_ns
        wanted: dict[int, tuple[str, str, str, bytes]] = {}
        for cid, ch in self.channels.items():
            parsed = self._parsed.get(ch.topic)
            if parsed is not None and (topics is None or ch.topic in topics):
                wanted[cid] = (ch.topic, parsed[0], parsed[1], ch.topic.encode())
        return lo, hi, wanted

    @staticmethod
    def _recorded(found: Iterable[tuple], wanted: dict[int, tuple[str, str, str, bytes]]) -> Iterator[Recorded]:
        for log, pub, cid, data in found:
            frames = unpack_frames(data)
            if frames is None:
                continue
            topic, kind, sensor, tb = wanted[cid]
            yield Recorded(log, pub, topic, kind, sensor, (tb, *frames))

    def _iter_chunks(self, topics: Sequence[str] | None, start_ns: int | None,
                     end_ns: int | None) -> Iterator[Recorded]:
        """Fast path for in-order chunks: parse message records with ``struct`` straight from the
        decompressed chunk (the generic reader costs several times more per message)."""
        lo, hi, wanted = self._selection(topics, start_ns, end_ns)
        chunks = sorted(self._summary.chunk_indexes, key=lambda c: (c.message_start_time, c.chunk_start_offset))
        with open(self.path, "rb") as f:
            for ci in chunks:
                found = self._chunk_found(f, ci, wanted, lo, hi)
                if found:
                    yield from self._recorded(found, wanted)

    def _chunk_found(self, f, ci, wanted: dict[int, tuple[str, str, str, bytes]], lo: int,
                     hi: int) -> list[tuple[int, int, int, bytes]]:
        """The wanted messages of one chunk in ``[lo, hi)``, sorted by log time (ties in file
        order), after its CRC check; a damaged chunk is recovered message by message
        (:mod:`streamer.recording.integrity`) and counted in :attr:`integrity`."""
        if ci.message_end_time < lo or ci.message_start_time >= hi:
            return []
        if ci.message_index_offsets and not any(c in wanted for c in ci.message_index_offsets):
            return []
        f.seek(ci.chunk_start_offset)
        raw = f.read(ci.chunk_length)
        records, crc, usize, problem = _chunk_records(raw)
        if crc == 0 and problem is None:
            self.integrity.chunks_unchecked += 1
        else:
            self.integrity.chunks_checked += 1
        if problem is None:
            problem = check(records, crc, usize)
        found = []
        if problem is None:
            pos, size = 0, len(records)
            while pos < size:
                op, length = _REC_HEAD.unpack_from(records, pos)
                pos += 9
                if op == _OP_MESSAGE:
                    cid, _seq, log, pub = _MSG_HEAD.unpack_from(records, pos)
                    if cid in wanted and lo <= log < hi:
                        found.append((log, pub, cid, records[pos + 22 : pos + length]))
                pos += length
        else:
            found = self._salvage(f, ci, records, problem, wanted, lo, hi)
        found.sort(key=_first)  # stable: ties keep file order, like the mcap reader
        return found

    def _salvage(self, f, ci, records: bytes, problem: str, wanted: dict[int, tuple[str, str, str, bytes]],
                 lo: int, hi: int) -> list[tuple[int, int, int, bytes]]:
        index = _read_message_index(f, ci)
        channels = self.channels

        def message_ok(cid: int, log: int, pub: int, data: bytes) -> bool:
            ch = channels.get(cid)
            if ch is None or not ci.message_start_time <= log <= ci.message_end_time:
                return False
            return plausible_message(ch.topic, pub, data)

        kept, n_msgs = salvage(records, index, message_ok)
        expected = len(index) if index is not None else None
        self.integrity.add(DamagedChunk(ci.chunk_start_offset, problem, expected, n_msgs,
                                        None if expected is None else max(0, expected - n_msgs)), self.path)
        found = []
        for op, _pos, body in kept:
            if op == _OP_MESSAGE:
                cid, _seq, log, pub = _MSG_HEAD.unpack_from(body, 0)
                if cid in wanted and lo <= log < hi:
                    found.append((log, pub, cid, body[22:]))
        return found


def plausible_message(topic: str, publish_time: int, data: bytes) -> bool:
    """A recorded message that could be what the recorder wrote: its frames unframe, its block
    decodes under the protocol's rules (header, sizes, finite values) for the channel's topic, and
    its ``publish_time`` is the block's ``t0_ns`` (0 if negative)."""
    frames = unpack_frames(data)
    if frames is None:
        return False
    msg = P.decode_message([topic.encode(), *frames])
    if isinstance(msg, P.DecodeError):
        return False
    return publish_time == max(msg.block.t0_ns, 0)


def _read_message_index(f, ci) -> dict[int, tuple[int, int]] | None:
    """offset in the chunk -> (channel id, log time) of every message, from the chunk's message
    index records; None when the chunk has none or they do not parse."""
    if not ci.message_index_offsets:
        return None
    out: dict[int, tuple[int, int]] = {}
    try:
        for cid, offset in ci.message_index_offsets.items():
            f.seek(offset)
            op, length = _REC_HEAD.unpack(f.read(9))
            body = f.read(length)
            if op != _OP_MESSAGE_INDEX or len(body) != length:
                return None
            (rcid, n) = struct.unpack_from("<HI", body, 0)
            if rcid != cid or 6 + n > length or n % 16:
                return None
            for k in range(6, 6 + n, 16):
                log, pos = struct.unpack_from("<QQ", body, k)
                out[pos] = (cid, log)
    except (OSError, struct.error):
        return None
    return out


def _first(item: tuple) -> int:
    return item[0]


_REC_HEAD = struct.Struct("<BQ")
_MSG_HEAD = struct.Struct("<HIQQ")
_CHUNK_HEAD = struct.Struct("<QQQII")
_OP_MESSAGE = 0x05
_OP_CHUNK = 0x06
_OP_MESSAGE_INDEX = 0x07


def _chunk_records(raw: bytes) -> tuple[bytes, int, int, str | None]:
    """(records, crc, uncompressed size, problem) of one Chunk record (opcode, length, fields,
    records): the records decompressed as far as they go; ``problem`` None when decompression went
    through (the CRC is checked by the caller)."""
    op, _length = _REC_HEAD.unpack_from(raw, 0)
    if op != _OP_CHUNK:
        raise ValueError(f"chunk index points at opcode 0x{op:02x}")
    _start, _end, usize, crc, clen = _CHUNK_HEAD.unpack_from(raw, 9)
    pos = 9 + _CHUNK_HEAD.size
    compression = raw[pos : pos + clen].decode("utf-8", "replace")
    pos += clen
    (rlen,) = _EPOCH.unpack_from(raw, pos)
    data = raw[pos + 8 : pos + 8 + rlen]
    if compression not in ("", "zstd", "lz4"):
        raise ValueError(f"unsupported chunk compression {compression!r}")
    records, problem = decompress(compression, data, usize)
    return records, crc, usize, problem


def iter_messages(
    path: str | Path,
    kinds: Sequence[str] | str | None = None,
    sensors: Sequence[str] | None = None,
    start: float | None = None,
    end: float | None = None,
) -> Iterator[Recorded]:
    """Recorded messages in log-time order; ``start``/``end`` in seconds from the beginning of the
    recording (end exclusive). ``kinds=None`` means every kind."""
    rec = Recording(path)
    topics = rec.topics(parse_kinds(kinds) if kinds is not None else None, sensors)
    yield from rec.iter_recorded(topics, rec.to_ns(start, rec.start_ns), rec.to_ns(end, rec.end_ns + 1))
