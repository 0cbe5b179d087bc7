"""Issue 16.2: memory stays bounded under a flood of valid maximum-size messages.

A drain of many long runs used to go to the backend as one call (sensors × 65,536 steps: the
LSTM's per-step outputs of every layer, ~1 KiB a row), so 40 such messages peaked at 4.75 GiB
and ~300 made ``serve`` allocate 22 GiB. The engine now splits calls at
``StreamPolicy.max_rows_per_call`` and the service stops a drain at ``max_drain_bytes``."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from streamer.wire import protocol as P
from tests.faults import free_port, probe_until_live, serve_process

ROWS = P.DEFAULT_MAX_SAMPLES
SENSORS = 16


def _peak_rss_mib(pid: int) -> float:
    return int(re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text()).group(1)) / 1024


def _rss_mib(pid: int) -> float:
    return int(re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text()).group(1)) / 1024


@pytest.mark.timeout(240)
def test_a_flood_of_maximum_size_messages_keeps_memory_bounded(tmp_path, figures):
    """16 sensors each send one 65,536-row message at once (the shipped model): every row is
    predicted, and the peak RSS grows by well under what one 1 M-row backend call needs."""
    from models.bundle import shipped_weights_dir

    ctx = zmq.Context()
    feed = ctx.socket(zmq.PUB)
    feed.setsockopt(zmq.SNDHWM, 0)
    ep = f"tcp://127.0.0.1:{free_port()}"
    feed.bind(ep)
    rng = np.random.default_rng(0)
    x = np.stack([rng.rayleigh(1.0, ROWS), np.full(ROWS, -1.0)], axis=1).astype(np.float32)
    try:
        with serve_process(shipped_weights_dir(), (ep,), "--no-hybrid", "--stats-interval", "0.5",
                           log_path=tmp_path / "serve.log") as (proc, col):
            # the serve process is idle now: its footprint with the model loaded
            probe_until_live(feed, col)
            base = _rss_mib(proc.pid)
            for s in range(SENSORS):
                blk = P.make_block(P.Kind.SAMPLES, x, epoch=1, seq=0, t0_ns=0, period_ns=50_000_000)
                feed.send_multipart(P.encode_message(P.Message(P.Kind.SAMPLES, f"big-{s}", blk)))
            assert col.wait(lambda: all(len(col.preds(f"big-{s}")) == ROWS for s in range(SENSORS)), 180), \
                {s: len(col.preds(f"big-{s}")) for s in range(SENSORS)}
            peak = _peak_rss_mib(proc.pid)
    finally:
        feed.close(0)
        ctx.term()
    growth = peak - base
    figures["16.2 flood of maximum-size messages"] = {
        "messages": SENSORS, "rows_each": ROWS, "idle_rss_mib": round(base), "peak_rss_mib": round(peak),
        "growth_mib": round(growth)}
    # one call over all 1 M rows needs > 1 GiB of LSTM outputs alone; bounded calls need ~64 MiB
    assert growth < 600, (base, peak)


@pytest.mark.parametrize("backend_name", ["onnx", "torch"])
def test_splitting_backend_calls_changes_no_output(tiny_weights, backend_name):
    """The same drains with every call cut to one sensor: the same predictions, and the same
    state carried into the next drain."""
    from streamer.live.backends import make_backend
    from streamer.live.engine import StreamEngine, StreamPolicy
    from streamer.sim.simulator import RadarConfig, StreamSimulator

    backend = make_backend(backend_name, tiny_weights)
    x = StreamSimulator(RadarConfig(), 5).read(8 * 300).samples.reshape(8, 300, 2)
    whole, split = StreamEngine(backend), StreamEngine(backend, StreamPolicy(max_rows_per_call=150))
    outs = {}
    for name, eng in (("whole", whole), ("split", split)):
        ys = []
        for a in (0, 150):  # two drains: the second starts from the state the first left
            items = [(f"s{k}", P.Block(P.Kind.SAMPLES, 1, a, a * 50_000_000, 50_000_000, x[k, a:a + 150]), 0)
                     for k in range(8)]
            runs, _ = eng.process(items)
            ys.append(np.stack([r.y for r in sorted(runs, key=lambda r: r.sensor)]))
        outs[name] = np.concatenate(ys, axis=1)
    assert max(k[0] for k in split.calls) == 1 and max(k[0] for k in whole.calls) == 8
    np.testing.assert_allclose(outs["split"], outs["whole"], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="max_rows_per_call"):
        StreamPolicy(max_rows_per_call=0)
