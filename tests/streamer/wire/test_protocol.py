"""Tests for streamer.wire.protocol: round trips, the documented example, every
error reason, fuzzing (decoders never raise), and a real PUB/SUB exchange."""

from __future__ import annotations

import json
import re
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.wire import protocol as p
from streamer.wire.protocol import (
    HEADER,
    HEADER_SIZE,
    MAGIC,
    VERSION,
    Block,
    Continuity,
    DecodeError,
    ErrorReason,
    Kind,
    Message,
    continuity,
    decode_block,
    decode_message,
    decode_topic,
    encode_block,
    encode_message,
    make_block,
    make_event,
    topic,
    topic_prefix,
)

DOC = Path(__file__).resolve().parents[3] / "docs" / "protocol.md"

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #


def raw_block(
    kind: int = 1,
    data: np.ndarray | None = None,
    *,
    magic: bytes = MAGIC,
    version: int = VERSION,
    flags: int = 0,
    epoch: int = 7,
    seq: int = 100,
    t0_ns: int = 1_000,
    period_ns: int = 10,
    count: int | None = None,
    channels: int | None = None,
    reserved: int = 0,
    extra: bytes = b"",
) -> bytes:
    """A block built by hand (independently of encode_block) so headers can lie."""
    if data is None:
        data = np.arange(6, dtype=np.float32).reshape(3, 2)
    data = np.asarray(data, dtype="<f4")
    n = data.shape[0] if count is None else count
    c = data.shape[1] if channels is None else channels
    head = struct.pack(
        "<4sHBBQQqQIHH", magic, version, kind, flags, epoch, seq, t0_ns, period_ns, n, c, reserved
    )
    return head + data.tobytes() + extra


def truth_data(n: int) -> np.ndarray:
    d = np.full((n, 4), np.nan, dtype=np.float32)
    d[:, 1] = 0.0
    if n:
        d[0] = [0.25, 1.0, 812.5, 13.0]
    return d


def samples_frames(sensor: str = "radar-1", *, truth: bool = False) -> list[bytes]:
    frames = [f"samples/{sensor}".encode(), raw_block(1)]
    if truth:
        frames.append(raw_block(6, truth_data(3)))
    return frames


def rand_block(rng: np.random.Generator, kind: Kind, count: int, channels: int) -> Block:
    return make_block(
        kind,
        rng.standard_normal((count, channels)).astype(np.float32),
        epoch=int(rng.integers(0, 2**63)) * 2 + 1,
        seq=int(rng.integers(0, 2**40)),
        t0_ns=int(rng.integers(-(2**50), 2**60)),
        period_ns=int(rng.integers(0, 10**9)),
    )


# --------------------------------------------------------------------------- #
# Constants and basic types
# --------------------------------------------------------------------------- #


def test_constants_match_spec() -> None:
    assert HEADER.format == "<4sHBBQQqQIHH"
    assert HEADER.size == HEADER_SIZE == 48
    assert MAGIC == b"RSTM" and VERSION == 1
    assert [(k.name, int(k), k.word) for k in Kind] == [
        ("SAMPLES", 1, "samples"),
        ("PRED", 2, "pred"),
        ("RESCORE", 3, "rescore"),
        ("STATE", 4, "state"),
        ("EVENT", 5, "event"),
        ("TRUTH", 6, "truth"),
    ]
    assert p.DEFAULT_MAX_SAMPLES == 65536
    assert (p.SAMPLE_CHANNELS, p.TRUTH_CHANNELS, p.PRED_CHANNELS) == (2, 4, 3)
    assert list(p.PRED_CHANNEL_NAMES) == ["y_norm", "y_m", "latency_us"]
    assert p.max_block_size() == 48 + 65536 * 4 * 4


def test_block_properties_and_equality() -> None:
    b = make_block(Kind.SAMPLES, [[1, 2], [3, 4], [5, 6]], epoch=1, seq=10, t0_ns=-5, period_ns=7)
    assert (b.count, b.channels, b.data.dtype) == (3, 2, np.float32)
    assert b.seqs.dtype == np.uint64 and b.seqs.tolist() == [10, 11, 12]
    assert b.times_ns.dtype == np.int64 and b.times_ns.tolist() == [-5, 2, 9]
    # Extremes: seq near 2**64, huge period with a single sample.
    big = Block(Kind.SAMPLES, 0, 2**64 - 2, 2**63 - 1, 2**64 - 1, np.zeros((1, 2), np.float32))
    assert big.seqs.tolist() == [2**64 - 2]
    assert big.times_ns.tolist() == [2**63 - 1]
    nan = np.array([[np.nan, 1.0]], np.float32)
    assert Block(Kind.TRUTH, 0, 0, 0, 0, nan) == Block(Kind.TRUTH, 0, 0, 0, 0, nan.copy())
    assert Block(Kind.TRUTH, 0, 0, 0, 0, nan) != Block(Kind.TRUTH, 0, 1, 0, 0, nan)
    with pytest.raises(ValueError):
        Block(Kind.SAMPLES, 0, 0, 0, 0, np.zeros(3, np.float32))
    with pytest.raises(ValueError):
        make_block(Kind.SAMPLES, [1.0, 2.0], epoch=0, seq=0, t0_ns=0, period_ns=0)


