"""ZeroMQ wire protocol of radarstream: topics, binary blocks, multipart messages.

This module is the reference implementation of ``docs/protocol.md``; the
document and this code must agree (``tests/streamer/wire/test_protocol.py`` checks the worked
example byte for byte).  It depends on numpy only, so the simulator, the
service, the recorder and the GUI can all share it without pulling in Qt or
pyzmq.

Encoding raises ``ValueError`` for programming mistakes (bad shapes, fields out
of range).  Decoding never raises for bad input: it returns a ``DecodeError``
value, because the bytes come from the network and a malformed message must be
counted and dropped, not crash the receiver.
"""

from __future__ import annotations

import enum
import json
import math
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

import numpy as np

__all__ = [
    "MAGIC",
    "VERSION",
    "HEADER",
    "HEADER_SIZE",
    "DEFAULT_MAX_SAMPLES",
    "SAMPLE_CHANNELS",
    "SAMPLE_CHANNEL_NAMES",
    "TRUTH_CHANNELS",
    "TRUTH_CHANNEL_NAMES",
    "PRED_CHANNELS",
    "PRED_CHANNEL_NAMES",
    "NO_DETECTION",
    "MAX_SENSOR_LEN",
    "Kind",
    "Block",
    "Message",
    "ErrorReason",
    "DecodeError",
    "Continuity",
    "topic",
    "topic_prefix",
    "is_valid_sensor",
    "max_block_size",
    "make_block",
    "make_event",
    "encode_block",
    "encode_message",
    "decode_topic",
    "SERVICE_SENSOR",
    "decode_block",
    "decode_message",
    "continuity",
]

# --------------------------------------------------------------------------- #
# Constants
# --------------------------------------------------------------------------- #

MAGIC: Final = b"RSTM"
VERSION: Final = 1
#: magic, version, kind, flags, epoch, seq, t0_ns, period_ns, count, channels, reserved
HEADER: Final = struct.Struct("<4sHBBQQqQIHH")
HEADER_SIZE: Final = 48
assert HEADER.size == HEADER_SIZE

#: Largest ``count`` a receiver accepts by default (bounds memory per message).
DEFAULT_MAX_SAMPLES: Final = 65536

SAMPLE_CHANNELS: Final = 2
SAMPLE_CHANNEL_NAMES: Final = ("amplitude", "distance_m")
#: Value of the distance channel on a dwell without detection.
NO_DETECTION: Final = -1.0

TRUTH_CHANNELS: Final = 4
TRUTH_CHANNEL_NAMES: Final = ("dmin_norm", "in_encounter", "true_range_m", "snr_db")

#: Prediction channels in wire order.  Later versions may append names, never
#: reorder them, so receivers must use the header's channel count.
PRED_CHANNEL_NAMES: Final = ("y_norm", "y_m", "latency_us")
PRED_OPTIONAL_CHANNEL_NAMES: Final = ("y_classical_norm", "y_hybrid_norm", "y_std_norm", "y_classical_std_norm",
                                       "y_hybrid_std_norm", "time_to_cpa_s")
"""Appended by ``serve``: channels 3-4 unless ``--no-hybrid``, 5-7 (standard deviations, NaN where
unknown) and 8 (seconds to the classical fit's CPA) with them or when the model predicts its
uncertainty; receivers use the header's count."""
PRED_CHANNELS: Final = len(PRED_CHANNEL_NAMES)

MAX_SENSOR_LEN: Final = 64
SERVICE_SENSOR: Final = "_service"
"""Reserved sensor id: ``event/_service`` carries the service's own events (stats, lag, peers);
no ``samples``, ``pred``, ``rescore`` or ``state`` message may use it (``bad_topic``)."""
_SENSOR_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: Longest valid topic ("rescore/" + 64 chars); longer frame 0 is rejected unread.
_MAX_TOPIC_LEN: Final = len("rescore/") + MAX_SENSOR_LEN

_U64_LIMIT: Final = 1 << 64
_I64_MIN: Final = -(1 << 63)
_I64_MAX: Final = (1 << 63) - 1
_U64_MASK: Final = _U64_LIMIT - 1
MAX_PERIOD_NS: Final = 3_600_000_000_000
"""Largest valid ``period_ns`` (one hour): beyond it a block is ``bad_header`` (times of a stream
that slow are meaningless, and they overflow every clock downstream)."""


# --------------------------------------------------------------------------- #
# Kinds
# --------------------------------------------------------------------------- #


