"""Recording and replay over real sockets and real MCAP files: a live run recorded and replayed into
a fresh service gives the same predictions; seeking from a recorded checkpoint equals replaying from
the start; a recorder killed with ``kill -9`` loses at most its last flush interval; bad files give
one clear error line and exit code 2."""

from __future__ import annotations

import csv
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zmq

from streamer.wire import protocol as P
from streamer.live.backends import make_backend
from streamer.live.engine import StreamEngine
from streamer.sim.publisher import FeedConfig, SimulatedFeed
from streamer.recording.writer import Recorder, RecorderConfig, RecordingWriter, simulate_to_file
from streamer.recording.format import META_STATS, RecordingError, pack_frames, unpack_frames
from streamer.recording.scan import is_complete, recorded_record_gaps, scan
from streamer.recording.replay import Replayer, ReplayController, Recording, iter_messages, publish_recording
from tests.streamkit import collect, preds_by_sensor, running_service

ROOT = Path(__file__).resolve().parents[3]
CLI = [sys.executable, "-m", "tools.cmd_record"]


def wait_for(cond, timeout=20.0, step=0.01, tick=None):
    """Poll ``cond`` (calling ``tick`` between polls) until true; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        if tick is not None:
            tick()
        time.sleep(step)
    return cond()


def samples_frames(sensor, seq, data, epoch=1, t0=None, period=1000):
    blk = P.make_block(P.Kind.SAMPLES, np.asarray(data, np.float32), epoch=epoch, seq=seq,
                       t0_ns=seq * period if t0 is None else t0, period_ns=period)
    return P.encode_message(P.Message(P.Kind.SAMPLES, sensor, blk))


def recorded_preds(path, sensors):
    got: dict[str, dict[int, np.ndarray]] = {}
    for r in iter_messages(path, kinds="pred", sensors=sensors):
        m = r.message
        for k in range(m.block.count):
            got.setdefault(m.sensor, {})[m.block.seq + k] = np.array(m.block.data[k])
    return got


# --------------------------------------------------------------------------- a live recording


@dataclass(frozen=True)
class Live:
    path: Path
    sensors: list[str]
    total: int
    epoch: int


@pytest.fixture(scope="module")
def live(tiny_weights, tmp_path_factory) -> Live:
    """simulate -> serve (checkpoints every 40 samples) -> record samples, preds, states, events."""
    path = tmp_path_factory.mktemp("live") / "live.mcap"
    feed = SimulatedFeed(FeedConfig(sensors=2, samples_per_message=8, seed=11, realtime=False))
    n_msgs = 40
    total = n_msgs * 8
    with running_service(tiny_weights, "onnx", checkpoint_every=40) as (service, pub, out):
        rec = Recorder(RecorderConfig(feeds=(pub.getsockopt_string(zmq.LAST_ENDPOINT), service.pub_endpoint),
                                      out=str(path), flush_interval_s=0.2))
        thread = rec.start_thread()
        seq = [0]

        def probe():
            pub.send_multipart(samples_frames("recprobe", seq[0], [[1.0, 2.0]]))
            seq[0] += 1

        assert wait_for(lambda: rec.stats.messages["samples/recprobe"] and rec.stats.messages["pred/recprobe"],
                        tick=probe), "recorder never saw the service"
        for _ in range(n_msgs):
            for frames in feed.next_messages():
                pub.send_multipart(frames)
            time.sleep(0.004)  # several service batches, hence several checkpoints
        assert wait_for(lambda: all(rec.stats.samples[f"pred/{s}"] >= total for s in feed.sensor_ids))
        rec.stop()
        thread.join(10)
    assert not rec.stats.malformed
    return Live(path, feed.sensor_ids, total, feed.epoch)


def test_live_recording_layout(live):
    rep = scan(live.path)
    assert rep.complete and rep.problem is None
    for s in live.sensors:
        for kind in ("samples", "pred"):
            c = rep.channels[f"{kind}/{s}"]
            assert (c.samples, c.first_seq, c.last_seq, c.gap_count) == (live.total, 0, live.total - 1, 0)
            assert c.epochs == [live.epoch]
        assert rep.channels[f"state/{s}"].messages >= 3
    rec = Recording(live.path)
    ch = {c.topic: c for c in rec.channels.values()}
    assert ch[f"samples/{live.sensors[0]}"].message_encoding == "radarstream/v1"
    schema = rec._summary.schemas[ch[f"samples/{live.sensors[0]}"].schema_id]
    assert schema.encoding == "radarstream/v1" and "u32" in json.loads(schema.data)["framing"]
    # log time = receive time, publish time = t0 of the block, frames are the wire bytes
    first = next(iter_messages(live.path, kinds="samples", sensors=live.sensors[:1]))
    assert first.publish_time_ns == first.message.block.t0_ns == live.epoch
    assert rec.start_ns <= first.log_time_ns <= rec.end_ns
    assert first.message.truth is not None


def test_replay_into_fresh_service_reproduces_predictions(live, tiny_weights):
    recorded = recorded_preds(live.path, live.sensors)
    with running_service(tiny_weights, "onnx") as (service, pub, out):
        stats = publish_recording(Replayer(live.path, sensors=live.sensors, speed="max"), pub)
        msgs = collect(out, lambda ms: all(len(preds_by_sensor(ms).get(s, {})) >= live.total for s in live.sensors))
    assert stats.samples == live.total * len(live.sensors)
    got = preds_by_sensor(msgs)
    for s in live.sensors:
        y_rec = np.array([recorded[s][k][:2] for k in range(live.total)])
        y_new = np.array([got[s][k][:2] for k in range(live.total)])
        assert np.abs(y_new[:, 0] - y_rec[:, 0]).max() <= 1e-6
        assert np.allclose(y_new[:, 1], y_rec[:, 1], rtol=1e-6, atol=0)
    # recorded epoch and seq kept: the fresh service saw the live publisher's stream
    epochs = {m.block.epoch for m in msgs if m.kind is P.Kind.PRED}
    assert epochs == {live.epoch}


def _run_engine(replayer, engine):
    out: dict[str, dict[int, float]] = {}
    for rec in replayer:
        runs, _ = engine.process([(rec.sensor, rec.message.block, 0)])
        for run in runs:
            for k, y in enumerate(run.y.tolist()):
                out.setdefault(run.sensor, {})[run.seq + k] = y
    return out


def test_seek_from_checkpoint_equals_replay_from_start(live, tiny_weights):
    backend = make_backend("onnx", tiny_weights)
    full = _run_engine(Replayer(live.path, sensors=live.sensors, speed="max"), StreamEngine(backend))
    recorded = recorded_preds(live.path, live.sensors)
    for s in live.sensors:
        assert max(abs(full[s][k] - recorded[s][k][0]) for k in range(live.total)) <= 1e-5
    rec = Recording(live.path)
    logs = [r.log_time_ns for r in iter_messages(live.path, kinds="samples", sensors=live.sensors[:1])]
    for frac in (0.35, 0.6, 0.85):
        t = (logs[int(frac * len(logs))] - rec.start_ns) / 1e9
        engine = StreamEngine(backend)
        rp = Replayer(live.path, sensors=live.sensors, speed="max")
        res = rp.seek(t, engine=engine)
        assert set(res.checkpoints) == set(live.sensors) and not res.inexact and not res.fresh
        assert all(cp.next_seq > 0 for cp in res.checkpoints.values())  # resumed mid-stream
        resumed = _run_engine(rp, engine)
        for s in live.sensors:
            seqs = sorted(resumed[s])
            assert seqs and seqs[-1] == live.total - 1
            assert seqs[0] >= res.checkpoints[s].next_seq + res.warmup_samples[s]
            assert max(abs(resumed[s][k] - full[s][k]) for k in seqs) <= 1e-5
            assert max(abs(resumed[s][k] - recorded[s][k][0]) for k in seqs) <= 1e-5
        # control: the same seek with a zero state does not give these values
        cold = _run_engine(Replayer(live.path, sensors=live.sensors, speed="max", start_s=t), StreamEngine(backend))
        s0 = live.sensors[0]
        assert max(abs(cold[s0][k] - full[s0][k]) for k in cold[s0]) > 1e-4


def test_cli_replay_publishes_recorded_frames_over_socket(live):
    rec = Recording(live.path)
    logs = [r.log_time_ns for r in iter_messages(live.path, kinds="samples", sensors=live.sensors[:1])]
    start = (logs[5] - rec.start_ns) / 1e9
    end = (logs[25] - rec.start_ns) / 1e9
    expected = [r.frames for r in iter_messages(live.path, kinds="samples", sensors=live.sensors[:1],
                                                start=start, end=end)]
    assert 10 <= len(expected) <= 21
    proc = subprocess.Popen([*CLI, "replay", str(live.path), "--pub", "tcp://127.0.0.1:*", "--speed", "max",
                             "--sensors", live.sensors[0], "--start", repr(start), "--end", repr(end), "--wait", "30"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    try:
        line = proc.stdout.readline()
        assert line.startswith("replaying"), line + proc.stderr.read()
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(line.rsplit("-> ", 1)[1].strip())
        got = []
        deadline = time.monotonic() + 30
        while len(got) < len(expected) and time.monotonic() < deadline:
            if sub.poll(100):
                got.append(tuple(sub.recv_multipart()))
        out, err = proc.communicate(timeout=30)
    finally:
        sub.close(0)
        ctx.term()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert got == expected  # same bytes, same order: epoch, seq and truth kept
    assert f"sent {len(expected)} messages" in out


# --------------------------------------------------------------------------- recorder behaviour


def test_recorder_gap_restart_and_malformed(tmp_path):
    path = tmp_path / "gaps.mcap"
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    rec = Recorder(RecorderConfig(feeds=(f"tcp://127.0.0.1:{port}",), out=str(path), kinds=("samples", "pred"),
                                  flush_interval_s=0.2), context=ctx)
    thread = rec.start_thread()
    n = [0]

    def probe():
        pub.send_multipart(samples_frames("probe", n[0], [[1.0, 1.0]]))
        n[0] += 1

    try:
        assert wait_for(lambda: rec.stats.messages["samples/probe"] > 0, tick=probe)
        base = rec.stats.received
        x = np.ones((4, 2), np.float32)
        sent = [
            samples_frames("g", 0, x), samples_frames("g", 4, x),
            samples_frames("g", 10, x),  # 8..9 lost
            [b"samples/g", b"RSTM\x01"],  # truncated: counted, not recorded
            [b"pred/g", samples_frames("g", 14, x)[1]],  # kind mismatch
            samples_frames("g", 14, x),
            samples_frames("g", 0, x, epoch=2),  # publisher restarted
            samples_frames("g", 4, x, epoch=2),
            samples_frames("g", 20, x, epoch=2),  # 8..19 lost
        ]
        for frames in sent:
            pub.send_multipart(frames)
        assert wait_for(lambda: rec.stats.received >= base + len(sent))
    finally:
        rec.stop()
        thread.join(10)
        pub.close(0)
        ctx.term()
    assert dict(rec.stats.malformed) == {"truncated": 1, "kind_mismatch": 1}
    assert (rec.stats.gaps, rec.stats.gap_samples, rec.stats.restarts) == (2, 14, 1)
    rep = scan(path)
    c = rep.channels["samples/g"]
    assert c.messages == 7 and c.gaps == [(8, 9), (8, 19)] and c.restarts == 1 and c.epochs == [1, 2]
    gaps = recorded_record_gaps(path)
    assert [(g["sensor"], g["kind"], g["from_seq"], g["to_seq"], g["count"]) for g in gaps] == [
        ("g", "samples", 8, 9, 2), ("g", "samples", 8, 19, 12)]
    restarts = [r.message.meta for r in iter_messages(path, kinds="event", sensors=["g"])
                if r.message.meta["type"] == "record_restart"]
    assert len(restarts) == 1 and restarts[0]["seq_start"] == 0
    stats = rep.metadata[META_STATS]
    assert json.loads(stats["malformed"]) == {"truncated": 1, "kind_mismatch": 1}


def _reader(stream, lines: queue.Queue):
    for line in stream:
        lines.put(line)
    lines.put(None)


def _kill_run(tmp_path, k, rng, sig):
    """Record a paced feed with planned gaps in a subprocess, stop it with ``sig``; returns what
    was sent (seq -> frames, in order), the planned gaps, the stdout lines and the exit code."""
    path = tmp_path / f"k{k}.mcap"
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    proc = subprocess.Popen([*CLI, "record", "--feed", f"tcp://127.0.0.1:{port}", "--out", str(path),
                             "--flush-interval", "0.2", "--kinds", "samples", "-v"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    out: list[str] = []
    sent: list[tuple[int, list[bytes]]] = []
    planned: list[tuple[int, int]] = []
    try:
        first = lines.get(timeout=30)
        assert first and first.startswith("recording"), (first, proc.stderr.read() if proc.poll() is not None else "")
        out.append(first)
        stop = threading.Event()
        x = np.arange(8, dtype=np.float32).reshape(4, 2)

        def publish():
            seq = 0
            i = 0
            while not stop.is_set():
                frames = samples_frames("k9", seq, x + i, epoch=5)
                pub.send_multipart(frames)
                sent.append((seq, frames))
                seq += 4
                i += 1
                if i % 25 == 0:  # a planned loss of 3 samples
                    planned.append((seq, seq + 2))
                    seq += 3
                time.sleep(0.002)

        th = threading.Thread(target=publish)
        th.start()
        # run until a few flushes happened, then a random extra moment
        flushes = 0
        deadline = time.monotonic() + 30
        while flushes < 2 and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            out.append(line)
            flushes += line.startswith("flushed:") and "durable=0 " not in line
        time.sleep(rng.uniform(0.0, 0.5))
        os.kill(proc.pid, sig)
        proc.wait(30)
        stop.set()
        th.join()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        pub.close(0)
        ctx.term()
    while (line := lines.get(timeout=10)) is not None:
        out.append(line)
    return path, sent, planned, out, proc


def _check_prefix(recovered, sent, planned):
    """Recovered samples are a contiguous run of what was sent, and the reported gaps are exactly
    the planned losses inside that run."""
    seqs = [s for s, _ in sent]
    i0 = seqs.index(recovered[0][0])
    assert [s for s, _ in recovered] == seqs[i0 : i0 + len(recovered)]
    assert all(list(f) == list(sent[i0 + k][1]) for k, (_, f) in enumerate(recovered))
    lo, hi = recovered[0][0], recovered[-1][0]
    return [(a, b) for a, b in planned if lo < a and b < hi]


def test_kill9_recorder_loses_at_most_the_last_flush(tmp_path, capsys):
    from tools.cmd_record import main

    rng = random.Random(96)
    for k in range(3):
        path, sent, planned, out, proc = _kill_run(tmp_path, k, rng, signal.SIGKILL)
        assert proc.returncode == -signal.SIGKILL
        durable = max(int(line.split("durable=")[1].split()[0]) for line in out if line.startswith("flushed:"))
        assert durable > 0
        assert not is_complete(path)
        with pytest.raises(RecordingError, match="repair"):
            Recording(path)
        clean = tmp_path / f"k{k}-clean.mcap"
        capsys.readouterr()
        assert main(["recording", "repair", str(path), "--out", str(clean), "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["source"]["messages"] >= durable  # everything flushed before the kill is back
        assert report["output"]["complete"]
        recovered = [(r.message.block.seq, list(r.frames)) for r in iter_messages(clean, kinds="samples")]
        assert len(recovered) + report["output"]["channels"].get("event/k9", {"messages": 0})["messages"] \
            == report["source"]["messages"]
        expected_gaps = _check_prefix(recovered, sent, planned)
        ch = report["output"]["channels"]["samples/k9"]
        assert [tuple(g) for g in ch["gaps"]] == expected_gaps
        assert [(g["from_seq"], g["to_seq"]) for g in recorded_record_gaps(clean)] == expected_gaps


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["sigterm", "sighup"])
def test_sigterm_finishes_the_file(tmp_path, sig):
    """SIGTERM, and SIGHUP (a closed terminal: it used to kill ``record`` with an unfinished
    file, issue 16.13), finish the file: indexed, every message, gaps exact, exit 0."""
    path, sent, planned, out, proc = _kill_run(tmp_path, "term", random.Random(1), sig)
    assert proc.returncode == 0, proc.stderr.read()
    final = [line for line in out if line.startswith("recorded ")]
    assert final, out
    n = int(final[0].split()[1])
    rec = Recording(path)  # indexed: summary and footer written
    assert sum(rec.message_counts.values()) == n
    recovered = [(r.message.block.seq, list(r.frames)) for r in iter_messages(path, kinds="samples")]
    expected_gaps = _check_prefix(recovered, sent, planned)
    assert [tuple(g) for g in scan(path).channels["samples/k9"].gaps] == expected_gaps


def test_bad_files_give_one_clear_error_and_exit_code_2(tmp_path):
    good = tmp_path / "good.mcap"
    simulate_to_file(good, FeedConfig(sensors=1, duration_s=200, samples_per_message=2, seed=1))
    data = good.read_bytes()
    (tmp_path / "garbage.mcap").write_bytes(bytes(random.Random(0).randrange(256) for _ in range(5000)))
    (tmp_path / "empty.mcap").write_bytes(b"")
    (tmp_path / "cut.mcap").write_bytes(data[:100])
    (tmp_path / "torn.mcap").write_bytes(data[: len(data) * 2 // 3])
    cases = [
        (["recording", "info", "garbage.mcap"], "not an MCAP file"),
        (["recording", "repair", "empty.mcap", "--out", "x.mcap"], "too short"),
        (["recording", "info", "cut.mcap"], "truncated"),
        (["replay", "torn.mcap", "--pub", "tcp://127.0.0.1:*"], "recording repair"),
        (["export-csv", "garbage.mcap", "--out", "x.csv"], "not an MCAP file"),
    ]
    procs = [subprocess.Popen([*CLI, *args], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for args, _ in cases]
    for (args, needle), proc in zip(cases, procs):
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, (args, out, err)
        assert "Traceback" not in err and needle in err, (args, err)
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err


def test_torn_file_info_and_repair(tmp_path, capsys):
    """A file cut mid-way: info says what is readable, repair writes an indexed copy of it."""
    from tools.cmd_record import main

    good = tmp_path / "good.mcap"
    # small chunks so that a cut keeps several complete ones
    with RecordingWriter(good, chunk_size=4096) as w:
        for i in range(400):
            w.write_frames("samples", "a", samples_frames("a", 2 * i, [[1.0, 2.0], [3.0, 4.0]])[1:], 1000 + i, 2 * i)
    data = good.read_bytes()
    torn = tmp_path / "torn.mcap"
    torn.write_bytes(data[: len(data) // 2])
    assert main(["recording", "info", str(torn), "--json"]) == 0
    captured = capsys.readouterr()
    info = json.loads(captured.out)
    assert not info["complete"] and "truncated" in info["problem"] and "repair" in captured.err
    c = info["channels"]["samples/a"]
    assert 0 < c["messages"] < 400 and c["first_seq"] == 0 and c["last_seq"] == 2 * c["messages"] - 1
    assert c["gaps"] == []
    assert main(["recording", "repair", str(torn), "--out", str(tmp_path / "clean.mcap")]) == 0
    assert main(["recording", "repair", str(torn), "--out", str(tmp_path / "clean.mcap")]) == 2  # no --force
    assert "exists" in capsys.readouterr().err
    rec = Recording(tmp_path / "clean.mcap")
    assert rec.message_counts == {"samples/a": c["messages"]}


# --------------------------------------------------------------------------- files, export, pacing


def test_simulate_to_file_holds_the_live_feed_bytes(tmp_path, capsys):
    from tools.cmd_record import main

    cfg = FeedConfig(sensors=2, duration_s=3.0, samples_per_message=4, seed=9)
    res = simulate_to_file(tmp_path / "sim.mcap", cfg, epoch=1_700_000_000_000_000_000)
    feed = SimulatedFeed(cfg, epoch=1_700_000_000_000_000_000)
    expected = [tuple(f) for _ in range(feed.total_messages()) for f in feed.next_messages()]
    got = list(iter_messages(res.path))
    assert [r.frames for r in got] == expected and res.messages == len(expected) == 30
    assert all(r.log_time_ns == r.publish_time_ns == r.message.block.t0_ns for r in got)
    assert main(["simulate-file", "--out", str(tmp_path / "cli.mcap"), "--sensors", "2", "--duration", "3",
                 "--samples-per-message", "4", "--seed", "9", "--epoch", "1700000000000000000"]) == 0
    assert [r.frames for r in iter_messages(tmp_path / "cli.mcap")] == expected
    assert "wrote 30 messages" in capsys.readouterr().out


def test_framing_roundtrip():
    frames = [b"", b"abc", bytes(range(256)) * 3]
    assert unpack_frames(pack_frames(frames)) == frames
    assert unpack_frames(pack_frames([b"x", b"yz"])) == [b"x", b"yz"]
    assert unpack_frames(pack_frames([b"abc"])[:-1]) is None  # lengths must tile the data
    assert unpack_frames(b"\x01\x00") is None


def test_export_csv(tmp_path, capsys):
    from tools.cmd_record import main

    path = tmp_path / "e.mcap"
    x = np.array([[1.5, 250.0], [0.8, -1.0], [2.25, 300.5], [0.1, -1.0]], np.float32)
    truth = np.array([[0.25, 1, 260.0, 12.5], [0.25, 1, 255.0, 11.0], [np.nan, 0, np.nan, np.nan],
                      [np.nan, 0, np.nan, np.nan]], np.float32)

    def samples(sensor, seq, rows, epoch, with_truth=True):
        blk = P.make_block(P.Kind.SAMPLES, x[rows], epoch=epoch, seq=seq, t0_ns=1000 + seq * 50, period_ns=50)
        tr = P.make_block(P.Kind.TRUTH, truth[rows], epoch=epoch, seq=seq, t0_ns=1000 + seq * 50, period_ns=50)
        return P.Message(P.Kind.SAMPLES, sensor, blk, truth=tr if with_truth else None)

    def pred(sensor, seq, ys, epoch):
        d = np.array([[y, y * 1000, 5.0] for y in ys], np.float32)
        return P.Message(P.Kind.PRED, sensor, P.make_block(P.Kind.PRED, d, epoch=epoch, seq=seq, t0_ns=0, period_ns=50))

    with RecordingWriter(path) as w:
        w.write_message(samples("a", 0, slice(0, 2), 7), 10_000)
        w.write_message(samples("b", 10, slice(2, 4), 8, with_truth=False), 20_000)
        w.write_message(pred("a", 0, [0.5, 0.125], 7), 30_000)
        w.write_message(samples("a", 2, slice(2, 4), 7), 1_000_000_000 + 40_000)
        w.write_message(pred("a", 1, [0.375], 7), 1_000_000_000 + 50_000)  # replaces seq 1: last wins
    assert main(["export-csv", str(path), "--out", str(tmp_path / "all.csv")]) == 0
    rows = list(csv.reader(open(tmp_path / "all.csv")))
    assert rows[0] == ["sensor", "epoch", "seq", "time_ns", "amplitude", "distance_m", "causal_norm", "causal_m",
                       "true_dmin_norm", "in_encounter", "true_range_m", "snr_db"]
    body = rows[1:]
    assert [(r[0], r[1], r[2], r[3]) for r in body] == [
        ("a", "7", "0", "1000"), ("a", "7", "1", "1050"), ("b", "8", "10", "1500"), ("b", "8", "11", "1550"),
        ("a", "7", "2", "1100"), ("a", "7", "3", "1150")]
    assert np.float32(body[1][4]) == x[1, 0] and x[1, 1] == -1 and body[1][5] == ""  # float32 round trip; no detection
    assert [np.float32(v) for v in body[0][4:6]] == [x[0, 0], x[0, 1]]
    assert body[0][6:8] == ["0.5", "500"] and body[1][6:8] == ["0.375", "375"]
    assert body[2][6:] == [""] * 6  # b: no pred, no truth recorded
    assert body[4][6:8] == ["", ""] and body[4][8:] == ["", "0", "", ""]  # NaN truth (outside encounters): empty
    assert [float(v) for v in body[0][8:]] == [0.25, 1.0, 260.0, 12.5]
    assert "wrote 6 rows" in capsys.readouterr().out
    # window and sensor selection; no pred channel for b: no y columns
    assert main(["export-csv", str(path), "--out", str(tmp_path / "b.csv"), "--sensors", "b"]) == 0
    rows = list(csv.reader(open(tmp_path / "b.csv")))
    assert rows[0] == ["sensor", "epoch", "seq", "time_ns", "amplitude", "distance_m"] and len(rows) == 3
    assert main(["export-csv", str(path), "--out", str(tmp_path / "w.csv"), "--start", "0.5"]) == 0
    rows = list(csv.reader(open(tmp_path / "w.csv")))
    assert [r[2] for r in rows[1:]] == ["2", "3"]


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_replayer_pacing_pause_speed_seek_loop(tmp_path):
    path = tmp_path / "p.mcap"
    simulate_to_file(path, FeedConfig(sensors=1, duration_s=2.0, samples_per_message=1, seed=2), epoch=10**18)
    clock = FakeClock()
    rp = Replayer(path, speed=1, now=clock)
    seqs = lambda batch: [r.message.block.seq for r in batch]  # noqa: E731
    assert seqs(rp.next_batch(wait_s=0)) == [0]  # the first message is due at once
    assert rp.next_batch(wait_s=0) == []  # the next one is 50 ms later
    clock.t += 0.12
    assert seqs(rp.next_batch(wait_s=0)) == [1, 2]
    rp.set_speed(10)  # 5 ms per sample from here
    clock.t += 0.011
    assert seqs(rp.next_batch(wait_s=0)) == [3, 4]
    rp.pause()
    clock.t += 10
    assert rp.next_batch(wait_s=0) == [] and rp.paused
    rp.play()
    clock.t += 0.0051
    assert seqs(rp.next_batch(wait_s=0)) == [5]
    assert rp.position_s == pytest.approx(0.25)
    rp.seek(1.5)  # after delivery: a new pass, the epoch advances
    batch = rp.next_batch(wait_s=0)
    assert seqs(batch) == [30] and batch[0].message.block.epoch == 10**18 + 1
    rp.set_speed("max")
    rest = rp.next_batch(wait_s=0)
    assert seqs(rest) == list(range(31, 40)) and rp.next_batch(wait_s=0) is None and rp.at_end
    # loop + window: passes repeat the window with a new epoch each time
    lp = Replayer(path, speed="max", start_s=0.5, end_s=0.7, loop=True)
    got = lp.next_batch(max_messages=12, wait_s=0)
    assert [(r.message.block.seq, r.message.block.epoch - 10**18) for r in got] == [
        (10, 0), (11, 0), (12, 0), (13, 0), (10, 1), (11, 1), (12, 1), (13, 1), (10, 2), (11, 2), (12, 2), (13, 2)]
    # sample clock paces on the samples' own timestamps
    sp = Replayer(path, speed=2, clock="sample", now=clock)
    sp.next_batch(wait_s=0)
    clock.t += 0.05
    assert seqs(sp.next_batch(wait_s=0)) == [1, 2]


def test_controller_publishes_for_the_gui(tmp_path):
    path = tmp_path / "c.mcap"
    simulate_to_file(path, FeedConfig(sensors=2, duration_s=1.0, samples_per_message=2, seed=4))
    ctl = ReplayController(path, "tcp://127.0.0.1:*", speed=None)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"samples/")
    sub.connect(ctl.endpoint)
    try:
        assert not ctl.playing and ctl.duration_s == pytest.approx(0.9)
        assert wait_for(lambda: ctl.subscriptions > 0)  # our SUB is attached
        assert not sub.poll(50) and ctl.sent == 0  # paused at the start: nothing sent
        ctl.play()
        got = []
        while len(got) < 20 and sub.poll(5000):
            got.append(sub.recv_multipart())
        assert len(got) == 20
        assert wait_for(lambda: not ctl.playing)  # at the end
        ctl.seek(0.5)
        assert wait_for(lambda: sub.poll(0)) and P.decode_message(sub.recv_multipart()).block.seq == 10
    finally:
        ctl.close()
        sub.close(0)
        ctx.term()


def test_cli_registers_the_recording_commands():
    from tools.cli import build_parser

    p = build_parser()
    args = p.parse_args(["record", "--feed", "tcp://127.0.0.1:1", "--out", "x.mcap", "--kinds", "samples,pred"])
    assert args.kinds == ("samples", "pred") and args.flush_interval == 1.0
    args = p.parse_args(["replay", "x.mcap", "--pub", "@tcp://*:1", "--speed", "max", "--sensors", "a,b", "--sensors", "c"])
    assert args.speed == float("inf") and args.sensors == ["a,b", "c"]
    for argv in (["recording", "info", "x"], ["recording", "repair", "x", "--out", "y"], ["export-csv", "x", "--out", "y"],
                 ["simulate-file", "--out", "y"], ["bench-record", "--no-write"]):
        assert callable(p.parse_args(argv).func)
    with pytest.raises(SystemExit):
        p.parse_args(["record", "--feed", "x", "--out", "y", "--kinds", "samples,bogus"])


def test_bench_recording_measures(tmp_path):
    from bench.record import bench_recording

    res = bench_recording(duration_s=0.3, samples_per_message=64, sensors=2, paced_sps=20_000, replay_samples=20_000,
                          workdir=tmp_path)
    for row in res.record:
        assert 0 < row.received_samples <= row.sent_samples
        assert row.gaps == 0 or row.drops > 0
    assert res.replay_received_samples == res.replay_samples > 0
    assert "| replay" in res.markdown("radarstream bench-record", "test machine")


def test_attach_follows_the_service_convention():
    from streamer.recording.format import attach
    from streamer.live.service import attach as service_attach

    ctx = zmq.Context()
    socks = [ctx.socket(zmq.PUB) for _ in range(4)]
    try:
        for fn, (a, b) in ((attach, socks[:2]), (service_attach, socks[2:])):
            bound = fn(a, "@tcp://127.0.0.1:*", "connect")
            assert bound.startswith("tcp://127.0.0.1:") and not bound.endswith("*")
            assert fn(b, ">" + bound, "bind") == bound
    finally:
        for s in socks:
            s.close(0)
        ctx.term()


def test_fast_append_writes_the_same_bytes_as_mcap_add_message(tmp_path):
    """The recorder's one-pack append must produce exactly the file Writer.add_message produces."""
    feed = SimulatedFeed(FeedConfig(sensors=3, samples_per_message=16, seed=1, realtime=False), epoch=10**18)
    msgs = [f for _ in range(300) for f in feed.next_messages()]
    files = []
    for fast in (True, False):
        path = tmp_path / f"fast-{fast}.mcap"
        w = RecordingWriter(path, chunk_size=20_000, compression="lz4", fast=fast, metadata={"a": 1})
        assert (w._fast is not None) == fast
        for i, f in enumerate(msgs):  # out-of-order log times and negative publish times too
            w.write_frames("samples", f[0].decode().split("/")[1], f[1:], 10**18 + (i * 7919) % 10**6, 5 - i)
            if i % 97 == 0:
                w.flush(fsync=False)
        w.close({"x": 2})
        files.append(path.read_bytes())
    assert files[0] == files[1]
    assert Recording(tmp_path / "fast-True.mcap").message_counts == {f"samples/radar-{k}": 300 for k in range(3)}