def test_topic_helpers() -> None:
    assert topic(Kind.SAMPLES, "radar-1") == b"samples/radar-1"
    assert topic(Kind.PRED, "a" * 64) == b"pred/" + b"a" * 64
    assert topic_prefix(Kind.EVENT) == b"event/"
    for bad in ["", "a" * 65, "a b", "a/b", "é", "x\n"]:
        with pytest.raises(ValueError):
            topic(Kind.SAMPLES, bad)
    with pytest.raises(ValueError):
        topic(Kind.TRUTH, "radar-1")
    assert decode_topic(b"rescore/S_1.x-2") == (Kind.RESCORE, "S_1.x-2")
    assert decode_topic(memoryview(b"state/z")) == (Kind.STATE, "z")


# --------------------------------------------------------------------------- #
# Round trips
# --------------------------------------------------------------------------- #


@st.composite
def messages(draw: st.DrawFn) -> Message:
    kind = draw(st.sampled_from([Kind.SAMPLES, Kind.PRED, Kind.RESCORE, Kind.STATE, Kind.EVENT]))
    sensor = draw(st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    count = draw(st.integers(1, 300))
    if kind is Kind.EVENT:
        fields = draw(st.dictionaries(st.sampled_from(["a", "b", "range_m"]), st.integers()))
        return make_event(
            sensor,
            draw(st.text(max_size=10)),
            epoch=draw(st.integers(0, 2**64 - 1)),
            seq=draw(st.integers(0, 2**63)),
            t_ns=draw(st.integers(-(2**63), 2**63 - 1)),
            **fields,
        )
    if kind is Kind.SAMPLES:
        block = rand_block(rng, kind, count, 2)
        truth = None
        if draw(st.booleans()):
            truth = make_block(
                Kind.TRUTH,
                truth_data(count),
                epoch=block.epoch,
                seq=block.seq,
                t0_ns=block.t0_ns,
                period_ns=block.period_ns,
            )
        return Message(kind, sensor, block, truth=truth)
    channels = draw(st.integers(3 if kind is Kind.PRED else 1, 8))
    block = rand_block(rng, kind, count, channels)
    if kind is Kind.PRED and draw(st.booleans()):
        block.data[0, 0] = np.nan  # non-finite pred values are tolerated
    meta = draw(st.none() | st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5)))
    return Message(kind, sensor, block, meta=meta)


@settings(max_examples=150, deadline=None)
@given(messages())
def test_round_trip(msg: Message) -> None:
    frames = encode_message(msg)
    assert all(isinstance(f, bytes) for f in frames)
    assert len(frames) == 2 + (msg.truth is not None or msg.meta is not None)
    assert len(frames[1]) == HEADER_SIZE + 4 * msg.block.count * msg.block.channels
    out = decode_message(frames)
    assert isinstance(out, Message), out
    assert out == msg
    assert np.array_equal(out.block.seqs, msg.block.seqs)
    assert np.array_equal(out.block.times_ns, msg.block.times_ns)


def test_encode_block_converts_dtype_and_layout() -> None:
    f64 = np.asfortranarray(np.arange(12, dtype=np.float64).reshape(4, 3))
    blk = Block(Kind.STATE, 1, 2, 3, 4, f64)
    buf = encode_block(blk)
    assert buf[HEADER_SIZE:] == np.arange(12, dtype="<f4").tobytes()  # sample-major
    out = decode_block(buf)
    assert isinstance(out, Block) and out.data.dtype == np.float32
    assert np.array_equal(out.data, f64)


def test_decode_is_zero_copy_and_read_only() -> None:
    buf = bytearray(raw_block(1))
    out = decode_block(buf, expected_channels=2)
    assert isinstance(out, Block)
    assert np.shares_memory(out.data, np.frombuffer(buf, np.uint8))
    assert not out.data.flags.writeable
    frame = zmq.Frame(bytes(buf))
    msg = decode_message([zmq.Frame(b"samples/radar-1"), frame])
    assert isinstance(msg, Message) and msg.block.data.tolist() == [[0, 1], [2, 3], [4, 5]]