class Kind(enum.IntEnum):
    """Header kind code; the lower-case name is the topic word."""

    SAMPLES = 1
    PRED = 2
    RESCORE = 3
    STATE = 4
    EVENT = 5
    TRUTH = 6  # block kind only: frame 2 of a samples message, never a topic

    @property
    def word(self) -> str:
        """Topic word, e.g. ``"samples"``."""
        return self.name.lower()

    @property
    def is_topic_kind(self) -> bool:
        """False for TRUTH, which only travels inside a samples message."""
        return self is not Kind.TRUTH


# Read-only so that no module-level state can be mutated by callers.
_TOPIC_KINDS: Final[Mapping[str, Kind]] = MappingProxyType(
    {k.word: k for k in Kind if k.is_topic_kind}
)
_KIND_CODES: Final[Mapping[int, Kind]] = MappingProxyType({int(k): k for k in Kind})


# --------------------------------------------------------------------------- #
# Data types
# --------------------------------------------------------------------------- #


@dataclass(frozen=True, eq=False)
class Block:
    """One binary block: header fields plus a ``[count, channels]`` float32 array.

    ``data`` may be a read-only view into the received frame (zero copy); copy
    it if you need to keep it beyond the frame's lifetime and mutate it.
    Equality compares header fields and values bit-for-bit-ish (NaN == NaN).
    """

    kind: Kind
    epoch: int
    seq: int
    t0_ns: int
    period_ns: int
    data: np.ndarray
    flags: int = 0

    def __post_init__(self) -> None:
        # Catch shape mistakes where the block is built, not deep in a sender.
        if not isinstance(self.kind, Kind):
            object.__setattr__(self, "kind", Kind(self.kind))
        if not isinstance(self.data, np.ndarray) or self.data.ndim != 2:
            raise ValueError("Block.data must be a 2-D numpy array [count, channels]")

    @property
    def count(self) -> int:
        return int(self.data.shape[0])

    @property
    def channels(self) -> int:
        return int(self.data.shape[1])

    @property
    def seqs(self) -> np.ndarray:
        """Sequence number of every sample (uint64)."""
        return np.uint64(self.seq) + np.arange(self.count, dtype=np.uint64)

    @property
    def times_ns(self) -> np.ndarray:
        """Timestamp of every sample (int64 ns since the Unix epoch)."""
        # Modular uint64 arithmetic viewed as int64 is exact whenever the true
        # result fits in int64 (the decoder guarantees it) and avoids overflow
        # errors for period_ns >= 2**63 with count <= 1.
        base = np.uint64(self.t0_ns & _U64_MASK)
        steps = np.arange(self.count, dtype=np.uint64) * np.uint64(self.period_ns & _U64_MASK)
        return (base + steps).view(np.int64)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Block):
            return NotImplemented
        return (
            self.kind == other.kind
            and self.epoch == other.epoch
            and self.seq == other.seq
            and self.t0_ns == other.t0_ns
            and self.period_ns == other.period_ns
            and self.flags == other.flags
            and self.data.shape == other.data.shape
            and bool(np.array_equal(self.data, other.data, equal_nan=True))
        )

    __hash__ = None  # type: ignore[assignment]  # holds an ndarray


@dataclass(frozen=True)
class Message:
    """A decoded multipart message.

    ``truth`` is only used with kind SAMPLES, ``meta`` only with the other kinds.
    """

    kind: Kind
    sensor: str
    block: Block
    truth: Block | None = None
    meta: dict[str, Any] | None = None


class ErrorReason(enum.StrEnum):
    """Why a message was rejected; string values are stable (used in metrics/logs)."""

    TRUNCATED = "truncated"  # block shorter than the 48-byte header
    BAD_MAGIC = "bad_magic"
    UNKNOWN_VERSION = "unknown_version"
    UNKNOWN_KIND = "unknown_kind"  # header kind code not in 1..6
    BAD_HEADER = "bad_header"  # seq after the last sample or its time overflow, or period_ns > one hour
    SIZE_MISMATCH = "size_mismatch"  # payload length != count*channels*4
    NON_FINITE = "non_finite"  # NaN/Inf where values must be finite
    OVERSIZE = "oversize"  # count > max_samples
    BAD_CHANNELS = "bad_channels"  # channel count wrong for the kind
    EMPTY = "empty"  # count == 0 for samples/truth
    BAD_TOPIC = "bad_topic"
    BAD_FRAMES = "bad_frames"  # not 2..3 frames, or a frame is not bytes-like
    KIND_MISMATCH = "kind_mismatch"  # header kind != topic kind, or frame 2 of samples not a truth block (nor any block)
    TRUTH_MISMATCH = "truth_mismatch"  # truth epoch/seq/count != samples block
    BAD_META = "bad_meta"  # frame 2 not a UTF-8 JSON object (or event without "type")


