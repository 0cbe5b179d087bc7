"""Issue 16.4: every CURVE client that connects gets in once its key is admitted after a refusal.

libzmq closes a refused connecting CURVE client for good (admitting the key afterwards never lets
it in); ``serve`` reconnects its own connections (tests/streamer/wire/test_security.py). These are
the other clients that connect: ``radarstream record`` and ``radarstream simulate --pub '>…'`` as
real processes, and the GUI's receiver (no Qt). Each one is refused first (its key is not in the
server's allow-list), says so on stderr / as an event (endpoint, reason, retry delay), and once the
key is admitted (written into the allow-list, then the reload that SIGHUP triggers in ``serve``)
gets data through within its back-off.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from streamer.wire import protocol as P
from streamer.wire.security import ALLOW_DIR, CurveConfig, load_keypair
from tests.faults import ROOT, probe_until_live, serving, stop_process

HOLD_S = 3.0
"""How long a refused client is watched receiving nothing before its key is admitted."""


def curve_client(keys_dir: Path, client: str) -> dict:
    kp = load_keypair(keys_dir / f"{client}.key_secret")
    return {zmq.CURVE_SERVERKEY: load_keypair(keys_dir / "server.key").public,
            zmq.CURVE_PUBLICKEY: kp.public, zmq.CURVE_SECRETKEY: kp.secret}


def make_keys(tmp_path: Path, held_back: str) -> tuple[Path, Path]:
    """``radarstream keys`` for a sensor, a monitor and ``held_back``, whose public key is taken out
    of the allow-list (returned: where it waits to be admitted)."""
    from tools.cli import main

    d = tmp_path / "keys"
    assert main(["keys", str(d), "--client", "sensor", "--client", "monitor", "--client", held_back]) == 0
    held = tmp_path / f"{held_back}.key"
    shutil.move(d / ALLOW_DIR / f"{held_back}.key", held)
    return d, held


class Lines:
    """A subprocess's stdout and stderr lines, read in threads, with their arrival times."""

    def __init__(self, args: list[str]):
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[tuple[float, str]] = []
        self.err: list[tuple[float, str]] = []
        self._threads = [threading.Thread(target=self._read, args=(s, lst), daemon=True)
                         for s, lst in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self._threads:
            t.start()

    @staticmethod
    def _read(stream, into: list) -> None:
        for line in stream:
            into.append((time.monotonic(), line.rstrip("\n")))

    def find(self, where: list, needle: str) -> list[tuple[float, str]]:
        return [(t, line) for t, line in list(where) if needle in line]

    def finish(self) -> None:
        stop_process(self.proc)
        for t in self._threads:
            t.join(5)

    def text(self) -> str:
        return "\n".join(line for _, line in self.out + self.err)


def wait_for(cond, timeout: float, step=None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if step is not None:
            step()
        if cond():
            return True
        time.sleep(0.02)
    return cond()


class Sender:
    """The test's CURVE sensor on the service's bound feed: one sample per call."""

    def __init__(self, feed: zmq.Socket, sensor: str = "up"):
        self.feed, self.sensor, self.seq = feed, sensor, 0

    def __call__(self) -> None:
        blk = P.make_block(P.Kind.SAMPLES, np.ones((1, 2), np.float32), epoch=1, seq=self.seq,
                           t0_ns=self.seq * 50_000_000, period_ns=50_000_000)
        self.feed.send_multipart(P.encode_message(P.Message(P.Kind.SAMPLES, self.sensor, blk)))
        self.seq += 1


def curve_service(tiny_weights, d: Path):
    """serve with CURVE: feed bound (sensors connect), pub bound; the allow-list is read at start
    and on ``reload_keys()`` only (what SIGHUP does in ``serve``), so the reload is what admits."""
    return serving(tiny_weights, feeds=("@tcp://127.0.0.1:*",),
                   curve=CurveConfig(str(d), client="sensor", reload_interval_s=0.0),
                   collector_curve=curve_client(d, "monitor"))


def connect_sensor(ctx: zmq.Context, d: Path, endpoint: str) -> zmq.Socket:
    feed = ctx.socket(zmq.PUB)
    feed.setsockopt(zmq.LINGER, 0)
    for opt, value in curve_client(d, "sensor").items():
        feed.setsockopt(opt, value)
    feed.connect(endpoint)
    return feed


def test_record_gets_in_once_its_key_is_admitted_after_a_refusal(tiny_weights, tmp_path, figures):
    """``radarstream record --curve-keys`` against a CURVE ``serve`` that does not know its key:
    a warning on stderr with the endpoint, the reason and the retry delay; once admitted, the
    service's predictions are recorded in the file."""
    from streamer.recording.reader import iter_messages

    d, held = make_keys(tmp_path, "recorder")
    out = tmp_path / "rec.mcap"
    ctx = zmq.Context()
    try:
        with curve_service(tiny_weights, d) as (service, _, col):
            feed = connect_sensor(ctx, d, service.feed_endpoints[0])
            try:
                probe_until_live(feed, col)
                send = Sender(feed)
                rec = Lines([sys.executable, "-m", "tools.cmd_record", "record", "--feed", service.pub_endpoint,
                             "--out", str(out), "--kinds", "pred", "--flush-interval", "0.2", "-v",
                             "--curve-keys", str(d), "--curve-client", "recorder"])
                try:
                    def recorded() -> bool:
                        return any("received=" in line and "received=0 " not in line for _, line in rec.out)

                    assert wait_for(lambda: rec.find(rec.err, "refused"), 60, send), rec.text()
                    alarm = rec.find(rec.err, "refused")[0][1]
                    assert service.pub_endpoint in alarm and "handshake_failed_auth" in alarm, alarm
                    assert "retrying in" in alarm, alarm
                    wait_for(lambda: False, HOLD_S, send)  # refused: nothing recorded while the feed runs
                    assert not recorded(), rec.text()
                    refusals_logged = len(rec.find(rec.err, "refused"))
                    shutil.move(held, d / ALLOW_DIR / "recorder.key")
                    service.reload_keys()
                    admitted = time.monotonic()
                    assert wait_for(lambda: service.stats.health["allow_list_reloads"] >= 1, 10)
                    assert wait_for(recorded, 40, send), rec.text()
                    first_s = next(t for t, line in rec.out if "received=" in line and "received=0 " not in line) - admitted
                    assert wait_for(lambda: rec.find(rec.err, "handshake succeeded"), 5, send), rec.text()
                finally:
                    rec.finish()
            finally:
                feed.close(0)
    finally:
        ctx.term()
    assert rec.proc.returncode == 0, rec.text()
    preds = [m for m in iter_messages(out, kinds="pred", sensors=["up"])]
    assert preds, rec.text()
    assert any("refused handshake(s)" in line for _, line in rec.err), rec.text()  # the summary at exit
    figures["16_4_record"] = {"pred_messages_recorded": len(preds), "first_after_admission_s": round(first_s, 2),
                              "refusal_lines": refusals_logged}


def test_simulate_connecting_gets_in_once_its_key_is_admitted_after_a_refusal(tiny_weights, tmp_path, figures):
    """``radarstream simulate --pub '>tcp://…' --curve-keys`` to a CURVE ``serve --feed @…``: refused
    (a warning on stderr), then admitted: the service predicts the simulator's samples."""
    d, held = make_keys(tmp_path, "sim")
    with curve_service(tiny_weights, d) as (service, _, col):
        sim = Lines([sys.executable, "-m", "tools.cmd_record", "simulate", "--pub", ">" + service.feed_endpoints[0],
                     "--sensors", "1", "--rate", "20", "--curve-keys", str(d), "--curve-client", "sim"])
        try:
            assert wait_for(lambda: sim.find(sim.err, "refused"), 60), sim.text()
            alarm = sim.find(sim.err, "refused")[0][1]
            assert alarm.startswith("warning: ") and service.feed_endpoints[0] in alarm, alarm
            assert "handshake_failed_auth" in alarm and "retrying in" in alarm, alarm
            wait_for(lambda: False, HOLD_S)
            assert not col.preds("radar-0")  # refused: nothing of the simulator gets in
            refusals_logged = len(sim.find(sim.err, "refused"))
            shutil.move(held, d / ALLOW_DIR / "sim.key")
            service.reload_keys()
            admitted = time.monotonic()
            assert col.wait(lambda: len(col.preds("radar-0")) > 0, 40), sim.text()
            first_s = time.monotonic() - admitted
            assert col.wait(lambda: len(col.preds("radar-0")) > 10, 20), sim.text()
            n_preds = len(col.preds("radar-0"))
            assert wait_for(lambda: sim.find(sim.err, "handshake succeeded"), 5), sim.text()
        finally:
            sim.finish()
    assert service.engine.sensors["radar-0"].samples > 0
    figures["16_4_simulate"] = {"radar_0_predictions": n_preds, "first_after_admission_s": round(first_s, 2),
                                "refusal_lines": refusals_logged}


def test_replay_connecting_gets_in_once_its_key_is_admitted_after_a_refusal(tiny_weights, tmp_path, figures):
    """``radarstream replay FILE --pub '>tcp://…' --curve-keys`` to a CURVE ``serve --feed @…``:
    refused (a warning on stderr), then admitted: the service predicts the replayed samples."""
    from streamer.recording.writer import simulate_to_file
    from streamer.sim.publisher import FeedConfig

    d, held = make_keys(tmp_path, "replayer")
    path = tmp_path / "sim.mcap"
    simulate_to_file(path, FeedConfig(sensors=1, duration_s=120.0, seed=3))
    with curve_service(tiny_weights, d) as (service, _, col):
        rep = Lines([sys.executable, "-m", "tools.cmd_record", "replay", str(path), "--pub",
                     ">" + service.feed_endpoints[0], "--wait", "0", "--curve-keys", str(d), "--curve-client", "replayer"])
        try:
            assert wait_for(lambda: rep.find(rep.err, "refused"), 60), rep.text()
            alarm = rep.find(rep.err, "refused")[0][1]
            assert alarm.startswith("warning: replay --pub to " + service.feed_endpoints[0]), alarm
            assert "handshake_failed_auth" in alarm and "retrying in" in alarm, alarm
            wait_for(lambda: False, HOLD_S)
            assert not col.preds("radar-0")
            shutil.move(held, d / ALLOW_DIR / "replayer.key")
            service.reload_keys()
            admitted = time.monotonic()
            assert col.wait(lambda: len(col.preds("radar-0")) > 0, 40), rep.text()
            first_s = time.monotonic() - admitted
            assert wait_for(lambda: rep.find(rep.err, "handshake succeeded"), 5), rep.text()
        finally:
            rep.finish()
    assert any("refused handshake(s)" in line for _, line in rep.err), rep.text()
    assert not any("disconnected" in line for _, line in rep.err), rep.text()  # refusals are not lost messages
    figures["16_4_replay"] = {"first_after_admission_s": round(first_s, 2)}


def test_gui_receiver_shows_the_refusal_and_gets_in_once_admitted(tiny_weights, tmp_path, figures):
    """The GUI's StreamReceiver (no Qt) as a CURVE client of ``serve``'s pub: the refusal is an
    event of its batches (the monitor's event log) with endpoint, reason and retry delay, and
    once the key is admitted the predictions come in."""
    from gui.stream import SERVICE_SENSOR, ReceiverConfig, StreamReceiver

    d, held = make_keys(tmp_path, "gui")
    ctx = zmq.Context()
    try:
        with curve_service(tiny_weights, d) as (service, _, col):
            feed = connect_sensor(ctx, d, service.feed_endpoints[0])
            receiver = StreamReceiver(ReceiverConfig(feeds=(), services=(service.pub_endpoint,),
                                                     curve=CurveConfig(str(d), client="gui")))
            try:
                probe_until_live(feed, col)
                send = Sender(feed)
                receiver.open()
                events, preds, status = [], [], []

                def take() -> None:
                    send()
                    b = receiver.poll()
                    events.extend(b.events)
                    status.append(b.refusal)
                    if "up" in b.preds:
                        preds.append(b.preds["up"])

                def refused() -> list:
                    return [e for e in events if e.type == "peer_refused"]

                assert wait_for(refused, 20, take), events
                ev = refused()[0]
                assert ev.sensor == SERVICE_SENSOR and ev.meta["endpoint"] == service.pub_endpoint
                assert ev.meta["reason"] == "handshake_failed_auth" and ev.meta["retry_in_s"] > 0
                assert "refused by " + service.pub_endpoint in receiver.refusal_status()
                assert status[-1] == receiver.refusal_status()
                wait_for(lambda: receiver.snapshot().refusals >= 3, 10, take)
                assert not preds
                shutil.move(held, d / ALLOW_DIR / "gui.key")
                service.reload_keys()
                admitted = time.monotonic()
                assert wait_for(lambda: bool(preds), 40, take), events
                first_s = time.monotonic() - admitted
                assert any(e.type == "peer_connected" for e in events)
                assert receiver.refusal_status() is None and status[-1] is None
                counters = receiver.snapshot()
                assert counters.refusals >= 1 and counters.reconnect_after_refusal >= 1
                refusal_events = len(refused())
            finally:
                receiver.close()
                feed.close(0)
    finally:
        ctx.term()
    assert refusal_events <= counters.refusals  # events are the alarm lines: rate-limited, not one per attempt
    figures["16_4_gui_receiver"] = {"first_after_admission_s": round(first_s, 2), "refusals": counters.refusals,
                                    "refusal_events": refusal_events}


def test_gui_window_logs_the_refusal_then_shows_the_predictions(tiny_weights, tmp_path, request):
    """The monitor window offscreen, its worker a CURVE client of ``serve``'s pub: the refusal is
    a line of its event log (endpoint, reason, retry delay); once admitted, predictions arrive."""
    pytest.importorskip("pytestqt")
    from gui.stream import ReceiverConfig
    from gui.window import MainWindow, WindowConfig
    from gui.worker import WorkerConfig

    qtbot = request.getfixturevalue("qtbot")
    d, held = make_keys(tmp_path, "gui")
    ctx = zmq.Context()
    try:
        with curve_service(tiny_weights, d) as (service, _, col):
            feed = connect_sensor(ctx, d, service.feed_endpoints[0])
            try:
                probe_until_live(feed, col)
                send = Sender(feed)
                receiver = ReceiverConfig(feeds=(), services=(service.pub_endpoint,), curve=CurveConfig(str(d), client="gui"))
                win = MainWindow(WindowConfig(window_s=20.0), WorkerConfig(receiver=receiver, weights=tiny_weights))
                qtbot.addWidget(win)
                win.show()
                try:
                    def logged() -> bool:
                        send()
                        return "peer_refused" in win.event_log.toPlainText()

                    qtbot.waitUntil(logged, timeout=30_000)
                    line = next(t for t in win.event_log.toPlainText().splitlines() if "peer_refused" in t)
                    assert service.pub_endpoint in line and "handshake_failed_auth" in line and "retry_in_s=" in line
                    assert "up" not in win.histories or not len(win.histories["up"].preds)
                    # the status line says the service refuses this monitor, not that it is not running
                    qtbot.waitUntil(lambda: "refused by" in win.status_labels["service"].text(), timeout=10_000)
                    shutil.move(held, d / ALLOW_DIR / "gui.key")
                    service.reload_keys()

                    def predicted() -> bool:
                        send()
                        h = win.histories.get("up")
                        return h is not None and len(h.preds) > 0

                    qtbot.waitUntil(predicted, timeout=40_000)
                    assert "peer_connected" in win.event_log.toPlainText()
                finally:
                    win.close()
            finally:
                feed.close(0)
    finally:
        ctx.term()


def test_refusal_alarm_is_rate_limited_and_the_back_off_grows(caplog):
    """A client refused for ever: one line at the first refusal, then at most one per interval
    (counting the others), while the reconnect delay doubles up to its maximum."""
    from streamer.wire.security import RefusalWatch

    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    ep = "tcp://127.0.0.1:9"  # nothing listens: connect() succeeds, no handshake ever happens
    sock.connect(ep)
    caplog.set_level(logging.INFO, logger="radarstream")
    try:
        watch = RefusalWatch(sock, [ep], monitor=False, first_s=0.5, max_s=4.0, log_interval_s=60.0)
        delays = []
        for k in range(200):
            r = watch.handle(zmq.EVENT_HANDSHAKE_FAILED_AUTH, ep, 400, now=k * 1.0)
            delays.append(r.retry_in_s)
        assert delays[:5] == [0.5, 1.0, 2.0, 4.0, 4.0] and max(delays) == 4.0
        lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        assert len(lines) == 4, lines  # t = 0, 60, 120, 180 s
        assert ep in lines[0] and "handshake_failed_auth zap status 400" in lines[0] and "retrying in 0.5 s" in lines[0]
        assert "59 more refusal(s) since the last line" in lines[1]
        assert watch.tick(now=1e6) == [ep] and watch.reconnects == 1
        watch.handle(zmq.EVENT_HANDSHAKE_SUCCEEDED, ep, 0, now=1e6)
        assert watch.status() is None and "handshake succeeded after 200 refusal(s)" in caplog.records[-1].getMessage()
        assert watch.handle(zmq.EVENT_HANDSHAKE_FAILED_AUTH, ep, 400, now=2e6).retry_in_s == 0.5  # back-off reset
        assert watch.handle(zmq.EVENT_HANDSHAKE_FAILED_AUTH, "tcp://other:1", 400) is None  # not ours
        watch.close()
    finally:
        sock.close(0)
        ctx.term()
