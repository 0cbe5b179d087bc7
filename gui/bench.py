"""Redraw benchmark of the monitor: is a frame cheap enough, and does the GUI keep up with a feed?

Two parts, both offscreen:

1. **Full window**: every sensor's history filled with ``window_s`` of samples at ``rate_hz``
   (plus predictions, re-scores and the shown sensor's state heatmaps), then ``frames`` redraws of
   the selected sensor timed: the update (setData/setImage) and the paint (rendering the window).
2. **Live**: a simulated feed + the causal service in a child process at the same rate, the real
   worker thread and redraw timer for ``live_s`` seconds: frames per second, display lag (wall
   clock minus the newest sample shown), hand-off queue depth and drops.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class BenchConfig:
    sensors: int = 16
    rate_hz: float = 1000.0
    window_s: float = 60.0
    frames: int = 120
    live_s: float = 10.0
    samples_per_message: int = 50
    """Feed batching in the live part (1 kHz in messages of 50: 20 messages/s per sensor)."""
    weights: Path | None = None
    size: tuple[int, int] = (1600, 1000)
    seed: int = 7


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
    from models.bundle import shipped_weights_dir

    if weights is not None:
        return Path(weights), f"`{Path(weights).name}/`"
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


def _fill(win, cfg: BenchConfig, weights: Path, progress: Callable[[str], None]) -> None:
    """Push ``window_s`` of every sensor through ``win.ingest`` in 1 s batches."""
    from gui.stream import Batch, GateTracker, PredChunk, RescoreChunk, SamplesChunk
    from gui.worker import load_gate_model
    from streamer.simulator import RadarConfig, StreamSimulator, sensor_seeds

    radar = RadarConfig(rate_hz=cfg.rate_hz)
    sims = [StreamSimulator(radar, s) for s in sensor_seeds(cfg.seed, cfg.sensors)]
    names = [f"radar-{k}" for k in range(cfg.sensors)]
    model, reason = load_gate_model(weights)
    if model is None:
        raise RuntimeError(reason)
    tracker = GateTracker(model, backfill=16)
    period = int(round(1e9 / cfg.rate_hz))
    n_total = int(round(cfg.window_s * cfg.rate_hz))
    per_batch = max(1, int(round(cfg.rate_hz)))
    t0 = time.time_ns() - n_total * period
    tracker.select(names[0], None, max(1, math.ceil(n_total / (win.config.history.state_columns // 2))))
    win._on_worker_info({"gate_model": True, "layers": tracker.layers, "hidden": tracker.hidden, "r_max_m": 1000.0})
    rng = np.random.default_rng(cfg.seed)
    drift = {name: np.zeros(1) for name in names}
    done = 0
    while done < n_total:
        n = min(per_batch, n_total - done)
        samples, preds, rescores = {}, {}, {}
        raw = {}
        for name, sim in zip(names, sims):
            blk = sim.read(n)
            seq = np.arange(done, done + n, dtype=np.int64)
            t_ns = t0 + seq * period
            truth = blk.truth
            dmin_m = truth[:, 0] * 1000.0
            samples[name] = SamplesChunk(t_ns, seq, np.zeros(n, np.int64), blk.samples[:, 0].copy(), blk.samples[:, 1].copy(),
                                         dmin_m.astype(np.float32), truth[:, 2].copy(), truth[:, 3].copy(), period)
            raw[name] = blk.samples
            # smooth synthetic estimates: the models' outputs drift, they do not jump sample to sample
            drift[name] = drift[name] + np.cumsum(rng.normal(0, 80 / math.sqrt(cfg.rate_hz), n))
            drift[name] -= 0.1 * drift[name][-1]
            y = np.nan_to_num(dmin_m, nan=500.0) + drift[name]
            preds[name] = PredChunk(t_ns, y.astype(np.float32), np.full(n, 300.0, np.float32))
            b = (np.nan_to_num(dmin_m, nan=500.0) + 0.5 * drift[name]).astype(np.float32)
            rescores[name] = [RescoreChunk(t_ns, b, y.astype(np.float32), np.abs(b - y).astype(np.float32), {})]
        gates = tracker.feed(samples, raw)
        win.handoff.try_acquire()
        win.ingest(Batch(time.monotonic(), samples, preds, rescores, [], None, gates))
        done += n
        if done % (per_batch * 10) == 0:
            progress(f"  filled {done / cfg.rate_hz:.0f} / {cfg.window_s:g} s")


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
    _fill(win, cfg, weights, progress)
    fill_s = time.perf_counter() - started
    app.processEvents()
    update_ms, paint_ms = [], []
    views = (win.signal_view.viewport(), win.state_view.viewport())
    for k in range(cfg.frames + 5):
        t0 = time.perf_counter()
        win.force_redraw()
        t1 = time.perf_counter()
        for v in views:  # paint both plot views now (synchronously), as the event loop would
            v.repaint()
        t2 = time.perf_counter()
        if k >= 5:  # warm-up frames excluded
            update_ms.append((t1 - t0) * 1e3)
            paint_ms.append((t2 - t1) * 1e3)
    hist = win.histories[win.sensor]
    points = len(hist.samples)
    columns = min(len(win.state), win.config.heatmap_columns) if win.state is not None else 0
    win.close()
    win.deleteLater()
    app.processEvents()
    live = _live(cfg, weights, progress) if cfg.live_s > 0 else {}
    return BenchResult(cfg, note, points, columns, update_ms, paint_ms, fill_s, live)


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
    from streamer.simulator import RadarConfig

    progress(f"part 2: live feed + service, {cfg.live_s:g} s")
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    pcfg = PipelineConfig(sensors=cfg.sensors, rate_hz=cfg.rate_hz, samples_per_message=cfg.samples_per_message,
                          seed=cfg.seed, weights=weights, radar=RadarConfig(rate_hz=cfg.rate_hz))
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
    return {
        "seconds": elapsed,
        "frames_per_s": frames / elapsed,
        "redraw_ms_median": statistics.median(redraws) if redraws else float("nan"),
        "redraw_ms_p95": _pct(redraws, 95),
        "lags_s": lags_settled,
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
    from tools.benchdoc import machine_line

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
        "Full window (every sensor's rings filled; frames timed one after the other):",
        "",
        "| part of a frame | median ms | p95 ms | max ms |",
        "|---|---:|---:|---:|",
        f"| update (setData/setImage from the rings) | {_pct(r.update_ms, 50):.1f} | {_pct(r.update_ms, 95):.1f} | {max(r.update_ms):.1f} |",
        f"| paint (repaint both plot views) | {_pct(r.paint_ms, 50):.1f} | {_pct(r.paint_ms, 95):.1f} | {max(r.paint_ms):.1f} |",
        f"| **frame** (target ≤ 16 ms) | **{_pct(fm, 50):.1f}** | {_pct(fm, 95):.1f} | {max(fm):.1f} |",
        "",
        f"{r.points_per_curve:,} samples per curve in the window (drawn peak-downsampled to the pixel width), "
        f"{r.heatmap_columns} heatmap columns; {c.frames} frames after 5 warm-up frames.",
    ]
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
            f"| display lag (wall clock − newest sample shown), median / max | {lv['lag_median_s'] * 1e3:.0f} ms / {lv['lag_max_s'] * 1e3:.0f} ms |",
            f"| hand-off queue, max depth / limit | {lv['max_in_flight']} / {lv['limit']} |",
            f"| batches dropped by the worker (samples) | {lv['dropped_batches']} ({lv['dropped_samples']:,}) |",
            f"| samples lost before the GUI (ZeroMQ HWM, gaps) | {lv['feed_gap_samples']:,} |",
            f"| samples received / published | {lv['received_samples']:,} / {lv['published_samples']:,} |",
            "",
            f"Kept up with the feed (lag bounded, not growing): **{'yes' if r.kept_up else 'no'}**.",
        ]
    return "\n".join(lines) + "\n"
