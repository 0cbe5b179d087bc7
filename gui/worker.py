"""The receiving thread: a QObject living in a QThread that polls the sockets on its own timer.

All ZeroMQ work, decoding and the gate-level LSTM happen here, never in the GUI thread. Every
~30 ms the worker drains what is pending into one :class:`gui.stream.Batch` and emits it; the
bounded :class:`gui.stream.Handoff` makes it drop (and count) batches rather than let Qt's queued
signals pile up when the GUI thread is slow.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from PySide6 import QtCore

from gui.stream import GateTracker, Handoff, ReceiverConfig, StreamReceiver

log = logging.getLogger("radarstream.gui")


@dataclass(frozen=True)
class WorkerConfig:
    receiver: ReceiverConfig = ReceiverConfig()
    weights: Path | None = None
    """Causal model weights for the gate view; None: the shipped ones (if any), else no gate view."""
    period_ms: int = 30
    """How often the worker drains the sockets: one batch per period at most."""
    handoff_limit: int = 32
    """Batches emitted and not yet taken by the GUI before the worker drops new ones (32 × 30 ms:
    the display lags the feed by about a second at most)."""
    backfill: int = 2048
    """Raw samples kept per sensor to rebuild the state heatmaps when the selection changes."""
    max_gap: int = 100
    """Gap (samples) beyond which the service resets a sensor's state; the gate view does too."""
    max_sensors: int = 256
    """Sensors whose raw samples the gate view keeps (to recompute heatmaps on a selection)."""
    fleet_sensors: int = 4096
    """Sensors the receiver accepts at all (the fleet view lists every one of them)."""


def load_gate_model(weights: Path | None):
    """The causal model for the gate view, or ``(None, reason)`` when there are no weights."""
    try:
        from models.bundle import load_model

        model, _meta = load_model("causal", weights)
        return model, ""
    except Exception as exc:  # missing/partial weights must not stop the monitor
        return None, f"no causal weights ({exc.__class__.__name__}: {exc}); pass --weights DIR"


class StreamWorker(QtCore.QObject):
    """Lives in its own QThread; talk to it only through signals (queued calls)."""

    batchReady = QtCore.Signal(object)  # gui.stream.Batch
    info = QtCore.Signal(object)  # dict: {"gate_model": bool, "layers": int, "hidden": int, "reason": str}
    stopped = QtCore.Signal()

    def __init__(self, config: WorkerConfig, handoff: Handoff):
        super().__init__()
        self.config = config
        self.handoff = handoff
        self._receiver: StreamReceiver | None = None
        self._timer: QtCore.QTimer | None = None
        self._selection: tuple[str | None, int | None, int] = (None, None, 1)
        self._pending_gates = None  # a selection's backfill, sent with the next batch

    @QtCore.Slot()
    def start(self) -> None:
        """Runs in the worker thread: open the sockets first (subscriptions take a moment to reach
        the publishers), then load the gate model, then poll on a timer."""
        cfg = self.config
        self._receiver = StreamReceiver(cfg.receiver, max_sensors=cfg.fleet_sensors)
        self._receiver.open()
        model, reason = load_gate_model(cfg.weights)
        gates = None
        r_max = cfg.receiver.r_max_m
        if model is not None:
            gates = GateTracker(model, backfill=cfg.backfill, max_gap=cfg.max_gap, max_sensors=cfg.max_sensors)
            if r_max is None:
                r_max = float(model.config["r_max_m"])
                self._receiver.set_r_max(r_max)
        self._receiver.gates = gates
        self.info.emit({"gate_model": gates is not None, "layers": gates.layers if gates else 0,
                        "hidden": gates.hidden if gates else 0, "reason": reason, "r_max_m": r_max})
        sensor, layer, stride = self._selection
        if gates is not None and sensor is not None:
            self._pending_gates = gates.select(sensor, layer, stride)
        self._timer = QtCore.QTimer(self)
        self._timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self._timer.timeout.connect(self._tick)
        self._timer.start(cfg.period_ms)

    @QtCore.Slot()
    def stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        if self._receiver is not None:
            self._receiver.close()
            self._receiver = None
        self.stopped.emit()

    @QtCore.Slot(object, int, int)
    def select(self, sensor: str | None, layer: int, stride: int) -> None:
        """Follow ``sensor``'s gates at ``layer`` (-1: keep) with heatmap column ``stride``."""
        self._selection = (sensor, None if layer < 0 else layer, stride)
        rec = self._receiver
        if rec is None or rec.gates is None:
            return
        chunk = rec.gates.select(sensor, None if layer < 0 else layer, stride)
        if chunk is not None:
            self._pending_gates = chunk

    @QtCore.Slot(int)
    def set_stride(self, stride: int) -> None:
        rec = self._receiver
        if rec is not None and rec.gates is not None:
            rec.gates.set_stride(stride)

    @QtCore.Slot()
    def _tick(self) -> None:
        rec = self._receiver
        if rec is None:
            return
        try:
            batch = rec.poll()
        except Exception:  # a bug costs one batch, never the thread
            log.exception("receiver failed on a batch (dropped)")
            return
        if self._pending_gates is not None:
            live = batch.gates
            batch = replace(batch, gates=self._merge(self._pending_gates, live))
            self._pending_gates = None
        if batch.is_empty():
            return
        if self.handoff.try_acquire():
            rec.counters["max_in_flight"] = self.handoff.max_in_flight
            self.batchReady.emit(batch)
        else:
            rec.counters["dropped_batches"] += 1
            rec.counters["dropped_samples"] += batch.n_samples
            if batch.gates is not None and batch.gates.replace:
                self._pending_gates = batch.gates  # a new selection must not get lost

    @staticmethod
    def _merge(backfill, live):
        """A selection's backfill followed by this batch's live rows of the same sensor."""
        import numpy as np

        if live is None or live.sensor != backfill.sensor or live.layer != backfill.layer:
            return backfill
        return type(backfill)(backfill.sensor, backfill.layer, True, np.concatenate([backfill.t_ns, live.t_ns]),
                              {k: np.concatenate([backfill.traces[k], live.traces[k]]) for k in backfill.traces})


class WorkerThread:
    """Starts a :class:`StreamWorker` in its own QThread and stops it cleanly (sockets closed in
    the thread that opened them)."""

    def __init__(self, config: WorkerConfig, handoff: Handoff):
        self.thread = QtCore.QThread()
        self.thread.setObjectName("radarstream-gui-worker")
        self.worker = StreamWorker(config, handoff)
        self.worker.moveToThread(self.thread)
        self.thread.started.connect(self.worker.start)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout_ms: int = 5000) -> None:
        if not self.thread.isRunning():
            return
        QtCore.QMetaObject.invokeMethod(self.worker, "stop", QtCore.Qt.ConnectionType.BlockingQueuedConnection)
        self.thread.quit()
        self.thread.wait(timeout_ms)
