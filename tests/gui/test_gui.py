"""The monitor, offscreen, fed by a real simulated feed and a real service over sockets.

Timeouts below are generous upper bounds for "data shows up at all", never performance limits.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("pytestqt")

from PySide6 import QtGui  # noqa: E402

from gui.buffers import Ring  # noqa: E402
from gui.pipeline import LocalPipeline, PipelineConfig  # noqa: E402
from gui.replay import ReplayBar, open_replay, replay_available  # noqa: E402
from gui.stream import GateTracker, Handoff, ReceiverConfig, SamplesChunk, rescore_columns  # noqa: E402
from gui.window import MainWindow, WindowConfig  # noqa: E402
from gui.worker import WorkerConfig, WorkerThread  # noqa: E402
from streamer.sim.simulator import RadarConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
WAIT_MS = 30_000  # "eventually", on a loaded 2-core machine


@pytest.fixture(scope="module")
def pipeline(tiny_weights):
    """3 simulated sensors at 50 Hz (short gaps between passes) + the service with re-scoring of
    32-sample windows and state checkpoints, on random ports."""
    cfg = PipelineConfig(sensors=3, rate_hz=50.0, seed=3, weights=tiny_weights, checkpoint_every=25,
                         rescore_window=32, radar=RadarConfig(gap_range_s=(0.2, 0.5)))
    with LocalPipeline(cfg) as pipe:
        yield pipe


def make_window(qtbot, feeds, services, weights, **window) -> MainWindow:
    win = MainWindow(WindowConfig(**{"window_s": 20.0, **window}),
                     WorkerConfig(receiver=ReceiverConfig(feeds=feeds, services=services), weights=weights))
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    return win


@pytest.fixture
def window(qtbot, pipeline, tiny_weights):
    win = make_window(qtbot, (pipeline.feed_endpoint,), (pipeline.service_endpoint,), tiny_weights)
    yield win
    win.close()


def diagnose(win: MainWindow) -> str:
    """What the window holds, for a readable failure message."""
    sp = win.signal_plots
    curves = {n: n_points(getattr(sp, n)) for n in ("amplitude", "detections", "true_range", "causal", "bidir", "truth")}
    return (f"curves {curves}; histories {{s: (samples, preds)}} "
            f"{ {s: (len(h.samples), len(h.preds)) for s, h in win.histories.items()} }; counters {win.counters}; "
            f"stats {'yes' if win.stats else 'none'}; worker info {win.worker_info}")


def wait_window(qtbot, win: MainWindow, cond, pipeline=None) -> None:
    try:
        qtbot.waitUntil(cond, timeout=WAIT_MS)
    except Exception as exc:
        alive = None if pipeline is None else [t.name for t in pipeline._threads if t.is_alive()]
        raise AssertionError(f"{exc}: {diagnose(win)}; pipeline threads alive: {alive}") from None


def n_points(item) -> int:
    return 0 if item.xData is None else len(item.xData)


def every_plot_has_data(win: MainWindow) -> bool:
    sp = win.signal_plots
    curves = (sp.amplitude, sp.detections, sp.causal, sp.bidir, sp.truth, sp.true_range)
    images = win.state_plots.images.values()
    return (all(n_points(c) > 0 for c in curves)
            and all(img.image is not None and img.image.shape[0] > 0 for img in images)
            and win.status_labels["latency"].text() != "–")


def test_live_feed_and_service_fill_every_plot(qtbot, window, pipeline):
    win = window
    wait_window(qtbot, win, lambda: every_plot_has_data(win), pipeline)
    sp = win.signal_plots
    # batched hand-off: many messages per batch, never one signal per message
    assert win.counters.messages > 2 * win.batches
    # distance < 0 (no detection) is never drawn: every tick lies in [0, R_max]
    assert np.nanmin(sp.detections.yData) >= -0.01 * win.r_max_m
    # estimates are in metres
    assert 0.0 <= np.nanmax(sp.causal.yData) <= win.r_max_m
    # the disagreement shading follows the threshold
    win.threshold_box.setValue(0.0)
    win.force_redraw()
    assert sp.bands.isVisible() and sp.bands.image.any()
    win.threshold_box.setValue(1e5)
    win.force_redraw()
    assert not sp.bands.isVisible()
    # the gate view is in sync with the service (state checkpoints adopted)
    qtbot.waitUntil(lambda: win.counters.checkpoints_adopted > 0, timeout=WAIT_MS)
    assert "radar-" in win.sensor_box.currentText()
    assert win.show_readout(float(sp.causal.xData[-1])).count("causal") == 1
    # the mouse path: a scene position over the estimates, then over the h heatmap
    from PySide6 import QtCore

    win._on_mouse((sp.est.vb.mapViewToScene(QtCore.QPointF(-0.5, 500.0)),))
    assert "causal" in win.readout_text and all(line.isVisible() for line in sp.cursors)
    h = win.state_plots.plots["h"]
    win._on_mouse_state((h.vb.mapViewToScene(QtCore.QPointF(-0.5, 3.5)),))
    assert "h[unit 3]" in win.readout_text


def test_sensor_switch_shows_the_other_sensor(qtbot, window):
    win = window
    qtbot.waitUntil(lambda: len(win.histories) >= 2 and win.sensor is not None and win.state is not None, timeout=WAIT_MS)
    other = next(s for s in sorted(win.histories) if s != win.sensor)
    win.sensor_box.setCurrentText(other)
    assert win.sensor == other
    qtbot.waitUntil(lambda: win.state is not None and len(win.state) > 0, timeout=WAIT_MS)
    win.set_paused(True)
    win.force_redraw()
    x = win.signal_plots.amplitude.xData + win.x_origin_s  # plotted relative to the newest sample
    y = win.signal_plots.amplitude.yData
    hist = win.histories[other].samples
    idx = np.searchsorted(hist.view("t"), x - 1e-7)
    assert np.allclose(hist.view("t")[idx], x, rtol=0, atol=1e-7)
    assert np.array_equal(hist.view("amplitude_db")[idx], y)
    assert win.state.ring.view("t")[-1] <= hist.view("t")[-1] + 1e-9


def test_pause_freezes_the_display_and_resume_catches_up(qtbot, window, pipeline):
    win = window
    wait_window(qtbot, win, lambda: n_points(win.signal_plots.causal) > 5, pipeline)
    win.pause_button.click()
    assert win.paused
    win.force_redraw()  # a frame with the latest data, then frozen
    frozen_x = np.array(win.signal_plots.amplitude.xData)
    frozen_origin = win.x_origin_s
    hist = win.histories[win.sensor].samples
    total = hist.total
    qtbot.waitUntil(lambda: hist.total >= total + 10, timeout=WAIT_MS)  # data keeps arriving...
    assert np.array_equal(win.signal_plots.amplitude.xData, frozen_x)  # ...the display does not move
    win.pause_button.click()
    assert not win.paused
    qtbot.waitUntil(lambda: win.x_origin_s > frozen_origin, timeout=WAIT_MS)


def test_csv_export_of_the_visible_range(qtbot, window, pipeline, tmp_path):
    win = window
    wait_window(qtbot, win, lambda: n_points(win.signal_plots.bidir) > 0 and n_points(win.signal_plots.causal) > 20
                and n_points(win.signal_plots.amplitude) > 40, pipeline)
    win.set_paused(True)
    win.force_redraw()
    path = tmp_path / "export.csv"
    rows = win.export_csv(path)
    lines = list(csv.reader(path.open()))
    assert lines[0][0] == f"# sensor={win.sensor}"
    assert tuple(lines[1]) == MainWindow.CSV_COLUMNS
    table = lines[2:]
    assert rows == len(table) > 20
    col = {name: k for k, name in enumerate(MainWindow.CSV_COLUMNS)}
    t = np.array([float(r[col["time_s"]]) for r in table])
    x0, x1 = np.array(win.signal_plots.est.viewRange()[0]) + win.x_origin_s
    assert np.all(np.diff(t) > 0) and t[0] >= x0 - 1e-6 and t[-1] <= x1 + 1e-6
    hist = win.histories[win.sensor]
    for r in table[:: max(1, len(table) // 25)]:
        k = int(np.searchsorted(hist.samples.view("t_ns"), int(r[col["time_ns"]])))
        assert float(r[col["amplitude"]]) == pytest.approx(float(hist.samples.view("amplitude")[k]), rel=1e-6)
        d = float(hist.samples.view("distance_m")[k])
        assert (r[col["distance_m"]] == "") == (d < 0)  # no detection -> empty cell, never -1
    assert any(r[col["causal_m"]] for r in table)
    # re-scores in the exported range (they arrive late, in whole windows) appear in the CSV
    t_ns = np.array([int(r[col["time_ns"]]) for r in table])
    res_t = hist.rescores.view("t_ns") if hist.has_rescores else np.empty(0, np.int64)
    if np.any((res_t >= t_ns[0]) & (res_t <= t_ns[-1])):
        assert any(r[col["bidir_m"]] for r in table)
    assert any(r[col["distance_m"]] == "" for r in table)


def test_cli_screenshot_is_written_and_not_blank(pipeline, tiny_weights, tmp_path, qapp):
    from tools.cli import main

    png = tmp_path / "monitor.png"
    rc = main(["gui", "--feed", pipeline.feed_endpoint, "--service", pipeline.service_endpoint,
               "--weights", str(tiny_weights), "--screenshot", str(png), "--quit-after", "4", "--size", "1200x800"])
    assert rc == 0 and png.is_file()
    img = QtGui.QImage(str(png)).convertToFormat(QtGui.QImage.Format.Format_RGB32)
    assert (img.width(), img.height()) == (1200, 800)
    ptr = img.constBits()
    px = np.frombuffer(ptr, np.uint8, img.sizeInBytes()).reshape(img.height(), img.bytesPerLine())
    assert px.std() > 20  # not a blank or single-colour image
    # the plot area holds more than background and text: curves were drawn in colour
    rgb = px[:, : img.width() * 4].reshape(img.height(), img.width(), 4)[..., :3].astype(int)
    colourful = (rgb.max(axis=2) - rgb.min(axis=2)) > 60
    assert colourful.mean() > 0.005


class FakeReplay:
    """Records what the replay bar asks for."""

    def __init__(self):
        self.calls: list = []
        self.duration_s, self.position_s, self.playing, self.endpoint = 10.0, 0.0, False, "inproc://x"

    def play(self):
        self.calls.append("play")
        self.playing = True

    def pause(self):
        self.calls.append("pause")
        self.playing = False

    def set_speed(self, speed):
        self.calls.append(("speed", speed))

    def seek(self, position_s):
        self.calls.append(("seek", position_s))
        self.position_s = position_s

    def close(self):
        self.calls.append("close")


def test_replay_bar_drives_its_controller(qtbot):
    ctl = FakeReplay()
    bar = ReplayBar(ctl)
    qtbot.addWidget(bar)
    seeks = []
    bar.seeked.connect(seeks.append)
    bar.play_button.click()
    assert ctl.playing and "Pause" in bar.play_button.text()
    bar.speed.setCurrentIndex(bar.speed.count() - 1)
    assert ctl.calls[-1] == ("speed", None)  # "max"
    bar.seek(4.0)
    assert seeks == [4.0] and bar.slider.value() == 400 and "4.0 / 10.0" in bar.position.text()
    bar.play_button.click()
    assert ctl.calls[-1] == "pause"


@pytest.mark.skipif(not replay_available(), reason="streamer.recording.replay is not in this build")
def test_replay_controls_on_a_simulated_recording(qtbot, tmp_path, tiny_weights):
    from streamer.sim.publisher import FeedConfig
    from streamer.recording.writer import simulate_to_file

    path = tmp_path / "sim.mcap"
    simulate_to_file(path, FeedConfig(sensors=2, duration_s=20.0, samples_per_message=1, seed=4))
    ctl = open_replay(path)
    win = MainWindow(WindowConfig(window_s=20.0),
                     WorkerConfig(receiver=ReceiverConfig(feeds=(ctl.endpoint,), services=(ctl.endpoint,)),
                                  weights=tiny_weights), replay=ctl)
    qtbot.addWidget(win)
    win.show()
    bar = win.replay_bar
    assert bar is not None and not ctl.playing
    qtbot.waitUntil(lambda: win.worker_info is not None, timeout=WAIT_MS)
    qtbot.wait(300)  # slow joiner: the worker's subscription reaches the replay socket
    bar.speed.setCurrentIndex(bar.speed.findText("5×"))
    bar.play_button.click()
    qtbot.waitUntil(lambda: ctl.playing and len(win.histories.get("radar-0", ())
                                                 and win.histories["radar-0"].samples) > 20, timeout=WAIT_MS)
    bar.play_button.click()
    assert not ctl.playing
    qtbot.wait(200)  # what was sent before the pause reaches the window
    bar.seek(15.0)  # the window forgets the history: time jumped
    assert all(len(h.samples) == 0 for h in win.histories.values())
    bar.play_button.click()
    qtbot.waitUntil(lambda: len(win.histories["radar-0"].samples) > 0, timeout=WAIT_MS)
    first_seq = int(win.histories["radar-0"].samples.view("seq")[0])
    assert first_seq >= int(14.0 * 20)  # resumed near 15 s (20 Hz), not from the start
    bar.refresh()
    assert ctl.position_s >= 15.0 and bar.slider.value() >= 700
    win.close()


def test_worker_drops_and_counts_when_the_gui_does_not_keep_up(qtbot, pipeline, tiny_weights):
    handoff = Handoff(limit=2)
    thread = WorkerThread(WorkerConfig(receiver=ReceiverConfig(feeds=(pipeline.feed_endpoint,),
                                                               services=(pipeline.service_endpoint,)),
                                       weights=tiny_weights), handoff)
    emitted = []
    thread.worker.batchReady.connect(lambda b: emitted.append(b))  # taken, never released: a stuck GUI
    thread.start()
    try:
        qtbot.waitUntil(lambda: thread.worker._receiver is not None
                        and thread.worker._receiver.counters["dropped_batches"] > 0, timeout=WAIT_MS)
    finally:
        thread.stop()
    assert handoff.in_flight == 2 and handoff.max_in_flight == 2  # the queue never grew past its bound
    assert len(emitted) == 2
    assert thread.worker._receiver is None  # sockets closed in the worker thread


def test_ring_buffer_wraps_and_stays_contiguous():
    ring = Ring(5, {"t_ns": np.int64, "v": np.float32}, {"v": (2,)})
    ring.append(t_ns=np.arange(3), v=np.ones((3, 2)))
    ring.append(t_ns=np.arange(3, 11), v=np.arange(16).reshape(8, 2))
    assert len(ring) == 5 and ring.total == 11
    assert list(ring.view("t_ns")) == [6, 7, 8, 9, 10]
    assert ring.view("t_ns").flags["C_CONTIGUOUS"] and ring.view("v").base is not None  # a view, no copy
    assert list(ring.view("v")[-1]) == [14, 15]
    assert ring.window(7, 9) == slice(1, 4)
    ring.truncate(2)
    ring.append(t_ns=np.array([100]), v=np.zeros((1, 2)))
    assert list(ring.view("t_ns")) == [6, 7, 100]
    ring.append(t_ns=np.arange(200, 212), v=np.zeros((12, 2)))  # more than the capacity at once
    assert list(ring.view("t_ns")) == list(range(207, 212))


def _chunk(x: np.ndarray, seq0: int, epoch: int = 1) -> SamplesChunk:
    n = len(x)
    seq = np.arange(seq0, seq0 + n, dtype=np.int64)
    nan = np.full(n, np.nan, np.float32)
    return SamplesChunk(seq * 50_000_000, seq, np.full(n, epoch, np.int64), x[:, 0], x[:, 1], nan, nan, nan, 50_000_000)


def test_gate_tracker_equals_the_model_and_adopts_checkpoints(tiny_weights):
    from models.bundle import load_model
    from streamer.sim.simulator import StreamSimulator

    model, _ = load_model("causal", tiny_weights)
    x = StreamSimulator(RadarConfig(gap_range_s=(0.1, 0.2)), 5).read(90).samples
    tracker = GateTracker(model)
    tracker.select("a")
    with torch.no_grad():
        out, (h, c) = model.lstm(model.normalizer(torch.from_numpy(x[None, :60])))
    g = tracker.feed({"a": _chunk(x[:60], 0)}, {"a": x[:60]})
    assert g.sensor == "a" and not g.replace and g.traces["h"].shape == (60, 16)
    assert np.allclose(g.traces["h"], out[0].numpy(), atol=1e-5)  # last layer h_t at every step
    assert np.allclose(g.traces["c"][-1], c[-1, 0].numpy(), atol=1e-5)
    # a service checkpoint at seq 60 (here: the state after other samples) is adopted exactly there
    with torch.no_grad():
        _, (h2, c2) = model.lstm(model.normalizer(torch.from_numpy(x[None, 30:90])))
        ref, _ = model.lstm(model.normalizer(torch.from_numpy(x[None, 60:90])), (h2, c2))
    tracker.checkpoint("a", 1, 60, h2[:, 0].numpy(), c2[:, 0].numpy())
    g = tracker.feed({"a": _chunk(x[60:90], 60)}, {"a": x[60:90]})
    assert tracker.adopted == 1 and np.allclose(g.traces["h"], ref[0].numpy(), atol=1e-5)
    # another sensor's backlog gives an immediate heatmap when selected
    tracker.feed({"b": _chunk(x[:40], 0)}, {"b": x[:40]})
    g = tracker.select("b", layer=0)
    assert g.replace and g.layer == 0 and len(g.t_ns) == 40


def test_rescore_channels_are_read_by_name():
    assert rescore_columns({"channels": ["y_bidir", "y_causal", "disagreement"]}, 3) == {
        "bidir": (0, 1.0), "causal": (1, 1.0), "disagreement": (2, 1.0)}
    assert rescore_columns({"channels": ["causal_m", "bidir_m"]}, 2) == {"bidir": (1, None), "causal": (0, None)}
    assert rescore_columns(None, 1) == {"bidir": (0, 1.0)}


def test_window_follows_a_dark_palette(qtbot, tiny_weights):
    win = MainWindow(WindowConfig(), WorkerConfig(receiver=ReceiverConfig(feeds=(), services=()), weights=tiny_weights),
                     start=False)
    qtbot.addWidget(win)
    assert not win.theme.dark  # the offscreen platform palette is light
    dark = QtGui.QPalette()
    for role in (QtGui.QPalette.ColorRole.Window, QtGui.QPalette.ColorRole.Base):
        dark.setColor(role, QtGui.QColor("#202124"))
    for role in (QtGui.QPalette.ColorRole.WindowText, QtGui.QPalette.ColorRole.Text):
        dark.setColor(role, QtGui.QColor("#e8eaed"))
    win.setPalette(dark)
    assert win.theme.dark
    assert win.signal_view.backgroundBrush().color().name() == "#202124"


def test_cli_commands_and_help_on_every_flag():
    from tools.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in ("gui", "bench-gui", "demo"):
        assert name in sub.choices
        for action in sub.choices[name]._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings} has no --help text"


def test_bench_gui_measures_a_small_window(tiny_weights, qapp, tmp_path):
    from bench.gui import BenchConfig, markdown, run_bench

    r = run_bench(BenchConfig(sensors=2, rate_hz=50.0, window_s=4.0, frames=3, live_s=0.0, weights=tiny_weights))
    assert len(r.update_ms) == 3 and r.points_per_curve == 200 and r.heatmap_columns > 0
    text = markdown(r, "radarstream bench-gui --sensors 2")
    assert "| **frame**" in text and "radarstream bench-gui --sensors 2" in text


def test_demo_runs_headless_without_a_display(tiny_weights):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    proc = subprocess.run(
        [sys.executable, "-m", "tools.cli", "demo", "--duration", "3.5", "--sensors", "2", "--weights", str(tiny_weights)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "running headless" in out and "no display" in out
    reports = [line for line in out.splitlines() if line.startswith("[")]
    assert len(reports) >= 2 and all("samples/s" in r and "latency p50" in r for r in reports)
    sensor_lines = [line for line in out.splitlines() if line.lstrip().startswith("radar-")]
    assert {line.split()[0] for line in sensor_lines} == {"radar-0", "radar-1"}
    assert any("Hz" in line and "causal" in line for line in sensor_lines)


def test_duplicates_are_dropped_and_a_restart_starts_a_fresh_history(qtbot, tiny_weights):
    from gui.stream import Batch, PredChunk

    win = MainWindow(WindowConfig(), WorkerConfig(receiver=ReceiverConfig(feeds=(), services=()), weights=tiny_weights),
                     start=False)
    qtbot.addWidget(win)
    x = np.ones((10, 2), np.float32)

    def feed(seq0: int, n: int = 10) -> None:
        ch = _chunk(x[:n], seq0)
        preds = PredChunk(ch.t_ns, np.full(n, 100.0, np.float32), np.ones(n, np.float32))
        win.handoff.try_acquire()
        win.ingest(Batch(0.0 + 1e9, {"a": ch}, {"a": preds}))

    feed(0)
    feed(5)  # overlaps 5..9: only 10..14 are new
    hist = win.histories["a"]
    assert list(hist.samples.view("seq")) == list(range(15)) and len(hist.preds) == 15
    feed(100_000)  # far ahead: a gap, kept
    feed(3)  # far back: the sensor restarted
    assert list(hist.samples.view("seq")) == list(range(3, 13))
    assert "time went back" in win.event_log.toPlainText()
