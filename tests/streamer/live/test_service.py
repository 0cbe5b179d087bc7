"""The service over real ZeroMQ sockets: predictions equal the offline run; bad input is counted,
published and never crashes anything."""

import numpy as np
import pytest
import torch

from models.bundle import load_model
from streamer.wire import protocol as P
from streamer.sim.publisher import FeedConfig, SimulatedFeed
from tests.streamkit import collect, events, preds_by_sensor, running_service


def offline(weights, x):
    model, _ = load_model("causal", weights)
    with torch.no_grad():
        return model(torch.from_numpy(x[None]))[0][0].numpy()


@pytest.mark.parametrize("backend", ["onnx", "torch"])
@pytest.mark.parametrize("per_message", [1, 7])
def test_simulated_feed_predictions_equal_offline_full_sequence(tiny_weights, backend, per_message):
    feed = SimulatedFeed(FeedConfig(sensors=3, samples_per_message=per_message, seed=5, realtime=False))
    n_msgs = 30
    sent = {s: [] for s in feed.sensor_ids}
    with running_service(tiny_weights, backend) as (service, pub, out):
        for _ in range(n_msgs):
            for frames in feed.next_messages():
                m = P.decode_message(frames)
                sent[m.sensor].append(np.array(m.block.data))
                pub.send_multipart(frames)
        total = n_msgs * per_message
        msgs = collect(out, lambda ms: all(len(preds_by_sensor(ms).get(s, {})) >= total for s in feed.sensor_ids))
    got = preds_by_sensor(msgs)
    for s in feed.sensor_ids:
        x = np.concatenate(sent[s])
        y = np.array([got[s][k][0] for k in range(total)])
        assert np.abs(y - offline(tiny_weights, x)).max() < 1e-5
        ym = np.array([got[s][k][1] for k in range(total)])
        assert np.allclose(ym, y * 1000.0, rtol=1e-6)
        lat = np.array([got[s][k][2] for k in range(total)])
        assert np.all(lat > 0) and np.all(lat < 5e6)
    # slow joiner handled: each sensor's first message starts it, no false gap
    assert not events(msgs, "gap")
    assert len(events(msgs, "new_sensor")) == 3


def _samples(sensor, seq, data, epoch=1):
    return P.encode_message(P.Message(P.Kind.SAMPLES, sensor, P.make_block(
        P.Kind.SAMPLES, np.asarray(data, np.float32), epoch=epoch, seq=seq, t0_ns=seq, period_ns=1)))


def test_bad_input_is_dropped_counted_and_published(tiny_weights):
    good = np.abs(np.random.default_rng(0).normal(size=(40, 2))).astype(np.float32)
    bad_frames = {
        "truncated": [b"samples/bad", b"RSTM\x01"],
        "bad_magic": [b"samples/bad", b"XXXX" + _samples("bad", 0, good[:2])[1][4:]],
        "unknown_version": [b"samples/bad", _samples("bad", 0, good[:2])[1][:4] + b"\x09\x00" + _samples("bad", 0, good[:2])[1][6:]],
        "size_mismatch": [b"samples/bad", _samples("bad", 0, good[:2])[1][:-4]],
        "non_finite": [b"samples/bad", _samples("bad", 0, good[:2])[1][:48] + np.array([np.nan, 1, 2, 3], "<f4").tobytes()],
        "bad_channels": [b"samples/bad", P.encode_block(P.make_block(P.Kind.SAMPLES, np.ones((2, 3), np.float32), epoch=1, seq=0, t0_ns=0, period_ns=1))],
        "oversize": _samples("bad", 0, np.ones((600, 2))),
        "bad_topic": [b"samples/bad sensor!", _samples("bad", 0, good[:2])[1]],
        "bad_frames": [b"samples/bad"],
    }
    with running_service(tiny_weights, "onnx", max_samples_per_message=500) as (service, pub, out):
        pub.send_multipart(_samples("ok", 0, good[:20]))
        for frames in bad_frames.values():
            pub.send_multipart(frames)
        pub.send_multipart(_samples("ok", 20, good[20:]))
        msgs = collect(out, lambda ms: len(preds_by_sensor(ms).get("ok", {})) >= 40 and len(events(ms, "malformed")) >= len(bad_frames))
        stats = service.snapshot()
    got = preds_by_sensor(msgs)
    y = np.array([got["ok"][k][0] for k in range(40)])
    assert np.abs(y - offline(tiny_weights, good)).max() < 1e-5  # the good sensor is unaffected
    reasons = sorted(e.meta["reason"] for e in events(msgs, "malformed"))
    assert reasons == sorted(bad_frames)
    assert stats["decode_errors"] == {r: 1 for r in bad_frames}
    # malformed frames of a parseable sensor are published on that sensor's event topic
    assert {e.sensor for e in events(msgs, "malformed")} == {"bad", "_service"}


