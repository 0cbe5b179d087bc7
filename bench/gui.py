"""Redraw benchmark of the monitor: is a frame cheap enough, and does the GUI keep up with a feed?

Two parts, both offscreen:

1. **Full window**: every sensor's history filled with ``window_s`` of samples at ``rate_hz``
   (plus predictions, re-scores and the shown sensor's state heatmaps), then ``frames`` redraws of
   the selected sensor timed: the update (setData/setImage) and the paint (rendering the window).
2. **Live**: a simulated feed + the causal service in a child process at the same rate, the real
   worker thread and redraw timer for ``live_s`` seconds: frames per second, display lag (wall
   clock minus the newest sample shown), hand-off queue depth and drops.
3. **Fleet**: ``fleet_sensors`` sensors (1,000) each sending a prediction every frame, the fleet tab
   shown: the time to ingest a frame's batch, to refresh the table (health of every row, one
   dataChanged, a re-sort when the order changed) and to paint it, sorted by name (the order
   holds) and by estimate (it changes every frame: a re-sort per frame, the worst case).
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class BenchConfig:
    """What ``radarstream bench gui`` measures (its flags have these defaults)."""

    sensors: int = 16
    """Simulated sensors."""
    rate_hz: float = 1000.0
    """Samples per second per sensor."""
    window_s: float = 60.0
    """Time window shown."""
    frames: int = 120
    """Frames timed on the full window."""
    live_s: float = 10.0
    """Seconds of live feed + service run; 0 skips it."""
    samples_per_message: int = 50
    """Feed batching in the live part (1 kHz in messages of 50: 20 messages/s per sensor)."""
    weights: Path | None = None
    size: tuple[int, int] = (1600, 1000)
    seed: int = 7
    fleet_sensors: int = 1000
    """Sensors in the fleet measurement; 0 skips it."""
    fleet_frames: int = 60
    """Frames timed per sort order in the fleet measurement."""


@dataclass(frozen=True)
class BenchResult:
    config: BenchConfig
    weights_note: str
    points_per_curve: int
    heatmap_columns: int
    update_ms: list[float]
    paint_ms: list[float]
    fill_s: float
    live: dict = field(default_factory=dict)
    ingest_ms: list[float] = field(default_factory=list)
    """Copying one 1/30 s batch of every sensor into the rings (not part of a frame)."""
    cpu_ms: list[float] = field(default_factory=list)
    """CPU time of the GUI thread per frame (less sensitive than wall time to other processes)."""
    load: float = float("nan")
    """1-minute load average when the frames were timed."""
    heatmap_frames: int = 0
    """Timed frames that re-rendered the heatmaps (they are redrawn when they move by a pixel)."""
    fleet: dict = field(default_factory=dict)
    """Fleet part: per sort order, lists of ingest / refresh / paint ms per frame."""

    @property
    def frame_ms(self) -> list[float]:
        return [u + p for u, p in zip(self.update_ms, self.paint_ms)]

    @property
    def kept_up(self) -> bool:
        """Live part: the display lag stayed bounded (no growing backlog)."""
        lags = self.live.get("lags_s") or []
        if not lags:
            return True
        half = len(lags) // 2
        return max(lags[half:] or lags) <= max(1.0, 2 * max(lags[:half] or lags))


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values), q))


def resolve_weights(weights: Path | None) -> tuple[Path, str]:
    """The weights to time with: given, shipped, or random (timing does not depend on values)."""
    from bench.doc import weights_label
    from models.bundle import shipped_weights_dir

    if weights is not None:
        return Path(weights), weights_label(weights)
    shipped = shipped_weights_dir()
    if (shipped / "causal.safetensors").is_file():
        return shipped, "shipped"
    import torch

    from models.bundle import build_model
    from models.export import export_causal
    from models.weights import save_weights

    out = Path(tempfile.mkdtemp(prefix="radarstream-bench-gui-"))
    torch.manual_seed(0)
    model = build_model("causal", {"hidden_size": 64, "num_layers": 2, "r_max_m": 1000.0})
    save_weights(model, out / "causal", {"kind": "causal", "config": model.config})
    export_causal(model.eval(), out / "causal.onnx")
    return out, "random 2×64 (no trained weights found; timing only)"


class _Source:
    """Simulated samples, smooth synthetic estimates and real gate traces, in batches."""

    def __init__(self, win, cfg: BenchConfig, weights: Path):
        from gui.stream import GateTracker
        from gui.worker import load_gate_model
        from streamer.sim.simulator import RadarConfig, StreamSimulator, sensor_seeds

        self.cfg = cfg
        self.sims = [StreamSimulator(RadarConfig(rate_hz=cfg.rate_hz), s) for s in sensor_seeds(cfg.seed, cfg.sensors)]
        self.names = [f"radar-{k}" for k in range(cfg.sensors)]
        model, reason = load_gate_model(weights)
        if model is None:
            raise RuntimeError(reason)
        self.tracker = GateTracker(model, backfill=16)
        self.period = int(round(1e9 / cfg.rate_hz))
        n_window = int(round(cfg.window_s * cfg.rate_hz))
        self.t0 = time.time_ns() - n_window * self.period
        self.done = 0
        self.tracker.select(self.names[0], None, max(1, math.ceil(n_window / (win.config.history.state_columns // 2))))
        win._on_worker_info({"gate_model": True, "layers": self.tracker.layers, "hidden": self.tracker.hidden,
                             "r_max_m": 1000.0})

    def batch(self, n: int):
        from gui.stream import Batch, PredChunk, RescoreChunk, SamplesChunk

        samples, preds, rescores, raw = {}, {}, {}, {}
        seq = np.arange(self.done, self.done + n, dtype=np.int64)
        t_ns = self.t0 + seq * self.period
        ts = seq / self.cfg.rate_hz
        for k, (name, sim) in enumerate(zip(self.names, self.sims)):
            blk = sim.read(n)
            truth = blk.truth
            dmin_m = (truth[:, 0] * 1000.0).astype(np.float32)
            samples[name] = SamplesChunk(t_ns, seq, np.zeros(n, np.int64), blk.samples[:, 0].copy(),
                                         blk.samples[:, 1].copy(), dmin_m, truth[:, 2].copy(), truth[:, 3].copy(),
                                         self.period)
            raw[name] = blk.samples
            # smooth synthetic estimates: the values do not matter for timing, their shape does
            # (the models' outputs drift; a jagged series would cost more to draw)
            base = np.nan_to_num(dmin_m, nan=500.0)
            y = (base + 80.0 * np.sin(2 * np.pi * ts / 23.0 + 0.7 * k)).astype(np.float32)
            b = (base + 20.0 * np.sin(2 * np.pi * ts / 31.0 + 0.7 * k)).astype(np.float32)
            preds[name] = PredChunk(t_ns, y, np.full(n, 300.0, np.float32))
            rescores[name] = [RescoreChunk(t_ns, b, y, np.abs(b - y), {})]
        self.done += n
        return Batch(time.monotonic(), samples, preds, rescores, [], None, self.tracker.feed(samples, raw))


def _ingest(win, batch) -> None:
    win.handoff.try_acquire()  # as the worker would; ingest releases it
    win.ingest(batch)


def _history_samples(cfg: BenchConfig) -> int:
    return max(65536, int(cfg.window_s * cfg.rate_hz * 1.1))


def run_bench(cfg: BenchConfig, progress: Callable[[str], None] = lambda _m: None) -> BenchResult:
    from gui.app import ensure_app
    from gui.buffers import HistoryConfig
    from gui.window import MainWindow, WindowConfig
    from gui.worker import WorkerConfig

    weights, note = resolve_weights(cfg.weights)
    app = ensure_app()
    wcfg = WindowConfig(window_s=cfg.window_s, history=HistoryConfig(samples=_history_samples(cfg)))
    progress(f"part 1: {cfg.sensors} sensors x {cfg.rate_hz:g} Hz x {cfg.window_s:g} s window")
    win = MainWindow(wcfg, WorkerConfig(weights=weights), start=False)
    win.resize(*cfg.size)
    win.show()
    started = time.perf_counter()
    source = _Source(win, cfg, weights)
    per_s = max(1, int(round(cfg.rate_hz)))
    while source.done < int(round(cfg.window_s * cfg.rate_hz)):
        _ingest(win, source.batch(per_s))
        if source.done % (per_s * 10) == 0:
            progress(f"  filled {source.done / cfg.rate_hz:.0f} / {cfg.window_s:g} s")
    fill_s = time.perf_counter() - started
    app.processEvents()
    update_ms, paint_ms, ingest_ms = [], [], []
    per_frame = max(1, int(round(cfg.rate_hz / 30)))
    cpu_ms = []
    heatmap_frames = 0
    for k in range(cfg.frames + 5):
        if k == 5:
            heatmap_frames = win.heatmap_frames
        batch = source.batch(per_frame)  # 1/30 s more of every sensor: the window scrolls
        app.processEvents()  # nothing pending from the previous frame
        t0 = time.perf_counter()
        _ingest(win, batch)
        t1 = time.perf_counter()
        c1 = time.thread_time()
        win.force_redraw()
        t2 = time.perf_counter()
        app.processEvents()  # paint what changed, as the event loop does (offscreen: into the backing store)
        t3 = time.perf_counter()
        c3 = time.thread_time()
        if k >= 5:  # warm-up frames excluded
            ingest_ms.append((t1 - t0) * 1e3)
            update_ms.append((t2 - t1) * 1e3)
            paint_ms.append((t3 - t2) * 1e3)
            cpu_ms.append((c3 - c1) * 1e3)
    heatmap_frames = win.heatmap_frames - heatmap_frames
    points = int(cfg.window_s * cfg.rate_hz)
    img = win.state_plots.images["h"].image
    columns = 0 if img is None else int(img.shape[1])  # [unit, time, rgb]
    win.close()
    win.deleteLater()
    app.processEvents()
    live = _live(cfg, weights, progress) if cfg.live_s > 0 else {}
    fleet = run_fleet(cfg, weights, progress) if cfg.fleet_sensors > 0 else {}
    return BenchResult(cfg, note, points, columns, update_ms, paint_ms, fill_s, live, ingest_ms, cpu_ms,
                       os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"), heatmap_frames, fleet)


def _fleet_batch(names: list[str], frame: int, period_ns: int, t0: int, rng: np.random.Generator):
    """One frame's batch: a prediction (8 channels, hybrid ± σ) of every sensor, a few events."""
    from gui.stream import Batch, EventRecord, PredChunk

    t = np.array([t0 + frame * period_ns], np.int64)
    preds = {}
    for k, name in enumerate(names):
        y = np.float32(500.0 + 400.0 * math.sin(0.05 * frame + k))
        preds[name] = PredChunk(t, np.array([y]), np.array([300.0], np.float32), np.array([y + 5], np.float32),
                                np.array([y + 2], np.float32), np.array([20.0], np.float32),
                                np.array([15.0], np.float32), np.array([12.0], np.float32))
    events = []
    if frame % 30 == 0:  # about once a second: an alert somewhere, a sensor silent, one back in domain
        k = int(rng.integers(len(names)))
        events.append(EventRecord(names[k], "near_miss", int(t[0]), frame, {
            "type": "near_miss", "dmin_m": 60.0, "std_m": 10.0, "probability": 0.95, "threshold_m": 100.0,
            "margin_m": 40.0}))
        events.append(EventRecord(names[(k + 1) % len(names)], "sensor_silent", int(t[0]), frame,
                                  {"type": "sensor_silent"}))
    return Batch(time.monotonic(), {}, preds, {}, events)


