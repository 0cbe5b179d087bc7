"""Chunk integrity: CRC checks on read, and message-by-message recovery inside a damaged chunk.

Every MCAP chunk carries the CRC-32 of its uncompressed records. Readers (``Recording``: replay,
export-csv, score, the GUI) and the scanner (``recording info|repair``) check it. A chunk that
fails to decompress or whose records do not match the CRC is **damaged**; it is not skipped whole:

1. decompression is done in pieces, so the output before a corrupt compressed block is kept;
2. the records are walked one by one; a record is kept only if it is whole and plausible (known
   opcode, length inside the chunk; a message must sit where the chunk's message index says it
   does, with the indexed log time, its channel must be known, its frames must unframe and its
   block decode under the protocol's rules, with ``publish_time`` equal to the block's ``t0_ns``
   and ``log_time`` inside the chunk's time range); after a record that is not, the walk resumes
   at the next offset in the message index (or stops if there is none);
3. what was kept and what was lost is counted (:class:`Integrity`) and reported.

A kept message from a damaged chunk is *structurally* sound, but a flipped bit inside its float
payload cannot be seen (MCAP has no per-message checksum): such messages are counted as
``unverified``. Writers bound the cost of one damaged chunk by closing chunks at
``chunk_size`` uncompressed bytes (:data:`streamer.recording.format.CHUNK_SIZE` for files written
in one go).
"""

from __future__ import annotations

import bisect
import logging
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

log = logging.getLogger("radarstream.recording")

__all__ = ["Integrity", "DamagedChunk", "decompress", "salvage", "MessageCheck"]

_REC_HEAD = struct.Struct("<BQ")
_MSG_HEAD = struct.Struct("<HIQQ")
OP_SCHEMA, OP_CHANNEL, OP_MESSAGE = 0x03, 0x04, 0x05
_CHUNK_OPS = (OP_SCHEMA, OP_CHANNEL, OP_MESSAGE)
_PIECE = 4096

MessageCheck = Callable[[int, int, int, bytes], bool]
"""``(channel_id, log_time, publish_time, data) -> plausible``."""


@dataclass
class DamagedChunk:
    offset: int
    """Byte offset of the chunk record in the file."""
    reason: str
    expected: int | None
    """Messages the chunk's message index lists (None: no index)."""
    recovered: int
    lost: int | None

    def text(self) -> str:
        of = f" of {self.expected}" if self.expected is not None else ""
        lost = f", {self.lost} lost" if self.lost is not None else ", the rest of the chunk lost"
        return f"chunk at byte {self.offset}: {self.reason}; {self.recovered}{of} message(s) recovered{lost}"


@dataclass
class Integrity:
    """What the CRC checks found while reading a file (counts over every pass of every iterator)."""

    chunks_checked: int = 0
    chunks_unchecked: int = 0
    """Chunks written without a CRC (0): nothing to check."""
    damaged: list[DamagedChunk] = field(default_factory=list)

    @property
    def damaged_chunks(self) -> int:
        return len(self.damaged)

    @property
    def recovered(self) -> int:
        """Messages kept from damaged chunks (structurally sound; payload unverified)."""
        return sum(d.recovered for d in self.damaged)

    @property
    def lost(self) -> int:
        return sum(d.lost or 0 for d in self.damaged)

    @property
    def ok(self) -> bool:
        return not self.damaged

    def add(self, d: DamagedChunk, path: object) -> None:
        if any(x.offset == d.offset for x in self.damaged):
            return  # the same chunk read again (a second pass, a seek): counted once
        self.damaged.append(d)
        log.warning("%s: %s (CRC check failed: `radarstream recording info` shows the damage)", path, d.text())

    def summary(self, path: object) -> str | None:
        """One line for the user, or None when every chunk passed."""
        if not self.damaged:
            return None
        lost_unknown = any(d.lost is None for d in self.damaged)
        return (f"{path}: {self.damaged_chunks} damaged chunk(s) (CRC mismatch or corrupt compression): "
                f"{self.recovered} message(s) recovered from them (payload unverified), "
                f"{self.lost}{'+' if lost_unknown else ''} lost; first: {self.damaged[0].text()}")

    def to_json(self) -> dict[str, object]:
        return {"chunks_checked": self.chunks_checked, "chunks_unchecked": self.chunks_unchecked,
                "damaged_chunks": self.damaged_chunks, "recovered": self.recovered, "lost": self.lost,
                "damaged": [d.__dict__.copy() for d in self.damaged]}