@dataclass(frozen=True)
class DecodeError:
    """Returned (not raised) by the decoders; ``sensor`` is set when the topic parsed."""

    reason: ErrorReason
    detail: str
    sensor: str | None = None

    def __bool__(self) -> bool:
        # Lets callers write ``if not (msg := decode_message(f)): count(msg)``.
        return False


class Continuity(enum.Enum):
    """How a block relates to the previous one of the same sensor/kind."""

    FIRST = "first"  # nothing seen before
    CONTIGUOUS = "contiguous"  # seq == expected next seq
    GAP = "gap"  # seq > expected: samples were lost
    RESTART = "restart"  # new epoch, or seq went back within the epoch


# --------------------------------------------------------------------------- #
# Topics
# --------------------------------------------------------------------------- #


def is_valid_sensor(sensor: str) -> bool:
    """True if ``sensor`` is 1..64 chars of ``[A-Za-z0-9_.-]``."""
    return isinstance(sensor, str) and _SENSOR_RE.fullmatch(sensor) is not None


def topic(kind: Kind, sensor: str) -> bytes:
    """Frame 0 for ``kind`` and ``sensor`` (``b"samples/radar-1"``)."""
    kind = Kind(kind)
    if not kind.is_topic_kind:
        raise ValueError(f"{kind.name} is not a topic kind")
    if not is_valid_sensor(sensor):
        raise ValueError(f"invalid sensor id {sensor!r}")
    return f"{kind.word}/{sensor}".encode("ascii")


def topic_prefix(kind: Kind) -> bytes:
    """SUB prefix that selects every sensor of ``kind`` (``b"pred/"``).

    Prefix filtering on a full topic is not exact (``pred/sensor-1`` also
    matches ``pred/sensor-10``), so filter the sensor in the application.
    """
    kind = Kind(kind)
    if not kind.is_topic_kind:
        raise ValueError(f"{kind.name} is not a topic kind")
    return f"{kind.word}/".encode("ascii")


def max_block_size(max_samples: int = DEFAULT_MAX_SAMPLES, channels: int = TRUTH_CHANNELS) -> int:
    """Largest block frame in bytes: a value for ZMQ_MAXMSGSIZE (checked per frame)."""
    return HEADER_SIZE + max_samples * channels * 4


# --------------------------------------------------------------------------- #
# Encoding
# --------------------------------------------------------------------------- #


def make_block(
    kind: Kind, data: Any, *, epoch: int, seq: int, t0_ns: int, period_ns: int
) -> Block:
    """Build a Block from array-like ``data`` of shape ``[count, channels]``."""
    arr = np.asarray(data, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"data must be 2-D [count, channels], got shape {arr.shape}")
    return Block(Kind(kind), int(epoch), int(seq), int(t0_ns), int(period_ns), arr)


def make_event(
    sensor: str, event_type: str, *, epoch: int, seq: int, t_ns: int, **fields: Any
) -> Message:
    """Event message: empty block (count 0, channels 0), meta ``{"type": ..., **fields}``."""
    if "type" in fields:
        raise ValueError("'type' is reserved for event_type")
    block = Block(Kind.EVENT, int(epoch), int(seq), int(t_ns), 0, np.empty((0, 0), np.float32))
    return Message(Kind.EVENT, sensor, block, meta={"type": event_type, **fields})


def encode_block(block: Block) -> bytes:
    """Header + payload as one bytes object (one copy of the payload, no Python loop)."""
    # No-op on little-endian hosts when data is already contiguous float32.
    data = np.ascontiguousarray(block.data, dtype="<f4")
    count, channels = data.shape
    try:
        header = HEADER.pack(
            MAGIC,
            VERSION,
            int(block.kind),
            block.flags,
            block.epoch,
            block.seq,
            block.t0_ns,
            block.period_ns,
            count,
            channels,
            0,
        )
    except struct.error as exc:
        raise ValueError(f"block header field out of range: {exc}") from None
    # bytes.join reads the array through the buffer protocol: no tobytes() copy.
    return b"".join((header, data))


