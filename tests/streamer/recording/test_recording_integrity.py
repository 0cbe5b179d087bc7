"""Recordings that lose nothing silently (issue 16 cases 9-11), over real sockets and real files:

* 9: ``replay`` respects back-pressure (``XPUB_NODROP``: a full subscriber queue makes it wait, it
  never drops), flushes its queue before it exits (linger + context termination), and reports
  what it could not deliver;
* 10: chunk CRCs are checked on every read; a damaged chunk is reported and recovered message by
  message; writers close chunks of bounded size;
* 11: the recorder rolls over to a new file before MCAP's 65,535 channel ids run out.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import zmq

from streamer.recording.reader import Recording, iter_messages
from streamer.recording.replay import Replayer, close_and_flush, publish_recording, replay_socket
from streamer.recording.writer import RecordingWriter
from streamer.wire import protocol as P

ROOT = Path(__file__).resolve().parents[3]
CLI = [sys.executable, "-m", "tools.cmd_record"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def samples_frames(sensor, seq, rows, epoch=1, period=1000):
    data = np.stack([np.arange(rows, dtype=np.float32) + seq, np.full(rows, 500, np.float32)], axis=1)
    blk = P.make_block(P.Kind.SAMPLES, data, epoch=epoch, seq=seq, t0_ns=seq * period, period_ns=period)
    return P.encode_message(P.Message(P.Kind.SAMPLES, sensor, blk))


def big_recording(path, messages, rows=1000, sensors=2, **writer):
    """``messages`` samples messages of ``rows`` rows (8 KiB each at 1,000 rows)."""
    with RecordingWriter(path, **writer) as w:
        for i in range(messages):
            s = f"s{i % sensors}"
            seq = (i // sensors) * rows
            w.write_frames("samples", s, samples_frames(s, seq, rows)[1:], 1_000 + i, seq * 1000)
    return [r.frames for r in iter_messages(path)]


def drain(sub, n, idle_ms=5000):
    """Receive until ``n`` messages or ``idle_ms`` without one (the failure case)."""
    got = []
    while len(got) < n and sub.poll(idle_ms):
        got.append(tuple(sub.recv_multipart()))
    return got


# --------------------------------------------------------------------------- case 9: replay back-pressure


def test_cli_replay_max_speed_delivers_everything_before_exit(tmp_path):
    """`replay --speed max` into a subscriber that starts reading only after the replay has said
    it sent everything and has had time to exit: before the fix the process exited at once with
    its queue unsent (the context was never terminated, the linger never applied) and the
    subscriber got what the kernel buffers held (450 of 5,000); now it stays until its queue is
    delivered. The subscriber's small kernel buffer keeps that residue small."""
    path = tmp_path / "big.mcap"
    expected = big_recording(path, 5000)
    proc = subprocess.Popen([*CLI, "replay", str(path), "--pub", "tcp://127.0.0.1:*", "--speed", "max",
                             "--wait", "30"], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 100)
    sub.setsockopt(zmq.RCVBUF, 1 << 16)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    try:
        line = proc.stdout.readline()
        assert line.startswith("replaying"), line + proc.stderr.read()
        sub.connect(line.rsplit("-> ", 1)[1].strip())
        sent = proc.stdout.readline()  # printed once every message is handed to the socket
        assert sent.startswith(f"sent {len(expected)} messages"), sent + proc.stderr.read()
        try:
            proc.wait(timeout=2)  # the old replay exits here, its queue lost; the new one waits for us
        except subprocess.TimeoutExpired:
            pass
        got = drain(sub, len(expected))
        out, err = proc.communicate(timeout=60)
    finally:
        sub.close(0)
        ctx.term()
        if proc.poll() is None:
            proc.kill()
    assert len(got) == len(expected), f"{len(got)} of {len(expected)} delivered"
    assert got == expected  # in order, bytes unchanged
    assert proc.returncode == 0, err
    assert "delivered:" in out and "not delivered" not in err