def test_encode_rejects_inconsistent_messages() -> None:
    s = make_block(Kind.SAMPLES, [[1, 2]], epoch=1, seq=5, t0_ns=0, period_ns=1)
    t = make_block(Kind.TRUTH, truth_data(1), epoch=1, seq=5, t0_ns=0, period_ns=1)
    assert len(encode_message(Message(Kind.SAMPLES, "r", s, truth=t))) == 3
    bad = [
        Message(Kind.PRED, "r", s),  # block kind differs from message kind
        Message(Kind.SAMPLES, "r", s, meta={"a": 1}),
        Message(Kind.SAMPLES, "r", s, truth=s),
        Message(Kind.SAMPLES, "r", s, truth=Block(Kind.TRUTH, 1, 6, 0, 1, t.data)),
        Message(Kind.SAMPLES, "bad id", s),
        Message(Kind.STATE, "r", Block(Kind.STATE, 1, 5, 0, 1, s.data), truth=t),
        Message(Kind.EVENT, "r", Block(Kind.EVENT, 1, 5, 0, 0, np.empty((0, 0), np.float32))),
        Message(Kind.STATE, "r", Block(Kind.STATE, 1, 5, 0, 1, s.data), meta={"x": float("nan")}),
        Message(Kind.SAMPLES, "r", Block(Kind.SAMPLES, -1, 5, 0, 1, s.data)),  # epoch < 0
        Message(Kind.SAMPLES, "r", Block(Kind.SAMPLES, 1, 5, 2**63, 1, s.data)),  # t0 > i64
    ]
    for msg in bad:
        with pytest.raises(ValueError):
            encode_message(msg)
    with pytest.raises(ValueError):
        make_event("r", "x", epoch=0, seq=0, t_ns=0, type="y")


def test_make_event() -> None:
    msg = make_event("radar-1", "encounter_start", epoch=3, seq=9, t_ns=11, range_m=812.5)
    assert msg.meta == {"type": "encounter_start", "range_m": 812.5}
    frames = encode_message(msg)
    assert frames[0] == b"event/radar-1" and len(frames[1]) == HEADER_SIZE
    assert json.loads(frames[2]) == msg.meta
    out = decode_message(frames)
    assert isinstance(out, Message) and out == msg
    assert (out.block.count, out.block.channels, out.block.t0_ns) == (0, 0, 11)


# --------------------------------------------------------------------------- #
# Documented example
# --------------------------------------------------------------------------- #

EXAMPLE_HEX = [
    "73616d706c65732f72616461722d31",
    "5253544d010001000000 2a36fe9c9717 2a00000000000000 00002a36fe9c9717 80f0fa0200000000"
    " 02000000 0200 0000 0000c03f 00007a43 cdcc4c3f 000080bf",
]


def example_message() -> Message:
    block = make_block(
        Kind.SAMPLES,
        [[1.5, 250.0], [0.8, -1.0]],
        epoch=1700000000000000000,
        seq=42,
        t0_ns=1700000000000000000,
        period_ns=50_000_000,
    )
    return Message(Kind.SAMPLES, "radar-1", block)


def hexdump(buf: bytes) -> str:
    return "\n".join(f"{i:04x}  {buf[i : i + 16].hex(' ')}" for i in range(0, len(buf), 16))


def test_doc_example_hex_is_exact() -> None:
    frames = encode_message(example_message())
    assert [f.hex() for f in frames] == [h.replace(" ", "") for h in EXAMPLE_HEX]
    doc = DOC.read_text(encoding="utf-8")
    for f in frames:  # the doc shows each frame as this exact dump
        assert f"```\n{hexdump(f)}\n```" in doc
    # Every "| offset | `hex` |" row of the field-by-field table matches frame 1.
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*`([0-9a-f ]+)`\s*\|", doc, flags=re.M)
    assert len(rows) == 15
    covered = 0
    for offset, hexbytes in rows:
        want = bytes.fromhex(hexbytes)
        assert frames[1][int(offset) : int(offset) + len(want)] == want, offset
        covered += len(want)
    assert covered == len(frames[1]) == 64
    out = decode_message(frames)
    assert isinstance(out, Message)
    assert out.block.seqs.tolist() == [42, 43]
    assert out.block.times_ns.tolist() == [1700000000000000000, 1700000000050000000]


# --------------------------------------------------------------------------- #
# Error reasons
# --------------------------------------------------------------------------- #