def _encode_meta(meta: Mapping[str, Any]) -> bytes:
    # Strict JSON (no NaN/Infinity) so that C/Rust parsers accept it.
    return json.dumps(meta, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def encode_message(msg: Message) -> list[bytes]:
    """Frames ``[topic, block]`` plus truth block (samples) or JSON meta (others)."""
    kind = Kind(msg.kind)
    if msg.block.kind != kind:
        raise ValueError(f"block kind {msg.block.kind.name} != message kind {kind.name}")
    frames = [topic(kind, msg.sensor), encode_block(msg.block)]
    if kind is Kind.SAMPLES:
        if msg.meta is not None:
            raise ValueError("samples messages carry a truth block, not meta")
        if msg.truth is not None:
            t, b = msg.truth, msg.block
            if t.kind is not Kind.TRUTH:
                raise ValueError("truth block must have kind TRUTH")
            if (t.epoch, t.seq, t.count) != (b.epoch, b.seq, b.count):
                raise ValueError("truth block epoch/seq/count must match the samples block")
            frames.append(encode_block(t))
    else:
        if msg.truth is not None:
            raise ValueError("only samples messages carry a truth block")
        if kind is Kind.EVENT and (msg.meta is None or not isinstance(msg.meta.get("type"), str)):
            raise ValueError('event messages need meta with a string "type"')
        if msg.meta is not None:
            if not isinstance(msg.meta, Mapping):
                raise ValueError("meta must be a mapping (JSON object)")
            frames.append(_encode_meta(msg.meta))
    return frames


# --------------------------------------------------------------------------- #
# Decoding
# --------------------------------------------------------------------------- #


def _as_buffer(frame: Any) -> bytes | bytearray | memoryview | None:
    """Bytes-like view of a frame (bytes, memoryview, zmq.Frame, ...), or None."""
    if isinstance(frame, (bytes, bytearray)):
        return frame
    try:
        if isinstance(frame, memoryview):
            mv = frame
        else:
            buf = getattr(frame, "buffer", None)  # zmq.Frame: zero-copy memoryview
            mv = buf if isinstance(buf, memoryview) else memoryview(frame)
        if mv.ndim != 1 or mv.itemsize != 1:
            mv = mv.cast("B")
        return mv
    except (TypeError, ValueError, BufferError):
        return None


def decode_topic(frame: Any) -> tuple[Kind, str] | DecodeError:
    """Parse frame 0 into (kind, sensor); TRUTH is not a valid topic kind."""
    buf = _as_buffer(frame)
    if buf is None:
        return DecodeError(ErrorReason.BAD_FRAMES, "topic frame is not bytes-like")
    if len(buf) > _MAX_TOPIC_LEN:
        return DecodeError(ErrorReason.BAD_TOPIC, f"topic longer than {_MAX_TOPIC_LEN} bytes")
    try:
        text = bytes(buf).decode("utf-8")
    except UnicodeDecodeError:
        return DecodeError(ErrorReason.BAD_TOPIC, "topic is not UTF-8")
    word, slash, sensor = text.partition("/")
    if not slash:
        return DecodeError(ErrorReason.BAD_TOPIC, "topic has no '/'")
    kind = _TOPIC_KINDS.get(word)
    if kind is None:
        return DecodeError(ErrorReason.BAD_TOPIC, f"unknown topic kind {word!r}")
    if _SENSOR_RE.fullmatch(sensor) is None:
        return DecodeError(ErrorReason.BAD_TOPIC, f"invalid sensor id {sensor!r}")
    if sensor == SERVICE_SENSOR and kind is not Kind.EVENT:
        return DecodeError(ErrorReason.BAD_TOPIC, f"sensor id {SERVICE_SENSOR!r} is reserved for the service's own events")
    return kind, sensor


def _parse_block(buf: Any, max_samples: int, sensor: str | None) -> Block | DecodeError:
    """Structural checks shared by every kind; kind-specific rules come later."""
    mv = _as_buffer(buf)
    if mv is None:
        return DecodeError(ErrorReason.BAD_FRAMES, "block frame is not bytes-like", sensor)
    size = len(mv)
    if size < HEADER_SIZE:
        return DecodeError(
            ErrorReason.TRUNCATED, f"{size} bytes < {HEADER_SIZE}-byte header", sensor
        )
    (magic, version, code, flags, epoch, seq, t0_ns, period_ns, count, channels, _reserved) = (
        HEADER.unpack_from(mv, 0)
    )
    if magic != MAGIC:
        return DecodeError(ErrorReason.BAD_MAGIC, f"magic {magic!r}", sensor)
    if version != VERSION:
        return DecodeError(ErrorReason.UNKNOWN_VERSION, f"version {version}", sensor)
    kind = _KIND_CODES.get(code)
    if kind is None:
        return DecodeError(ErrorReason.UNKNOWN_KIND, f"kind code {code}", sensor)
    if count > max_samples:
        return DecodeError(ErrorReason.OVERSIZE, f"count {count} > {max_samples}", sensor)
    if count > 0 and channels == 0:
        return DecodeError(ErrorReason.BAD_CHANNELS, f"count {count} with 0 channels", sensor)
    expected = HEADER_SIZE + count * channels * 4
    if size != expected:
        return DecodeError(
            ErrorReason.SIZE_MISMATCH,
            f"{size} bytes, header declares {expected} ({count}x{channels} float32)",
            sensor,
        )
    if period_ns > MAX_PERIOD_NS:
        return DecodeError(ErrorReason.BAD_HEADER, f"period_ns {period_ns} above the limit {MAX_PERIOD_NS} (one hour)", sensor)
    if count > 0:
        if seq + count > _U64_MASK:
            return DecodeError(ErrorReason.BAD_HEADER, "seq after the last sample overflows u64", sensor)
        t_last = t0_ns + (count - 1) * period_ns
        if not _I64_MIN <= t_last <= _I64_MAX:
            return DecodeError(ErrorReason.BAD_HEADER, "time of last sample overflows i64", sensor)
    data = np.frombuffer(mv, dtype="<f4", count=count * channels, offset=HEADER_SIZE)
    data = data.reshape(count, channels)
    data.flags.writeable = False  # also for bytearray frames: decoded data is immutable
    return Block(kind, epoch, seq, t0_ns, period_ns, data, flags)


def _check_block(
    block: Block, expected_channels: int | None, allow_non_finite: bool, sensor: str | None
) -> DecodeError | None:
    if block.kind in (Kind.SAMPLES, Kind.TRUTH) and block.count == 0:
        return DecodeError(ErrorReason.EMPTY, f"{block.kind.word} block with 0 samples", sensor)
    if expected_channels is not None and block.channels != expected_channels:
        return DecodeError(
            ErrorReason.BAD_CHANNELS,
            f"{block.kind.word} block has {block.channels} channels, expected {expected_channels}",
            sensor,
        )
    if not allow_non_finite and block.count and not np.isfinite(block.data).all():
        return DecodeError(ErrorReason.NON_FINITE, f"{block.kind.word} block has NaN/Inf", sensor)
    return None


def decode_block(
    buf: Any,
    *,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    expected_channels: int | None = None,
    allow_non_finite: bool = False,
) -> Block | DecodeError:
    """Decode one block without copying the payload; never raises for bad bytes."""
    block = _parse_block(buf, max_samples, None)
    if isinstance(block, DecodeError):
        return block
    err = _check_block(block, expected_channels, allow_non_finite, None)
    return block if err is None else err


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # "1e999" parses to inf; strict JSON has no inf
        raise ValueError(f"non-finite number {text}")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _decode_meta(buf: Any, sensor: str) -> dict[str, Any] | DecodeError:
    try:
        text = bytes(buf).decode("utf-8")
        obj = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
        if "\\u" in text:
            # A "\ud800" escape yields a lone surrogate: not Unicode, rejected by
            # other parsers and not re-encodable as UTF-8.  Only escapes can
            # produce one, so the check is skipped for escape-free text.
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError) as exc:  # JSONDecodeError/UnicodeError are ValueError
        return DecodeError(ErrorReason.BAD_META, f"meta is not UTF-8 JSON: {exc}"[:200], sensor)
    if not isinstance(obj, dict):
        return DecodeError(ErrorReason.BAD_META, "meta is not a JSON object", sensor)
    return obj