def decompress(compression: str, data: bytes, usize: int) -> tuple[bytes, str | None]:
    """(records, problem): the chunk's uncompressed records, decompressed piece by piece so that a
    corrupt compressed block still yields the output before it; ``problem`` None when it went
    through (the CRC is checked by the caller)."""
    if compression == "":
        return data, None
    try:  # the common case in one call
        if compression == "zstd":
            import zstandard

            return zstandard.ZstdDecompressor().decompress(data, max_output_size=usize), None
        if compression == "lz4":
            import lz4.frame

            return lz4.frame.decompress(data), None
    except Exception:  # noqa: BLE001 - corrupt: redo it piece by piece to keep what precedes the damage
        pass
    out: list[bytes] = []
    size = 0
    try:
        if compression == "zstd":
            import zstandard

            obj = zstandard.ZstdDecompressor().decompressobj()
        elif compression == "lz4":
            import lz4.frame

            obj = lz4.frame.LZ4FrameDecompressor()
        else:
            return b"", f"unsupported compression {compression!r}"
        for k in range(0, len(data), _PIECE):
            part = obj.decompress(data[k : k + _PIECE])
            out.append(part)
            size += len(part)
            if size > usize:
                return b"".join(out)[:usize], "decompresses to more than its declared size"
    except Exception as exc:  # noqa: BLE001 - any codec error: keep what came out before it
        return b"".join(out), f"{compression} decompression failed ({exc})"
    return b"".join(out), None


def check(records: bytes, crc: int, usize: int) -> str | None:
    """None when the records match the chunk's CRC and size; else what is wrong."""
    if len(records) != usize:
        return f"{len(records)} bytes uncompressed, {usize} declared"
    if crc and zlib.crc32(records) != crc:
        return f"CRC mismatch (stored {crc:08x}, computed {zlib.crc32(records):08x})"
    return None


def salvage(
    records: bytes,
    index: Mapping[int, tuple[int, int]] | None,
    message_ok: MessageCheck,
    on_other: Callable[[int, bytes], None] | None = None,
) -> tuple[list[tuple[int, int, bytes]], int]:
    """Walk the records of a damaged chunk; returns ``([(opcode, offset, body)], messages kept)``.

    ``index``: offset -> (channel id, log time) of every message, from the chunk's message index
    records (None when there is none). ``on_other(opcode, body)`` is called for each schema and
    channel record kept, as the walk meets it (so a channel defined inside the chunk is known when
    its messages are judged). See the module docstring for what is kept."""
    kept: list[tuple[int, int, bytes]] = []
    n_msgs = 0
    offsets = sorted(index) if index else []
    size = len(records)
    pos = 0
    while pos + 9 <= size:
        op, length = _REC_HEAD.unpack_from(records, pos)
        end = pos + 9 + length
        ok = op in _CHUNK_OPS and end <= size
        if ok and op == OP_MESSAGE:
            ok = length >= 22
            if ok:
                cid, _seq, log_time, pub = _MSG_HEAD.unpack_from(records, pos + 9)
                if index is not None:
                    ok = index.get(pos) == (cid, log_time)
                ok = ok and message_ok(cid, log_time, pub, records[pos + 31 : end])
        elif ok and index is not None and pos in index:
            ok = False  # the index says a message starts here: the opcode is damaged
        if ok:
            body = records[pos + 9 : end]
            kept.append((op, pos, body))
            if op == OP_MESSAGE:
                n_msgs += 1
            elif on_other is not None:
                on_other(op, body)
            pos = end
            continue
        if not offsets:
            break  # no index to resynchronise on: the rest of the chunk is lost
        k = bisect.bisect_right(offsets, pos)
        if k >= len(offsets):
            break
        pos = offsets[k]
    return kept, n_msgs