T = b"samples/radar-1"
R = ErrorReason
NAN_SAMPLES = np.array([[1.0, 2.0], [np.nan, 3.0]], np.float32)
INF_SAMPLES = np.array([[1.0, np.inf]], np.float32)
EVENT_BLOCK = raw_block(5, np.empty((0, 0), np.float32), period_ns=0)
PRED_BLOCK = raw_block(2, np.zeros((2, 3), np.float32))

ERROR_CASES: list[tuple[str, list, ErrorReason, str | None]] = [
    ("no frames", [], R.BAD_FRAMES, None),
    ("one frame", [T], R.BAD_FRAMES, "radar-1"),
    ("one bad frame", [b"??"], R.BAD_FRAMES, None),
    ("four frames", samples_frames(truth=True) + [b"{}"], R.BAD_FRAMES, "radar-1"),
    ("block not bytes", [T, 12345], R.BAD_FRAMES, "radar-1"),
    ("topic not bytes", [None, raw_block(1)], R.BAD_FRAMES, None),
    ("topic not utf8", [b"samples/\xff", raw_block(1)], R.BAD_TOPIC, None),
    ("topic no slash", [b"samples", raw_block(1)], R.BAD_TOPIC, None),
    ("topic unknown kind", [b"bogus/radar-1", raw_block(1)], R.BAD_TOPIC, None),
    ("topic truth kind", [b"truth/radar-1", raw_block(6, truth_data(3))], R.BAD_TOPIC, None),
    ("topic upper case", [b"Samples/radar-1", raw_block(1)], R.BAD_TOPIC, None),
    ("sensor empty", [b"samples/", raw_block(1)], R.BAD_TOPIC, None),
    ("sensor bad char", [b"samples/radar 1", raw_block(1)], R.BAD_TOPIC, None),
    ("sensor slash", [b"samples/a/b", raw_block(1)], R.BAD_TOPIC, None),
    ("sensor too long", [b"samples/" + b"a" * 65, raw_block(1)], R.BAD_TOPIC, None),
    ("truncated empty", [T, b""], R.TRUNCATED, "radar-1"),
    ("truncated 47", [T, raw_block(1)[:47]], R.TRUNCATED, "radar-1"),
    ("bad magic", [T, raw_block(1, magic=b"RSTN")], R.BAD_MAGIC, "radar-1"),
    ("version 2", [T, raw_block(1, version=2)], R.UNKNOWN_VERSION, "radar-1"),
    ("version 0", [T, raw_block(1, version=0)], R.UNKNOWN_VERSION, "radar-1"),
    ("kind code 0", [T, raw_block(0)], R.UNKNOWN_KIND, "radar-1"),
    ("kind code 7", [T, raw_block(7)], R.UNKNOWN_KIND, "radar-1"),
    ("oversize", [T, raw_block(1, count=65537)], R.OVERSIZE, "radar-1"),
    ("oversize u32 max", [T, raw_block(1, count=2**32 - 1)], R.OVERSIZE, "radar-1"),
    (
        "samples 0 channels",
        [T, raw_block(1, np.empty((2, 0), np.float32))],
        R.BAD_CHANNELS,
        "radar-1",
    ),
    ("samples 3 channels", [T, raw_block(1, np.zeros((2, 3)))], R.BAD_CHANNELS, "radar-1"),
    ("samples 1 channel", [T, raw_block(1, np.zeros((2, 1)))], R.BAD_CHANNELS, "radar-1"),
    ("truth 3 channels", [T, raw_block(1), raw_block(6, np.zeros((3, 3)))], R.BAD_CHANNELS, "radar-1"),
    ("pred 2 channels", [b"pred/p", raw_block(2, np.zeros((4, 2)))], R.BAD_CHANNELS, "p"),
    ("payload short", [T, raw_block(1)[:-4]], R.SIZE_MISMATCH, "radar-1"),
    ("payload long", [T, raw_block(1, extra=b"\0")], R.SIZE_MISMATCH, "radar-1"),
    ("header only", [T, raw_block(1)[:48]], R.SIZE_MISMATCH, "radar-1"),
    ("channels lie", [T, raw_block(1, channels=4)], R.SIZE_MISMATCH, "radar-1"),
    ("seq overflow", [T, raw_block(1, seq=2**64 - 2)], R.BAD_HEADER, "radar-1"),
    ("time overflow", [T, raw_block(1, t0_ns=2**63 - 15, period_ns=10)], R.BAD_HEADER, "radar-1"),
    ("time huge period", [T, raw_block(1, t0_ns=-(2**63), period_ns=2**64 - 1)], R.BAD_HEADER, "radar-1"),
    ("next seq overflows", [T, raw_block(1, np.zeros((2, 2)), seq=2**64 - 2)], R.BAD_HEADER, "radar-1"),
    ("period above an hour", [T, raw_block(1, np.zeros((1, 2)), t0_ns=0, period_ns=3_600_000_000_001)],
     R.BAD_HEADER, "radar-1"),
    ("kind mismatch", [T, PRED_BLOCK], R.KIND_MISMATCH, "radar-1"),
    ("truth as frame 1", [T, raw_block(6, truth_data(3))], R.KIND_MISMATCH, "radar-1"),
    ("frame 2 not truth", [T, raw_block(1), raw_block(1)], R.KIND_MISMATCH, "radar-1"),
    ("event topic, pred block", [b"event/e", PRED_BLOCK, b'{"type":"x"}'], R.KIND_MISMATCH, "e"),
    ("samples empty", [T, raw_block(1, np.empty((0, 2), np.float32))], R.EMPTY, "radar-1"),
    ("truth empty", [T, raw_block(1), raw_block(6, truth_data(0))], R.EMPTY, "radar-1"),
    ("samples nan", [T, raw_block(1, NAN_SAMPLES)], R.NON_FINITE, "radar-1"),
    ("samples inf", [T, raw_block(1, INF_SAMPLES)], R.NON_FINITE, "radar-1"),
    ("truth seq", [T, raw_block(1), raw_block(6, truth_data(3), seq=101)], R.TRUTH_MISMATCH, "radar-1"),
    ("truth epoch", [T, raw_block(1), raw_block(6, truth_data(3), epoch=8)], R.TRUTH_MISMATCH, "radar-1"),
    ("truth count", [T, raw_block(1), raw_block(6, truth_data(2))], R.TRUTH_MISMATCH, "radar-1"),
    ("meta not json", [b"pred/p", PRED_BLOCK, b"not json"], R.BAD_META, "p"),
    ("meta empty", [b"pred/p", PRED_BLOCK, b""], R.BAD_META, "p"),
    ("meta array", [b"state/s", raw_block(4), b"[1, 2]"], R.BAD_META, "s"),
    ("meta not utf8", [b"state/s", raw_block(4), b'{"a": "\xff"}'], R.BAD_META, "s"),
    ("meta utf16", [b"state/s", raw_block(4), '{"a": 1}'.encode("utf-16")], R.BAD_META, "s"),
    ("meta NaN", [b"rescore/r", raw_block(3), b'{"a": NaN}'], R.BAD_META, "r"),
    ("meta 1e999", [b"rescore/r", raw_block(3), b'{"a": 1e999}'], R.BAD_META, "r"),
    ("meta deep", [b"rescore/r", raw_block(3), b"[" * 200_000], R.BAD_META, "r"),
    ("meta lone surrogate", [b"state/s", raw_block(4), b'{"a": "\\ud800"}'], R.BAD_META, "s"),
    ("event no meta", [b"event/e", EVENT_BLOCK], R.BAD_META, "e"),
    ("event no type", [b"event/e", EVENT_BLOCK, b'{"x": 1}'], R.BAD_META, "e"),
    ("event type int", [b"event/e", EVENT_BLOCK, b'{"type": 1}'], R.BAD_META, "e"),
]


