"""Explain a window from the monitor: attribution of one estimate, computed off the GUI thread.

The user picks a window (the visible time range of the selected sensor, or a click on a shaded
disagreement region of the estimates plot), a method and a target; :func:`models.attribution.
explain_window` runs in a :class:`QtCore.QThreadPool` of one thread (one job at a time), and the
result is overlaid on the signal plots as semi-transparent heat bands: the amplitude channel's
attribution behind the amplitude, the distance channel's behind the measured range, and for an
attention-pooled model the attention weights as a curve on the estimates plot.

Cancel-safe: every job has an id; a cancelled or superseded job stops at its next model
evaluation (its progress callback raises) and whatever it still sends is ignored. The models are
loaded lazily in the job's thread (models.attribution pulls captum and costs seconds).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from radarstream import palette

if TYPE_CHECKING:
    from gui.window import MainWindow

METHODS: tuple[str, ...] = ("saliency", "ig", "occlusion", "ablation", "lime", "shap", "attention")
TARGETS: tuple[str, ...] = ("causal", "bidir", "pooled")
MAX_SAMPLES = 4096
"""Longest window explained (the newest samples of a longer selection)."""
POSITIVE = palette.RAISES  # the sample raised the estimate (not the vermillion of the disagreement shading)
NEGATIVE = palette.LOWERS  # it lowered it
MAX_ALPHA = 150


class Cancelled(Exception):
    """Raised from the progress callback of a cancelled job."""


@dataclass(frozen=True)
class ExplainRequest:
    """One window of raw samples of one sensor and what to run on it."""

    job: int
    sensor: str
    method: str
    target: str
    x: np.ndarray  # [T, 2] float32: amplitude (noise RMS = 1), distance m (-1: no detection)
    t: np.ndarray  # [T] the rings' "t" (s since the window's time origin) of each sample
    dmin_m: np.ndarray  # [T] truth Dmin (NaN: unknown)
    weights: Path | None


@dataclass(frozen=True)
class ExplainResult:
    request: ExplainRequest
    explanation: Any  # models.attribution Explanation
    attention: Any | None  # AttentionWeights for an attention-pooled model (pooled target), else None
    wall_s: float


class _Signals(QtCore.QObject):
    """Lives in the GUI thread: emitting from the job's thread queues the call."""

    finished = QtCore.Signal(object)  # ExplainResult
    failed = QtCore.Signal(int, str)  # job, message
    progress = QtCore.Signal(int, int, int)  # job, done, total


