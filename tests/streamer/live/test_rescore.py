"""Re-scoring beside the causal path, over real sockets, and delayed-label metrics."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models.bundle import load_model
from streamer.wire import protocol as P
from streamer.live.engine import Run
from streamer.sim.publisher import FeedConfig, SimulatedFeed
from streamer.live.rescore import RescoreConfig, WindowAssembler, regions_above
from tests.streamkit import collect, events, preds_by_sensor, running_service


def _run(seq, y, x=None, reset=False, epoch=1):
    x = np.zeros((len(y), 2), np.float32) if x is None else x
    return Run("s", epoch, seq, seq * 10, 10, x, np.asarray(y, np.float32), np.zeros(len(y), np.int64), reset)


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(1, 299), max_size=20), start=st.integers(0, 100))
def test_windows_complete_at_aligned_sequence_numbers_for_any_split(cuts, start):
    asm = WindowAssembler(window=64, hop=32)
    y = np.arange(300, dtype=np.float32) + start
    bounds = [0, *sorted(set(cuts)), 300]
    wins = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        wins += asm.add(_run(start + a, y[a:b]))
    first = -(-start // 32) * 32
    expected = list(range(first, start + 300 - 64 + 1, 32))
    assert [w.seq for w in wins] == expected
    for w in wins:
        assert np.array_equal(w.y_causal, np.arange(w.seq, w.seq + 64, dtype=np.float32))
        assert w.t0_ns == w.seq * 10


def test_a_reset_discards_the_partial_window():
    asm = WindowAssembler(window=10, hop=5)
    assert asm.add(_run(0, range(8))) == []
    wins = asm.add(_run(8, range(8, 30), reset=True))  # state reset: the old partial window is gone
    assert [w.seq for w in wins] == [10, 15, 20] and asm.discarded["s"] == 1


def test_regions_above():
    v = np.array([0, 0.2, 0.3, 0, -0.5, 0, 0.1])
    assert regions_above(v, 0.15, 100) == [[101, 102], [104, 104]]
    assert regions_above(np.zeros(5), 0.1, 0) == []


def _bidir(weights, x):
    model, _ = load_model("bidir", weights)
    with torch.no_grad():
        return model(torch.from_numpy(x[None]))[0].numpy()


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_rescores_flow_next_to_predictions(tiny_weights, backend):
    feed = SimulatedFeed(FeedConfig(sensors=2, samples_per_message=5, seed=9, realtime=False))
    cfg = RescoreConfig(window=64, hop=32, threshold_m=20.0, backend=backend)
    sent = {s: [] for s in feed.sensor_ids}
    with running_service(tiny_weights, backend, rescore=cfg) as (service, pub, out):
        for _ in range(40):  # 200 samples per sensor -> windows at 0, 32, ..., 128
            for frames in feed.next_messages():
                m = P.decode_message(frames)
                sent[m.sensor].append(np.array(m.block.data))
                pub.send_multipart(frames)
        msgs = collect(out, lambda ms: sum(m.kind is P.Kind.RESCORE for m in ms) >= 10)
    live = preds_by_sensor(msgs)
    for s in feed.sensor_ids:
        x = np.concatenate(sent[s])
        res = sorted((m for m in msgs if m.kind is P.Kind.RESCORE and m.sensor == s), key=lambda m: m.block.seq)
        assert [m.block.seq for m in res] == [0, 32, 64, 96, 128]
        for m in res:
            a, w = m.block.seq, m.meta["window"]
            assert (m.meta["seq_start"], m.meta["seq_end"], w) == (a, a + 63, 64)
            yb, yc, dis = m.block.data[:, 0], m.block.data[:, 1], m.block.data[:, 2]
            # the causal values inside equal those published live, sample by sample
            assert np.array_equal(yc, np.array([live[s][k][0] for k in range(a, a + w)]))
            assert np.abs(yb - _bidir(tiny_weights, x[a : a + w])).max() < 1e-5
            assert np.allclose(dis, yb - yc, atol=1e-7)
            assert m.meta["max_abs_m"] == pytest.approx(np.abs(dis).max() * 1000, abs=1e-2)
            assert m.meta["regions"] == regions_above(dis, 20.0 / 1000, a)


def test_a_slow_rescorer_never_delays_predictions(tiny_weights):
    cfg = RescoreConfig(window=20, hop=10, slowdown_s=5.0, queue_size=4, max_batch=1)
    x = np.abs(np.random.default_rng(0).normal(size=(200, 2))).astype(np.float32)
    with running_service(tiny_weights, "onnx", rescore=cfg) as (service, pub, out):
        for k in range(0, 200, 5):
            pub.send_multipart(P.encode_message(P.Message(P.Kind.SAMPLES, "a", P.make_block(
                P.Kind.SAMPLES, x[k : k + 5], epoch=1, seq=k, t0_ns=k, period_ns=1))))
        msgs = collect(out, lambda ms: len(preds_by_sensor(ms).get("a", {})) >= 200)
        snap = service.snapshot()
    kinds = [m.kind for m in msgs]
    # every prediction arrived while the re-scorer was still busy with its first windows
    assert len(preds_by_sensor(msgs)["a"]) == 200
    assert kinds.count(P.Kind.RESCORE) <= 1
    assert snap["rescore"]["windows_dropped"] > 0  # the bounded queue overflowed: counted, not waited


def test_delayed_label_metrics_match_an_offline_computation(tiny_weights):
    feed = SimulatedFeed(FeedConfig(sensors=1, samples_per_message=50, seed=2, realtime=False))
    truth, preds = [], {}
    with running_service(tiny_weights, "onnx", stats_interval_s=0.3) as (service, pub, out):
        for _ in range(60):  # 3,000 samples: several whole encounters
            for frames in feed.next_messages():
                truth.append(np.array(P.decode_message(frames).truth.data))
                pub.send_multipart(frames)
        msgs = collect(out, lambda ms: len(preds_by_sensor(ms).get("radar-0", {})) >= 3000)
        # metrics are updated just after the predictions are published: wait for the last stats
        stats = collect(out, lambda ms: any(e.meta["samples"] >= 3000 for e in events(ms, "stats")))
    snap = [e.meta for e in events(stats, "stats") if e.meta["samples"] >= 3000][0]
    tr = np.concatenate(truth)
    got = preds_by_sensor(msgs)["radar-0"]
    y = np.array([got[k][0] for k in range(3000)])
    inside = tr[:, 1] > 0.5
    edges = np.flatnonzero(np.diff(inside.astype(int)))
    starts = [e + 1 for e in edges if not inside[e]]
    stops = [e + 1 for e in edges if inside[e]]
    if inside[0]:
        starts = [0] + starts
    errs = []
    for a, b in zip(starts, [s for s in stops if s > starts[0]]):
        cpa = a + int(np.argmin(tr[a:b, 2]))
        errs.append(abs(y[cpa] - tr[a, 0]) * 1000)
    q = snap["quality"]
    assert q["encounters"] == len(errs) >= 2
    assert q["causal_mae_m"]["cpa"] == pytest.approx(np.mean(errs), abs=0.01)