def decode_message(
    frames: Sequence[Any],
    *,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    sample_channels: int = SAMPLE_CHANNELS,
) -> Message | DecodeError:
    """Decode and validate a multipart message; never raises for bad input.

    Rules beyond the block structure: samples need exactly ``sample_channels``
    finite channels and count > 0, their optional frame 2 is a TRUTH block with
    4 channels and the same epoch/seq/count; pred needs >= 3 channels; events
    need a meta object with a string ``"type"``; other kinds may add a JSON
    object.  Only samples are required to be finite.
    """
    try:
        n = len(frames)
    except TypeError:
        return DecodeError(ErrorReason.BAD_FRAMES, "frames is not a sequence")
    if n == 0:
        return DecodeError(ErrorReason.BAD_FRAMES, "no frames")
    parsed = decode_topic(frames[0])
    sensor = None if isinstance(parsed, DecodeError) else parsed[1]
    if n not in (2, 3):
        return DecodeError(ErrorReason.BAD_FRAMES, f"{n} frames, expected 2 or 3", sensor)
    if isinstance(parsed, DecodeError):
        return parsed
    kind, sensor = parsed

    block = _parse_block(frames[1], max_samples, sensor)
    if isinstance(block, DecodeError):
        return block
    if block.kind != kind:
        return DecodeError(
            ErrorReason.KIND_MISMATCH,
            f"topic kind {kind.word}, block kind {block.kind.word}",
            sensor,
        )

    if kind is Kind.SAMPLES:
        err = _check_block(block, sample_channels, False, sensor)
        if err is not None:
            return err
        if n == 2:
            return Message(kind, sensor, block)
        # Frame 2 of samples is a truth block or nothing (docs/protocol.md §9): bytes that do not
        # start with the magic (JSON metadata, text, an empty frame) are not a block at all, so
        # they are a frame of the wrong kind, not a broken block (truncated / bad_magic).
        head = _as_buffer(frames[2])
        if head is not None and bytes(head[: len(MAGIC)]) != MAGIC:
            return DecodeError(
                ErrorReason.KIND_MISMATCH,
                "frame 2 of samples is not a block (JSON or other bytes), expected a truth block",
                sensor,
            )
        truth = _parse_block(frames[2], max_samples, sensor)
        if isinstance(truth, DecodeError):
            return truth
        if truth.kind is not Kind.TRUTH:
            return DecodeError(
                ErrorReason.KIND_MISMATCH,
                f"frame 2 of samples is a {truth.kind.word} block, expected truth",
                sensor,
            )
        err = _check_block(truth, TRUTH_CHANNELS, True, sensor)
        if err is not None:
            return err
        if (truth.epoch, truth.seq, truth.count) != (block.epoch, block.seq, block.count):
            return DecodeError(
                ErrorReason.TRUTH_MISMATCH,
                f"truth epoch/seq/count {truth.epoch}/{truth.seq}/{truth.count} != "
                f"samples {block.epoch}/{block.seq}/{block.count}",
                sensor,
            )
        return Message(kind, sensor, block, truth=truth)

    if kind is Kind.PRED and block.count and block.channels < PRED_CHANNELS:
        return DecodeError(
            ErrorReason.BAD_CHANNELS,
            f"pred block has {block.channels} channels, expected >= {PRED_CHANNELS}",
            sensor,
        )
    meta = None
    if n == 3:
        meta = _decode_meta(frames[2], sensor)
        if isinstance(meta, DecodeError):
            return meta
    if kind is Kind.EVENT and (meta is None or not isinstance(meta.get("type"), str)):
        return DecodeError(ErrorReason.BAD_META, 'event needs meta with a string "type"', sensor)
    return Message(kind, sensor, block, meta=meta)