@pytest.mark.parametrize(
    ("frames", "reason", "sensor"),
    [pytest.param(f, r, s, id=name) for name, f, r, s in ERROR_CASES],
)
def test_error_reasons(frames: list, reason: ErrorReason, sensor: str | None) -> None:
    out = decode_message(frames)
    assert_same_as_fast_decoder(frames, out)
    assert isinstance(out, DecodeError), out
    assert (out.reason, out.sensor) == (reason, sensor), out
    assert out.detail
    assert not out  # falsy, unlike a Message


def test_every_reason_is_covered() -> None:
    assert {r for _, _, r, _ in ERROR_CASES} == set(ErrorReason)
    assert all(isinstance(r.value, str) and r.value == r.name.lower() for r in ErrorReason)


def test_oversize_respects_max_samples() -> None:
    frames = samples_frames()
    assert isinstance(decode_message(frames, max_samples=3), Message)
    out = decode_message(frames, max_samples=2)
    assert isinstance(out, DecodeError) and out.reason is R.OVERSIZE
    out = decode_message(samples_frames(truth=True), max_samples=3, sample_channels=3)
    assert isinstance(out, DecodeError) and out.reason is R.BAD_CHANNELS
    frames3 = [T, raw_block(1, np.ones((2, 3)))]
    assert isinstance(decode_message(frames3, sample_channels=3), Message)


