"""The monitor's "explain a window" panel: runs in the background, overlays the attribution."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6 import QtCore  # noqa: E402

from gui.stream import Batch, PredChunk, ReceiverConfig, SamplesChunk  # noqa: E402
from gui.window import MainWindow, WindowConfig  # noqa: E402
from gui.worker import WorkerConfig  # noqa: E402

PERIOD_NS = 50_000_000  # 20 Hz


def _batch(seq0: int, n: int, rng: np.random.Generator) -> Batch:
    seq = np.arange(seq0, seq0 + n, dtype=np.int64)
    t_ns = seq * PERIOD_NS + 1_000_000_000_000
    amp = (1.0 + np.abs(rng.normal(0, 1, n)) + 20 * np.exp(-((seq % 200 - 100) / 20.0) ** 2)).astype(np.float32)
    dist = np.where(amp > 4, 300 + np.abs(seq % 200 - 100) * 3.0, -1.0).astype(np.float32)
    dmin = np.full(n, 300.0, np.float32)
    nan = np.full(n, np.nan, np.float32)
    ch = SamplesChunk(t_ns, seq, np.ones(n, np.int64), amp, dist, dmin, nan, nan, PERIOD_NS)
    preds = PredChunk(t_ns, np.full(n, 350.0, np.float32), np.ones(n, np.float32))
    return Batch(time.monotonic(), {"radar-0": ch}, {"radar-0": preds})


def test_explain_runs_in_background_and_overlays_the_attribution(qtbot, tiny_weights, tmp_path):
    win = MainWindow(WindowConfig(window_s=20.0),
                     WorkerConfig(receiver=ReceiverConfig(feeds=(), services=()), weights=tiny_weights), start=False)
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    rng = np.random.default_rng(0)
    seq = [0]

    def feed(n: int = 4) -> None:  # a live 20 Hz sensor, pushed straight into the window
        win.handoff.try_acquire()
        win.ingest(_batch(seq[0], n, rng))
        seq[0] += n

    feed(600)  # 30 s of history
    feeder = QtCore.QTimer(win)
    feeder.timeout.connect(feed)
    feeder.start(20)
    win.redraw_timer.start(33)
    try:
        qtbot.waitUntil(lambda: len(win.histories["radar-0"].samples) >= 100 and win.frames > 0, timeout=10_000)
        panel = win.explain_panel
        frames0, t_start = win.frames, time.monotonic()
        assert panel.explain("saliency", "causal")
        assert panel.running and "running" in panel.status_label.text()
        assert not panel.explain()  # one at a time
        qtbot.waitUntil(lambda: not panel.running, timeout=25_000)
        frames, elapsed = win.frames - frames0, time.monotonic() - t_start
        assert panel.result is not None, panel.summary_label.text()
        n = len(panel.result.request.x)
        assert 350 <= n <= 450  # the visible 20 s at 20 Hz
        assert panel.amp_heat.image.shape[0] == n and panel.rng_heat.image.shape[0] == n
        assert panel.amp_heat.isVisible() and panel.rng_heat.isVisible()
        assert panel.result.explanation.attributions.shape == (n, 2)
        text = panel.summary_label.text()
        assert "saliency" in text and "causal" in text and "truth 300 m" in text
        # the GUI thread kept drawing while the model (and captum's import) ran in the pool's thread
        # (at least one frame per 100 ms of the job; the timer asks for one per 33 ms)
        assert frames >= int(elapsed / 0.1), f"only {frames} frames in {elapsed:.2f} s of explaining"
        # the overlay scrolls with the data: its left edge is the first sample's relative time
        win.force_redraw()
        left = panel.amp_heat.mapRectToParent(panel.amp_heat.boundingRect()).left()
        assert left == pytest.approx(panel.result.request.t[0] - win.x_origin_s, abs=1e-6)
        # a method that does not apply fails politely; a pooled-target run replaces the overlay
        assert panel.explain("attention", "causal")
        qtbot.waitUntil(lambda: not panel.running, timeout=25_000)
        assert "does not apply" in panel.status_label.text() and "saliency" in panel.summary_label.text()
        # pooled target of an attention-pooled model: attribution and the attention weights
        from models.bundle import build_model

        pooled = build_model("pooled", {"hidden_size": 8, "num_layers": 1, "r_max_m": 1000.0, "pooling": "attention"})
        panel.cache._models[(str(tiny_weights), "pooled")] = pooled.eval()
        assert panel.explain("ig", "pooled")
        qtbot.waitUntil(lambda: not panel.running, timeout=25_000)
        assert panel.result is not None and panel.result.request.target == "pooled", panel.status_label.text()
        assert panel.attention_curve.isVisible() and len(panel.attention_curve.xData) == n
        assert "IG delta" in panel.summary_label.text() and "attention" in panel.summary_label.text()
        feeder.stop()
        win.force_redraw()
        out = os.environ.get("RADARSTREAM_EXPLAIN_SHOT") or str(tmp_path / "explain.png")
        win.grab().save(out)
        feeder.start(20)
        # cancel: the stale result is ignored
        assert panel.explain("ig", "bidir")
        panel.cancel()
        assert not panel.running and panel.status_label.text() == "cancelled"
        panel.pool.waitForDone(25_000)
        qtbot.wait(50)
        assert panel.result.request.method == "ig" and panel.result.request.target == "pooled"
    finally:
        feeder.stop()
        win.close()