def test_gap_epoch_and_explicit_reset_are_published(tiny_weights):
    x = np.abs(np.random.default_rng(1).normal(size=(30, 2))).astype(np.float32)
    with running_service(tiny_weights, "onnx") as (service, pub, out):
        pub.send_multipart(_samples("a", 0, x[:10]))
        pub.send_multipart(_samples("a", 15, x[10:15]))  # 5 lost
        pub.send_multipart(_samples("a", 15, x[10:15]))  # duplicate
        pub.send_multipart(_samples("a", 0, x[15:20], epoch=2))  # publisher restarted
        pub.send_multipart(P.encode_message(P.make_event("a", "reset", epoch=2, seq=5, t_ns=0)))
        pub.send_multipart(_samples("a", 5, x[20:30], epoch=2))
        msgs = collect(out, lambda ms: len(events(ms, "reset")) >= 1 and sum(m.block.count for m in ms if m.kind is P.Kind.PRED) >= 25)
    ev = {e.meta["type"]: e for e in events(msgs)}
    assert ev["gap"].meta["from_seq"] == 10 and ev["gap"].meta["to_seq"] == 14 and ev["gap"].meta["count"] == 5
    assert ev["duplicate"].meta["count"] == 5
    assert ev["epoch_change"].meta["new_epoch"] == 2
    assert ev["reset"].meta["reason"] == "explicit"
    last = [m for m in msgs if m.kind is P.Kind.PRED and m.block.epoch == 2 and m.block.seq == 5][0]
    assert np.abs(last.block.data[:, 0] - offline(tiny_weights, x[20:30])).max() < 1e-5


def test_stats_are_published(tiny_weights):
    with running_service(tiny_weights, "onnx", stats_interval_s=0.2) as (service, pub, out):
        pub.send_multipart(_samples("a", 0, np.ones((5, 2))))
        msgs = collect(out, lambda ms: any(e.meta.get("samples", 0) >= 5 for e in events(ms, "stats")))
    st = [e for e in events(msgs, "stats") if e.meta["samples"] >= 5][0]
    assert st.sensor == "_service"
    assert set(st.meta["latency_us"]) == {"p50", "p99", "max"}
    assert st.meta["counters"]["samples"] >= 5


def test_state_checkpoints_resume_exactly(tiny_weights):
    """A published (h, c) checkpoint resumes the model exactly where the stream was."""
    from streamer.live.backends import make_backend
    from streamer.live.engine import StreamEngine

    x = np.abs(np.random.default_rng(2).normal(size=(60, 2))).astype(np.float32) * 50
    with running_service(tiny_weights, "onnx", checkpoint_every=20) as (service, pub, out):
        pub.send_multipart(_samples("a", 0, x[:10]))
        first = collect(out, lambda ms: any(m.kind is P.Kind.STATE for m in ms))
        for k in range(10, 60, 10):
            pub.send_multipart(_samples("a", k, x[k : k + 10]))
        msgs = first + collect(out, lambda ms: any(m.kind is P.Kind.STATE and m.block.seq == 60 for m in ms))
    states = [m for m in msgs if m.kind is P.Kind.STATE]
    seqs = [m.block.seq for m in states]
    # one checkpoint when the sensor starts, then one per >= 20 samples, at run boundaries
    assert seqs[0] == 10 and seqs[-1] == 60 and all(b - a >= 20 for a, b in zip(seqs[1:-1], seqs[2:]))
    ck = states[0]
    start = ck.block.seq
    layers, hidden = ck.meta["layers"], ck.meta["hidden"]
    flat = ck.block.data[0]
    h = flat[: layers * hidden].reshape(layers, hidden)
    c = flat[layers * hidden :].reshape(layers, hidden)
    eng = StreamEngine(make_backend("onnx", tiny_weights))
    eng.set_state("a", h, c, ck.block.epoch, ck.block.seq)
    runs, _ = eng.process([("a", P.make_block(P.Kind.SAMPLES, x[start:], epoch=1, seq=start, t0_ns=start, period_ns=1), 0)])
    assert np.abs(runs[0].y - offline(tiny_weights, x)[start:]).max() < 1e-5