def test_accepted_variations() -> None:
    """Things receivers must tolerate: unknown flags, reserved bits, extra channels, NaN."""
    ok = [
        [T, raw_block(1, flags=0xFF, reserved=0xBEEF)],
        samples_frames(truth=True),
        [b"pred/p", raw_block(2, np.full((2, 5), np.nan))],
        [b"pred/p", raw_block(2, np.empty((0, 0), np.float32)), b"{}"],
        [b"state/s", raw_block(4, np.empty((0, 0), np.float32)), b'{"channels": []}'],
        [b"rescore/r", raw_block(3, np.full((1, 1), np.inf))],
        [b"event/e", EVENT_BLOCK, '{"type": "ü", "n": 1.5}'.encode()],
        [b"state/s", raw_block(4), b'{"emoji": "\\ud83d\\ude00", "s": "\\\\ud800"}'],
        [memoryview(T), memoryview(raw_block(1)), memoryview(raw_block(6, truth_data(3)))],
        # the documented limits, exactly: period one hour, the seq after the last sample 2**64 - 1
        [T, raw_block(1, t0_ns=-(2**63), period_ns=3_600_000_000_000, seq=2**64 - 4)],
    ]
    for frames in ok:
        out = decode_message(frames)
        assert isinstance(out, Message), (frames[0], out)
    assert decode_message(ok[0]).block.flags == 0xFF  # type: ignore[union-attr]
    assert decode_message(ok[6]).meta == {"type": "ü", "n": 1.5}  # type: ignore[union-attr]
    assert decode_message(ok[7]).meta == {"emoji": "😀", "s": "\\ud800"}  # type: ignore[union-attr]


def test_decode_block_options() -> None:
    def reason(buf: object, **kw: object) -> ErrorReason | None:
        out = decode_block(buf, **kw)  # type: ignore[arg-type]
        return out.reason if isinstance(out, DecodeError) else None

    nan = raw_block(6, truth_data(3))
    assert reason(nan) is R.NON_FINITE
    assert reason(nan, allow_non_finite=True) is None
    assert reason(nan, expected_channels=2, allow_non_finite=True) is R.BAD_CHANNELS
    assert reason(nan, expected_channels=4, allow_non_finite=True) is None
    assert reason(raw_block(1), max_samples=2) is R.OVERSIZE
    assert reason(b"\0" * 10) is R.TRUNCATED
    assert reason(object()) is R.BAD_FRAMES
    out = decode_block(raw_block(1))
    assert isinstance(out, Block)
    header = (out.kind, out.epoch, out.seq, out.t0_ns, out.period_ns)
    assert header == (Kind.SAMPLES, 7, 100, 1000, 10)


def test_decode_topic_errors() -> None:
    for bad in [b"", b"/", b"pred", b"pred/", b"pred/x y", b"truth/x", b"\xc3(/x", b"x" * 100]:
        out = decode_topic(bad)
        assert isinstance(out, DecodeError) and out.reason is R.BAD_TOPIC, bad
    assert decode_topic(3.5).reason is R.BAD_FRAMES  # type: ignore[union-attr]


# --------------------------------------------------------------------------- #
# Fuzzing: decoders never raise
# --------------------------------------------------------------------------- #


def assert_same_as_fast_decoder(frames: list, out) -> None:
    """The service's cached fast-path Decoder gives the same answer as decode_message."""
    dec = p.Decoder()
    for _ in range(2):  # second pass hits the topic cache
        fast = dec.decode(frames)
        assert type(fast) is type(out)
        if isinstance(out, DecodeError):
            assert (fast.reason, fast.sensor) == (out.reason, out.sensor)
        else:
            assert fast == out
    no_truth = p.Decoder(with_truth=False).decode(frames)
    if isinstance(out, Message):
        assert isinstance(no_truth, Message) and no_truth.block == out.block and no_truth.truth is None


def check_decodes_cleanly(frames: list) -> None:
    """decode_message returns a value; a Message must also survive re-encoding."""
    out = decode_message(frames)
    assert isinstance(out, (Message, DecodeError))
    assert_same_as_fast_decoder(frames, out)
    if isinstance(out, Message):
        for blk in (out.block, out.truth):
            if blk is not None and blk.count:  # header invariants the decoder guarantees
                assert int(blk.seqs[-1]) == blk.seq + blk.count - 1
                assert int(blk.times_ns[-1]) == blk.t0_ns + (blk.count - 1) * blk.period_ns
        again = decode_message(encode_message(out))
        assert isinstance(again, Message) and again == out
    else:
        assert isinstance(out.reason, ErrorReason) and isinstance(out.detail, str)


@FUZZ
@given(st.lists(st.binary(max_size=200), max_size=5))
def test_fuzz_random_frames(frames: list[bytes]) -> None:
    check_decodes_cleanly(frames)