# --------------------------------------------------------------------------- #
# Sequence continuity
# --------------------------------------------------------------------------- #


def continuity(expected: tuple[int, int] | None, block: Block) -> tuple[Continuity, int]:
    """Classify ``block`` against ``expected = (epoch, next_seq)`` of the same stream.

    Returns the classification and the number of lost samples (> 0 only for
    GAP).  The caller keeps ``(block.epoch, block.seq + block.count)`` as the
    next ``expected``; this function holds no state.
    """
    if expected is None:
        return Continuity.FIRST, 0
    epoch, next_seq = expected
    if block.epoch != epoch or block.seq < next_seq:
        return Continuity.RESTART, 0
    if block.seq == next_seq:
        return Continuity.CONTIGUOUS, 0
    return Continuity.GAP, block.seq - next_seq


# --------------------------------------------------------------------------- #
# Fast stateful decoder for the service's hot path
# --------------------------------------------------------------------------- #


class Decoder:
    """``decode_message`` with a bounded cache of parsed topics and an inlined fast path for the
    commonest message (``samples`` with or without truth, bytes frames).

    Same results as :func:`decode_message` (tested), about 3× cheaper per small message: at one
    sample per message the per-message cost, not the model, bounds the service's throughput.
    ``with_truth=False`` skips decoding frame 2 of samples (the service does not need it).
    """

    def __init__(
        self,
        *,
        max_samples: int = DEFAULT_MAX_SAMPLES,
        sample_channels: int = SAMPLE_CHANNELS,
        with_truth: bool = True,
        max_topics: int = 65536,
    ):
        self.max_samples = max_samples
        self.sample_channels = sample_channels
        self.with_truth = with_truth
        self._topics: dict[bytes, tuple[Kind, str]] = {}
        self._max_topics = max_topics

    def decode(self, frames: Sequence[Any]) -> Message | DecodeError:
        try:
            n = len(frames)
            t = frames[0]
        except (TypeError, IndexError):
            return decode_message(frames, max_samples=self.max_samples, sample_channels=self.sample_channels)
        if n not in (2, 3) or not isinstance(t, bytes):
            return self._slow(frames)
        parsed = self._topics.get(t)
        if parsed is None:
            parsed = decode_topic(t)
            if isinstance(parsed, DecodeError):
                return self._slow(frames)
            if len(self._topics) >= self._max_topics:
                self._topics.clear()
            self._topics[t] = parsed
        kind, sensor = parsed
        buf = frames[1]
        if kind is not Kind.SAMPLES or not isinstance(buf, bytes) or len(buf) < HEADER_SIZE or (n == 3 and self.with_truth):
            return self._slow(frames)
        magic, version, code, flags, epoch, seq, t0_ns, period_ns, count, channels, _ = HEADER.unpack_from(buf, 0)
        if (
            magic != MAGIC or version != VERSION or code != 1 or count == 0 or count > self.max_samples
            or channels != self.sample_channels or len(buf) != HEADER_SIZE + count * channels * 4
            or seq + count > _U64_MASK or period_ns > MAX_PERIOD_NS
            or not _I64_MIN <= t0_ns + (count - 1) * period_ns <= _I64_MAX
        ):
            return self._slow(frames)  # the slow path names the exact reason
        data = np.frombuffer(buf, dtype="<f4", count=count * channels, offset=HEADER_SIZE).reshape(count, channels)
        # float64 sum of float32 values cannot overflow, so it is finite iff every value is
        if not math.isfinite(float(data.sum(dtype=np.float64))):
            return DecodeError(ErrorReason.NON_FINITE, "samples block has NaN/Inf", sensor)
        return Message(Kind.SAMPLES, sensor, Block(Kind.SAMPLES, epoch, seq, t0_ns, period_ns, data, flags))

    def _slow(self, frames: Sequence[Any]) -> Message | DecodeError:
        msg = decode_message(frames, max_samples=self.max_samples, sample_channels=self.sample_channels)
        if not self.with_truth and isinstance(msg, Message) and msg.truth is not None:
            msg = Message(msg.kind, msg.sensor, msg.block, None, msg.meta)
        return msg