def test_replay_waits_for_a_full_subscriber_and_reports_what_it_could_not_send(tmp_path):
    """A subscriber that reads nothing: the replay fills its queue, waits, and after the stall
    timeout stops and counts what it did not send; every message it did send is then received (a
    lossy PUB would have 'sent' everything and dropped most)."""
    path = tmp_path / "r.mcap"
    expected = big_recording(path, 3000)
    ctx = zmq.Context()
    sock, endpoint = replay_socket(ctx, "tcp://127.0.0.1:*", sndhwm=50)
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 50)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)
    try:
        assert sock.poll(10_000) and sock.recv()[0] == 1  # the subscription arrived
        stats = publish_recording(Replayer(path, speed="max"), sock, stall_timeout_s=0.5)
        assert stats.stalled
        assert 0 < stats.messages < len(expected)
        assert stats.messages + stats.not_sent == len(expected)
        got = drain(sub, len(expected), idle_ms=2000)
        assert got == expected[: stats.messages]  # all that was sent arrives: nothing dropped

        # a subscriber that reads, slower than the replay sends: everything arrives, in order
        got2: list = []
        reader = threading.Thread(target=lambda: got2.extend(drain(sub, len(expected))))
        reader.start()
        stats2 = publish_recording(Replayer(path, speed="max"), sock)
        reader.join(60)
        assert not stats2.stalled and stats2.messages == len(expected) and stats2.not_sent == 0
        assert got2 == expected
    finally:
        sub.close(0)
        assert close_and_flush(sock, ctx, 5.0)  # nothing left queued: flushed before the linger ran out


def test_cli_replay_reports_undelivered_messages(tmp_path):
    path = tmp_path / "r.mcap"
    expected = big_recording(path, 3000)
    proc = subprocess.Popen([*CLI, "replay", str(path), "--pub", "tcp://127.0.0.1:*", "--speed", "max",
                             "--wait", "30", "--sndhwm", "50", "--stall-timeout", "0.5", "--linger", "0.2"],
                            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 50)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    try:
        line = proc.stdout.readline()
        assert line.startswith("replaying"), line + proc.stderr.read()
        sub.connect(line.rsplit("-> ", 1)[1].strip())
        out, err = proc.communicate(timeout=60)  # the subscriber never reads
    finally:
        sub.close(0)
        ctx.term()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, (out, err)
    sent = int(out.split("sent ", 1)[1].split()[0])
    not_sent = int(err.split("not delivered: ", 1)[1].split()[0])
    assert 0 < sent < len(expected) and sent + not_sent == len(expected)
    assert "linger" in err and "Traceback" not in err


# --------------------------------------------------------------------------- case 11: channel limit


def _recorder(tmp_path, name, **config):
    from streamer.recording.writer import Recorder, RecorderConfig

    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    rolled = []
    rec = Recorder(RecorderConfig(feeds=(f"tcp://127.0.0.1:{port}",), out=str(tmp_path / name), **config),
                   context=ctx, on_rollover=lambda a, b: rolled.append((a, b)))
    thread = rec.start_thread()
    seq = [0]

    def wait_for(cond, tick=None, timeout=120.0):
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and thread.is_alive():
            if cond():
                return True
            if tick is not None:
                tick()
            time.sleep(0.01)
        return cond()

    def probe():
        pub.send_multipart(samples_frames("probe", seq[0], 1))
        seq[0] += 1

    assert wait_for(lambda: rec.stats.messages["samples/probe"] > 0, tick=probe), "recorder not connected"
    return ctx, pub, rec, thread, rolled, wait_for


