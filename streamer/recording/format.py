"""How radarstream messages sit inside an MCAP file (docs/recording.md is the normative text).

One MCAP channel per ZeroMQ topic (``samples/radar-0``, ``pred/radar-0``, ...), one schema per
kind. A message's data is the ZeroMQ frames 1..n of the wire message, each prefixed by its length
as u32 little-endian; frame 0, the topic, is the channel's topic and is not repeated. So the
recording stores the exact bytes that travelled, and replay sends them back unchanged.

This module holds only the layout (no sockets, no files) so that the recorder, the scanner, the
replayer and the exporter agree on it by construction.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any, Final

from radarstream.errors import RadarstreamError
from streamer.wire import protocol as P

__all__ = [
    "ENCODING",
    "PROFILE",
    "LIBRARY",
    "KINDS",
    "DEFAULT_KINDS",
    "GAP_KINDS",
    "META_RECORDING",
    "META_STATS",
    "CHUNK_SIZE",
    "RecordingError",
    "pack_frames",
    "unpack_frames",
    "block_header",
    "schema_name",
    "schema_data",
    "parse_topic",
    "parse_kinds",
    "attach",
]

ENCODING: Final = "radarstream/v1"
"""Message encoding of every channel and encoding of every schema."""
PROFILE: Final = "radarstream"
LIBRARY: Final = "radarstream-recorder/1"
KINDS: Final = tuple(k.word for k in P.Kind if k.is_topic_kind)
DEFAULT_KINDS: Final = KINDS
GAP_KINDS: Final = ("samples", "pred")
"""Kinds whose sequence numbers advance one per sample, so a jump is a loss (protocol §8)."""
META_RECORDING: Final = "radarstream.recording"
"""MCAP metadata record written at the start: who recorded what, and the framing."""
META_STATS: Final = "radarstream.recorder_stats"
"""MCAP metadata record written when the recorder stops cleanly: its counters."""
CHUNK_SIZE: Final = 1 << 14
"""Uncompressed bytes after which files written in one go (``simulate --out``, ``recording
repair``) close a chunk. A damaged chunk (one flipped bit) costs at most its own messages, and with
zstd a corrupt compressed block usually costs the whole chunk (one block up to 128 KiB): so this
bound is what one bit can cost (~100 one-sample messages with truth). Against 1 MiB chunks it
costs 3 % in file size (4 sensors, 600 s simulated: 784,159 against 760,070 bytes; 64 KiB: 758,792
but ~400 messages a bit)."""


_U32: Final = struct.Struct("<I")
_HEADER_FIELDS: Final = struct.Struct("<4sHBBQQqQIHH")


class RecordingError(RadarstreamError):
    """A file that cannot be used as asked; the message says why and what to do (no traceback)."""


def pack_frames(frames: Sequence[bytes]) -> bytes:
    """MCAP message data for ZeroMQ frames 1..n: each as u32 LE length + bytes."""
    if len(frames) == 2:  # the common samples+truth case, without a generator
        a, b = frames
        return b"".join((_U32.pack(len(a)), a, _U32.pack(len(b)), b))
    parts: list[bytes] = []
    for f in frames:
        parts.append(_U32.pack(len(f)))
        parts.append(f)
    return b"".join(parts)


def unpack_frames(data: bytes) -> list[bytes] | None:
    """Inverse of :func:`pack_frames`; None when the lengths do not tile the data exactly."""
    out: list[bytes] = []
    pos, size = 0, len(data)
    while pos < size:
        if pos + 4 > size:
            return None
        (n,) = _U32.unpack_from(data, pos)
        pos += 4
        if pos + n > size:
            return None
        out.append(data[pos : pos + n])
        pos += n
    return out if out else None


def block_header(frame: bytes) -> tuple[int, int, int, int, int, int] | None:
    """(kind code, epoch, seq, t0_ns, period_ns, count) of a block, without decoding the payload;
    None if it is not a v1 block. Cheap enough to scan millions of messages."""
    if len(frame) < P.HEADER_SIZE:
        return None
    magic, version, kind, _f, epoch, seq, t0, period, count, _ch, _r = _HEADER_FIELDS.unpack_from(frame, 0)
    if magic != P.MAGIC or version != P.VERSION:
        return None
    return kind, epoch, seq, t0, period, count


def parse_topic(topic: str) -> tuple[str, str] | None:
    """(kind word, sensor) of a channel topic, or None if it is not a protocol topic."""
    parsed = P.decode_topic(topic.encode("utf-8", "replace"))
    if isinstance(parsed, P.DecodeError):
        return None
    return parsed[0].word, parsed[1]


def parse_kinds(text: str | Sequence[str]) -> tuple[str, ...]:
    """Validate a kind list (``"samples,pred"`` or a sequence); ValueError names the bad word."""
    words = [w.strip() for w in (text.split(",") if isinstance(text, str) else text)]
    words = [w for w in words if w]
    bad = [w for w in words if w not in KINDS]
    if bad or not words:
        raise ValueError(f"unknown kind(s) {bad or words}; choose from {','.join(KINDS)}")
    return tuple(dict.fromkeys(words))


def schema_name(kind: str) -> str:
    return f"radarstream.{kind}"


_BLOCK_LAYOUT = (
    "48-byte little-endian header, struct '<4sHBBQQqQIHH': magic 'RSTM', u16 version=1, u8 kind, "
    "u8 flags, u64 epoch, u64 seq (first sample), i64 t0_ns, u64 period_ns, u32 count, "
    "u16 channels, u16 reserved; then count*channels float32 LE, sample-major"
)


def schema_data(kind: str) -> bytes:
    """Schema text of a kind: a JSON description of the byte layout, enough for a third-party
    reader to unpack the messages without the Python code."""
    frame2 = {
        "samples": {"name": "truth", "optional": True, "layout": "block, kind 6 (truth)",
                    "channels": list(P.TRUTH_CHANNEL_NAMES)},
        "event": {"name": "meta", "optional": False, "layout": 'UTF-8 JSON object with a string "type"'},
    }.get(kind, {"name": "meta", "optional": True, "layout": "UTF-8 JSON object"})
    channels = {
        "samples": list(P.SAMPLE_CHANNEL_NAMES),
        "pred": list(P.PRED_CHANNEL_NAMES) + ["(more may be appended)"],
        "state": "see meta.layout: h then c, each [layers, hidden] row-major; seq = next sample",
        "rescore": "see meta.channels",
        "event": [],
    }[kind]
    doc = {
        "protocol": "radarstream wire protocol v1 (docs/protocol.md)",
        "kind": kind,
        "framing": "the ZeroMQ frames 1..n of one message, each prefixed by its length as u32 "
                   "little-endian; frame 0 (the topic) is the channel topic and is not stored",
        "frames": [{"name": "block", "layout": _BLOCK_LAYOUT, "channels": channels}, frame2],
        "log_time": "ns since the Unix epoch when the recorder received the message",
        "publish_time": "t0_ns of the block (time of its first sample), 0 if negative",
    }
    return json.dumps(doc, indent=1).encode("utf-8")


from streamer.wire.endpoints import attach  # noqa: E402,F401  (re-exported for the recorder and replayer)