# --------------------------------------------------------------------------- #
# Array decoding of a whole drain (the service's fast path)
# --------------------------------------------------------------------------- #

_HEADER_FIELDS: Final = [
    ("magic", "S4"), ("version", "<u2"), ("kind", "u1"), ("flags", "u1"), ("epoch", "<u8"), ("seq", "<u8"),
    ("t0_ns", "<i8"), ("period_ns", "<u8"), ("count", "<u4"), ("channels", "<u2"), ("reserved", "<u2"),
]
HEADER_DTYPE: Final = np.dtype(_HEADER_FIELDS)
"""The 48-byte header as a numpy structured dtype (the same layout as :data:`HEADER`)."""
assert HEADER_DTYPE.itemsize == HEADER_SIZE

_FAST_MAX_PERIOD: Final = 1 << 40  # ~18 min: beyond it, the slow path checks the times exactly
_record_dtypes: dict[tuple[int, int], np.dtype] = {}


def record_dtype(count: int, channels: int = SAMPLE_CHANNELS) -> np.dtype:
    """Header + ``[count, channels]`` float32 payload as one structured dtype (one block frame)."""
    key = (count, channels)
    dt = _record_dtypes.get(key)
    if dt is None:
        if len(_record_dtypes) > 4096:
            _record_dtypes.clear()
        dt = _record_dtypes[key] = np.dtype(_HEADER_FIELDS + [("data", "<f4", (count, channels))])
    return dt


@dataclass(eq=False)
class SampleBatch:
    """The plain ``samples`` messages of a drain, decoded into arrays (:func:`decode_sample_batch`).

    ``index[k]`` is message k's position in the drain; ``sensor[k]`` its sensor; the header fields
    are int64/uint64 arrays; ``data(k)`` its ``[count, channels]`` read-only float32 payload, a view
    into one buffer per frame size (``groups``: ``(positions in this batch, records)``). Every
    message here passed exactly the checks :class:`Decoder` makes (stricter ones go ``rest``)."""

    index: np.ndarray
    sensor: list[str]
    epoch: np.ndarray  # uint64
    seq: np.ndarray  # uint64 (< 2**63)
    t0_ns: np.ndarray  # int64
    period_ns: np.ndarray  # uint64 (< 2**40)
    count: np.ndarray  # int64
    flags: np.ndarray
    where: np.ndarray  # [n, 2] (group, row) of each message's record
    groups: list[np.ndarray]  # structured records, one array per frame size
    recv_ns: np.ndarray | None = None  # set by the receiver: receive time of each message (int64)

    def __len__(self) -> int:
        return len(self.sensor)

    def data(self, k: int) -> np.ndarray:
        g, r = self.where[k]
        return self.groups[g]["data"][r]

    def block(self, k: int) -> Block:
        """Message k as the :class:`Block` the decoder would return."""
        return Block(Kind.SAMPLES, int(self.epoch[k]), int(self.seq[k]), int(self.t0_ns[k]), int(self.period_ns[k]),
                     self.data(k), int(self.flags[k]))