def test_recorder_rolls_over_before_mcap_runs_out_of_channel_ids(tmp_path):
    """65,545 sensors, one samples message each: one more channel than an MCAP file can number.
    Before the fix the recorder died with a struct error at channel 65,536 and left an unfinished
    file; now it finishes the file at 65,535 channels and continues in ``rec.2.mcap``."""
    from streamer.recording.writer import MAX_CHANNELS

    n = MAX_CHANNELS + 10
    ctx, pub, rec, thread, rolled, wait_for = _recorder(tmp_path, "rec.mcap", kinds=("samples",))
    try:
        for i in range(n):
            pub.send_multipart(samples_frames(f"s{i}", 0, 1))
        assert wait_for(lambda: rec.stats.recorded >= n + 1), (
            f"recorded {rec.stats.recorded} of {n + 1}; recorder alive: {thread.is_alive()}")
    finally:
        rec.stop()
        thread.join(60)
        pub.close(0)
        ctx.term()
    assert not thread.is_alive()
    assert rec.stats.parts == [str(tmp_path / "rec.mcap"), str(tmp_path / "rec.2.mcap")]
    assert rolled == [(str(tmp_path / "rec.mcap"), str(tmp_path / "rec.2.mcap"))]
    first, second = Recording(tmp_path / "rec.mcap"), Recording(tmp_path / "rec.2.mcap")  # both finished
    assert len(first.channels) == MAX_CHANNELS
    sensors = set(first.sensors()) | set(second.sensors())
    assert sensors == {f"s{i}" for i in range(n)} | {"probe"}
    assert sum(first.message_counts.values()) + sum(second.message_counts.values()) == rec.stats.recorded


def test_rollover_keeps_every_message_and_the_gap_accounting(tmp_path):
    """A small channel limit (5 per file) with samples, pred-less gaps and recorder events: every
    message lands in exactly one part, in order; the gaps are reported once, in the part holding
    the block after them; no false restart at a part boundary; every part is a finished file."""
    from streamer.recording.scan import recorded_record_gaps, scan

    ctx, pub, rec, thread, rolled, wait_for = _recorder(tmp_path, "r.mcap", max_channels=5)
    sent = []
    try:
        for rnd in range(6):
            for k in range(4):
                s = f"x{k}"
                seq = rnd * 10 + (3 if rnd == 2 and k == 1 else 0)  # one gap of 3 rows for x1
                frames = samples_frames(s, seq, 7 if rnd < 5 else 2)
                pub.send_multipart(frames)
                sent.append(tuple(frames))
        assert wait_for(lambda: rec.stats.messages["samples/x3"] >= 6)
    finally:
        rec.stop()
        thread.join(60)
        pub.close(0)
        ctx.term()
    parts = rec.stats.parts
    assert len(parts) >= 3 and len(rolled) == len(parts) - 1
    got = []
    gaps = []
    for p in parts:
        r = Recording(p)
        assert len(r.channels) <= 5
        got += [x.frames for x in r.iter_recorded(r.topics(("samples",))) if x.sensor != "probe"]
        gaps += recorded_record_gaps(p)
        assert scan(p).complete
    assert got == sent
    # rows [10r, 10r + 7) per round: a gap of 3 before each later round (15 for x0, x2, x3); x1's
    # round 2 starts at 23 (gap 17-22) and round 3 then follows on (no gap): 4 gaps for x1
    assert len(gaps) == rec.stats.gaps == 19 and sum(g["count"] for g in gaps) == rec.stats.gap_samples == 60
    assert {(g["from_seq"], g["to_seq"]) for g in gaps if g["sensor"] == "x1"} == {(7, 9), (17, 22), (37, 39), (47, 49)}
    restarts = sum(1 for p in parts for x in iter_messages(p, kinds="event") if b"record_restart" in x.frames[2])
    assert restarts == 0 and rec.stats.restarts == 0


# --------------------------------------------------------------------------- case 10: chunk CRCs


def _chunks(path):
    return sorted(Recording(path)._summary.chunk_indexes, key=lambda c: c.chunk_start_offset)


def _flip(path, out, offset, bit=0x10):
    data = bytearray(Path(path).read_bytes())
    data[offset] ^= bit
    Path(out).write_bytes(bytes(data))
    return out


