"""The monitor's main window: the fleet (every sensor's health, best estimate and alerts) and the
detail view of one sensor (signal, estimates, live LSTM state, stream health), in two tabs, under
the near-miss banner.

Threading: batches arrive from the worker thread by a queued signal and are only copied into the
preallocated ring buffers and the fleet's arrays (cheap); a QTimer at ~30 Hz redraws from them.
Plot items and the table model are only ever touched here, in the GUI thread.
"""

from __future__ import annotations

import csv
import math
import statistics
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from gui.alert_banner import AlertBanner
from gui.alert_list import AlertList
from gui.buffers import GATE_NAMES, HistoryConfig, SensorHistory, StateHistory
from gui.controls import ControlBar
from gui.explain_panel import ExplainPanel
from gui.fleet_model import ALERT_RGB, HEALTH_RGB, FleetModel, tint
from gui.fleet_state import KIND_CAUSAL, KIND_HYBRID, Alert, FleetConfig, FleetState, Health
from gui.fleet_view import FleetView
from gui.plots import SignalPlots, StatePlots, detection_ticks, step_points, theme_for, with_gaps
from gui.replay import ReplayBar, ReplayController
from gui.series_legend import SeriesLegend
from gui.status_panel import EventLog, StatusPanel
from gui.stream import PRED_METRES, Batch, Handoff, ReceiverCounters, natural_key
from gui.worker import WorkerConfig, WorkerThread

_PRED_EXTRA = tuple(name for name, _ in PRED_METRES)


@dataclass(frozen=True)
class WindowConfig:
    """Display settings (the worker has its own :class:`gui.worker.WorkerConfig`)."""

    window_s: float = 60.0
    """Length of the scrolling time window."""
    redraw_hz: float = 30.0
    threshold_m: float = 50.0
    """Disagreement |causal − bidir| above which the estimates plot is shaded."""
    history: HistoryConfig = field(default_factory=HistoryConfig)
    heatmap_columns: int = 1500
    """Heatmap columns drawn at most (more are decimated at draw time)."""
    max_events: int = 500
    """Lines kept in the event log."""
    title: str = "radarstream monitor"
    start_view: str = "detail"
    """Tab shown first: ``fleet`` (every sensor) or ``detail`` (one sensor's plots)."""
    fleet: FleetConfig = field(default_factory=FleetConfig)
    gap_periods: float = 3.0
    """Consecutive samples further apart than this many sample periods are an outage: the curves
    are broken there (no line across missing time)."""
    fleet_refresh_s: float = 0.25
    """The fleet table is refreshed from the redraw timer at most this often (4 Hz: a table of
    numbers needs no 30 frames/s; a repaint of its visible rows costs ~10-25 ms of Python calls).
    Alerts do not wait for it: the banner is raised as the event is ingested."""


def _join(src_t: np.ndarray, src_v: np.ndarray, dst_t: np.ndarray) -> np.ndarray:
    """Values of ``src`` at exactly the times ``dst_t`` (NaN where absent); src_t ascending."""
    out = np.full(len(dst_t), np.nan, np.float64)
    if len(src_t) == 0 or len(dst_t) == 0:
        return out
    idx = np.clip(np.searchsorted(src_t, dst_t), 0, len(src_t) - 1)
    hit = src_t[idx] == dst_t
    out[hit] = src_v[idx[hit]]
    return out


def _fmt_us(v: Any) -> str:
    if v is None:
        return "–"
    v = float(v)
    return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.0f} µs"