@FUZZ
@given(
    st.sampled_from([b"samples/", b"pred/", b"rescore/", b"state/", b"event/"]),
    st.binary(max_size=120),
    st.binary(max_size=64),
)
def test_fuzz_random_block_after_valid_topic(prefix: bytes, body: bytes, third: bytes) -> None:
    check_decodes_cleanly([prefix + b"s", MAGIC + struct.pack("<H", VERSION) + body])
    check_decodes_cleanly([prefix + b"s", MAGIC + struct.pack("<H", VERSION) + body, third])


# Integers biased towards the edges where u64/i64 arithmetic overflows.
U64 = st.sampled_from([0, 1, 2**63 - 1, 2**63, 2**64 - 3, 2**64 - 1]) | st.integers(0, 2**64 - 1)


@FUZZ
@given(
    U64,
    U64,
    st.sampled_from([-(2**63), -1, 0, 2**62, 2**63 - 3, 2**63 - 1]) | st.integers(-(2**63), 2**63 - 1),
    U64 | st.integers(0, 10**9),
    st.integers(0, 4),
    st.integers(0, 255),
    st.integers(0, 2**16 - 1),
)
def test_fuzz_header_values(
    epoch: int, seq: int, t0_ns: int, period_ns: int, count: int, flags: int, reserved: int
) -> None:
    """Any header value, with a consistent payload, decodes or is rejected cleanly."""
    values = np.ones((count, 2), np.float32)
    block = raw_block(
        1, values, epoch=epoch, seq=seq, t0_ns=t0_ns, period_ns=period_ns, flags=flags, reserved=reserved
    )
    check_decodes_cleanly([T, block])


# (offset, size) of every header field after the magic, for targeted mutations.
HEADER_FIELDS = [(4, 2), (6, 1), (7, 1), (8, 8), (16, 8), (24, 8), (32, 8), (40, 4), (44, 2), (46, 2)]
MUTATIONS = ["byte", "byte", "field", "field", "truncate", "extend", "drop", "dup", "swap", "topic"]


@settings(FUZZ, max_examples=200)
@given(messages(), st.data())
def test_fuzz_mutated_valid_messages(msg: Message, data: st.DataObject) -> None:
    frames = [bytearray(f) for f in encode_message(msg)]
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(MUTATIONS))
        # Mostly mutate the block/meta frames: a mangled topic is rejected early.
        i = data.draw(st.integers(min(1, len(frames) - 1), len(frames) - 1)) if frames else 0
        if op == "topic" and frames and frames[0]:
            frames[0][data.draw(st.integers(0, len(frames[0]) - 1))] = data.draw(st.integers(0, 255))
        elif op == "byte" and frames and frames[i]:
            frames[i][data.draw(st.integers(0, len(frames[i]) - 1))] = data.draw(st.integers(0, 255))
        elif op == "field" and frames and len(frames[i]) >= HEADER_SIZE:
            off, size = data.draw(st.sampled_from(HEADER_FIELDS))
            value = data.draw(st.integers(0, 4) | st.integers(0, 2 ** (8 * size) - 1))
            frames[i][off : off + size] = value.to_bytes(size, "little")
        elif op == "truncate" and frames:
            frames[i] = frames[i][: data.draw(st.integers(0, len(frames[i])))]
        elif op == "extend" and frames:
            frames[i] += data.draw(st.binary(min_size=1, max_size=8))
        elif op == "drop" and frames:
            del frames[i]
        elif op == "dup" and frames:
            frames.insert(i, bytearray(frames[i]))
        elif op == "swap" and len(frames) > 1:
            frames[0], frames[-1] = frames[-1], frames[0]
    check_decodes_cleanly([bytes(f) for f in frames])


# --------------------------------------------------------------------------- #
# Sequence continuity
# --------------------------------------------------------------------------- #


def test_continuity() -> None:
    def blk(epoch: int, seq: int, n: int = 3) -> Block:
        return make_block(Kind.SAMPLES, np.zeros((n, 2)), epoch=epoch, seq=seq, t0_ns=0, period_ns=1)

    assert continuity(None, blk(1, 5)) == (Continuity.FIRST, 0)
    assert continuity((1, 8), blk(1, 8)) == (Continuity.CONTIGUOUS, 0)
    assert continuity((1, 8), blk(1, 11)) == (Continuity.GAP, 3)
    assert continuity((1, 8), blk(1, 7)) == (Continuity.RESTART, 0)
    assert continuity((1, 8), blk(2, 8)) == (Continuity.RESTART, 0)