def _cli(*args, cwd):
    proc = subprocess.run([*CLI, *map(str, args)], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def _message_record_offsets(path, ci):
    """File offsets of the message records of an uncompressed chunk: (start, length) each."""
    from streamer.recording.reader import _read_message_index

    with open(path, "rb") as f:
        index = _read_message_index(f, ci)
        f.seek(ci.chunk_start_offset)
        raw = f.read(ci.chunk_length)
    # records start after: op(1) len(8) start(8) end(8) usize(8) crc(4) clen(4) "" rlen(8)
    base = ci.chunk_start_offset + 9 + 8 + 8 + 8 + 4 + 4 + 0 + 8
    return base, sorted(index)


def test_simulate_out_writes_bounded_chunks(tmp_path):
    """One bit must not cost the whole file: `simulate --out` closes a chunk every 16 KiB."""
    from streamer.recording.format import CHUNK_SIZE

    proc = _cli("simulate", "--out", "sim.mcap", "--duration", "90", "--epoch", "1000", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    chunks = _chunks(tmp_path / "sim.mcap")
    assert len(chunks) >= 10  # before: the 1,800 messages in one chunk
    assert all(c.uncompressed_size <= CHUNK_SIZE + 1024 for c in chunks)


def test_a_flipped_bit_is_detected_reported_and_recovered_around(tmp_path):
    """An uncompressed recording, one bit flipped in the row count of one message's block header:
    before, export-csv silently wrote the other rows (exit 0, no warning) and repair dropped the
    whole chunk. Now every reader checks the chunk CRC, says so, and keeps every other message of
    the damaged chunk: exactly one message (4 rows) is lost."""
    good = tmp_path / "good.mcap"
    with RecordingWriter(good, compression="none", chunk_size=1 << 20) as w:
        for i in range(300):
            w.write_frames("samples", "a", samples_frames("a", 4 * i, 4)[1:], 1_000 + i, 4 * i * 1000)
    (ci,) = _chunks(good)
    base, offsets = _message_record_offsets(good, ci)
    victim = offsets[150]  # message 150: op(1) len(8) channel(2) seq(4) log(8) pub(8) | u32 len | header
    count_field = base + victim + 31 + 4 + 40
    bad = _flip(good, tmp_path / "bad.mcap", count_field, bit=0x01)  # count 4 -> 5: size mismatch

    # the indexed reader: CRC checked, the chunk recovered message by message
    rec = Recording(bad)
    got = list(rec.iter_recorded())
    assert len(got) == 299 and 150 * 4 not in [g.message.block.seq for g in got]
    (d,) = rec.integrity.damaged
    assert (d.expected, d.recovered, d.lost) == (300, 299, 1) and "CRC" in d.reason

    proc = _cli("export-csv", bad, "--out", "bad.csv", cwd=tmp_path)
    assert proc.returncode == 0
    assert "wrote 1196 rows" in proc.stdout  # 1,200 written, the damaged message's 4 lost
    assert "warning:" in proc.stderr and "1 damaged chunk" in proc.stderr and "1 lost" in proc.stderr

    proc = _cli("recording", "info", bad, cwd=tmp_path)
    assert proc.returncode == 0 and "1 damaged chunk" in proc.stdout and "warning:" in proc.stderr
    proc = _cli("recording", "repair", bad, "--out", "fixed.mcap", cwd=tmp_path)
    assert proc.returncode == 0 and "warning:" in proc.stderr and "299 of 300" in proc.stderr
    fixed = Recording(tmp_path / "fixed.mcap")
    assert fixed.message_counts == {"samples/a": 299}  # before: 0, the whole chunk dropped
    assert [r.frames for r in fixed.iter_recorded()] == [g.frames for g in got]
    assert list(fixed.iter_recorded()) and fixed.integrity.ok


def test_a_damaged_record_length_resynchronises_on_the_message_index(tmp_path):
    """A flipped bit in a message record's length: the walk loses its place and picks it up again
    at the next offset of the chunk's message index; one message lost."""
    good = tmp_path / "good.mcap"
    with RecordingWriter(good, compression="none", chunk_size=1 << 20) as w:
        for i in range(100):
            w.write_frames("samples", "a", samples_frames("a", 2 * i, 2)[1:], 1_000 + i, 2 * i * 1000)
    (ci,) = _chunks(good)
    base, offsets = _message_record_offsets(good, ci)
    bad = _flip(good, tmp_path / "bad.mcap", base + offsets[40] + 2, bit=0x40)  # record length += 2**14
    rec = Recording(bad)
    seqs = [r.message.block.seq for r in rec.iter_recorded()]
    assert seqs == [2 * i for i in range(100) if i != 40]
    assert rec.integrity.lost == 1


def test_replay_warns_on_a_damaged_chunk(tmp_path):
    """A bit flipped inside the zstd-compressed data of one chunk of a simulated recording: replay
    says so on stderr (and how many messages it recovered and lost) instead of exiting silently."""
    proc = _cli("simulate", "--out", "sim.mcap", "--duration", "90", "--epoch", "1000", cwd=tmp_path)
    assert proc.returncode == 0
    chunks = _chunks(tmp_path / "sim.mcap")
    victim = chunks[1]
    _flip(tmp_path / "sim.mcap", tmp_path / "bad.mcap", victim.chunk_start_offset + victim.chunk_length // 2)
    proc = _cli("replay", "bad.mcap", "--pub", "tcp://127.0.0.1:*", "--speed", "max", "--wait", "0", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "damaged chunk" in proc.stderr and "recovered" in proc.stderr
    sent = int(proc.stdout.split("sent ", 1)[1].split()[0])
    rec = Recording(tmp_path / "bad.mcap")
    list(rec.iter_recorded())
    (d,) = rec.integrity.damaged
    assert d.offset == victim.chunk_start_offset
    assert sent == 1800 - d.lost and sent >= 1800 - d.expected  # at most that one chunk's messages


def test_overlapping_chunks_are_merged_in_log_order_and_crc_checked(tmp_path):
    """A file whose chunks overlap in time (log times going back): the general read path merges
    them in log-time order exactly like the mcap package's reader, and checks their CRCs too."""
    from mcap.reader import make_reader

    path = tmp_path / "overlap.mcap"
    with RecordingWriter(path, compression="none", chunk_size=2048) as w:
        for i in range(200):
            s = f"s{i % 3}"
            log = 1_000_000 + (i % 50) * 1000 + (i // 50) * 7  # four interleaved sweeps
            w.write_frames("samples", s, samples_frames(s, i, 2)[1:], log, i * 1000)
    rec = Recording(path)
    assert not rec._chunks_in_order
    ours = [(r.log_time_ns, r.topic, r.frames[1:]) for r in rec.iter_recorded()]
    with open(path, "rb") as f:
        ref = [(m.log_time, c.topic, tuple(bytes(x) for x in _unframe(m.data)))
               for _s, c, m in make_reader(f).iter_messages(log_time_order=True)]
    assert ours == ref and len(ours) == 200
    ci = sorted(rec._summary.chunk_indexes, key=lambda c: c.chunk_start_offset)[2]
    base, offsets = _message_record_offsets(path, ci)
    bad = Recording(_flip(path, tmp_path / "bad.mcap", base + offsets[1] + 31 + 4 + 40, bit=0x01))
    assert len(list(bad.iter_recorded())) == 199 and bad.integrity.lost == 1


def _unframe(data):
    from streamer.recording.format import unpack_frames

    return unpack_frames(data)


def test_replay_counts_a_subscriber_that_disconnects_with_a_full_queue(tmp_path):
    """ZeroMQ drops a disconnecting subscriber's queue without telling the sender: the replay
    watches its socket's connections and counts the disconnection (`replay` reports it)."""
    from streamer.recording.replay import PeerWatch

    path = tmp_path / "r.mcap"
    expected = big_recording(path, 3000)
    ctx = zmq.Context()
    sock, endpoint = replay_socket(ctx, "tcp://127.0.0.1:*", sndhwm=50)
    peers = PeerWatch(sock)
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 50)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)
    try:
        assert sock.poll(10_000) and sock.recv()[0] == 1
        closer = threading.Timer(1.0, lambda: sub.close(0))  # leaves while the replay waits on it
        closer.start()
        stats = publish_recording(Replayer(path, speed="max"), sock, stall_timeout_s=60, peers=peers)
        closer.join()
        assert not stats.stalled and stats.messages == len(expected)  # the rest went to nobody
        peers.close()
        assert peers.disconnects == 1
    finally:
        peers.close()
        assert close_and_flush(sock, ctx, 5.0)
