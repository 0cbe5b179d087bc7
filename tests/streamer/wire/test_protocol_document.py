"""docs/protocol.md against the code (issue 16, "protocol document"): each statement a publisher
or a subscriber relies on, checked over the real decoder or a real service on 127.0.0.1 sockets.

1. which reason each defect of frame 2 of a ``samples`` message gets (§9);
2. the duplicate window of ``serve`` (§8);
3. a ``gap`` event's ``to_seq`` is inclusive: received samples and gaps tile the stream (§8);
4. the epoch / seq / t0_ns in the header of an event message (§6 ``event``);
5. what a publisher puts in a ``reset`` request, and that ``serve`` acts on it (§6 ``event``);
6. the ``malformed`` event's JSON keys (§6 ``event``);
7. −0.0 as a distance is a detection at 0 m, in the live, offline and training paths (§6);
8. streamed predictions equal one pass over the whole stream to float32 rounding (§6 ``pred``);
9. an XPUB publisher sees ``serve``'s subscriptions and loses nothing to the slow joiner (§2).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zmq

from streamer.wire import protocol as P
from tests.faults import coverage_is_exact, free_port, probe_until_live, serve_process, serving

DOC = Path(__file__).resolve().parents[3] / "docs" / "protocol.md"
PERIOD = 50_000_000  # 20 Hz, the profile's nominal rate
T = b"samples/radar-1"


def _samples_block(n: int = 3, *, epoch: int = 7, seq: int = 100) -> bytes:
    x = np.ones((n, 2), np.float32)
    return P.encode_block(P.make_block(P.Kind.SAMPLES, x, epoch=epoch, seq=seq, t0_ns=1000, period_ns=10))


def _block(kind: P.Kind, data, *, epoch: int = 7, seq: int = 100) -> bytes:
    return P.encode_block(P.make_block(kind, data, epoch=epoch, seq=seq, t0_ns=1000, period_ns=10))


def wave(seq0: int, n: int, k: int = 0) -> np.ndarray:
    """A smooth, detection-rich test signal for samples ``seq0 .. seq0+n-1``."""
    s = np.arange(seq0, seq0 + n, dtype=np.float64)
    return np.stack([2.0 + np.sin(s * 0.05 + k), 400.0 + 300.0 * np.cos(s * 0.01 + k)], 1).astype(np.float32)


def send(feed: zmq.Socket, sensor: str, seq: int, x: np.ndarray, *, epoch: int = 1) -> None:
    blk = P.make_block(P.Kind.SAMPLES, x, epoch=epoch, seq=seq, t0_ns=1_000_000_000 + seq * PERIOD, period_ns=PERIOD)
    feed.send_multipart(P.encode_message(P.Message(P.Kind.SAMPLES, sensor, blk)))


@pytest.fixture(scope="module")
def svc(tiny_weights):
    """One service for the whole module (each test uses its own sensors), its feed live."""
    with serving(tiny_weights) as (service, feed, col):
        probe_until_live(feed, col)
        yield service, feed, col


def _events(col, sensor: str, type_: str | None = None) -> list[P.Message]:
    return [m for _, m in col.events(type_, sensor)]


# ------------------------------------------------------------------ 1. frame 2 of a samples message

FRAME2_CASES = [
    # (name, frame 2, reason) — the table of docs/protocol.md §9 ("Frame 2 of a samples message")
    ("JSON object", b'{"model":"x"}', P.ErrorReason.KIND_MISMATCH),
    ("long JSON", json.dumps({"model": "abc", "channels": ["a", "b", "c", "d"], "n": 12345678}).encode(),
     P.ErrorReason.KIND_MISMATCH),
    ("empty frame", b"", P.ErrorReason.KIND_MISMATCH),
    ("3 bytes", b"RST", P.ErrorReason.KIND_MISMATCH),
    ("random bytes", bytes(range(60)), P.ErrorReason.KIND_MISMATCH),
    ("samples block", _samples_block(), P.ErrorReason.KIND_MISMATCH),
    ("pred block", _block(P.Kind.PRED, np.zeros((3, 3))), P.ErrorReason.KIND_MISMATCH),
    ("event block", P.encode_block(P.make_event("radar-1", "x", epoch=7, seq=100, t_ns=0).block),
     P.ErrorReason.KIND_MISMATCH),
    ("magic, then 44 bytes", P.MAGIC + bytes(40), P.ErrorReason.TRUNCATED),
    ("truth, version 2", b"RSTM\x02\x00" + _block(P.Kind.TRUTH, np.zeros((3, 4)))[6:], P.ErrorReason.UNKNOWN_VERSION),
    ("kind code 9", b"RSTM\x01\x00\x09" + _block(P.Kind.TRUTH, np.zeros((3, 4)))[7:], P.ErrorReason.UNKNOWN_KIND),
    ("truth, count 65537", P.HEADER.pack(P.MAGIC, 1, 6, 0, 7, 100, 1000, 10, 65537, 4, 0), P.ErrorReason.OVERSIZE),
    ("3 rows, 0 channels", P.HEADER.pack(P.MAGIC, 1, 6, 0, 7, 100, 1000, 10, 3, 0, 0), P.ErrorReason.BAD_CHANNELS),
    ("truth, period above an hour", P.encode_block(P.make_block(P.Kind.TRUTH, np.zeros((3, 4)), epoch=7, seq=100,
                                                                t0_ns=0, period_ns=3_600_000_000_001)),
     P.ErrorReason.BAD_HEADER),
    ("truth, payload short", _block(P.Kind.TRUTH, np.zeros((3, 4)))[:-4], P.ErrorReason.SIZE_MISMATCH),
    ("pred block, payload short", _block(P.Kind.PRED, np.zeros((3, 3)))[:-4], P.ErrorReason.SIZE_MISMATCH),
    ("truth, 3 channels", _block(P.Kind.TRUTH, np.zeros((3, 3))), P.ErrorReason.BAD_CHANNELS),
    ("truth, 0 rows", _block(P.Kind.TRUTH, np.zeros((0, 4))), P.ErrorReason.EMPTY),
    ("truth, 2 rows of 3", _block(P.Kind.TRUTH, np.zeros((2, 4))), P.ErrorReason.TRUTH_MISMATCH),
    ("truth, other seq", _block(P.Kind.TRUTH, np.zeros((3, 4)), seq=101), P.ErrorReason.TRUTH_MISMATCH),
    ("truth, other epoch", _block(P.Kind.TRUTH, np.zeros((3, 4)), epoch=8), P.ErrorReason.TRUTH_MISMATCH),
]


@pytest.mark.parametrize(("frame2", "reason"), [pytest.param(f, r, id=n) for n, f, r in FRAME2_CASES])
def test_frame2_of_samples_gets_the_documented_reason(frame2: bytes, reason: P.ErrorReason) -> None:
    frames = [T, _samples_block(), frame2]
    for out in (P.decode_message(frames), P.Decoder().decode(frames)):
        assert isinstance(out, P.DecodeError), out
        assert (out.reason, out.sensor) == (reason, "radar-1"), out
    # a truth block that matches is accepted, and NaN is allowed in it
    ok = P.decode_message([T, _samples_block(), _block(P.Kind.TRUTH, np.full((3, 4), np.nan))])
    assert isinstance(ok, P.Message) and ok.truth is not None


def test_frame2_table_in_the_document_lists_every_case() -> None:
    doc = DOC.read_text()
    section = doc.split("**Frame 2 of a `samples` message.**", 1)[1].split("\n\n", 2)[1]
    rows = {line.split("|")[2].strip().strip("`") for line in section.splitlines()[2:] if line.startswith("|")}
    assert rows == {r.value for _, _, r in FRAME2_CASES}


def test_serve_reports_json_frame2_as_kind_mismatch(svc) -> None:
    """What a publisher sees on event/<sensor> when it attaches JSON metadata to its samples."""
    service, feed, col = svc
    send(feed, "f2", 0, wave(0, 1))
    assert col.wait(lambda: 0 in col.preds("f2"))
    blk = P.encode_block(P.make_block(P.Kind.SAMPLES, wave(1, 1), epoch=1, seq=1, t0_ns=1_000_000_000 + PERIOD,
                                      period_ns=PERIOD))
    feed.send_multipart([b"samples/f2", blk, b'{"model":"x"}'])
    assert col.wait(lambda: bool(_events(col, "f2", "malformed")))
    assert _events(col, "f2", "malformed")[0].meta["reason"] == "kind_mismatch"  # before the fix: "truncated"
    assert 1 not in col.preds("f2")  # the whole message is dropped


# ------------------------------------------------------------------ 2. the duplicate window


def test_duplicate_window_is_4096_samples(svc) -> None:
    service, feed, col = svc
    assert service.config.policy.duplicate_window == 4096  # the figure in §8
    send(feed, "dw", 0, wave(0, 5000))  # next expected seq: 5000
    assert col.wait(lambda: 4999 in col.preds("dw"))
    send(feed, "dw", 5000 - 4096, wave(5000 - 4096, 1))  # 4096 behind: a duplicate, dropped
    send(feed, "dw", 4990, wave(4990, 20))  # overlaps: the 10 known samples dropped, 5000..5009 kept
    assert col.wait(lambda: 5009 in col.preds("dw"))
    send(feed, "dw", 5010 - 4097, wave(5010 - 4097, 1))  # 4097 behind: the sensor restarted
    assert col.wait(lambda: bool(_events(col, "dw", "backwards")))
    dup = [(m.block.seq, m.meta["count"], m.meta["action"]) for m in _events(col, "dw", "duplicate")]
    assert dup == [(904, 1, "drop"), (4990, 10, "drop_overlap")]
    back = _events(col, "dw", "backwards")
    assert [(m.block.seq, m.meta["expected"], m.meta["action"]) for m in back] == [(913, 5010, "reset")]
    assert col.wait(lambda: 913 in col.preds("dw"))  # a restart keeps the message


# ------------------------------------------------------------------ 3. gap to_seq is inclusive


def test_gap_to_seq_is_inclusive_and_gaps_tile_the_stream(svc) -> None:
    service, feed, col = svc
    sent = [(0, 10), (15, 5), (21, 4), (40, 10)]  # missing: 10..14, 20, 25..39
    for seq, n in sent:
        send(feed, "gp", seq, wave(seq, n))
    assert col.wait(lambda: 49 in col.preds("gp"))
    gaps = _events(col, "gp", "gap")
    got = [(m.meta["from_seq"], m.meta["to_seq"], m.meta["count"]) for m in gaps]
    assert got == [(10, 14, 5), (20, 20, 1), (25, 39, 15)]
    assert all(b - a + 1 == c for a, b, c in got)  # count = to_seq - from_seq + 1
    assert coverage_is_exact(set(col.preds("gp")), [(a, b) for a, b, _ in got], 0, 49)


# ------------------------------------------------------------------ 4. the header of event messages


def test_event_headers_carry_the_documented_epoch_seq_and_time(svc) -> None:
    service, feed, col = svc
    before = time.time_ns()
    send(feed, "eh", 100, wave(100, 5), epoch=11)  # new_sensor at 100
    send(feed, "eh", 108, wave(108, 2), epoch=11)  # gap 105..107
    send(feed, "eh", 100, wave(100, 2), epoch=11)  # duplicate of 100..101
    assert col.wait(lambda: len(_events(col, "eh", "duplicate")) == 1)
    send(feed, "eh", 0, wave(0, 3), epoch=12)  # epoch_change at 0
    assert col.wait(lambda: 2 in col.preds("eh"))
    feed.send_multipart([b"samples/eh", b"garbage"])  # malformed: seq 0
    feed.send_multipart([b"samples/eh-unknown", b"garbage"])  # malformed, sensor never admitted
    assert col.wait(lambda: bool(_events(col, "eh-unknown", "malformed")))
    got = _events(col, "eh") + _events(col, "eh-unknown")
    stats = [m for _, m in col.events("stats", P.SERVICE_SENSOR)]
    after = time.time_ns()  # every event of `got` had arrived by now
    head = {m.meta["type"]: (m.block.epoch, m.block.seq) for m in got if m.sensor == "eh"}
    assert head["new_sensor"] == (11, 100)  # the first sample
    assert head["gap"] == (11, 105)  # the first missing sample (= from_seq)
    assert head["duplicate"] == (11, 100)  # the dropped block's own seq
    assert head["epoch_change"] == (12, 0)  # the new epoch, its first sample
    assert head["malformed"] == (12, 0)  # the sensor's current epoch, seq 0
    service_epoch = service._epoch
    assert [(m.block.epoch, m.block.seq) for m in _events(col, "eh-unknown", "malformed")] == [(service_epoch, 0)]
    assert stats and {(m.block.epoch, m.block.seq) for m in stats} == {(service_epoch, 0)}
    for m in got:  # t0_ns: the service's clock at publication
        assert before <= m.block.t0_ns <= after and m.block.period_ns == 0 and m.block.count == 0


# ------------------------------------------------------------------ 5. a reset request


def test_reset_request_header_is_ignored_and_the_reset_applies_at_the_next_sample(svc, offline) -> None:
    service, feed, col = svc
    x = wave(0, 60)
    send(feed, "rs", 0, x[:30], epoch=5)
    assert col.wait(lambda: 29 in col.preds("rs"))
    # the minimal request of §6: an event block (count 0, channels 0) whose epoch, seq and times
    # mean nothing here (a different epoch, a seq far away), and {"type": "reset"}
    req = P.make_event("rs", "reset", epoch=0, seq=123456, t_ns=0)
    feed.send_multipart(P.encode_message(req))
    assert col.wait(lambda: bool(_events(col, "rs", "reset")))
    send(feed, "rs", 30, x[30:], epoch=5)
    assert col.wait(lambda: 59 in col.preds("rs"))
    ev = _events(col, "rs", "reset")
    assert [(m.block.epoch, m.block.seq, m.meta) for m in ev] == [(5, 30, {"type": "reset", "reason": "explicit"})]
    assert not _events(col, "rs", "epoch_change") and not _events(col, "rs", "backwards")
    y = np.array([col.preds("rs")[k][1][0] for k in range(30, 60)])
    assert np.abs(y - offline(x[30:])).max() < 1e-5  # from zero state at seq 30
    assert np.abs(y - offline(x)[30:]).max() > 1e-3  # (not the carried state's output)


# ------------------------------------------------------------------ 6. the malformed event's keys


def test_malformed_event_keys(svc) -> None:
    service, feed, col = svc
    feed.send_multipart([b"samples/mk", b"RSTM" + bytes(60)])
    feed.send_multipart([b"samples/m k", b"x"])  # no valid sensor in the topic: on event/_service
    assert col.wait(lambda: bool(_events(col, "mk", "malformed")))
    assert col.wait(lambda: any(m.meta["reason"] == "bad_topic" for m in _events(col, P.SERVICE_SENSOR, "malformed")))
    (m,) = _events(col, "mk", "malformed")
    assert set(m.meta) == {"type", "reason", "detail"}
    assert m.meta["reason"] == "unknown_version" and isinstance(m.meta["detail"], str) and 0 < len(m.meta["detail"]) <= 200
    (s,) = [m for m in _events(col, P.SERVICE_SENSOR, "malformed") if m.meta["reason"] == "bad_topic"]
    assert set(s.meta) == {"type", "reason", "detail"}
    assert {r.value for r in P.ErrorReason} >= {m.meta["reason"], s.meta["reason"]}


# ------------------------------------------------------------------ 7. -0.0 as a distance


def test_negative_zero_distance_is_a_detection_at_zero_metres_everywhere(svc, tiny_weights) -> None:
    """−0.0 == 0.0 (IEEE 754): the model's normaliser (ONNX and torch: live, offline scoring,
    training), the fused backend, the classical fit, the domain check and the CSV writer all
    take it as a detection at 0 m; −1.0 is no detection."""
    from models.bundle import load_model
    from models.classical import _detection_mask
    from streamer.live.backends.fused_backend import NumpyFusedBackend
    from streamer.recording.csv_schema import Column

    x = wave(0, 80)
    x[20:40:3, 1] = 0.0
    neg = x.copy()
    neg[20:40:3, 1] = -0.0
    none = x.copy()
    none[20:40:3, 1] = -1.0
    assert np.signbit(neg[20, 1]) and not np.signbit(x[20, 1])
    # live: serve (ONNX backend, classical fit, domain check)
    service, feed, col = svc
    for name, data in (("nz-pos", x), ("nz-neg", neg), ("nz-none", none)):
        send(feed, name, 0, data)
    assert col.wait(lambda: all(79 in col.preds(s) for s in ("nz-pos", "nz-neg", "nz-none")))
    rows = {s: np.array([col.preds(s)[k][1] for k in range(80)]) for s in ("nz-pos", "nz-neg", "nz-none")}
    assert np.array_equal(rows["nz-neg"][:, [0, 3, 4]], rows["nz-pos"][:, [0, 3, 4]], equal_nan=True)
    assert np.abs(rows["nz-none"][:, 0] - rows["nz-pos"][:, 0]).max() > 1e-4
    # offline scoring and training: the torch model's own normaliser
    model, _ = load_model("causal", tiny_weights)
    with torch.no_grad():
        f = {k: model.normalizer(torch.from_numpy(v)).numpy() for k, v in (("pos", x), ("neg", neg), ("none", none))}
    assert np.array_equal(f["neg"], f["pos"]) and f["neg"][20, 2] == 1.0 and f["none"][20, 2] == 0.0
    fused = NumpyFusedBackend(model)
    assert np.array_equal(fused.features(neg), fused.features(x)) and fused.features(none)[20, 2] == 0.0
    t = np.arange(80, dtype=np.float64) * 0.05
    assert _detection_mask(t, neg[:, 1].astype(np.float64))[20] and not _detection_mask(t, none[:, 1].astype(np.float64))[20]
    col_d = Column("distance_m", "float32", "", negative_is_missing=True)
    assert not col_d.missing(neg[:, 1])[20] and col_d.missing(none[:, 1])[20]


# ------------------------------------------------------------------ 8. streamed == one pass, to float32 rounding


def test_streamed_output_equals_one_pass_to_float32_rounding(svc, offline, figures) -> None:
    service, feed, col = svc
    x = wave(0, 400, k=3)
    sizes = [1, 7, 64, 3, 1, 1, 100, 23, 200]
    assert sum(sizes) == 400
    seq = 0
    for n in sizes:
        send(feed, "op-split", seq, x[seq : seq + n])
        seq += n
    send(feed, "op-whole", 0, x)
    assert col.wait(lambda: 399 in col.preds("op-split") and 399 in col.preds("op-whole"))
    ref = offline(x)  # one pass of the torch model over the whole stream, from zero state
    y = {s: np.array([col.preds(s)[k][1][0] for k in range(400)]) for s in ("op-split", "op-whole")}
    diffs = {f"{s}_vs_one_pass": float(np.abs(y[s] - ref).max()) for s in y}
    diffs["split_vs_whole"] = float(np.abs(y["op-split"] - y["op-whole"]).max())
    assert max(diffs.values()) < 1e-5, diffs  # §6: equal to float32 rounding (~1e-6), not bit for bit
    figures["protocol_one_pass_max_abs_diff"] = diffs


# ------------------------------------------------------------------ 9. slow joiner: an XPUB publisher


def test_xpub_publisher_waits_for_serve_and_its_first_sample_is_predicted(tiny_weights, tmp_path) -> None:
    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.XPUB_VERBOSE, 1)
    pub.setsockopt(zmq.LINGER, 0)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pub.bind(endpoint)
    try:
        with serve_process(tiny_weights, (endpoint,), "--stats-interval", "0.25", log_path=tmp_path / "serve.log") as (_, col):
            subs = set()
            deadline = time.monotonic() + 30
            while b"samples/" not in subs and time.monotonic() < deadline:  # §2's example
                if pub.poll(100):
                    msg = pub.recv()
                    if msg[:1] == b"\x01":
                        subs.add(msg[1:])
            while pub.poll(200):  # anything else it subscribes to arrives with it
                subs.add(pub.recv()[1:])
            assert subs == {b"samples/", b"event/"}  # exactly what §2 lists
            send(pub, "xp", 0, wave(0, 1))  # one message, sent once
            assert col.wait(lambda: 0 in col.preds("xp"), 20), (tmp_path / "serve.log").read_text()
    finally:
        pub.close(0)
        ctx.term()
