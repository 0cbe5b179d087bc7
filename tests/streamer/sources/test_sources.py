"""One SampleSource interface over a simulation, a recording and a live feed (real files, real sockets)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import zmq

from radarstream.errors import RadarstreamError
from streamer.recording.writer import simulate_to_file
from streamer.sim.publisher import FeedConfig
from streamer.sources import SampleSource, SourceError, SourcePosition
from streamer.sources.live import LiveSource
from streamer.sources.recorded import RecordedSource
from streamer.sources.simulated import SimulatedSource

EPOCH = 1_764_600_000_000_000_000
FEED = FeedConfig(sensors=3, samples_per_message=4, duration_s=5.0, seed=7, realtime=False)


def drain(source: SampleSource) -> list[tuple[bytes, ...]]:
    return [tuple(bytes(f) for f in m) for m in source]


def test_simulated_source_is_deterministic_counted_and_seekable() -> None:
    src = SimulatedSource(FEED, epoch=EPOCH)
    msgs = drain(src)
    assert len(msgs) == src.total_messages() == 3 * 25
    assert src.next_batch() is None
    assert msgs == drain(SimulatedSource(FEED, epoch=EPOCH))
    again = SimulatedSource(FEED, epoch=EPOCH)
    again.seek(SourcePosition(messages=30))
    assert drain(again) == msgs[30:]
    with pytest.raises(SourceError):
        again.seek(SourcePosition(messages=31))  # not a whole batch


def test_recorded_source_gives_the_recorded_bytes_and_resumes(tmp_path) -> None:
    path = tmp_path / "sim.mcap"
    simulate_to_file(path, FEED, epoch=EPOCH)
    expected = drain(SimulatedSource(FEED, epoch=EPOCH))
    src = RecordedSource(path, batch=7)
    assert src.total_messages() == len(expected)
    first = src.next_batch()
    assert len(first) == 7
    got = [tuple(bytes(f) for f in m) for m in first] + drain(src)
    assert sorted(got) == sorted(expected)  # log-time order may interleave sensors differently
    pos = SourcePosition(messages=20)
    a = RecordedSource(path)
    a.seek(pos)
    rest = drain(a)
    b = RecordedSource(path)
    assert drain(b)[20:] == rest
    assert a.position().messages == len(expected)


def test_recorded_source_refuses_bad_files_clearly(tmp_path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        RecordedSource(tmp_path / "missing.mcap")
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"not an mcap file at all" * 10)
    with pytest.raises(RadarstreamError):
        RecordedSource(junk)


def test_live_source_receives_a_feed_over_a_real_socket_and_cannot_seek() -> None:
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    msgs = drain(SimulatedSource(FEED, epoch=EPOCH))
    src = LiveSource(f"tcp://127.0.0.1:{port}", context=ctx, wait_s=0.05)
    stop = threading.Event()

    def send() -> None:
        time.sleep(0.3)  # slow joiner
        for m in msgs:
            pub.send_multipart(m)
        stop.set()

    threading.Thread(target=send, daemon=True).start()
    got: list = []
    deadline = time.monotonic() + 10
    while len(got) < len(msgs) and time.monotonic() < deadline:
        got += [tuple(bytes(f) for f in m) for m in src.next_batch()]
    assert got == msgs
    assert src.position().messages == len(msgs)
    with pytest.raises(SourceError, match="cannot seek"):
        src.seek(SourcePosition())
    src.close()
    assert src.next_batch() is None
    pub.close(0)
    ctx.term()


def test_scoring_gives_the_same_estimates_from_a_simulation_and_its_recording(tmp_path) -> None:
    from streamer.live.backends import make_backend
    from streamer.offline.scoring import score_messages

    path = tmp_path / "sim.mcap"
    simulate_to_file(path, FEED, epoch=EPOCH)
    backend = make_backend("onnx")
    live = score_messages(SimulatedSource(FEED, epoch=EPOCH), backend)
    rec = score_messages(RecordedSource(path), backend)
    for name in ("causal", "classical", "hybrid"):
        a, b = live.columns[name], rec.columns[name]
        order_a, order_b = np.lexsort((live.columns["seq"], live.columns["sensor"])), np.lexsort((rec.columns["seq"], rec.columns["sensor"]))
        np.testing.assert_array_equal(a[order_a], b[order_b])