def decode_sample_batch(
    messages: Sequence[Sequence[Any]],
    topics: dict[bytes, str],
    *,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    sample_channels: int = SAMPLE_CHANNELS,
    ignore_truth: bool = True,
) -> tuple[SampleBatch, list[int]]:
    """Split a drain into its plain samples messages, decoded as arrays, and the rest (positions
    of everything else: events, truth-carrying samples when ``ignore_truth`` is False, frames
    that are not ``bytes``, and any message failing a check; the caller decodes those one by one
    with :class:`Decoder`, which names the exact reason).

    ``topics`` caches topic bytes -> sensor ("" for a topic that is not a valid samples topic);
    the per-message Python work is the frame count and this one dictionary lookup. Block frames
    are joined per frame size into one buffer and read through one structured-dtype view."""
    cand: list[int] = []
    names: list[str] = []
    frames1: list[bytes] = []
    rest: list[int] = []
    get = topics.get
    for i, f in enumerate(messages):
        n = len(f)
        if n == 2 or (n == 3 and ignore_truth):
            t = f[0]
            s = get(t) if type(t) is bytes else ""
            if s is None:
                parsed = decode_topic(t)
                s = parsed[1] if not isinstance(parsed, DecodeError) and parsed[0] is Kind.SAMPLES else ""
                if len(topics) >= 65536:
                    topics.clear()
                topics[t] = s
            b = f[1]
            if s and type(b) is bytes:
                cand.append(i)
                names.append(s)
                frames1.append(b)
                continue
        rest.append(i)
    empty_u = np.empty(0, np.uint64)
    if not cand:
        return SampleBatch(np.empty(0, np.int64), [], empty_u, empty_u, np.empty(0, np.int64), empty_u,
                           np.empty(0, np.int64), np.empty(0, np.uint8), np.empty((0, 2), np.int64), []), rest
    sizes = np.fromiter(map(len, frames1), np.int64, len(frames1))
    row_bytes = 4 * sample_channels
    uniq = np.unique(sizes)
    ok = np.zeros(len(cand), bool)
    where = np.zeros((len(cand), 2), np.int64)
    groups: list[np.ndarray] = []
    heads = np.zeros(len(cand), HEADER_DTYPE)
    for size in uniq.tolist():
        count = (size - HEADER_SIZE) // row_bytes
        if size <= HEADER_SIZE or (size - HEADER_SIZE) % row_bytes or count > max_samples:
            continue  # the decoder names the reason
        pos = np.flatnonzero(sizes == size) if len(uniq) > 1 else np.arange(len(cand))
        buf = frames1[pos[0]] if len(pos) == 1 else b"".join([frames1[p] for p in pos.tolist()])
        rec = np.frombuffer(buf, dtype=record_dtype(count, sample_channels))
        good = ((rec["magic"] == MAGIC) & (rec["version"] == VERSION) & (rec["kind"] == int(Kind.SAMPLES))
                & (rec["count"] == count) & (rec["channels"] == sample_channels)
                & (rec["seq"] < np.uint64(1 << 63)) & (rec["period_ns"] < np.uint64(_FAST_MAX_PERIOD)))
        # t0 + (count - 1) * period stays in int64 (period < 2**40, count <= 65536: no overflow here)
        span = (count - 1) * rec["period_ns"].astype(np.int64)
        good &= rec["t0_ns"] <= np.int64(_I64_MAX) - span
        good &= np.isfinite(rec["data"]).reshape(len(rec), -1).all(axis=1)
        ok[pos] = good
        where[pos, 0] = len(groups)
        where[pos, 1] = np.arange(len(pos))
        heads[pos] = rec[list(HEADER_DTYPE.names)]
        groups.append(rec)
    if not ok.all():
        bad = np.flatnonzero(~ok)
        rest = sorted(rest + [cand[k] for k in bad.tolist()])
        keep = np.flatnonzero(ok)
        cand = [cand[k] for k in keep.tolist()]
        names = [names[k] for k in keep.tolist()]
        heads, where = heads[keep], where[keep]
    return SampleBatch(np.asarray(cand, np.int64), names, heads["epoch"].astype(np.uint64),
                       heads["seq"].astype(np.uint64), heads["t0_ns"].astype(np.int64),
                       heads["period_ns"].astype(np.uint64), heads["count"].astype(np.int64),
                       heads["flags"].astype(np.uint8), where, groups), rest