class _ModelCache:
    """Models by (weights, target), loaded on first use in the job's thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self._models: dict[tuple[str, str], Any] = {}

    def get(self, weights: Path | None, target: str):
        key = (str(weights), target)
        with self._lock:
            if key not in self._models:
                from models.bundle import load_model

                self._models[key] = load_model(target, weights)[0]
            return self._models[key]


class ExplainJob(QtCore.QRunnable):
    def __init__(self, request: ExplainRequest, signals: _Signals, cache: _ModelCache, cancelled: threading.Event):
        super().__init__()
        self.setAutoDelete(True)
        self.request = request
        self.signals = signals
        self.cache = cache
        self.cancelled = cancelled

    def run(self) -> None:  # the pool's thread
        req = self.request
        started = time.perf_counter()
        last = [0.0]

        def progress(done: int, total: int) -> None:
            if self.cancelled.is_set():
                raise Cancelled()
            now = time.perf_counter()
            if now - last[0] > 0.1:
                last[0] = now
                self._emit("progress", req.job, int(done), int(total))

        try:
            from models.attribution import available_methods, explain_window  # lazy: captum, matplotlib

            model = self.cache.get(req.weights, req.target)
            if self.cancelled.is_set():
                raise Cancelled()
            if req.method not in available_methods(model, req.target):
                raise ValueError(f"{req.method} does not apply to the {req.target} model"
                                 + (" (needs attention pooling)" if req.method == "attention" else ""))
            res = explain_window(req.target, model, req.x, req.method, progress=progress)
            attention = None
            if req.method == "attention":
                attention = res
            elif req.target == "pooled" and "attention" in available_methods(model, req.target):
                attention = explain_window(req.target, model, req.x, "attention", progress=progress)
            self._emit("finished", ExplainResult(req, res, attention, time.perf_counter() - started))
        except Cancelled:
            self._emit("failed", req.job, "cancelled")
        except Exception as exc:  # a failed explanation must never take the monitor down
            self._emit("failed", req.job, f"{exc.__class__.__name__}: {exc}")

    def _emit(self, name: str, *args) -> None:
        try:
            getattr(self.signals, name).emit(*args)
        except RuntimeError:  # the panel (and its signals object) is gone: nobody to tell
            pass


def heat_rgba(values: np.ndarray, scale: float, signed: bool) -> np.ndarray:
    """``[T] -> [T, 1, 4]`` uint8: POSITIVE (> 0) / NEGATIVE (< 0), alpha ∝ sqrt(|value| / scale)."""
    v = np.nan_to_num(np.asarray(values, np.float64))
    mag = np.clip(np.abs(v) / scale, 0.0, 1.0) if scale > 0 else np.zeros_like(v)
    out = np.zeros((len(v), 1, 4), np.uint8)
    pos = (v >= 0) | (not signed)
    out[pos, 0, :3] = POSITIVE
    out[~pos, 0, :3] = NEGATIVE
    out[:, 0, 3] = (np.sqrt(mag) * MAX_ALPHA).astype(np.uint8)  # sqrt: small but non-zero stays visible
    return out


class ExplainPanel(QtWidgets.QWidget):
    """Controls, status and summary of the window explanation; owns the overlay plot items."""

    def __init__(self, window: MainWindow):
        super().__init__(window)
        self.win = window
        self.pool = QtCore.QThreadPool(self)
        self.pool.setMaxThreadCount(1)  # one explanation at a time
        self.signals = _Signals(self)
        self.signals.finished.connect(self._on_finished)
        self.signals.failed.connect(self._on_failed)
        self.signals.progress.connect(self._on_progress)
        self.cache = _ModelCache()
        self.job = 0  # id of the job whose result is wanted (0: none)
        self.running = False
        self._cancel = threading.Event()
        self.selection: tuple[str, int, int, str] | None = None  # sensor, t0_ns, t1_ns, description
        self.result: ExplainResult | None = None
        self._placed_origin: float | None = None

        sp = window.signal_plots
        self.amp_heat = pg.ImageItem(axisOrder="col-major")
        self.rng_heat = pg.ImageItem(axisOrder="col-major")
        for item, plot in ((self.amp_heat, sp.amp), (self.rng_heat, sp.rng)):
            item.setZValue(-5)
            item.setVisible(False)
            plot.addItem(item, ignoreBounds=True)
        self.attention_curve = pg.PlotDataItem(pen=pg.mkPen((204, 121, 167), width=2))  # Okabe–Ito purple
        self.attention_curve.setVisible(False)
        sp.est.addItem(self.attention_curve, ignoreBounds=True)
        self.extent = pg.LinearRegionItem(movable=False, brush=pg.mkBrush(128, 128, 128, 24),
                                          pen=pg.mkPen(128, 128, 128, 160))
        self.extent.setZValue(-6)
        self.extent.setVisible(False)
        sp.est.addItem(self.extent, ignoreBounds=True)  # the explained window, on the estimates plot

        self.method_box = QtWidgets.QComboBox(self)
        self.method_box.addItems(METHODS)
        self.method_box.setToolTip("Attribution method (docs/explain.md); attention needs an attention-pooled model")
        self.target_box = QtWidgets.QComboBox(self)
        self.target_box.addItems(TARGETS)
        self.target_box.setToolTip("Estimate explained: causal / bidirectional at the window's last sample, "
                                   "or the pooled model's window estimate")
        self.visible_button = QtWidgets.QPushButton("Use visible range", self)
        self.visible_button.setToolTip("Explain the selected sensor's samples in the visible time range "
                                       "(or click a shaded disagreement region of the estimates plot)")
        self.visible_button.clicked.connect(self.select_visible)
        self.explain_button = QtWidgets.QPushButton("Explain", self)
        self.explain_button.clicked.connect(lambda: self.explain())
        self.cancel_button = QtWidgets.QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.clear_button = QtWidgets.QPushButton("Clear overlay", self)
        self.clear_button.clicked.connect(self.clear_overlay)
        self.window_label = QtWidgets.QLabel("window: visible range", self)
        self.status_label = QtWidgets.QLabel("idle", self)
        self.status_label.setMinimumWidth(140)
        self.summary_label = QtWidgets.QLabel(
            "Pick a window, a method and a target, then Explain. Heat bands: purple = the sample "
            "raised the estimate, blue = lowered it (saliency: sensitivity, unsigned).", self)
        self.summary_label.setWordWrap(True)
        self.summary_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)

        row = QtWidgets.QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        for label, w in (("Method ", self.method_box), ("  Target ", self.target_box)):
            row.addWidget(QtWidgets.QLabel(label, self))
            row.addWidget(w)
        row.addSpacing(12)
        for w in (self.visible_button, self.window_label):
            row.addWidget(w)
        row.addStretch(1)
        for w in (self.explain_button, self.cancel_button, self.clear_button, self.status_label):
            row.addWidget(w)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(6, 2, 6, 2)
        layout.setSpacing(2)
        layout.addLayout(row)
        layout.addWidget(self.summary_label)

        window.signal_view.scene().sigMouseClicked.connect(self._on_click)

    # ------------------------------------------------------------------ window selection

    @QtCore.Slot()
    def select_visible(self) -> None:
        """Explain the visible time range of the selected sensor (the default)."""
        self.selection = None
        self.window_label.setText("window: visible range")

    def select_range(self, t0_ns: int, t1_ns: int, description: str = "") -> None:
        sensor = self.win.sensor or ""
        self.selection = (sensor, int(t0_ns), int(t1_ns), description or "selected range")
        self.window_label.setText(f"window: {self.selection[3]}")

    def _on_click(self, event) -> None:
        sp = self.win.signal_plots
        if not sp.est.vb.sceneBoundingRect().contains(event.scenePos()):
            return
        region = self.region_at(sp.est.vb.mapSceneToView(event.scenePos()).x())
        if region is not None:
            self.select_range(*region)

    def region_at(self, x: float) -> tuple[int, int, str] | None:
        """The disagreement region (|causal − bidir| > threshold) under plot x, as (t0_ns, t1_ns,
        description), or None."""
        win = self.win
        hist = win.histories.get(win.sensor or "")
        if hist is None or not hist.has_rescores or win.t_ref_ns is None:
            return None
        r = hist.rescores
        t = r.view("t")
        x_abs = x + win.x_origin_s
        k = int(np.searchsorted(t, x_abs))
        over = np.nan_to_num(r.view("disagreement_m"), nan=0.0) > win.threshold_box.value()
        tol = max(hist.period_ns * 1e-9, 1e-3) * 1.5
        cand = [j for j in (k - 1, k) if 0 <= j < len(t) and over[j] and abs(t[j] - x_abs) <= tol]
        if not cand:
            return None
        a = b = cand[0]
        while a > 0 and over[a - 1]:
            a -= 1
        while b + 1 < len(t) and over[b + 1]:
            b += 1
        tn = r.view("t_ns")
        return int(tn[a]), int(tn[b]), f"disagreement {t[a] - win.x_origin_s:+.1f}…{t[b] - win.x_origin_s:+.1f} s"

    def window_samples(self):
        """``(sensor, x [T, 2], t [T], dmin [T])`` of the chosen window, or a reason string."""
        win = self.win
        if self.selection is not None:
            sensor, t0, t1, _ = self.selection
        else:
            rng = win.visible_range_ns()
            sensor = win.sensor or ""
            if rng is None:
                return "no samples yet"
            t0, t1 = rng
        hist = win.histories.get(sensor)
        if hist is None or not len(hist.samples):
            return f"no samples of {sensor or 'any sensor'}"
        s = hist.samples
        w = s.window(t0, t1)
        lo = max(w.start, w.stop - MAX_SAMPLES)
        if w.stop - lo < 2:
            return "fewer than 2 samples in the window"
        dist = np.nan_to_num(s.view("distance_m")[lo:w.stop].astype(np.float32), nan=-1.0)
        x = np.stack([s.view("amplitude")[lo:w.stop].astype(np.float32), np.where(dist >= 0, dist, -1.0)], axis=1)
        return sensor, np.ascontiguousarray(x, np.float32), s.view("t")[lo:w.stop].copy(), \
            s.view("dmin_m")[lo:w.stop].astype(np.float64)

    # ------------------------------------------------------------------ running

    def explain(self, method: str | None = None, target: str | None = None) -> bool:
        """Start an explanation of the chosen window in the background; False (and a status
        message) when there is nothing to explain or one is already running."""
        if method is not None:
            self.method_box.setCurrentText(method)
        if target is not None:
            self.target_box.setCurrentText(target)
        if self.running:
            self.status_label.setText("already running (Cancel first)")
            return False
        got = self.window_samples()
        if isinstance(got, str):
            self.status_label.setText(got)
            return False
        sensor, x, t, dmin = got
        self.job += 1
        self._cancel = threading.Event()
        req = ExplainRequest(self.job, sensor, self.method_box.currentText(), self.target_box.currentText(), x, t, dmin,
                             self.win.worker_config.weights)
        self.running = True
        self._set_running(True)
        self.status_label.setText(f"running… {req.method} on {len(x)} samples")
        self.pool.start(ExplainJob(req, self.signals, self.cache, self._cancel))
        return True

    @QtCore.Slot()
    def cancel(self) -> None:
        """Stop the running job at its next model evaluation; its result is ignored."""
        if not self.running:
            return
        self._cancel.set()
        self.job += 1  # whatever the old job still sends is stale
        self.running = False
        self._set_running(False)
        self.status_label.setText("cancelled")

    def _set_running(self, running: bool) -> None:
        self.explain_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    @QtCore.Slot(int, int, int)
    def _on_progress(self, job: int, done: int, total: int) -> None:
        if job == self.job and self.running:
            self.status_label.setText(f"running… {done}/{total} evaluations")

    @QtCore.Slot(int, str)
    def _on_failed(self, job: int, message: str) -> None:
        if job != self.job:
            return
        self.running = False
        self._set_running(False)
        self.status_label.setText("cancelled" if message == "cancelled" else f"failed: {message}")
        self.status_label.setToolTip(message)

    @QtCore.Slot(object)
    def _on_finished(self, result: ExplainResult) -> None:
        if result.request.job != self.job:
            return  # cancelled or superseded
        self.running = False
        self._set_running(False)
        self.result = result
        self.status_label.setText(f"done in {result.wall_s:.2f} s")
        self.summary_label.setText(self.summary_text(result))
        self._draw(result)

    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Cancel and wait for the running job (window closing)."""
        self._cancel.set()
        self.job += 1
        self.pool.waitForDone(timeout_ms)

    # ------------------------------------------------------------------ result

    @staticmethod
    def summary_text(result: ExplainResult) -> str:
        req, res = result.request, result.explanation
        r_max = float(res.r_max_m)
        T = len(req.x)
        if res.step is not None:
            k = int(np.clip(res.step, 0, T - 1))
            truth = req.dmin_m[k]
            at = f"step {k + 1}/{T}"
        else:
            finite = req.dmin_m[np.isfinite(req.dmin_m)]
            truth = float(np.median(finite)) if len(finite) else math.nan
            at = f"{T} samples"
        parts = [f"{req.method} · {req.target} · {req.sensor} ({at})",
                 f"estimate {res.estimate_m:.0f} m vs truth " + ("–" if not math.isfinite(truth) else
                                                                  f"{truth:.0f} m (error {res.estimate_m - truth:+.0f} m)")]
        delta = getattr(res, "delta", None)
        if delta is not None:
            parts.append(f"IG delta {delta * r_max:+.2f} m")
        base = getattr(res, "baseline_estimate", math.nan)
        if isinstance(base, float) and math.isfinite(base):
            parts.append(f"noise-only baseline {base * r_max:.0f} m")
        if result.attention is not None:
            parts.append(f"attention ({getattr(result.attention, 'pooling', '')}) on the estimates plot")
        parts.append(f"{res.seconds:.2f} s")
        return " · ".join(parts)

    def _draw(self, result: ExplainResult) -> None:
        res = result.explanation
        attr = getattr(res, "attributions", None)
        if attr is not None and len(attr):
            a = np.asarray(attr, np.float64)
            signed = res.method != "saliency"
            scale = float(np.nanmax(np.abs(a))) if np.isfinite(a).any() else 0.0
            self.amp_heat.setImage(heat_rgba(a[:, 0], scale, signed), autoLevels=False, levels=(0, 255))
            self.rng_heat.setImage(heat_rgba(a[:, 1], scale, signed), autoLevels=False, levels=(0, 255))
        elif result.attention is not None:  # method "attention": the weights as the band of both plots
            wts = np.asarray(result.attention.weights, np.float64)
            band = heat_rgba(wts, float(wts.max()) if len(wts) else 0.0, False)
            self.amp_heat.setImage(band, autoLevels=False, levels=(0, 255))
            self.rng_heat.setImage(band, autoLevels=False, levels=(0, 255))
        self.amp_heat.setVisible(True)
        self.rng_heat.setVisible(True)
        self.extent.setVisible(True)
        self._placed_origin = None
        self.place(self.win.x_origin_s)

    def place(self, origin: float) -> None:
        """Put the overlay at its samples' times in the plots' relative x (called every redraw;
        a no-op unless the origin moved)."""
        res = self.result
        if res is None or origin == self._placed_origin:
            return
        self._placed_origin = origin
        t = res.request.t - origin
        dt = float(np.median(np.diff(t))) if len(t) > 1 else 0.05
        x0, width = float(t[0]), float(t[-1] - t[0]) + dt
        sp = self.win.signal_plots
        y_amp = sp.amp.viewRange()[1]
        self.amp_heat.setRect(QtCore.QRectF(x0, -200.0, width, 400.0 + max(0.0, y_amp[1])))
        r = self.win.r_max_m
        self.rng_heat.setRect(QtCore.QRectF(x0, -0.05 * r, width, 1.25 * r))
        self.extent.setRegion((x0, x0 + width))
        att = res.attention
        if att is not None:
            wts = np.asarray(att.weights, np.float64)
            peak = float(wts.max()) if len(wts) and wts.max() > 0 else 1.0
            self.attention_curve.setData(t, wts / peak * 0.3 * r)  # peak at 30 % of R_max
            self.attention_curve.setVisible(True)
        else:
            self.attention_curve.setVisible(False)

    @QtCore.Slot()
    def clear_overlay(self) -> None:
        self.result = None
        self._placed_origin = None
        for item in (self.amp_heat, self.rng_heat, self.attention_curve, self.extent):
            item.setVisible(False)