class MainWindow(QtWidgets.QMainWindow):
    """One sensor at a time; the selector lists every sensor seen."""

    selectionChanged = QtCore.Signal(object, int, int)  # sensor, layer (-1 keep), heatmap stride
    closed = QtCore.Signal()

    def __init__(self, config: WindowConfig = WindowConfig(), worker: WorkerConfig = WorkerConfig(), *,
                 replay: ReplayController | None = None, autoplay: bool = False, start: bool = True):
        super().__init__()
        self.config = config
        self.worker_config = worker
        self.setWindowTitle(config.title)
        self.theme = theme_for(self.palette())
        self.handoff = Handoff(worker.handoff_limit)
        self.histories: dict[str, SensorHistory] = {}
        self.state: StateHistory | None = None
        self.sensor: str | None = None
        self.layer = -1
        self.layers = 0
        self.hidden = 0
        self.stride = 1
        self.t_ref_ns: int | None = None  # time origin of the rings' "t" column
        self.x_origin_s = 0.0  # rings' "t" of the newest sample drawn: x = t - x_origin_s
        self._x_range: tuple[float, float] | None = None
        self._state_drawn: tuple[StateHistory | None, float] = (None, 0.0)  # what the heatmaps show
        self.paused = False
        self.r_max_m = worker.receiver.r_max_m or 1000.0
        self.counters = ReceiverCounters()
        self.stats: dict[str, Any] | None = None
        self.stats_at = 0.0
        self.refusal: str | None = None  # while a publisher refuses our CURVE handshake (its line)
        self.rescore_summaries: dict[str, dict[str, Any]] = {}  # latest re-score summary per sensor
        self.event_counts: Counter = Counter()  # (sensor, type) -> n
        self.redraw_ms: deque[float] = deque(maxlen=120)
        self.frame_times: deque[float] = deque(maxlen=120)
        self.batches = 0
        self.frames = 0
        self.heatmap_frames = 0  # frames that re-rendered the heatmaps
        self.readout_text = ""
        self._dirty = False
        self._rates: dict[str, deque] = {}
        self._replay = replay
        self._autoplay = autoplay and replay is not None
        self.worker_info: dict | None = None  # set once the worker has opened its sockets
        self._cleared_at = 0.0
        self.fleet_state = FleetState(config.fleet)
        self._shown_order: dict[str, float] = {}  # sensor -> when last selected (history eviction)
        if replay is not None:
            self.fleet_state.live_text = "replaying"  # never "live" in a replay
        self.alerts_active: dict[str, Alert] = {}  # sensor -> its near_miss not cleared yet
        self.follow = True
        self._offsets: dict[str, tuple[int, float]] = {}  # sensor -> (sample time − monotonic ns, when)
        self._fleet_at = -1e9
        self._last_frame = 0.0
        self.fleet_ms: deque[float] = deque(maxlen=120)

        self._build_ui()
        if replay is not None:
            self.replay_bar = ReplayBar(replay, self)
            self.replay_bar.seeked.connect(lambda _pos: self.clear())
            self.addToolBar(QtCore.Qt.ToolBarArea.BottomToolBarArea, self.replay_bar)
        else:
            self.replay_bar = None

        self.worker_thread = WorkerThread(worker, self.handoff)
        w = self.worker_thread.worker
        w.batchReady.connect(self.ingest)
        w.info.connect(self._on_worker_info)
        self.selectionChanged.connect(w.select)

        self.redraw_timer = QtCore.QTimer(self)
        self.redraw_timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self.redraw_timer.timeout.connect(self.redraw)
        self.status_timer = QtCore.QTimer(self)
        self.status_timer.timeout.connect(self.refresh_status)
        if start:
            self.start()

    # ------------------------------------------------------------------ UI

    def _build_ui(self) -> None:
        """Lay out the widgets (gui/controls.py, gui/status_panel.py, gui/plots.py) and connect
        them to this window's behaviour."""
        cfg = self.config
        self.controls = ControlBar(self, window_s=cfg.window_s, threshold_m=cfg.threshold_m)
        self.addToolBar(self.controls)
        c = self.controls
        self.sensor_box, self.window_box, self.layer_box, self.threshold_box = c.sensor_box, c.window_box, c.layer_box, c.threshold_box
        self.pause_button, self.clear_button, self.export_button = c.pause_button, c.clear_button, c.export_button
        self.sensor_box.currentTextChanged.connect(self.select_sensor)
        self.window_box.valueChanged.connect(self._on_window)
        self.layer_box.currentIndexChanged.connect(self._on_layer)
        self.threshold_box.valueChanged.connect(lambda _v: self._mark_dirty())
        self.pause_button.toggled.connect(self.set_paused)
        self.clear_button.clicked.connect(self.clear)
        self.export_button.clicked.connect(self._on_export)

        self.signal_view = pg.GraphicsLayoutWidget(self)
        self.state_view = pg.GraphicsLayoutWidget(self)
        self.signal_plots = SignalPlots(self.signal_view, self.theme, self.r_max_m)
        self.state_plots = StatePlots(self.state_view, self.theme, self.signal_plots.amp)
        self.state_plots.show_message("loading the causal model…")
        self.legend = SeriesLegend(self.signal_plots.series_style(), self)
        self.legend.toggled.connect(self.signal_plots.set_series_visible)
        signal_box = QtWidgets.QWidget(self)
        signal_col = QtWidgets.QVBoxLayout(signal_box)
        signal_col.setContentsMargins(0, 0, 0, 0)
        signal_col.setSpacing(0)
        signal_col.addWidget(self.legend)
        signal_col.addWidget(self.signal_view, 1)
        self.state_view.setMinimumWidth(200)
        self.signal_view.setMinimumWidth(300)
        top = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal, self)
        top.addWidget(signal_box)
        top.addWidget(self.state_view)
        top.setStretchFactor(0, 3)
        top.setStretchFactor(1, 2)
        top.setSizes([760, 520])

        self.status_box = StatusPanel(self)
        self.status_labels = self.status_box.labels
        events_box = EventLog(self, cfg.max_events)
        self.event_log = events_box.log
        bottom = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal, self)
        bottom.addWidget(self.status_box)
        bottom.addWidget(events_box)
        bottom.setStretchFactor(0, 3)
        bottom.setStretchFactor(1, 1)
        bottom.setSizes([1200, 330])

        main = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical, self)
        main.addWidget(top)
        main.addWidget(bottom)
        main.setStretchFactor(0, 5)
        main.setStretchFactor(1, 1)
        main.setSizes([820, 150])
        self.detail_page = main

        # the fleet: every sensor in one table (model over arrays), the alert list below it
        self.fleet_model = FleetModel(self.fleet_state, self)
        self.fleet_model.set_base(self.palette().color(QtGui.QPalette.ColorRole.Base))
        self.fleet_view = FleetView(self.fleet_model, self)
        self.alert_list = AlertList(self)
        fleet_page = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical, self)
        fleet_page.addWidget(self.fleet_view)
        fleet_page.addWidget(self.alert_list)
        fleet_page.setStretchFactor(0, 3)
        fleet_page.setStretchFactor(1, 1)
        fleet_page.setSizes([520, 180])
        self.fleet_page = fleet_page
        self.tabs = QtWidgets.QTabWidget(self)
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(fleet_page, "Fleet")
        self.tabs.addTab(main, "Detail")
        self.banner = AlertBanner(self)
        central = QtWidgets.QWidget(self)
        column = QtWidgets.QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        column.addWidget(self.banner)
        column.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        self.fleet_view.sensorClicked.connect(self.select_sensor)
        self.fleet_view.sensorActivated.connect(self.open_sensor)
        self.alert_list.sensorActivated.connect(self.open_sensor)
        self.banner.openRequested.connect(self.open_sensor)
        c.follow_box.toggled.connect(self.set_follow)
        c.c_scale_box.valueChanged.connect(self._on_c_scale)
        self.state_plots.on_c_locked = self._show_c_scale
        for p in self.signal_plots.plots:
            p.vb.sigRangeChangedManually.connect(self._on_manual_range)

        self.explain_panel = ExplainPanel(self)
        self.explain_dock = QtWidgets.QDockWidget("Explain a window", self)
        self.explain_dock.setObjectName("explain")
        self.explain_dock.setFeatures(QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetMovable
                                      | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.explain_dock.setWidget(self.explain_panel)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.BottomDockWidgetArea, self.explain_dock)
        self.tabs.currentChanged.connect(self._on_tab)
        self.tabs.setCurrentIndex(0 if cfg.start_view == "fleet" else 1)
        self._on_tab(self.tabs.currentIndex())

        self.readout = QtWidgets.QLabel("Move the mouse over a plot to read every curve at that time", self)
        self.statusBar().addWidget(self.readout, 1)
        self.mode_label = QtWidgets.QLabel("", self)
        self.statusBar().addPermanentWidget(self.mode_label)
        # one proxy per view: the two scenes have overlapping coordinates
        self._mouse_proxies = [
            pg.SignalProxy(self.signal_view.scene().sigMouseMoved, rateLimit=30, slot=self._on_mouse),
            pg.SignalProxy(self.state_view.scene().sigMouseMoved, rateLimit=30, slot=self._on_mouse_state),
        ]
        QtGui.QShortcut(QtGui.QKeySequence("Space"), self, activated=self.pause_button.toggle)
        self._set_live_interaction()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        rc = self.worker_config.receiver
        stamp = time.strftime("%H:%M:%S")
        self.log_lines([f"{stamp} {'monitor':<12} feed    {', '.join(rc.feeds) or '–'}",
                        f"{stamp} {'monitor':<12} service {', '.join(rc.services) or '–'}"])
        self.worker_thread.start()
        self.redraw_timer.start(max(1, int(1000 / self.config.redraw_hz)))
        self.status_timer.start(250)

    def shutdown(self) -> None:
        """Stop timers and the worker (sockets close in the worker thread)."""
        self.redraw_timer.stop()
        self.status_timer.stop()
        self.explain_panel.shutdown()
        self.worker_thread.stop()
        if self._replay is not None:
            self._replay.close()
            self._replay = None

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)
        self.closed.emit()

    def changeEvent(self, event: QtCore.QEvent) -> None:
        if event.type() in (QtCore.QEvent.Type.PaletteChange, QtCore.QEvent.Type.ApplicationPaletteChange):
            theme = theme_for(self.palette())
            if theme != self.theme:
                self.theme = theme
                self.signal_plots.apply_theme(theme)
                self.state_plots.apply_theme(theme)
                self.fleet_model.set_base(self.palette().color(QtGui.QPalette.ColorRole.Base))
                self.legend.set_styles(self.signal_plots.series_style())
                self._state_drawn = (None, 0.0)
                self._mark_dirty()
        super().changeEvent(event)

    # ------------------------------------------------------------------ worker → GUI

    @QtCore.Slot(object)
    def _on_worker_info(self, info: dict) -> None:
        self.worker_info = info
        if self._autoplay and self.replay_bar is not None:
            self._autoplay = False
            # the sockets are open; give the subscriptions a moment to reach the replay publisher
            QtCore.QTimer.singleShot(300, self.replay_bar.play)
        if info.get("r_max_m"):
            self.r_max_m = float(info["r_max_m"])
            self.signal_plots.set_r_max(self.r_max_m)
        if not info.get("gate_model"):
            self.state_plots.show_message("LSTM state view off:\n" + info.get("reason", "no model"))
            return
        self.layers, self.hidden = int(info["layers"]), int(info["hidden"])
        self.layer_box.blockSignals(True)
        self.layer_box.clear()
        for k in range(self.layers):
            role = "first" if k == 0 and self.layers > 1 else ("last" if k == self.layers - 1 else "")
            self.layer_box.addItem(f"{k + 1}" + (f" ({role})" if role else ""), k)
        self.layer = self.layers - 1
        self.layer_box.setCurrentIndex(self.layer)
        self.layer_box.blockSignals(False)
        self.layer_box.setEnabled(True)
        self.state_plots.set_hidden(self.hidden, f"layer {self.layer + 1}")
        self.state_plots.show_message("" if self.sensor else "waiting for samples…")
        self._request_gates()

    @QtCore.Slot(object)
    def ingest(self, batch: Batch) -> None:
        """Copy a batch into the rings (no drawing here); always frees its hand-off slot."""
        try:
            self._ingest(batch)
        finally:
            self.handoff.release()

    def _ingest(self, batch: Batch) -> None:
        self.batches += 1
        self.counters = batch.counters
        self.refusal = batch.refusal
        if batch.created < self._cleared_at:  # polled before a clear (replay seek): stale data
            return
        if batch.r_max_m and self.worker_config.receiver.r_max_m is None and abs(batch.r_max_m - self.r_max_m) > 1e-6:
            self.r_max_m = batch.r_max_m
            self.signal_plots.set_r_max(self.r_max_m)
        if self.t_ref_ns is None:
            firsts = [int(c.t_ns[0]) for c in batch.samples.values() if len(c)]
            firsts += [int(c.t_ns[0]) for c in batch.preds.values() if len(c)]
            if firsts:
                self.t_ref_ns = min(firsts)
        ref = self.t_ref_ns or 0
        now = time.monotonic()
        fleet = self.fleet_state
        for sensor, ch in batch.samples.items():
            if len(ch):
                fleet.touch(sensor, now, int(ch.t_ns[-1]))
            hist = self._history(sensor)
            if hist is None:
                continue
            hist.period_ns = ch.period_ns
            k = self._fresh(hist, hist.samples, ch.t_ns)
            pick = (lambda a: a) if k is None else (lambda a: a[k])  # noqa: E731
            amp = pick(ch.amplitude)
            hist.samples.append(t_ns=pick(ch.t_ns), t=(pick(ch.t_ns) - ref) * 1e-9, seq=pick(ch.seq), amplitude=amp,
                                amplitude_db=(20.0 * np.log10(np.maximum(amp, 1e-3))).astype(np.float32),
                                distance_m=pick(ch.distance_m), dmin_m=pick(ch.dmin_m),
                                true_range_m=pick(ch.true_range_m), snr_db=pick(ch.snr_db))
            self._rates.setdefault(sensor, deque(maxlen=64)).append((now, len(ch)))
            if len(ch):
                self._note_clock(sensor, int(ch.t_ns[-1]), now)
        for sensor, ch in batch.preds.items():
            if len(ch):
                fleet.touch(sensor, now, int(ch.t_ns[-1]))
                hyb = float(ch.column("hybrid_m")[-1])
                ttc = float(ch.column("time_to_cpa_s")[-1])
                if math.isfinite(hyb):
                    fleet.set_estimate(sensor, hyb, float(ch.column("hybrid_std_m")[-1]), KIND_HYBRID, ttc)
                else:
                    fleet.set_estimate(sensor, float(ch.y_m[-1]), float(ch.column("std_m")[-1]), KIND_CAUSAL, ttc)
            hist = self._history(sensor)
            if hist is not None:
                k = self._fresh(hist, hist.preds, ch.t_ns)
                pick = (lambda a: a) if k is None else (lambda a: a[k])  # noqa: E731
                hist.preds.append(t_ns=pick(ch.t_ns), t=(pick(ch.t_ns) - ref) * 1e-9, y_m=pick(ch.y_m),
                                  latency_us=pick(ch.latency_us),
                                  **{name: pick(ch.column(name)) for name in _PRED_EXTRA})
                if not len(batch.samples.get(sensor, ())) and len(ch):
                    self._note_clock(sensor, int(ch.t_ns[-1]), now)
        for sensor, chunks in batch.rescores.items():
            hist = self._history(sensor)
            if hist is None:
                continue
            for ch in chunks:
                self._ingest_rescore(hist, ch, ref)
                self.rescore_summaries[sensor] = {"sensor": sensor, **ch.summary}
        g = batch.gates
        if g is not None and g.sensor == self.sensor and self.hidden:
            if g.replace or self.state is None:
                self.state = StateHistory(self.config.history.state_columns, self.hidden)
            if len(g.t_ns):
                self.state.ring.append(t_ns=g.t_ns, t=(g.t_ns - ref) * 1e-9, **g.traces)
        if batch.events:
            self._log_events(batch.events)
            for ev in batch.events:
                alert = fleet.event(ev, now)
                if alert is not None:
                    self._on_alert(alert)
        if batch.stats is not None:
            self.stats, self.stats_at = batch.stats, now
            lag = (batch.stats.get("health") or {}).get("lag")
            if isinstance(lag, dict):
                fleet.set_lagging(bool(lag.get("alarm")))
        self._mark_dirty()

    def _note_clock(self, sensor: str, t_last_ns: int, now: float) -> None:
        """Relate the sensor's sample clock to the monotonic clock (its least delayed arrival,
        slowly forgotten: 1 ms per s), so that the live view can keep time moving when the sensor
        stops: a dead feed scrolls away instead of freezing."""
        off = t_last_ns - int(now * 1e9)
        prev = self._offsets.get(sensor)
        if prev is not None:
            off = max(off, prev[0] - int((now - prev[1]) * 1e6))
        self._offsets[sensor] = (off, now)

    def _now_ns(self, sensor: str) -> int | None:
        """The sensor's "now" in its own sample time (None: unknown, or in a replay)."""
        prev = self._offsets.get(sensor)
        if prev is None or self._replay is not None:
            return None
        now = time.monotonic()
        return int(now * 1e9) + prev[0] - int((now - prev[1]) * 1e6)

    def _on_alert(self, alert: Alert) -> None:
        """A near_miss raises the banner and a list row; near_miss_cleared lowers it."""
        self.alert_list.add(alert)
        if alert.active:
            self.alerts_active[alert.sensor] = alert
            self.banner.show_alert(alert, len(self.alerts_active))
            return
        self.alerts_active.pop(alert.sensor, None)
        if not self.alerts_active:
            self.banner.clear()
        elif self.banner.isVisibleTo(self) or self.banner.sensor == alert.sensor:  # not if dismissed
            newest = max(self.alerts_active.values(), key=lambda a: a.wall_s)
            self.banner.show_alert(newest, len(self.alerts_active))

    def _fresh(self, hist: SensorHistory, ring, t_ns: np.ndarray) -> np.ndarray | None:
        """Rows to append so that the ring stays in time order (it is binary-searched): rows at or
        before its newest time are duplicates and dropped, unless time went back far (a restarted
        publisher, a replay seeking back): then the sensor starts a fresh history. None: all rows."""
        if not len(ring) or not len(t_ns):
            return None
        last = int(ring.last("t_ns"))
        if int(t_ns[0]) > last:
            return None
        if last - int(t_ns[0]) > 4096 * max(hist.period_ns, 1):
            hist.clear()
            self._offsets.pop(hist.sensor, None)
            self.fleet_state.restarted(hist.sensor, time.monotonic())
            self.log_lines([f"{time.strftime('%H:%M:%S')} {hist.sensor:<12} {'time went back':<13} history cleared"])
            return None
        return t_ns > last

    def _ingest_rescore(self, hist: SensorHistory, ch, ref: int) -> None:
        ring = hist.rescores
        if len(ring):  # a window replaces earlier rows from its first sample on
            ring.truncate(int(np.searchsorted(ring.view("t_ns"), ch.t_ns[0], "left")))
        causal = ch.causal_m.astype(np.float64)
        missing = np.isnan(causal)
        if missing.any():
            causal[missing] = _join(hist.preds.view("t_ns"), hist.preds.view("y_m"), ch.t_ns[missing])
        dis = ch.disagreement_m.astype(np.float64)
        dmiss = np.isnan(dis)
        dis[dmiss] = np.abs(ch.bidir_m[dmiss] - causal[dmiss])
        ring.append(t_ns=ch.t_ns, t=(ch.t_ns - ref) * 1e-9, bidir_m=ch.bidir_m, causal_m=causal, disagreement_m=dis)

    def _history(self, sensor: str, make_room: bool = False) -> SensorHistory | None:
        """The sensor's history, allocated on first sight while fewer than ``max_sensors`` have
        one. The fleet has every sensor; opening one without a history (``make_room``) frees the
        history of the sensor least recently shown (its plots start empty and fill from now)."""
        hist = self.histories.get(sensor)
        if hist is None:
            if len(self.histories) >= self.config.history.max_sensors:
                if not make_room:
                    return None
                shown = self._shown_order
                victims = [s for s in self.histories if s != self.sensor]
                victim = min(victims, key=lambda s: shown.get(s, -1.0)) if victims else None
                if victim is None:
                    return None
                del self.histories[victim]
                self._offsets.pop(victim, None)
                k = self.sensor_box.findText(victim)
                if k >= 0:
                    self.sensor_box.blockSignals(True)
                    self.sensor_box.removeItem(k)
                    self.sensor_box.blockSignals(False)
            hist = self.histories[sensor] = SensorHistory(sensor, self.config.history)
            names = sorted(self.histories, key=natural_key)
            self.sensor_box.blockSignals(True)
            self.sensor_box.insertItem(names.index(sensor), sensor)
            self.sensor_box.blockSignals(False)
            if self.sensor is None:
                self.sensor_box.setCurrentText(sensor)
                self.select_sensor(sensor)
            else:
                self.sensor_box.blockSignals(True)
                self.sensor_box.setCurrentText(self.sensor)
                self.sensor_box.blockSignals(False)
        return hist

    def log_lines(self, lines: list[str]) -> None:
        """Append to the event log, keeping the view at the start of the lines (not their end)."""
        self.event_log.appendPlainText("\n".join(lines))
        cursor = self.event_log.textCursor()
        cursor.movePosition(QtGui.QTextCursor.MoveOperation.End)
        cursor.movePosition(QtGui.QTextCursor.MoveOperation.StartOfBlock)
        self.event_log.setTextCursor(cursor)

    def _log_events(self, events) -> None:
        lines = []
        for ev in events:
            self.event_counts[(ev.sensor, ev.type)] += 1
            if ev.type == "gap" and ev.meta.get("action") == "reset":
                self.event_counts[(ev.sensor, "gap_reset")] += 1
            if len(lines) < 20:
                details = ", ".join(f"{k}={v}" for k, v in ev.meta.items() if k != "type" and v is not None
                                    and not isinstance(v, (dict, list)) and not k.endswith("_ns")
                                    and not (isinstance(v, int) and abs(v) > 10**12))
                stamp = time.strftime("%H:%M:%S", time.localtime(ev.t_ns / 1e9)) if ev.t_ns > 0 else "--:--:--"
                lines.append(f"{stamp} {ev.sensor:<12} {ev.type:<13} {details}")
        if len(events) > len(lines):
            lines.append(f"… and {len(events) - len(lines)} more events in this batch")
        self.log_lines(lines)

    # ------------------------------------------------------------------ controls

    @QtCore.Slot(str)
    def select_sensor(self, sensor: str) -> None:
        if not sensor or sensor == self.sensor and self.state is not None:
            return
        self.sensor = sensor
        self._shown_order[sensor] = time.monotonic()
        if sensor not in self.histories and sensor in self.fleet_state.index:
            self._history(sensor, make_room=True)  # a fleet sensor beyond the histories kept
        self.signal_plots.set_sensor(sensor)
        if self.sensor_box.currentText() != sensor:
            self.sensor_box.blockSignals(True)
            self.sensor_box.setCurrentText(sensor)
            self.sensor_box.blockSignals(False)
        self.state = None
        self.state_plots.clear()
        if self.hidden:
            self.state_plots.show_message("")
        self._request_gates()
        self._mark_dirty()

    @QtCore.Slot(str)
    def open_sensor(self, sensor: str) -> None:
        """Show ``sensor`` in the detail view (fleet double-click, alert list, banner)."""
        if sensor:
            self.select_sensor(sensor)
            self.tabs.setCurrentWidget(self.detail_page)

    def show_fleet(self) -> None:
        self.tabs.setCurrentWidget(self.fleet_page)

    def _on_tab(self, index: int) -> None:
        detail = self.tabs.widget(index) is self.detail_page
        self.explain_dock.setVisible(detail)  # explaining is about the detail view's window
        if detail:
            self._mark_dirty()
        else:
            self._fleet_at = -1e9  # refresh the table at the next tick

    @QtCore.Slot(bool)
    def set_follow(self, follow: bool) -> None:
        """Follow newest: the newest samples at the right edge. Off: the time axis stays where the
        user put it (zoom/pan) while the data keep coming."""
        self.follow = bool(follow)
        if self.controls.follow_box.isChecked() != self.follow:
            self.controls.follow_box.blockSignals(True)
            self.controls.follow_box.setChecked(self.follow)
            self.controls.follow_box.blockSignals(False)
        if self.follow:
            self._x_range = None  # back to [-window, 0]
        self._set_live_interaction()
        self._mark_dirty()

    def _on_manual_range(self, mask) -> None:
        """The user zoomed or panned a plot: on the time axis, stop following the newest."""
        x_changed = mask is None or (len(mask) > 0 and bool(mask[0]))
        if x_changed and self.follow and not self.paused:
            self.set_follow(False)

    def _on_c_scale(self, value: float) -> None:
        if value > 0 and value != self.state_plots.c_limit:
            self.state_plots.lock_c(value)
            self._state_drawn = (None, 0.0)
            self._mark_dirty()

    def _show_c_scale(self, limit: float) -> None:
        box = self.controls.c_scale_box
        if box.value() != limit:
            box.blockSignals(True)
            box.setValue(limit)
            box.blockSignals(False)

    def _request_gates(self) -> None:
        self.stride = self._wanted_stride()
        self.selectionChanged.emit(self.sensor, self.layer, self.stride)

    def _wanted_stride(self) -> int:
        """Heatmap column every ``stride`` samples so that the window fits half the state ring."""
        hist = self.histories.get(self.sensor or "")
        period = hist.period_ns if hist is not None and hist.period_ns > 0 else 0
        if not period:
            return 1
        per_window = self.window_box.value() * 1e9 / period
        return max(1, math.ceil(per_window / (self.config.history.state_columns // 2)))

    def _on_window(self, _value: float) -> None:
        self._state_drawn = (None, 0.0)
        self._follow_window()
        self._mark_dirty()

    def _follow_window(self) -> None:
        """Keep the heatmap stride and the amplitude axis fitted to the window's length (the
        selected sensor's rate may only become known, or change, after the window was set)."""
        if self._wanted_stride() != self.stride:
            self.state = None
            self._request_gates()
        hist = self.histories.get(self.sensor or "")
        if hist is not None and not self.paused and len(hist.samples):
            n = int(self.window_box.value() * 1e9 / hist.period_ns) if hist.period_ns else len(hist.samples)
            self.signal_plots.fit_amplitude(hist.samples.view("amplitude_db", n))

    def _on_layer(self, index: int) -> None:
        if index < 0:
            return
        self.layer = int(self.layer_box.itemData(index))
        self.state = None
        self.state_plots.clear()
        self.state_plots.set_hidden(self.hidden, f"layer {self.layer + 1}")
        self._request_gates()

    @QtCore.Slot(bool)
    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        if self.pause_button.isChecked() != paused:
            self.pause_button.setChecked(paused)
        self.pause_button.setText("Resume" if paused else "Pause")
        icon = QtWidgets.QStyle.StandardPixmap.SP_MediaPlay if paused else QtWidgets.QStyle.StandardPixmap.SP_MediaPause
        self.pause_button.setIcon(self.style().standardIcon(icon))
        self._set_live_interaction()
        if not paused:
            self._x_range = None  # back to [-window, 0] after any pan/zoom
            self._mark_dirty()

    def _set_live_interaction(self) -> None:
        """Mouse zoom/pan on both axes, live or paused; live, zooming the time axis stops
        following the newest samples (Follow newest brings them back)."""
        for p in self.signal_plots.plots:
            p.setMouseEnabled(x=True, y=True)
        self._update_mode()

    def mode_text(self) -> str:
        """What the corner says: REPLAY with its position, PAUSED, or LIVE (following or not)."""
        parts = []
        bar = self.replay_bar if hasattr(self, "replay_bar") else None
        if bar is not None and self._replay is not None:
            ctl = self._replay
            speed = bar.speed.currentText()
            parts.append(f"REPLAY {'playing' if ctl.playing else 'stopped'} {speed} · "
                         f"{float(ctl.position_s):.1f} / {float(ctl.duration_s):.1f} s")
        if self.paused:
            parts.append("PAUSED: display frozen, data still recorded (drag/zoom the time axis)")
        elif bar is None or self._replay is None:
            parts.append("LIVE" if self.follow else "LIVE · not following the newest (tick Follow newest)")
        elif not self.follow:
            parts.append("not following the newest")
        return " · ".join(parts)

    def _update_mode(self) -> None:
        text = self.mode_text()
        if text != self.mode_label.text():
            self.mode_label.setText(text)
            colour = "#56B4E9" if text.startswith("REPLAY") else ("#E69F00" if self.paused else "#009E73")
            self.mode_label.setStyleSheet(f"QLabel {{ background: {colour}; color: black; padding: 0 6px; "
                                          "border-radius: 2px; font-weight: bold; }")

    @QtCore.Slot()
    def clear(self) -> None:
        """Forget every sensor's history (and batches polled before now)."""
        self._cleared_at = time.monotonic()
        for hist in self.histories.values():
            hist.clear()
        self.state = None
        self.state_plots.clear()
        self.t_ref_ns = None
        self.x_origin_s = 0.0
        self._offsets.clear()
        sp = self.signal_plots
        for item in (sp.amplitude, sp.detections, sp.true_range, sp.causal, sp.bidir, sp.truth, sp.hybrid,
                     sp.band_hi, sp.band_lo):
            item.setData([], [])
        self.signal_plots.set_bands(np.empty(0), np.empty(0), 0.0, 0.0)
        self.explain_panel.cancel()  # its times would refer to the old origin
        self.explain_panel.clear_overlay()
        self._request_gates()

    def _mark_dirty(self) -> None:
        """Ask the redraw timer for a frame (it skips frames when nothing changed)."""
        self._dirty = True

    # ------------------------------------------------------------------ drawing

    def visible_range_ns(self) -> tuple[int, int] | None:
        """Time range (ns) currently on screen, from the plots' x axis."""
        if self.t_ref_ns is None:
            return None
        x0, x1 = self.signal_plots.est.viewRange()[0]
        base = self.t_ref_ns + self.x_origin_s * 1e9
        return int(base + x0 * 1e9), int(math.ceil(base + x1 * 1e9))

    @QtCore.Slot()
    def redraw(self) -> None:
        """The redraw timer (GUI thread, ~30 Hz): the fleet table, then the selected sensor from
        the rings (skipped when paused or when nothing changed).

        While following, x is time relative to "now" in the sensor's clock (its newest sample,
        and beyond it when the feed stops), so the axes stay put while the data scroll: a moving
        x range would make pyqtgraph regenerate every time axis and re-process every curve once
        more per frame (measured: the largest cost of a live frame)."""
        self.refresh_fleet()
        if self.paused:
            return
        if self.tabs.currentWidget() is not self.detail_page and not self._dirty_detail_forced:
            return
        extrapolating = self.follow and self._now_ns(self.sensor or "") is not None
        stale = extrapolating and time.perf_counter() - self._last_frame > 0.045  # time moves on a dead feed
        if not (self._dirty or stale):
            return
        started = time.perf_counter()
        self._dirty = False
        hist = self.histories.get(self.sensor or "")
        if hist is None or self.t_ref_ns is None:
            return
        t_last = hist.latest_t_ns()
        if t_last is None:
            return
        span = self.window_box.value()
        if self.follow:
            now_ns = self._now_ns(hist.sensor)
            origin_ns = max(t_last, now_ns) if now_ns is not None else t_last
            x0, x1 = -span, 0.0
        else:  # the user's range, around a frozen origin: new data appear on the right
            origin_ns = int(self.t_ref_ns + self.x_origin_s * 1e9)
            x0, x1 = self.signal_plots.amp.viewRange()[0]
        lo, hi = origin_ns + int(x0 * 1e9), origin_ns + int(math.ceil(x1 * 1e9))
        origin = self.x_origin_s = (origin_ns - self.t_ref_ns) * 1e-9
        sp = self.signal_plots
        gap = self.config.gap_periods * hist.period_ns * 1e-9 if hist.period_ns else 0.0
        s = hist.samples
        w = s.window(lo, hi)
        t = s.view("t")[w] - origin
        truth_range = s.view("true_range_m")[w]
        dmin = s.view("dmin_m")[w]
        has_truth = bool(len(t)) and not np.isnan(truth_range).all()
        tg, (amp_g, range_g, dmin_g) = with_gaps(t, (s.view("amplitude_db")[w], truth_range, dmin), gap)
        sp.amplitude.setData(tg, amp_g)
        dist = s.view("distance_m")[w]
        det = dist >= 0.0  # < 0: no detection on that dwell (protocol §6): not drawn at all
        columns = int(np.clip(sp.rng.vb.width(), 64, 4096))
        sp.detections.setData(*detection_ticks(t[det], dist[det], x0, x1, columns, 0.006 * self.r_max_m))
        sp.true_range.setData(tg, range_g) if has_truth else sp.true_range.setData([], [])
        sp.truth.setData(*step_points(tg, dmin_g)) if has_truth else sp.truth.setData([], [])
        p = hist.preds
        wp = p.window(lo, hi)
        hyb, hstd = p.view("hybrid_m")[wp], p.view("hybrid_std_m")[wp]
        half = sp.BAND_Z * hstd
        tp, (y_g, hyb_g, band_lo, band_hi) = with_gaps(p.view("t")[wp] - origin,
                                                        (p.view("y_m")[wp], hyb, hyb - half, hyb + half), gap)
        sp.causal.setData(tp, y_g)
        if len(hyb) and np.isfinite(hyb).any():
            sp.hybrid.setData(tp, hyb_g)
            sp.band_lo.setData(tp, band_lo)
            sp.band_hi.setData(tp, band_hi)
        else:
            for item in (sp.hybrid, sp.band_lo, sp.band_hi):
                item.setData([], [])
        if hist.has_rescores:
            r = hist.rescores
            wr = r.window(lo, hi)
            tr = r.view("t")[wr] - origin
            tr_g, (bidir_g,) = with_gaps(tr, (r.view("bidir_m")[wr],), gap)
            sp.bidir.setData(tr_g, bidir_g)
            self._draw_bands(tr, r.view("disagreement_m")[wr], hist.period_ns, x0, x1)
        else:
            sp.bidir.setData([], [])
            sp.set_bands(np.empty(0), np.empty(0), x0, x1)
        self._draw_stale(hist.sensor, x1)
        self._draw_state(lo, hi, origin)
        self.explain_panel.place(origin)
        if self.follow and self._x_range != (x0, x1):  # only when the window length changes (or after a pause)
            self._x_range = (x0, x1)
            sp.amp.setXRange(x0, x1, padding=0)
        now = time.perf_counter()
        self._last_frame = now
        self.redraw_ms.append((now - started) * 1e3)
        self.frame_times.append(now)
        self.frames += 1

    _dirty_detail_forced = False

    def _draw_stale(self, sensor: str, x1: float) -> None:
        """"no sample for N s" over the plots when the selected sensor's feed went quiet."""
        fleet = self.fleet_state
        k = fleet.index.get(sensor)
        text = ""
        if k is not None and fleet.health[k] == Health.SILENT:
            text = f"{sensor}: {fleet.state_text(k)} (last sample {fleet.age_text(k)})"
        self.signal_plots.set_stale(text, x1)

    def refresh_fleet(self, force: bool = False) -> None:
        """Recompute the fleet's health and, when the fleet tab shows, its table (one dataChanged:
        the view repaints the visible rows only). At most every ``fleet_refresh_s``."""
        now = time.monotonic()
        fleet = self.fleet_state
        if not (force or now - self._fleet_at >= self.config.fleet_refresh_s):
            return
        started = time.perf_counter()
        self._fleet_at = now
        if force or self.tabs.currentWidget() is self.fleet_page:
            self.fleet_view.refresh(now)
            self.fleet_ms.append((time.perf_counter() - started) * 1e3)
        else:
            fleet.refresh(now)

    def force_redraw(self) -> None:
        """One frame now, even if paused, unchanged or on the fleet tab (screenshots, benchmarks)."""
        paused, self.paused, self._dirty = self.paused, False, True
        self._dirty_detail_forced = True
        try:
            self.refresh_fleet(force=True)
            self.redraw()
        finally:
            self.paused = paused
            self._dirty_detail_forced = False

    def _draw_bands(self, t: np.ndarray, dis: np.ndarray, period_ns: int, x0: float, x1: float) -> None:
        over = np.nan_to_num(dis, nan=0.0) > self.threshold_box.value()
        if len(t) == 0 or not over.any():
            self.signal_plots.set_bands(np.empty(0), np.empty(0), x0, x1)
            return
        edges = np.diff(np.concatenate(([0], over.view(np.int8), [0])))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        dt = period_ns * 1e-9 if period_ns else 0.0
        width = int(np.clip(self.signal_plots.est.vb.width(), 64, 4096))
        self.signal_plots.set_bands(t[starts], t[ends - 1] + dt, x0, x1, width)

    def _draw_state(self, lo: int, hi: int, origin: float) -> None:
        st = self.state
        if st is None or not len(st):
            return
        # Re-render the heatmaps only when they would move by a pixel or more: a heatmap column
        # spans several frames (60 s over ~250 px: 0.24 s), so most frames would redraw the same image.
        px_s = self.window_box.value() / max(self.state_plots.plots["h"].vb.width(), 1.0)
        if st is self._state_drawn[0] and 0.0 <= origin - self._state_drawn[1] < px_s:
            return
        self._state_drawn = (st, origin)
        self.heatmap_frames += 1
        ring = st.ring
        w = ring.window(lo, hi)
        n = w.stop - w.start
        if n <= 0:
            self.state_plots.clear()
            return
        limit = min(self.config.heatmap_columns, max(64, int(self.state_plots.plots["h"].vb.width())))
        step = max(1, math.ceil(n / limit))  # about one column per pixel: more is invisible and costly
        sel = slice(w.start, w.stop, step)
        t = ring.view("t")[sel] - origin
        spacing = (t[-1] - t[0]) / max(len(t) - 1, 1) if len(t) > 1 else 0.05
        traces = {g: ring.view(g)[sel] for g in GATE_NAMES}
        self.state_plots.set_images(float(t[0]), float(t[-1] + spacing), traces, columns=n)

    # ------------------------------------------------------------------ status

    def sensor_rate(self, sensor: str) -> float:
        """Samples per second of ``sensor`` over the last few seconds of batches."""
        q = self._rates.get(sensor)
        if not q:
            return 0.0
        now = time.monotonic()
        recent = [(t, n) for t, n in q if now - t <= 3.0]
        if len(recent) < 2:
            return 0.0
        span = max(recent[-1][0] - recent[0][0], 1e-3)
        return sum(n for _, n in recent[1:]) / span

    @QtCore.Slot()
    def refresh_status(self) -> None:
        lab = self.status_labels
        c = self.counters
        total_rate = sum(self.sensor_rate(s) for s in self.histories)
        lab["input"].setText(f"{total_rate:,.0f} samples/s · {len(self.histories)} sensors")
        sel = self.sensor or "–"
        if self.sensor:
            hist = self.histories.get(self.sensor)
            nominal = f" (nominal {1e9 / hist.period_ns:g})" if hist is not None and hist.period_ns else ""
            lab["sensor_rate"].setText(f"{sel} · {self.sensor_rate(self.sensor):.1f} Hz{nominal}")
        stats = self.stats
        fresh = stats is not None and time.monotonic() - self.stats_at < 5.0
        if fresh:
            lat = stats.get("latency_us") or {}
            lab["latency"].setText(f"{_fmt_us(lat.get('p50'))} / {_fmt_us(lat.get('p99'))} / {_fmt_us(lat.get('max'))}")
            lab["service"].setText(f"{stats.get('samples_per_s', 0):,.0f} samples/s · {stats.get('sensors', 0)} sensors")
            lab["service"].setToolTip(f"The service's throughput and sensors; backend {stats.get('backend', '?')}")
        else:
            lab["latency"].setText("–")
            if self.refusal is not None:  # not "not running": running, and refusing this monitor's key
                lab["service"].setText(self.refusal.split(": ", 1)[0])  # "refused by ENDPOINT": fits the column
                lab["service"].setToolTip(self.refusal)  # the reason and the retry
            else:
                lab["service"].setText("no stats (service not running?)" if stats is None else "stats stale (stopped?)")
                lab["service"].setToolTip("")
        counters = (stats or {}).get("counters", {}) or {}
        errors = (stats or {}).get("decode_errors", {}) or {}
        ev = self.event_counts
        mine = lambda t: ev.get((self.sensor, t), 0)  # noqa: E731
        resets = sum(v for k, v in counters.items() if k.startswith("reset_")) + counters.get("epoch_change", 0) \
            + counters.get("backwards", 0)
        lab["gaps"].setText(f"{counters.get('gap', 0)} ({counters.get('gap_samples', 0)} samples) · "
                            f"{sel}: {mine('gap')}")
        lab["resets"].setText(f"{resets} · {sel}: {mine('reset') + mine('epoch_change') + mine('backwards') + mine('gap_reset')}")
        lab["malformed"].setText(f"{sum(errors.values())} · GUI {c.decode_errors} · {sel}: {mine('malformed')}")
        lab["duplicates"].setText(f"{counters.get('duplicate', 0)} · {sel}: {mine('duplicate')}")
        lab["drops"].setText(f"{c.dropped_samples} · upstream {c.feed_gap_samples} · queue "
                             f"{self.handoff.in_flight}/{self.handoff.limit}")
        lab["drops"].setToolTip(f"{lab['drops'].toolTip().split(' [')[0]} [queue max {c.max_in_flight}]")
        med = statistics.median(self.redraw_ms) if self.redraw_ms else 0.0
        ft = [t for t in self.frame_times if time.perf_counter() - t < 2.0]
        fps = (len(ft) - 1) / max(ft[-1] - ft[0], 1e-3) if len(ft) > 1 else 0.0
        lab["gui"].setText(f"{med:.1f} ms median · {fps:.0f} frames/s")
        service_rs = (stats or {}).get("rescore") if fresh else None
        lab["rescore"].setText(self._rescore_text(service_rs))
        if service_rs:
            cost = service_rs.get("cost_ms_p50")
            lab["rescore"].setToolTip(f"Latest re-scored window of the selected sensor (samples, mean and max |causal − "
                                      f"bidir|); the stage: {service_rs.get('windows_scored', 0)} windows scored, "
                                      f"{service_rs.get('windows_dropped', 0)} dropped"
                                      + (f", {cost:.0f} ms each" if cost is not None else ""))
        self._health_status()
        self._update_mode()
        self._follow_window()

    def _health_status(self) -> None:
        """The selected sensor's health and "last sample N s ago", coloured as its fleet row."""
        fleet = self.fleet_state
        fleet.refresh(time.monotonic())
        k = fleet.index.get(self.sensor or "")
        lab, panel = self.status_labels, self.status_box
        if k is None:
            lab["health"].setText("–")
            lab["last_sample"].setText("–")
            panel.set_colour("health", None)
            panel.set_colour("last_sample", None)
            return
        base = self.palette().color(QtGui.QPalette.ColorRole.Base)
        h = Health(int(fleet.health[k]))
        text = f"{self.sensor} · {fleet.state_text(k)}"
        alert = self.alerts_active.get(self.sensor or "")
        if alert is not None:
            text = f"{self.sensor} · NEAR MISS {alert.margin_m:.0f} m · {fleet.state_text(k)}"
        lab["health"].setText(text)
        rgb = ALERT_RGB if alert is not None else HEALTH_RGB[h]
        panel.set_colour("health", tint(rgb, base, 0.45).name())
        silence = float(fleet.silence_after_s()[k])
        lab["last_sample"].setText(f"{fleet.age_text(k)} (silent > {silence:.1f} s)")
        panel.set_colour("last_sample", tint(HEALTH_RGB[Health.SILENT], base, 0.45).name() if h is Health.SILENT
                         else None)

    def _rescore_text(self, service: dict | None) -> str:
        """Latest re-scored window and the stage's own counters (from the service stats)."""
        rs = self.rescore_summaries.get(self.sensor or "")
        if not rs and not service:
            return ("none yet for this sensor" if self.rescore_summaries
                    else "none received (re-scoring stage not running)")
        parts = []
        if rs:  # short: the row must fit at 1280 px (the tooltip says what the numbers are)
            head = f"{rs['seq_start']}–{rs['seq_end']}" if "seq_start" in rs and "seq_end" in rs else ""
            if isinstance(rs.get("mean_abs_m"), (int, float)):
                mx = rs.get("max_abs_m")
                head += f": |Δ| {rs['mean_abs_m']:.0f} m" + (f" (max {mx:.0f})" if isinstance(mx, (int, float)) else "")
            parts.append(head or ", ".join(f"{k}={v}" for k, v in list(rs.items())[:3]))
        if service and not parts:  # the stage's counters: here when nothing else, else in the tooltip
            scored, dropped = service.get("windows_scored", 0), service.get("windows_dropped", 0)
            cost = service.get("cost_ms_p50")
            parts.append(f"{scored} win, {dropped} dropped" + (f", {cost:.0f} ms" if cost is not None else ""))
        return " · ".join(parts)

    # ------------------------------------------------------------------ cursor readout

    def _on_mouse(self, args) -> None:
        """Mouse over the signal view (``args[0]``: position in that view's scene)."""
        pos = args[0]
        for p in self.signal_plots.plots:
            if p.vb.sceneBoundingRect().contains(pos):
                self.show_readout(p.vb.mapSceneToView(pos).x())
                return

    def _on_mouse_state(self, args) -> None:
        """Mouse over the state view: the readout adds the unit under the mouse."""
        pos = args[0]
        for gate, p in self.state_plots.plots.items():
            if p.vb.sceneBoundingRect().contains(pos):
                pt = p.vb.mapSceneToView(pos)
                self.show_readout(pt.x(), pt.y(), gate)
                return

    def show_readout(self, x: float, y: float | None = None, gate: str | None = None) -> str:
        """Values of every curve at time ``x`` (s); with ``gate``, the unit under ``y`` too."""
        for line in (*self.signal_plots.cursors, *self.state_plots.cursors):
            line.setPos(x)
            line.setVisible(True)
        hist = self.histories.get(self.sensor or "")
        x_rel, x = x, x + self.x_origin_s  # the plots are relative to the newest sample
        parts = [f"t = {x_rel:+.3f} s"]
        if self.t_ref_ns is not None:
            abs_s = (self.t_ref_ns + x * 1e9) / 1e9
            parts[0] += time.strftime(" (%H:%M:%S", time.localtime(abs_s)) + f".{int(abs_s * 10) % 10})"
        if hist is not None:
            def near(ring, name, tol_s):
                if not len(ring):
                    return None
                tv = ring.view("t")
                k = int(np.clip(np.searchsorted(tv, x), 1, len(tv) - 1)) if len(tv) > 1 else 0
                if len(tv) > 1 and abs(tv[k - 1] - x) < abs(tv[k] - x):
                    k -= 1
                return float(ring.view(name)[k]) if abs(tv[k] - x) <= tol_s else None

            tol = max(hist.period_ns * 1e-9, 1e-3) * 1.5
            s = hist.samples
            amp = near(s, "amplitude_db", tol)
            if amp is not None:
                parts.append(f"amplitude {amp:.1f} dB")
                d = near(s, "distance_m", tol)
                parts.append(f"range {d:.0f} m" if d is not None and d >= 0 else "no detection")
                tr = near(s, "true_range_m", tol)
                if tr is not None and not math.isnan(tr):
                    parts.append(f"true range {tr:.0f} m")
                snr = near(s, "snr_db", tol)
                if snr is not None and not math.isnan(snr):
                    parts.append(f"SNR {snr:.1f} dB")
            yc = near(hist.preds, "y_m", tol)
            if yc is not None:
                parts.append(f"causal {yc:.0f} m")
            yh = near(hist.preds, "hybrid_m", tol)
            if yh is not None and not math.isnan(yh):
                sd = near(hist.preds, "hybrid_std_m", tol)
                parts.append(f"hybrid {yh:.0f} m" + (f" ± {sd:.0f}" if sd is not None and not math.isnan(sd) else ""))
            b = near(hist.rescores, "bidir_m", tol) if hist.has_rescores else None
            if b is not None and not math.isnan(b):
                parts.append(f"bidir {b:.0f} m")
                dis = near(hist.rescores, "disagreement_m", tol)
                if dis is not None and not math.isnan(dis):
                    parts.append(f"|Δ| {dis:.0f} m")
            dm = near(s, "dmin_m", tol)
            if dm is not None and not math.isnan(dm):
                parts.append(f"truth Dmin {dm:.0f} m")
        if gate is not None and y is not None and self.state is not None and len(self.state):
            ring = self.state.ring
            tv = ring.view("t")
            k = int(np.clip(np.searchsorted(tv, x), 0, len(tv) - 1))
            unit = int(np.clip(math.floor(y), 0, self.hidden - 1))
            name = "ĉ" if gate == "g" else gate
            parts.append(f"{name}[unit {unit}] = {float(ring.view(gate)[k, unit]):+.3f}")
        self.readout_text = " · ".join(parts)
        self.readout.setText(self.readout_text)
        return self.readout_text

    # ------------------------------------------------------------------ export

    def _on_export(self) -> None:
        default = f"{self.sensor or 'radarstream'}-{time.strftime('%Y%m%d-%H%M%S')}.csv"
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Export visible range", default, "CSV files (*.csv)")
        if path:
            n = self.export_csv(path)
            self.statusBar().showMessage(f"wrote {n} rows to {path}", 5000)

    CSV_COLUMNS = ("time_s", "time_ns", "seq", "amplitude", "distance_m", "true_range_m", "snr_db", "true_dmin_m",
                   "causal_m", "latency_us", "bidir_m", "disagreement_m")

    def export_csv(self, path: str | Path, t_range_ns: tuple[int, int] | None = None) -> int:
        """Write the selected sensor's samples in the visible range (or ``t_range_ns``) joined with
        predictions and re-scores by sample time, in the product's CSV vocabulary (docs/csv.md: empty
        cells for "no detection" and missing values). Returns the number of data rows."""
        from streamer.recording.csv_schema import open_table

        hist = self.histories.get(self.sensor or "")
        rng = t_range_ns or self.visible_range_ns()
        comment = [f"# sensor={self.sensor}", f"t_ref_ns={self.t_ref_ns}", f"r_max_m={self.r_max_m:g}"]
        with open_table(path, self.CSV_COLUMNS, comment=comment) as table:
            if hist is None or rng is None:
                return 0
            s, p = hist.samples, hist.preds
            r = hist.rescores if hist.has_rescores else None
            w = s.window(*rng)
            t_ns = s.view("t_ns")[w]
            sample_cols = ("seq", "amplitude", "distance_m", "true_range_m", "snr_db", "dmin_m")
            if len(t_ns) == 0:  # no samples subscribed: export the predictions alone
                t_ns = p.view("t_ns")[p.window(*rng)]
                cols = {k: np.full(len(t_ns), np.nan) for k in sample_cols}
            else:
                cols = {k: s.view(k)[w] for k in sample_cols}
            none = np.empty(0)
            r_t = r.view("t_ns") if r is not None else none
            return table.write({
                "time_s": (t_ns - (self.t_ref_ns or 0)) * 1e-9, "time_ns": t_ns, "seq": cols["seq"],
                "amplitude": cols["amplitude"], "distance_m": cols["distance_m"], "true_range_m": cols["true_range_m"],
                "snr_db": cols["snr_db"], "true_dmin_m": cols["dmin_m"],
                "causal_m": _join(p.view("t_ns"), p.view("y_m"), t_ns),
                "latency_us": _join(p.view("t_ns"), p.view("latency_us"), t_ns),
                "bidir_m": _join(r_t, r.view("bidir_m") if r is not None else none, t_ns),
                "disagreement_m": _join(r_t, r.view("disagreement_m") if r is not None else none, t_ns),
            })