def run_fleet(cfg: BenchConfig, weights: Path | None, progress: Callable[[str], None] = lambda _m: None) -> dict:
    """Fleet tab with ``cfg.fleet_sensors`` sensors, a prediction of each per frame; returns
    ``{order: {"ingest_ms": [...], "refresh_ms": [...], "paint_ms": [...], "resorts": n}}``."""
    from PySide6 import QtCore

    from gui.app import ensure_app
    from gui.fleet_model import COLUMN
    from gui.stream import ReceiverConfig
    from gui.window import MainWindow, WindowConfig
    from gui.worker import WorkerConfig

    progress(f"part 3: fleet view, {cfg.fleet_sensors} sensors")
    app = ensure_app()
    win = MainWindow(WindowConfig(start_view="fleet"),
                     WorkerConfig(receiver=ReceiverConfig(feeds=(), services=()), weights=weights), start=False)
    win.resize(*cfg.size)
    win.show()
    names = [f"radar-{k}" for k in range(cfg.fleet_sensors)]
    rng = np.random.default_rng(cfg.seed)
    period = 50_000_000
    t0 = time.time_ns()
    frame = 0
    out = {}
    for order, column, sort in (("by name", "sensor", QtCore.Qt.SortOrder.AscendingOrder),
                                ("by estimate", "est", QtCore.Qt.SortOrder.DescendingOrder)):
        win.fleet_view.table.sortByColumn(COLUMN[column], sort)
        ingest, refresh, paint = [], [], []
        resorts = win.fleet_view.resorts
        for k in range(cfg.fleet_frames + 5):
            batch = _fleet_batch(names, frame, period, t0, rng)
            frame += 1
            app.processEvents()
            a = time.perf_counter()
            win.handoff.try_acquire()
            win.ingest(batch)
            b = time.perf_counter()
            win.refresh_fleet(force=True)
            c = time.perf_counter()
            app.processEvents()  # the view's delayed layout (after a re-sort), then the paint of the visible rows
            app.processEvents()
            d = time.perf_counter()
            if k == 4:
                resorts = win.fleet_view.resorts
            if k >= 5:
                ingest.append((b - a) * 1e3)
                refresh.append((c - b) * 1e3)
                paint.append((d - c) * 1e3)
        out[order] = {"ingest_ms": ingest, "refresh_ms": refresh, "paint_ms": paint,
                      "resorts": win.fleet_view.resorts - resorts, "rows": win.fleet_model.rowCount(),
                      "visible_rows": _visible_rows(win)}
    win.close()
    win.deleteLater()
    app.processEvents()
    return out