def test_classical_and_hybrid_estimates_are_published(tiny_weights):
    """pred channels 3-4: the causal classical fit over the same samples, and the hybrid rule."""
    from models.hybrid import OnlineHybrid
    from radarstream.online import Block

    feed = SimulatedFeed(FeedConfig(sensors=1, samples_per_message=50, seed=4, realtime=False))
    sent = []
    with running_service(tiny_weights, "onnx") as (service, pub, out):
        for _ in range(30):
            for frames in feed.next_messages():
                sent.append(P.decode_message(frames).block)
                pub.send_multipart(frames)
        msgs = collect(out, lambda ms: len(preds_by_sensor(ms).get("radar-0", {})) >= 1500)
    got = preds_by_sensor(msgs)["radar-0"]
    rows = np.array([got[k] for k in range(1500)])
    assert rows.shape[1] == 9  # 0-2, classical and hybrid (3-4), standard deviations (5-7), time to CPA (8)
    x = np.concatenate([b.data for b in sent])
    t_ns = np.concatenate([b.times_ns for b in sent])
    # the fit on the samples' own integer-ns times (float seconds of a wall clock lose ~0.2 µs)
    out = OnlineHybrid().update(Block(t_ns, x, estimate=rows[:, 0]))
    cls, hyb = out[:, 0], out[:, 2]
    assert np.allclose(rows[:, 3], cls, equal_nan=True, atol=1e-6)
    assert np.allclose(rows[:, 4], hyb, atol=1e-6)
    assert np.isfinite(rows[:, 3]).any() and (rows[:, 4] != rows[:, 0]).any()
    assert np.allclose(rows[:, 6], out[:, 1], equal_nan=True, atol=1e-6)  # the classical fit's σ
    assert np.array_equal(np.isfinite(rows[:, 6]), np.isfinite(rows[:, 3]))
    assert np.all(rows[np.isfinite(rows[:, 6]), 6] > 0)
    # channel 8: seconds to the classical fit's CPA, falling by one period per sample within a fit
    ttc = rows[:, 8]
    np.testing.assert_allclose(ttc, out[:, 4], equal_nan=True, atol=1e-3)
    both = np.isfinite(ttc[1:]) & np.isfinite(ttc[:-1]) & (np.abs(np.diff(ttc) + 0.05) < 0.02)
    assert both.sum() > 100


def test_a_stream_off_the_profile_gets_out_of_domain_and_the_others_do_not(tiny_weights):
    """A 10 Hz sensor against the (20 Hz) profile of the weights: one ``out_of_domain`` event on
    its topic, a counter, a stats entry; the 20 Hz sensor beside it stays quiet."""
    from streamer.sim.simulator import RadarConfig

    fast = SimulatedFeed(FeedConfig(sensors=1, samples_per_message=20, seed=1, realtime=False, sensor_prefix="ok-"))
    slow = SimulatedFeed(FeedConfig(sensors=1, samples_per_message=10, seed=2, realtime=False, sensor_prefix="slow-",
                                    radar=RadarConfig(rate_hz=10.0)))
    with running_service(tiny_weights, "onnx") as (service, pub, out):
        for _ in range(20):
            for frames in fast.next_messages() + slow.next_messages():
                pub.send_multipart(frames)
        msgs = collect(out, lambda ms: len(preds_by_sensor(ms).get("slow-0", {})) >= 200
                       and len(preds_by_sensor(ms).get("ok-0", {})) >= 400)
        stats = service.snapshot()
    ood = [e for e in events(msgs, "out_of_domain") if e.sensor != "probe"]  # the harness's 1 ns probe is off too
    assert [e.sensor for e in ood] == ["slow-0"]
    assert "10 Hz" in ood[0].meta["reason"] and "20 Hz" in ood[0].meta["reason"]
    assert stats["counters"]["out_of_domain"] == 2  # slow-0 and the probe
    assert sorted(stats["health"]["out_of_domain"]) == ["probe", "slow-0"]
    assert stats["sensor_counters"]["slow-0"]["out_of_domain"] == 1
    assert "out_of_domain" not in stats["sensor_counters"].get("ok-0", {})


