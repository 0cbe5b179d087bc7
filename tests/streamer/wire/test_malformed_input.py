"""Malformed frames and random input: counted exactly, never a crash (campaign cases 1-2)."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.sim.publisher import FeedConfig, SimulatedFeed
from streamer.wire import protocol as P
from tests.faults import FULL, probe_until_live, serving

# ------------------------------------------------------------------ 1. malformed frames


def _malformed(reason: str, frames: list[bytes], rng: np.random.Generator, max_samples: int) -> list[bytes]:
    topic, block = frames[0], frames[1]
    hdr = list(P.HEADER.unpack_from(block, 0))
    if reason == "truncated":
        return [topic, block[: int(rng.integers(0, P.HEADER_SIZE))]]
    if reason == "bad_magic":
        return [topic, b"XXXX" + block[4:]]
    if reason == "unknown_version":
        hdr[1] = int(rng.integers(2, 65536))
        return [topic, P.HEADER.pack(*hdr) + block[P.HEADER_SIZE:]]
    if reason == "size_mismatch":
        return [topic, block[:-4] if rng.random() < 0.5 else block + b"\0\0\0\0"]
    if reason == "non_finite":
        data = np.frombuffer(block, "<f4", offset=P.HEADER_SIZE).copy()
        data[int(rng.integers(0, data.size))] = rng.choice([np.nan, np.inf, -np.inf])
        return [topic, block[: P.HEADER_SIZE] + data.tobytes()]
    if reason == "bad_channels":
        hdr[9] = 3
        n = hdr[8]
        return [topic, P.HEADER.pack(*hdr) + np.ones(n * 3, "<f4").tobytes()]
    if reason == "oversize":
        hdr[8] = max_samples + 1 + int(rng.integers(0, 1000))
        return [topic, P.HEADER.pack(*hdr) + block[P.HEADER_SIZE:]]
    raise AssertionError(reason)


MALFORMED_REASONS = ("truncated", "bad_magic", "unknown_version", "size_mismatch", "non_finite", "bad_channels", "oversize")


@pytest.mark.parametrize("valid,bad", [(100_000, 10_000)] if FULL else [(10_000, 1_000)])
def test_malformed_frames_are_counted_exactly_and_valid_predictions_are_unchanged(tiny_weights, offline, figures, valid, bad):
    sensors, per_message = 10, 4
    feed_gen = SimulatedFeed(FeedConfig(sensors=sensors, samples_per_message=per_message, seed=11, realtime=False, truth=False))
    rng = np.random.default_rng(3)
    rounds = valid // sensors
    # positions of the malformed frames, after every sensor's first valid message (so each can be
    # attributed to a known sensor)
    bad_at = set((2 * sensors + rng.choice(valid + bad - 2 * sensors, bad, replace=False)).tolist())
    injected: dict[str, int] = {r: 0 for r in MALFORMED_REASONS}
    sent: dict[str, list[np.ndarray]] = {s: [] for s in feed_gen.sensor_ids}
    with serving(tiny_weights, max_samples_per_message=1024, rcvhwm=0) as (service, feed, col):
        probe_until_live(feed, col)
        pos = 0
        t0 = time.perf_counter()
        for _ in range(rounds):
            for frames in feed_gen.next_messages():
                while pos in bad_at:  # malformed frames land between valid ones, on valid sensors
                    reason = MALFORMED_REASONS[int(rng.integers(0, len(MALFORMED_REASONS)))]
                    injected[reason] += 1
                    feed.send_multipart(_malformed(reason, frames, rng, 1024))
                    pos += 1
                feed.send_multipart(frames)
                sent[P.decode_topic(frames[0])[1]].append(P.decode_block(frames[1]).data)
                pos += 1
        while pos in bad_at:
            reason = MALFORMED_REASONS[int(rng.integers(0, len(MALFORMED_REASONS)))]
            injected[reason] += 1
            feed.send_multipart(_malformed(reason, frames, rng, 1024))
            pos += 1
        total = rounds * per_message
        assert col.wait(lambda: all(len(col.preds(s)) >= total for s in feed_gen.sensor_ids), 120)
        took = time.perf_counter() - t0
        assert col.wait(lambda: sum(service.stats.decode_errors.values()) >= bad, 10)
        time.sleep(1.3)  # one summary interval: suppressed-event counts are published
        stats = service.snapshot()
        thread_alive = service.ready.is_set()
    assert thread_alive
    assert sum(injected.values()) == bad
    assert stats["decode_errors"] == {r: n for r, n in injected.items() if n}  # counted exactly, by reason
    per_sensor = {}
    for s in feed_gen.sensor_ids:
        got = col.preds(s)
        assert sorted(got) == list(range(total))  # every valid sample once, nothing else
        y = np.array([got[k][1][0] for k in range(total)])
        assert np.abs(y - offline(np.concatenate(sent[s]))).max() < 1e-5  # the clean run's output
        per_sensor[s] = sum(v for k, v in stats["sensor_counters"].get(s, {}).items() if k.startswith("malformed_"))
    assert sum(per_sensor.values()) == bad  # attributed to the sensor whose topic they carried
    published = len(col.events("malformed"))
    suppressed = sum(m.meta["by_type"].get("malformed", 0) for _, m in col.events("events_suppressed"))
    assert published + suppressed == bad  # every malformed frame is either an event or in a summary
    assert not col.events("gap") and not col.events("reset")
    figures["1_malformed"] = {"valid_frames": valid, "malformed_frames": bad, "by_reason": injected,
                              "counted": stats["decode_errors"], "crashes": 0, "events_published": published,
                              "events_suppressed": suppressed, "seconds": round(took, 2),
                              "max_abs_diff_vs_offline": "< 1e-5"}


# ------------------------------------------------------------------ 2. fuzzing


def test_decoder_memory_stays_bounded_over_random_messages(figures):
    """tracemalloc over 8,000 random and mutated messages: what the decoders keep is bounded by
    the topic cache, whatever the input."""
    rng = np.random.default_rng(5)
    dec = P.Decoder(max_topics=512)
    valid = P.encode_message(P.Message(P.Kind.SAMPLES, "s", P.make_block(
        P.Kind.SAMPLES, np.ones((8, 2), np.float32), epoch=1, seq=0, t0_ns=0, period_ns=1)))
    words = [b"samples/", b"event/", b"pred/", b"bogus/", b""]

    def message(i: int) -> list[bytes]:
        kind = i % 4
        topic = words[i % 5] + f"x{rng.integers(0, 10_000)}".encode()
        if kind == 0:
            return [rng.bytes(int(rng.integers(0, 100))) for _ in range(int(rng.integers(0, 5)))]
        block = bytearray(valid[1])
        for _ in range(int(rng.integers(1, 6))):  # flip bytes of a valid block (header included)
            block[int(rng.integers(0, len(block)))] = int(rng.integers(0, 256))
        frames = [topic, bytes(block)]
        if kind == 2:
            frames.append(rng.bytes(int(rng.integers(0, 300))))
        if kind == 3:
            frames[1] = P.HEADER.pack(b"RSTM", 1, 1, 0, 1, 0, 0, 1, int(rng.integers(0, 2**32)), int(rng.integers(0, 2**16)), 0)
        return frames

    for i in range(2000):  # warm-up: caches and interned strings reach their steady state
        dec.decode(message(i))
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    for i in range(8_000):
        frames = message(i)
        for out in (dec.decode(frames), P.decode_message(frames)):
            assert isinstance(out, (P.Message, P.DecodeError))
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    growth, peak_kib = (current - base) / 1024, (peak - base) / 1024
    assert growth < 512 and peak_kib < 2048, (growth, peak_kib)
    figures["2_decoder_memory"] = {"messages": 8_000, "retained_kib": round(growth, 1), "peak_kib": round(peak_kib, 1)}


def test_service_stays_up_under_random_frames_over_a_socket(tiny_weights, figures):
    """Hypothesis feeds random multipart messages (random topics, blocks, mutations of valid blocks)
    to a live service; after every example a probe sensor still gets its exact prediction."""
    valid = P.encode_message(P.Message(P.Kind.SAMPLES, "v", P.make_block(
        P.Kind.SAMPLES, np.ones((2, 2), np.float32), epoch=1, seq=0, t0_ns=0, period_ns=1)))
    # mostly topics the service subscribes to (others never leave ZeroMQ's prefix filter)
    topic = st.one_of(st.builds(bytes.__add__, st.sampled_from([b"samples/", b"event/"]), st.binary(max_size=70)),
                      st.sampled_from([b"samples/v", b"event/v", b"samples/", b"event/"]),
                      st.from_regex(rb"\A(samples|event)/[A-Za-z0-9_.-]{1,8}\Z"), st.binary(max_size=80))
    block = st.one_of(st.binary(max_size=256), st.builds(
        lambda i, b: valid[1][:i] + bytes([b]) + valid[1][i + 1:], st.integers(0, len(valid[1]) - 1), st.integers(0, 255)))
    frames_st = st.one_of(st.tuples(topic, block).map(list), st.tuples(topic, block, st.one_of(block, st.binary(max_size=64))).map(list),
                          st.lists(st.one_of(topic, block), min_size=0, max_size=5))
    counts = {"examples": 0, "messages": 0}
    with serving(tiny_weights, collect=True) as (service, feed, col):
        probe_until_live(feed, col)
        probe_seq = [1000]

        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
        @given(st.lists(frames_st, min_size=1, max_size=40))
        def run(batch):
            for frames in batch:
                if frames:
                    feed.send_multipart(frames)
                    counts["messages"] += 1
            seq = probe_seq[0]
            probe_seq[0] += 1
            blk = P.make_block(P.Kind.SAMPLES, np.ones((1, 2), np.float32), epoch=1, seq=seq, t0_ns=0, period_ns=1)
            feed.send_multipart(P.encode_message(P.Message(P.Kind.SAMPLES, "probe", blk)))
            assert col.wait(lambda: seq in col.preds("probe"), 10), "service stopped answering"
            counts["examples"] += 1

        run()
        stats = service.snapshot()
    assert stats["decode_errors"].get("internal_error", 0) == 0
    figures["2_service_fuzz"] = {**counts, "decode_errors": sum(stats["decode_errors"].values()), "internal_errors": 0}