def _visible_rows(win) -> int:
    table = win.fleet_view.table
    h = max(1, table.verticalHeader().defaultSectionSize())
    return min(win.fleet_model.rowCount(), table.viewport().height() // h + 1)


def _live(cfg: BenchConfig, weights: Path, progress: Callable[[str], None]) -> dict:
    """Feed + service in a child process, the real worker and timers here."""
    import multiprocessing as mp

    from PySide6 import QtCore

    from gui.app import ensure_app
    from gui.buffers import HistoryConfig
    from gui.pipeline import PipelineConfig, serve_in_subprocess
    from gui.stream import ReceiverConfig
    from gui.window import MainWindow, WindowConfig
    from gui.worker import WorkerConfig
    from streamer.sim.simulator import RadarConfig

    progress(f"part 2: live feed + service, {cfg.live_s:g} s")
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    # no re-scoring in the child: at 16 kHz the bidirectional model would take the CPU the monitor
    # is being measured on (the full-window part draws re-scores)
    pcfg = PipelineConfig(sensors=cfg.sensors, rate_hz=cfg.rate_hz, samples_per_message=cfg.samples_per_message,
                          seed=cfg.seed, weights=weights, radar=RadarConfig(rate_hz=cfg.rate_hz), rescore_window=None)
    proc = ctx.Process(target=serve_in_subprocess, args=(child, pcfg), daemon=True)
    proc.start()
    if not parent.poll(120):
        proc.kill()
        raise RuntimeError("the feed/service child process did not start")
    feed, service = parent.recv()
    app = ensure_app()
    wcfg = WindowConfig(window_s=cfg.window_s, history=HistoryConfig(samples=_history_samples(cfg)))
    win = MainWindow(wcfg, WorkerConfig(receiver=ReceiverConfig(feeds=(feed,), services=(service,)), weights=weights))
    win.resize(*cfg.size)
    win.show()
    lags: list[float] = []
    depth: list[int] = []

    def sample() -> None:
        hist = win.histories.get(win.sensor or "")
        t = hist.latest_t_ns() if hist is not None else None
        if t is not None:
            lags.append((time.time_ns() - t) / 1e9)
            depth.append(win.handoff.in_flight)

    probe = QtCore.QTimer()
    probe.timeout.connect(sample)
    probe.start(250)
    loop = QtCore.QEventLoop()
    QtCore.QTimer.singleShot(int(cfg.live_s * 1000), loop.quit)
    t_start = time.perf_counter()
    frames_before = win.frames
    loop.exec()
    elapsed = time.perf_counter() - t_start
    probe.stop()
    counters = win.counters
    redraws = list(win.redraw_ms)
    frames = win.frames - frames_before
    win.close()
    parent.send("stop")
    published = parent.recv() if parent.poll(30) else {}
    proc.join(10)
    lags_settled = lags[len(lags) // 5:] if len(lags) > 5 else lags
    # the simulated feed stamps samples from its construction time, so wall − sample time holds a
    # constant offset (start-up, warm-up); the monitor's own delay is what comes on top of it
    offset = min(lags_settled) if lags_settled else 0.0
    lags_settled = [v - offset for v in lags_settled]
    return {
        "seconds": elapsed,
        "frames_per_s": frames / elapsed,
        "redraw_ms_median": statistics.median(redraws) if redraws else float("nan"),
        "redraw_ms_p95": _pct(redraws, 95),
        "lags_s": lags_settled,
        "clock_offset_s": offset,
        "lag_median_s": statistics.median(lags_settled) if lags_settled else float("nan"),
        "lag_max_s": max(lags_settled) if lags_settled else float("nan"),
        "max_in_flight": counters.max_in_flight,
        "limit": win.handoff.limit,
        "dropped_batches": counters.dropped_batches,
        "dropped_samples": counters.dropped_samples,
        "feed_gap_samples": counters.feed_gap_samples,
        "received_samples": counters.samples,
        "published_samples": published.get("samples_per_sensor", 0) * published.get("sensors", 0),
    }


def markdown(r: BenchResult, command: str) -> str:
    from bench.doc import machine_line

    c = r.config
    fm = r.frame_ms
    lines = [
        "## GUI redraw",
        "",
        f"{c.sensors} sensors × {c.rate_hz:g} Hz, {c.window_s:g} s window, one sensor shown with its six state "
        f"heatmaps; window {c.size[0]}×{c.size[1]} offscreen; weights: {r.weights_note}.",
        "",
        f"Command: `{command}` ({machine_line()}).",
        "",
        f"Full window: every sensor's rings filled with {c.window_s:g} s, then before each frame 1/30 s more of "
        "every sensor is ingested (the window scrolls, as live); frames timed one after the other:",
        "",
        "| part of a frame | median ms | p95 ms | max ms |",
        "|---|---:|---:|---:|",
        f"| update (setData/setImage from the rings) | {_pct(r.update_ms, 50):.1f} | {_pct(r.update_ms, 95):.1f} | {max(r.update_ms):.1f} |",
        f"| paint (the event loop repaints what changed) | {_pct(r.paint_ms, 50):.1f} | {_pct(r.paint_ms, 95):.1f} | {max(r.paint_ms):.1f} |",
        f"| **frame** (target ≤ 16 ms) | **{_pct(fm, 50):.1f}** | {_pct(fm, 95):.1f} | {max(fm):.1f} |",
        f"| frame, CPU time of the GUI thread | {_pct(r.cpu_ms, 50):.1f} | {_pct(r.cpu_ms, 95):.1f} | {max(r.cpu_ms):.1f} |",
        f"| ingest of the 1/30 s batch (between frames) | {_pct(r.ingest_ms, 50):.1f} | {_pct(r.ingest_ms, 95):.1f} | "
        f"{max(r.ingest_ms):.1f} |",
        "",
        f"{r.points_per_curve:,} samples per curve in the window (drawn peak-downsampled to the pixel width), "
        f"{r.heatmap_columns} heatmap columns, re-rendered in {r.heatmap_frames} of the {c.frames} frames (when they "
        f"move by a pixel or more); {c.frames} frames after 5 warm-up frames. Load average while "
        f"timing: {r.load:.1f} on {os.cpu_count()} CPUs (the wall-clock figures include time lost to other "
        "processes; the CPU-time row does not).",
    ]
    fl = r.fleet
    if fl:
        any_part = next(iter(fl.values()))
        lines += [
            "",
            f"Fleet view: {any_part['rows']:,} sensors, a prediction of each per frame (every row changes), the fleet "
            f"tab shown ({any_part['visible_rows']} rows on screen); {c.fleet_frames} frames per sort order after 5 "
            "warm-up frames:",
            "",
            "| sort order | ingest ms (median / p95) | table refresh ms (median / p95) | paint ms (median / p95) | re-sorts |",
            "|---|---:|---:|---:|---:|",
        ]
        for order, v in fl.items():
            lines.append(f"| {order} | {_pct(v['ingest_ms'], 50):.1f} / {_pct(v['ingest_ms'], 95):.1f} | "
                         f"{_pct(v['refresh_ms'], 50):.1f} / {_pct(v['refresh_ms'], 95):.1f} | "
                         f"{_pct(v['paint_ms'], 50):.1f} / {_pct(v['paint_ms'], 95):.1f} | {v['resorts']} |")
        lines += ["", "Refresh = health of every row (vectorised), the sort re-applied (numpy argsort in the model, "
                  "which the QSortFilterProxyModel delegates to; one layoutChanged when the order changed), one "
                  "dataChanged over the table; paint = the view's layout and the visible rows only (virtualised). "
                  "The monitor refreshes the table at most 4×/s (WindowConfig.fleet_refresh_s); the ingest runs "
                  "once per worker batch (~30 ms)."]
    lv = r.live
    if lv:
        lines += [
            "",
            f"Live ({lv['seconds']:.0f} s, feed in messages of {c.samples_per_message} samples, causal service and "
            "feed in a child process, real worker thread, 30 Hz redraw timer):",
            "",
            "| measure | value |",
            "|---|---:|",
            f"| frames/s drawn | {lv['frames_per_s']:.1f} |",
            f"| redraw update ms, median / p95 | {lv['redraw_ms_median']:.1f} / {lv['redraw_ms_p95']:.1f} |",
            f"| display delay above the best seen, median / max (sampled 4×/s) | {lv['lag_median_s'] * 1e3:.0f} ms / "
            f"{lv['lag_max_s'] * 1e3:.0f} ms |",
            f"| hand-off queue, max depth / limit | {lv['max_in_flight']} / {lv['limit']} |",
            f"| batches dropped by the worker (samples) | {lv['dropped_batches']} ({lv['dropped_samples']:,}) |",
            f"| samples lost before the GUI (ZeroMQ HWM, gaps) | {lv['feed_gap_samples']:,} |",
            f"| samples received / published | {lv['received_samples']:,} / {lv['published_samples']:,} |",
            "",
            f"Kept up with the feed (delay bounded, not growing): **{'yes' if r.kept_up else 'no'}**. The delay is "
            "wall clock − newest sample shown, minus its smallest value in the run (the feed's own clock offset, "
            f"{lv['clock_offset_s'] * 1e3:.0f} ms here, start-up included); it moves with the 50 ms messages, the "
            "30 ms batches and the 33 ms frames.",
        ]
    return "\n".join(lines) + "\n"