def test_near_passes_raise_one_near_miss_each_and_far_passes_none(tiny_weights):
    """serve --alert-dmin-m 150: every simulated pass closer than ~60 m raises exactly one
    near_miss (with its margin) and clears; passes beyond 500 m raise nothing."""
    from streamer.live.alerts import AlertConfig
    from streamer.sim.simulator import RadarConfig

    near = SimulatedFeed(FeedConfig(sensors=1, samples_per_message=50, seed=3, realtime=False, sensor_prefix="near-",
                                    radar=RadarConfig(dmin_range_norm=(0.02, 0.06), snr_at_rmax_db=10.0)))
    far = SimulatedFeed(FeedConfig(sensors=1, samples_per_message=50, seed=4, realtime=False, sensor_prefix="far-",
                                   radar=RadarConfig(dmin_range_norm=(0.5, 0.9), snr_at_rmax_db=10.0)))
    n_msgs = 120  # 6,000 samples = 300 s each
    with running_service(tiny_weights, "onnx", alert=AlertConfig(dmin_m=150.0)) as (service, pub, out):
        truth = []
        for _ in range(n_msgs):
            for frames in near.next_messages() + far.next_messages():
                m = P.decode_message(frames)
                if m.sensor == "near-0":
                    truth.append(np.array(m.truth.data))
                pub.send_multipart(frames)
        msgs = collect(out, lambda ms: all(len(preds_by_sensor(ms).get(s, {})) >= n_msgs * 50 for s in ("near-0", "far-0")))
        stats = service.snapshot()
    inside = np.concatenate(truth)[:, 1] > 0.5
    finished = int(np.sum(inside[:-1] & ~inside[1:]))  # encounters that ended inside the stream
    alerts = events(msgs, "near_miss")
    cleared = events(msgs, "near_miss_cleared")
    assert {e.sensor for e in alerts} == {"near-0"}
    assert finished <= len(alerts) <= finished + 1  # the last may still be in progress
    assert all(e.meta["margin_m"] > 0 and e.meta["probability"] > 0.9 and e.meta["threshold_m"] == 150.0 for e in alerts)
    assert len(alerts) - 1 <= len(cleared) <= len(alerts)
    assert stats["counters"]["near_miss"] == len(alerts)


def test_pred_blocks_stay_within_the_protocol_limit(tiny_weights):
    """4 contiguous messages of 30,000 samples (issue 16 case 8): every pred block decodes with a
    compliant decoder (≤ 65,536 rows) and all 120,000 rows arrive."""
    x = np.abs(np.random.default_rng(1).normal(size=(120_000, 2))).astype(np.float32)
    with running_service(tiny_weights, "onnx", max_samples_per_message=65536) as (service, pub, out):
        service.pause(0.5)  # let the four queue up, so one drain sees them all
        for k in range(4):
            blk = P.make_block(P.Kind.SAMPLES, x[30_000 * k : 30_000 * (k + 1)], epoch=1, seq=30_000 * k,
                               t0_ns=30_000 * k * 50_000_000, period_ns=50_000_000)
            pub.send_multipart(P.encode_message(P.Message(P.Kind.SAMPLES, "big", blk)))
        msgs = collect(out, lambda ms: len(preds_by_sensor(ms).get("big", {})) >= 120_000, timeout=60)
    blocks = [m for m in msgs if m.kind is P.Kind.PRED and m.sensor == "big"]
    assert len(preds_by_sensor(msgs)["big"]) == 120_000
    assert max(m.block.count for m in blocks) <= P.DEFAULT_MAX_SAMPLES


def test_the_service_sensor_id_is_reserved(tiny_weights):
    """Issue 16 case 7: samples from a sensor named ``_service`` are malformed (bad_topic), so
    nothing a sensor sends lands on ``event/_service`` beside the service's own stats."""
    x = np.ones((5, 2), np.float32)
    with running_service(tiny_weights, "onnx") as (service, pub, out):
        pub.send_multipart(_samples("_service", 0, x))
        pub.send_multipart(_samples("ok", 0, x))
        msgs = collect(out, lambda ms: len(preds_by_sensor(ms).get("ok", {})) >= 5 and events(ms, "malformed"))
        stats = service.snapshot()
    assert "_service" not in preds_by_sensor(msgs)
    bad = events(msgs, "malformed")
    assert [e.meta["reason"] for e in bad] == ["bad_topic"] and "reserved" in bad[0].meta["detail"]
    assert stats["decode_errors"] == {"bad_topic": 1}


def _raw(sensor, seq, data, *, t0_ns=0, period_ns=50_000_000, epoch=1):
    """A samples message whose header is written field by field (values the encoder refuses)."""
    data = np.asarray(data, "<f4")
    head = P.HEADER.pack(P.MAGIC, P.VERSION, int(P.Kind.SAMPLES), 0, epoch, seq, t0_ns, period_ns, data.shape[0], 2, 0)
    return [P.topic(P.Kind.SAMPLES, sensor), head + data.tobytes()]


