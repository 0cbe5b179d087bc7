"""Stream policy: gaps, duplicates, restarts and epochs each have their documented action."""

import numpy as np
import pytest
import torch

from models.bundle import load_model
from streamer.wire import protocol as P
from streamer.live.backends import make_backend
from streamer.live.engine import StreamEngine, StreamPolicy
from streamer.sim.simulator import RadarConfig, StreamSimulator

PERIOD = 50_000_000


@pytest.fixture(scope="module")
def backend(tiny_weights):
    return make_backend("torch", tiny_weights)


@pytest.fixture(scope="module")
def model(tiny_weights):
    return load_model("causal", tiny_weights)[0]


def blk(x, seq, epoch=1):
    return P.Block(P.Kind.SAMPLES, epoch, seq, seq * PERIOD, PERIOD, x)


def fresh(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x[None]))[0][0].numpy()


X = StreamSimulator(RadarConfig(), 3).read(400).samples


def test_duplicates_are_dropped_and_counted(backend, model):
    eng = StreamEngine(backend)
    r1, _ = eng.process([("a", blk(X[:10], 0), 0)])
    runs, events = eng.process([("a", blk(X[:10], 0), 0), ("a", blk(X[5:20], 5), 0)])
    assert [e.type for e in events] == ["duplicate", "duplicate"]
    assert events[0].fields == {"count": 10, "action": "drop"}
    assert events[1].fields == {"count": 5, "action": "drop_overlap"}
    assert eng.counters["duplicate"] == 15
    assert len(runs) == 1 and runs[0].seq == 10 and runs[0].y.shape == (10,)
    assert np.allclose(np.concatenate([r1[0].y, runs[0].y]), fresh(model, X[:20]), atol=1e-5)


def test_small_gap_continues_large_gap_resets(backend, model):
    eng = StreamEngine(backend, StreamPolicy(max_gap=5))
    eng.process([("a", blk(X[:10], 0), 0)])
    runs, events = eng.process([("a", blk(X[13:20], 13), 0)])
    assert events[0].type == "gap" and events[0].fields == {"from_seq": 10, "to_seq": 12, "count": 3, "action": "continue"}
    # state carried across the small gap: equals running the model on the samples it did get
    kept = np.concatenate([X[:10], X[13:20]])
    assert np.allclose(runs[0].y, fresh(model, kept)[10:], atol=1e-5)
    runs, events = eng.process([("a", blk(X[100:110], 100), 0)])
    assert events[0].type == "gap" and events[0].fields["action"] == "reset" and events[0].fields["count"] == 80
    assert runs[0].reset_before
    assert np.allclose(runs[0].y, fresh(model, X[100:110]), atol=1e-5)
    assert eng.counters["gap"] == 2 and eng.counters["gap_samples"] == 83


def test_new_epoch_resets_and_never_mixes_epochs(backend, model):
    eng = StreamEngine(backend)
    # both epochs in one drain: the first run must still use the old state, the second a fresh one
    eng.process([("a", blk(X[:50], 0, epoch=1), 0)])
    runs, events = eng.process([("a", blk(X[50:60], 50, epoch=1), 0), ("a", blk(X[200:230], 0, epoch=2), 0)])
    assert [e.type for e in events] == ["epoch_change"]
    assert [r.epoch for r in runs] == [1, 2]
    assert np.allclose(runs[0].y, fresh(model, X[:60])[50:], atol=1e-5)
    assert np.allclose(runs[1].y, fresh(model, X[200:230]), atol=1e-5)


def test_sequence_going_backwards_resets(backend, model):
    eng = StreamEngine(backend, StreamPolicy(duplicate_window=100))
    eng.process([("a", blk(X[:300], 0), 0)])
    runs, events = eng.process([("a", blk(X[300:320], 0), 0)])  # restarted from seq 0, far behind
    assert events[0].type == "backwards" and events[0].fields["action"] == "reset"
    assert np.allclose(runs[0].y, fresh(model, X[300:320]), atol=1e-5)


def test_explicit_reset_and_state_checkpoint(backend, model):
    eng = StreamEngine(backend)
    eng.process([("a", blk(X[:40], 0), 0)])
    h, c, epoch, nxt = eng.get_state("a")
    other = StreamEngine(backend)
    other.set_state("a", h, c, epoch, nxt)  # the state moves to another worker
    r_a, _ = eng.process([("a", blk(X[40:60], 40), 0)])
    r_b, ev = other.process([("a", blk(X[40:60], 40), 0)])
    assert ev == [] and np.array_equal(r_a[0].y, r_b[0].y)
    assert eng.reset("a").type == "reset" and eng.reset("nobody") is None
    r, _ = eng.process([("a", blk(X[60:70], 60), 0)])
    assert np.allclose(r[0].y, fresh(model, X[60:70]), atol=1e-5)


