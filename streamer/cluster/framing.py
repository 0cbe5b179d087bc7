"""One ZeroMQ multipart message as one log record, its frames unchanged.

Record layout (little-endian): ``u8`` frame count, then per frame a ``u32`` length and the bytes.
The bridge writes the frames exactly as they arrived and the shard hands exactly those frames to
the service's drain, so the log changes nothing a ``serve`` would have seen.
"""

from __future__ import annotations

import hashlib
import struct

_LEN = struct.Struct("<I")
MAX_FRAMES = 255


def pack(frames: list) -> bytes:
    """The record of ``frames`` (bytes-like)."""
    if not 0 < len(frames) <= MAX_FRAMES:
        raise ValueError(f"a record holds 1..{MAX_FRAMES} frames, got {len(frames)}")
    parts = [bytes([len(frames)])]
    for f in frames:
        b = bytes(f)
        parts.append(_LEN.pack(len(b)))
        parts.append(b)
    return b"".join(parts)


def unpack(record: bytes) -> list[bytes]:
    """The frames of a record; ValueError when it is not one (a record the bridge did not write)."""
    mv = memoryview(record)
    if not mv:
        raise ValueError("empty record")
    n, pos, out = mv[0], 1, []
    for _ in range(n):
        if pos + 4 > len(mv):
            raise ValueError("truncated record")
        (size,) = _LEN.unpack_from(mv, pos)
        pos += 4
        if pos + size > len(mv):
            raise ValueError("truncated record")
        out.append(bytes(mv[pos:pos + size]))
        pos += size
    if pos != len(mv):
        raise ValueError("trailing bytes after the last frame")
    return out


def message_id(frames: list) -> str:
    """A digest of the frames: the log's de-duplication id (``Nats-Msg-Id``), the same in every
    bridge that receives the same message, so redundant bridges on one feed append it once."""
    h = hashlib.blake2b(digest_size=16)
    for f in frames:
        b = bytes(f)
        h.update(_LEN.pack(len(b)))
        h.update(b)
    return h.hexdigest()