@pytest.mark.parametrize("fast_drain", [True, False])
def test_extreme_headers_cost_only_their_sensor(tiny_weights, fast_drain):
    """Issue 16 cases 5-6: the end of the u64 sequence space followed by resets, and a period of
    2**64 - 1 ns, are refused or handled per sensor; a good sensor keeps every prediction."""
    good = np.abs(np.random.default_rng(2).normal(size=(21, 2))).astype(np.float32)
    reset = P.encode_message(P.make_event("edge", "reset", epoch=1, seq=0, t_ns=0))
    with running_service(tiny_weights, "onnx", fast_drain=fast_drain) as (service, pub, out):
        for k in range(21):
            pub.send_multipart(_samples("ok", k, good[k : k + 1]))
            if k == 3:
                pub.send_multipart(_raw("edge", 2**64 - 3, good[:2]))  # last valid: next seq = 2**64 - 1
                pub.send_multipart(reset)
                pub.send_multipart(reset)
                pub.send_multipart(_raw("edge", 2**64 - 2, good[:2]))  # next seq would overflow u64
                pub.send_multipart(_raw("slow", 0, good[:1], period_ns=2**64 - 1))  # period beyond an hour
        msgs = collect(out, lambda ms: len(preds_by_sensor(ms).get("ok", {})) >= 21 and len(events(ms, "malformed")) >= 2
                       and len(preds_by_sensor(ms).get("edge", {})) >= 2)
        stats = service.snapshot()
    got = preds_by_sensor(msgs)
    assert sorted(got["ok"]) == list(range(21))
    assert sorted(got["edge"]) == [2**64 - 3, 2**64 - 2]
    bad = {(e.sensor, e.meta["reason"]) for e in events(msgs, "malformed")}
    assert bad == {("edge", "bad_header"), ("slow", "bad_header")}
    assert "internal_error" not in stats["decode_errors"]


def test_a_failure_in_one_sensors_classical_step_costs_only_that_run(tiny_weights, caplog):
    """Issue 16 case 6, the fault boundary itself: whatever raises while one sensor's run goes
    through the classical fit (an OverflowError was one such bug) costs that run's classical
    channels only. The causal estimate of that run is still published, the other sensor loses
    nothing, the failure is counted as ``internal_error`` and logged without a traceback flood."""
    x = np.abs(np.random.default_rng(3).normal(size=(30, 2))).astype(np.float32) + 0.1
    with running_service(tiny_weights, "onnx") as (service, pub, out):
        real_update = service._hybrids.update

        def failing_update(sensor, block, **kw):  # the injected fault: a bug that raises for one sensor
            if sensor == "bad":
                raise OverflowError("injected: int too large to convert")
            return real_update(sensor, block, **kw)

        service._hybrids.update = failing_update
        for k in range(30):
            pub.send_multipart(_samples("ok", k, x[k : k + 1]))
            pub.send_multipart(_samples("bad", k, x[k : k + 1]))
        msgs = collect(out, lambda ms: all(len(preds_by_sensor(ms).get(s, {})) >= 30 for s in ("ok", "bad")))
        stats = service.snapshot()
    got = preds_by_sensor(msgs)
    assert sorted(got["ok"]) == list(range(30)) and sorted(got["bad"]) == list(range(30))
    blocks = {s: [m.block for m in msgs if m.kind is P.Kind.PRED and m.sensor == s] for s in ("ok", "bad")}
    names = [*P.PRED_CHANNEL_NAMES, *P.PRED_OPTIONAL_CHANNEL_NAMES]
    bad_rows = np.concatenate([b.data for b in blocks["bad"]])
    ok_rows = np.concatenate([b.data for b in blocks["ok"]])
    assert np.isnan(bad_rows[:, names.index("y_classical_norm")]).all()
    assert np.isfinite(bad_rows[:, names.index("y_norm")]).all()
    # the hybrid of the failed run falls back to the causal estimate
    np.testing.assert_array_equal(bad_rows[:, names.index("y_hybrid_norm")], bad_rows[:, names.index("y_norm")])
    assert np.isfinite(ok_rows[:, names.index("y_hybrid_norm")]).all()
    assert stats["decode_errors"]["internal_error"] >= 1
    assert "Traceback" not in caplog.text
    assert sum("internal error in hybrid" in r.getMessage() for r in caplog.records) <= 5