def test_sensor_limit_drops_without_crashing(backend):
    eng = StreamEngine(backend, StreamPolicy(max_sensors=2))
    runs, events = eng.process([(s, blk(X[:5], 0), 0) for s in ("a", "b", "c")])
    assert {r.sensor for r in runs} == {"a", "b"}
    assert events[-1].type == "dropped" and events[-1].fields["reason"] == "sensor_limit"


def test_batching_groups_sensors_by_run_length(backend):
    eng = StreamEngine(backend)
    items = [(f"s{k}", blk(X[:1], 0), 0) for k in range(300)] + [("big", blk(X[:64], 0), 0)]
    runs, _ = eng.process(items)
    assert len(runs) == 301
    assert eng.calls == {(300, 1): 1, (1, 64): 1}  # one batched step + one sequence call
    assert eng.pool.h.shape[1] >= 301  # the state pool grew


def test_explicit_reset_is_ordered_with_the_samples_of_the_same_drain(backend, model):
    eng = StreamEngine(backend)
    runs, events = eng.process([("a", blk(X[:10], 0), 0), ("a", None, 0), ("a", blk(X[10:20], 10), 0)])
    assert [e.type for e in events] == ["new_sensor", "reset"]
    assert np.allclose(runs[0].y, fresh(model, X[:10]), atol=1e-5)
    assert runs[1].reset_before and np.allclose(runs[1].y, fresh(model, X[10:20]), atol=1e-5)
    eng.process([("a", None, 0)])  # a reset with no later sample still applies
    r, _ = eng.process([("a", blk(X[20:30], 20), 0)])
    assert np.allclose(r[0].y, fresh(model, X[20:30]), atol=1e-5)


def test_merged_messages_keep_every_row_time(backend, model):
    """Messages merged in one drain still give each row its own time: a period change or a
    jittered t0 starts a new run (state carried, no reset), so pred times repeat the input's."""
    eng = StreamEngine(backend, StreamPolicy())
    a = P.Block(P.Kind.SAMPLES, 1, 0, 0, PERIOD, X[:10])
    b = P.Block(P.Kind.SAMPLES, 1, 10, 10 * PERIOD + 7_000, PERIOD, X[10:20])  # jittered clock
    c = P.Block(P.Kind.SAMPLES, 1, 20, b.t0_ns + 10 * PERIOD, 2 * PERIOD, X[20:30])  # rate changed
    d = P.Block(P.Kind.SAMPLES, 1, 30, c.t0_ns + 10 * 2 * PERIOD, 2 * PERIOD, X[30:40])  # continues c
    runs, events = eng.process([("a", m, 0) for m in (a, b, c, d)])
    assert [(r.seq, r.t0_ns, r.period_ns, len(r.y)) for r in runs] == [
        (0, 0, PERIOD, 10), (10, b.t0_ns, PERIOD, 10), (20, c.t0_ns, 2 * PERIOD, 20)]
    assert [r.reset_before for r in runs] == [True, False, False]
    assert not [e for e in events if e.type not in ("new_sensor",)]
    np.testing.assert_allclose(np.concatenate([r.y for r in runs]), fresh(model, X[:40]), atol=1e-5)


def test_merged_runs_never_exceed_the_protocol_block_limit(backend, model):
    """4 contiguous messages of 30 samples with max_run 64: runs of at most 64 rows, state carried."""
    eng = StreamEngine(backend, StreamPolicy(max_run=64))
    msgs = [P.Block(P.Kind.SAMPLES, 1, 30 * k, 30 * k * PERIOD, PERIOD, X[30 * k : 30 * k + 30]) for k in range(4)]
    runs, _ = eng.process([("a", m, 0) for m in msgs])
    assert [len(r.y) for r in runs] == [60, 60]
    assert [r.reset_before for r in runs] == [True, False]
    np.testing.assert_allclose(np.concatenate([r.y for r in runs]), fresh(model, X[:120]), atol=1e-5)
    assert StreamPolicy().max_run == P.DEFAULT_MAX_SAMPLES