# --------------------------------------------------------------------------- #
# Real ZeroMQ PUB/SUB
# --------------------------------------------------------------------------- #


WARMUP_SENSORS = ("warmup", "sensor-1-warmup")


def _recv_until(sock: zmq.Socket, end_sensor: str, deadline: float) -> list[Message]:
    """Decode messages until the 'end' samples sentinel; warm-up messages are skipped."""
    got: list[Message] = []
    while time.monotonic() < deadline:
        if not sock.poll(100):
            continue
        msg = decode_message(sock.recv_multipart(copy=False))
        assert isinstance(msg, Message), msg
        if msg.sensor in WARMUP_SENSORS:
            continue
        if msg.sensor == end_sensor:
            return got
        got.append(msg)
    raise AssertionError(f"timed out, received {[(m.kind, m.sensor) for m in got]}")


def test_zmq_pub_sub_prefix_filtering() -> None:
    ctx = zmq.Context()
    socks: list[zmq.Socket] = []
    try:
        pub = ctx.socket(zmq.PUB)
        socks.append(pub)
        port = pub.bind_to_random_port("tcp://127.0.0.1")
        subs = {}
        for name, prefix in [
            ("all", b""),
            ("samples", topic_prefix(Kind.SAMPLES)),
            ("pred1", topic(Kind.PRED, "sensor-1")),
        ]:
            sub = ctx.socket(zmq.SUB)
            socks.append(sub)
            sub.setsockopt(zmq.MAXMSGSIZE, p.max_block_size())
            sub.setsockopt(zmq.SUBSCRIBE, prefix)
            sub.connect(f"tcp://127.0.0.1:{port}")
            subs[name] = sub
        for s in socks:
            s.setsockopt(zmq.LINGER, 0)

        def samples(sensor: str, seq: int) -> list[bytes]:
            blk = make_block(Kind.SAMPLES, [[1.0, 2.0]], epoch=1, seq=seq, t0_ns=0, period_ns=1)
            return encode_message(Message(Kind.SAMPLES, sensor, blk))

        def pred(sensor: str) -> list[bytes]:
            blk = make_block(Kind.PRED, [[0.5, 10.0, 3.0]], epoch=1, seq=0, t0_ns=0, period_ns=1)
            return encode_message(Message(Kind.PRED, sensor, blk, meta={"model": "t"}))

        # Slow joiner: publish warm-ups until every subscriber (including the
        # pred-only one) has seen one, so the real messages cannot be lost.
        deadline = time.monotonic() + 10
        ready: set[str] = set()
        while ready != set(subs) and time.monotonic() < deadline:
            pub.send_multipart(samples("warmup", 0))
            pub.send_multipart(pred("sensor-1-warmup"))
            for name, sub in subs.items():
                while sub.poll(20):
                    sub.recv_multipart()
                    ready.add(name)
        assert ready == set(subs), "subscriptions never became active"

        sent = [
            samples("radar-1", 0),
            pred("sensor-1"),
            pred("sensor-10"),
            encode_message(make_event("radar-1", "start", epoch=1, seq=0, t_ns=0)),
            samples("radar-2", 5),
            pred("sensor-2"),
        ]
        for frames in sent:
            pub.send_multipart(frames)
        # Sentinels: one samples and one pred/sensor-1x message each subscriber sees.
        pub.send_multipart(samples("end", 0))
        pub.send_multipart(pred("sensor-1end"))

        deadline = time.monotonic() + 5
        got_all = _recv_until(subs["all"], "end", deadline)
        got_samples = _recv_until(subs["samples"], "end", deadline)
        got_pred1 = _recv_until(subs["pred1"], "sensor-1end", deadline)

        assert [(m.kind, m.sensor) for m in got_all] == [
            (Kind.SAMPLES, "radar-1"),
            (Kind.PRED, "sensor-1"),
            (Kind.PRED, "sensor-10"),
            (Kind.EVENT, "radar-1"),
            (Kind.SAMPLES, "radar-2"),
            (Kind.PRED, "sensor-2"),
        ]
        assert [(m.kind, m.sensor) for m in got_samples] == [
            (Kind.SAMPLES, "radar-1"),
            (Kind.SAMPLES, "radar-2"),
        ]
        assert got_samples[1].block.seq == 5
        # Prefix filtering is not exact: "pred/sensor-1" also delivers sensor-10.
        assert [m.sensor for m in got_pred1] == ["sensor-1", "sensor-10"]
        assert got_pred1[0].meta == {"model": "t"}
        assert got_all[3].meta == {"type": "start"}
    finally:
        for s in socks:
            s.close(linger=0)
        ctx.term()
