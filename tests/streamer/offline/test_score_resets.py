"""`radarstream score` on a recording of a live run with explicit resets and a publisher restart
(issue 16 case 12): the recorded ``event/<sensor>`` ``{"type": "reset"}`` requests are applied
where ``serve`` applied them, so the scored causal estimates equal what ``serve`` published, and
the CSV's ``epoch`` column makes ``(sensor, epoch, seq)`` a key across the restart.

Real sockets on 127.0.0.1: a publisher -> ``serve`` -> a recorder of the feed and of the service's
output; then the recording -> ``radarstream score``."""

from __future__ import annotations

import csv
import time

import numpy as np
import pytest
import zmq

from streamer.live.backends import make_backend
from streamer.offline.scoring import recorded_frames, score_messages
from streamer.recording.reader import iter_messages
from streamer.recording.writer import Recorder, RecorderConfig
from streamer.wire import protocol as P
from tests.streamkit import running_service
from tools.cli import main

PER_MSG = 4
MSGS = 25  # per segment


def _samples(sensor, epoch, seq, rng):
    data = np.stack([rng.uniform(0, 5, PER_MSG), rng.uniform(100, 900, PER_MSG)], axis=1).astype(np.float32)
    blk = P.make_block(P.Kind.SAMPLES, data, epoch=epoch, seq=seq, t0_ns=epoch + seq * 1_000_000,
                       period_ns=1_000_000)
    return P.encode_message(P.Message(P.Kind.SAMPLES, sensor, blk))


def _wait(cond, tick=None, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        if tick is not None:
            tick()
        time.sleep(0.01)
    return cond()


@pytest.fixture(scope="module")
def recorded(tiny_weights, tmp_path_factory):
    """Sensor "a": epoch 1 with two explicit resets, then a restart (epoch 2, seq 0 again) with one
    more reset; sensor "b" alongside without resets. Recorded: the feed and serve's output."""
    path = tmp_path_factory.mktemp("resets") / "resets.mcap"
    rng = np.random.default_rng(7)
    plan = []  # frames in send order
    for epoch, resets in ((1, 2), (2, 1)):
        seq = 0
        for segment in range(resets + 1):
            if segment:
                plan.append(P.encode_message(P.make_event("a", "reset", epoch=epoch, seq=seq, t_ns=0)))
            for _ in range(MSGS):
                plan.append(_samples("a", epoch, seq, rng))
                plan.append(_samples("b", epoch, seq + 10_000 * (epoch - 1), rng))
                seq += PER_MSG
    with running_service(tiny_weights, "onnx") as (service, pub, _out):
        rec = Recorder(RecorderConfig(feeds=(pub.getsockopt_string(zmq.LAST_ENDPOINT), service.pub_endpoint),
                                      out=str(path), flush_interval_s=0.2))
        thread = rec.start_thread()
        probe = [0]

        def tick():
            blk = P.make_block(P.Kind.SAMPLES, np.ones((1, 2), np.float32), epoch=1, seq=probe[0], t0_ns=0,
                               period_ns=1)
            pub.send_multipart(P.encode_message(P.Message(P.Kind.SAMPLES, "rprobe", blk)))
            probe[0] += 1

        assert _wait(lambda: rec.stats.messages["pred/rprobe"] > 0, tick=tick), "recorder never saw serve"
        for k, frames in enumerate(plan):
            pub.send_multipart(frames)
            if k % 10 == 9:
                time.sleep(0.002)  # several service drains
        total = 2 * 5 * MSGS * PER_MSG  # a and b, 5 segments of MSGS messages each
        assert _wait(lambda: rec.stats.samples["pred/a"] + rec.stats.samples["pred/b"] >= total)
        rec.stop()
        thread.join(10)
    return path


def _published(path):
    """serve's predictions as recorded: (sensor, epoch, seq) -> causal_norm."""
    out = {}
    for r in iter_messages(path, kinds="pred", sensors=["a", "b"]):
        m = r.message
        for k in range(m.block.count):
            out[(m.sensor, m.block.epoch, m.block.seq + k)] = float(m.block.data[k, 0])
    return out


def test_score_applies_recorded_resets_like_serve(recorded, tiny_weights):
    published = _published(recorded)
    assert len(published) == 2 * 5 * MSGS * PER_MSG
    frames, _total = recorded_frames(recorded)
    res = score_messages(frames, make_backend("onnx", tiny_weights), weights_dir=tiny_weights, window=64, hop=32)
    assert res.resets == 3  # the three requests; serve's own "reset" reports are not applied again
    cols = res.columns
    keep = np.isin(cols["sensor"], ["a", "b"])
    keys = list(zip(cols["sensor"][keep].tolist(), cols["epoch"][keep].tolist(), cols["seq"][keep].tolist()))
    assert len(keys) == len(set(keys)) == len(published)  # (sensor, epoch, seq) is a key
    scored = cols["causal"][keep].astype(np.float64)
    expected = np.array([published[k] for k in keys])
    err = np.abs(scored - expected)
    assert float(err.max()) < 1e-5, f"max |score - serve| = {err.max():.4f} R_max"


def test_score_csv_has_the_epoch_column(recorded, tiny_weights, tmp_path, capsys):
    out = tmp_path / "score.csv"
    assert main(["score", str(recorded), "--weights", str(tiny_weights), "--out", str(out), "--window", "64",
                 "--hop", "32", "--quiet"]) == 0
    capsys.readouterr()
    with open(out, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["sensor"] in ("a", "b")]
    assert list(rows[0])[:3] == ["sensor", "epoch", "seq"]
    assert {r["epoch"] for r in rows} == {"1", "2"}
    keys = [(r["sensor"], r["epoch"], r["seq"]) for r in rows]
    assert len(keys) == len(set(keys)) == 2 * 5 * MSGS * PER_MSG
    published = _published(recorded)
    worst = max(abs(float(r["causal_norm"]) - published[(r["sensor"], int(r["epoch"]), int(r["seq"]))])
                for r in rows)
    assert worst < 1e-5
