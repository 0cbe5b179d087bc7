"""``radarstream explain`` and ``radarstream bench-explain``: attribution of one window, as figures
and numbers, and what each method costs (docs/explain.md)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

if TYPE_CHECKING:
    from torch import nn

    from models.attribution import Explanation

TARGET_LABELS: Mapping[str, str] = MappingProxyType({
    "causal": "causal model (online, sees only the past)",
    "bidir": "bidirectional re-scorer (sees the whole window)",
    "pooled": "pooled DminRegressorLSTM (one estimate per window)",
})
EXPLAIN_DEFAULT_WINDOW = 512
BENCH_WINDOW = 1024


class ExplainError(RuntimeError):
    """A user-facing failure: printed as ``error: ...`` with exit status 2."""


# ---------------------------------------------------------------- where the window comes from


@dataclass(frozen=True)
class WindowSource:
    """One window of raw samples and what is known about it (truth only for simulated data)."""

    x: np.ndarray  # [T, 2] amplitude, distance (-1 = no detection)
    rate_hz: float
    origin: dict[str, Any]  # how to get this window again (JSON)
    r_max_m: float = 1000.0
    true_range_m: np.ndarray | None = None  # [T], NaN outside encounters
    dmin_norm: np.ndarray | None = None  # [T], NaN outside encounters
    cpa: int | None = None  # index of the encounter's CPA in the window
    encounter_dmin_m: float | None = None
    threshold_db: float | None = None  # detection threshold on the amplitude, dB re noise RMS
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return int(self.x.shape[0])

    def truth_m(self, step: int | None) -> float | None:
        """Dmin truth in metres for the estimate at ``step`` (None: the window's encounter)."""
        if step is None or self.dmin_norm is None:
            return self.encounter_dmin_m
        v = float(self.dmin_norm[step])
        return None if not np.isfinite(v) else v * self.r_max_m


def simulated_window(seed: int, encounter: int | None, window: int, manoeuvre_prob: float = 0.0) -> WindowSource:
    """A window of ``window`` samples centred on the CPA of encounter ``encounter`` (default: the
    first one) of the simulated stream ``seed`` (default simulator settings, as in training)."""
    from streamer.sim.simulator import RadarConfig, StreamSimulator

    cfg = RadarConfig(manoeuvre_prob=manoeuvre_prob)
    k = 0 if encounter is None else int(encounter)
    if k < 0:
        raise ExplainError("--encounter must be >= 0")
    sim = StreamSimulator(cfg, seed)
    chunks, read = [], 0
    while True:
        encs = sim.encounters
        if len(encs) > k and encs[k].cpa_index + window <= read:
            break
        chunks.append(sim.read(4096))
        read += 4096
    enc = encs[k]
    start = max(0, enc.cpa_index - window // 2)
    cat = lambda name: np.concatenate([getattr(c, name) for c in chunks])[start : start + window]  # noqa: E731
    x = cat("samples")
    return WindowSource(
        x=x, rate_hz=cfg.rate_hz, r_max_m=cfg.r_max_m, true_range_m=cat("true_range_m"), dmin_norm=cat("dmin_norm"),
        cpa=enc.cpa_index - start, encounter_dmin_m=enc.dmin_m, threshold_db=10 * np.log10(cfg.threshold_power),
        origin={"source": "simulator", "seed": seed, "encounter": k, "window_start": start, "window": window,
                "manoeuvre_prob": manoeuvre_prob, "encounter_record": {
                    "dmin_m": enc.dmin_m, "speed_mps": enc.speed_mps, "peak_snr_db": enc.peak_snr_db,
                    "cpa_index": enc.cpa_index, "start": enc.start, "stop": enc.stop, "manoeuvre": enc.manoeuvre}},
        arrays={"true_range_m": cat("true_range_m"), "dmin_norm": cat("dmin_norm"), "snr_db": cat("snr_db")},
    )


def recorded_window(path: str, sensor: str | None, start_s: float | None, end_s: float | None,
                    window: int) -> WindowSource:
    """The first ``window`` samples of ``sensor`` logged in [start_s, end_s) (seconds from the start
    of the recording), read with :func:`streamer.recording.replay.iter_messages`. Recorded truth (simulated
    feeds carry it) is used for the figure; a gap or a publisher restart inside the window is
    reported, since the model sees the samples as contiguous."""
    from streamer.wire import protocol as P
    from streamer.recording.format import RecordingError
    from streamer.recording.replay import Recording, iter_messages

    try:
        sensors = Recording(path).sensors("samples")
        if sensor is None:
            if len(sensors) != 1:
                raise ExplainError(f"{path}: choose a sensor with --sensor (recorded: {', '.join(sensors) or 'none'})")
            sensor = sensors[0]
        elif sensor not in sensors:
            raise ExplainError(f"{path}: no samples for sensor {sensor!r} (recorded: {', '.join(sensors) or 'none'})")
        blocks: list[Any] = []
        truths: list[Any] = []
        rejected = 0
        for rec in iter_messages(path, kinds=("samples",), sensors=(sensor,), start=start_s, end=end_s):
            msg = rec.message
            if isinstance(msg, P.DecodeError):
                rejected += 1
                continue
            blocks.append(msg.block)
            truths.append(msg.truth)
            if sum(b.count for b in blocks) >= window:
                break
    except RecordingError as exc:
        raise ExplainError(str(exc)) from exc
    if not blocks:
        raise ExplainError(f"{path}: no samples of {sensor!r} between --start and --end")
    x = np.concatenate([np.asarray(b.data, np.float32) for b in blocks])[:window]
    if x.shape[0] < 2:
        raise ExplainError(f"{path}: fewer than 2 samples of {sensor!r} in the selected window")
    breaks = sum(1 for a, b in zip(blocks, blocks[1:]) if (b.epoch, b.seq) != (a.epoch, a.seq + a.count))
    if breaks:
        print(f"warning: the window spans {breaks} gap(s) or restart(s); the model sees its samples as contiguous",
              file=sys.stderr)
    cfg_r_max = 1000.0
    truth = None
    if all(t is not None for t in truths):
        truth = np.concatenate([np.asarray(t.data, np.float64) for t in truths])[: x.shape[0]]
    cpa = None
    if truth is not None and np.isfinite(truth[:, 2]).any():
        cpa = int(np.nanargmin(np.where(truth[:, 1] > 0.5, truth[:, 2], np.nan)))
    first = blocks[0]
    return WindowSource(
        x=x, rate_hz=1e9 / first.period_ns, r_max_m=cfg_r_max,
        true_range_m=None if truth is None else truth[:, 2], dmin_norm=None if truth is None else truth[:, 0],
        cpa=cpa, encounter_dmin_m=None if truth is None or cpa is None else float(truth[cpa, 0]) * cfg_r_max,
        origin={"source": "recording", "path": str(path), "sensor": sensor, "start_s": start_s, "end_s": end_s,
                "window": int(x.shape[0]), "first_seq": int(first.seq), "epoch": int(first.epoch),
                "gaps_or_restarts": breaks, "rejected_messages": rejected},
        arrays={} if truth is None else {"dmin_norm": truth[:, 0], "true_range_m": truth[:, 2], "snr_db": truth[:, 3]},
    )


# ---------------------------------------------------------------- models


def load_target(kind: str, weights: str | None) -> "nn.Module":
    """The model to explain, with a clear message when the weights are missing."""
    from models.bundle import load_model, shipped_weights_dir
    from models.weights import WeightsError

    try:
        model, _ = load_model(kind, weights)
    except WeightsError as exc:
        where = weights or shipped_weights_dir()
        hint = ("the shipped weights are missing from this install (they may still be training); "
                "pass --weights DIR, or make some with `radarstream train all --out DIR`") if weights is None else \
            "check --weights"
        raise ExplainError(f"cannot load the {kind} model from {where}: {exc}\n  {hint}") from exc
    return model.eval()


def per_step_estimates(model: "nn.Module", kind: str, x: np.ndarray) -> np.ndarray | None:
    """The model's estimate at every step of the window (None for the pooled model)."""
    import torch

    if kind == "pooled":
        return None
    with torch.no_grad():
        out = model(torch.from_numpy(np.asarray(x, np.float32))[None])
    y = out[0] if isinstance(out, tuple) else out
    return y[0].numpy()


# ---------------------------------------------------------------- running and saving


def method_options(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """The constructor options of ``method`` from the command line."""
    from models.attribution import BASELINES

    base = {"baseline": BASELINES[args.baseline]} if method in ("saliency", "ig", "occlusion", "ablation", "lime", "shap") else {}
    if method == "ig":
        base["n_steps"] = args.ig_steps
        if getattr(args, "ig_tolerance", None):
            base.update(tolerance=args.ig_tolerance, max_steps=args.ig_max_steps)
    elif method == "occlusion":
        base.update(window=args.occlusion_window, stride=args.occlusion_stride)
    elif method in ("ablation", "lime", "shap"):
        base.update(segment=args.segment, joint_channels=args.joint_channels)
        if method != "ablation":
            base["seed"] = args.rng_seed
            if args.samples is not None:
                base["n_samples"] = args.samples
    return base


def tqdm_progress(desc: str, enabled: bool) -> tuple[Callable[[int, int], None] | None, Callable[[], None]]:
    """A ``progress(done, total)`` callback drawing a tqdm bar, and its closer."""
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bar: list[Any] = []

    def progress(done: int, total: int) -> None:
        if not bar:
            bar.append(tqdm(total=total, desc=desc, unit="eval", leave=False, file=sys.stderr))
        elif total != bar[0].total or done < bar[0].n:  # a new pass (IG refining its steps)
            bar[0].reset(total=total)
        bar[0].update(done - bar[0].n)

    return progress, lambda: bar and bar[0].close()


def save_numbers(res: "Explanation", src: WindowSource, path_stem: Path, extra: dict[str, Any]) -> tuple[Path, Path]:
    """``<stem>.json`` (summary, source, truth) and ``<stem>.npz`` (every array, plus the window)."""
    summary = res.summary()
    summary.update(extra)
    summary["source"] = src.origin
    summary["truth_m"] = src.truth_m(res.step)
    js = path_stem.with_suffix(".json")
    js.write_text(json.dumps(summary, indent=2, default=float) + "\n")
    arrays = {k: v for k, v in res.arrays().items()}
    arrays["x"] = src.x
    arrays.update({f"truth_{k}": v for k, v in src.arrays.items()})
    npz = path_stem.with_suffix(".npz")
    np.savez_compressed(npz, **arrays)
    return js, npz


# ---------------------------------------------------------------- figures


def _amplitude_db(x: np.ndarray) -> np.ndarray:
    return 20 * np.log10(np.maximum(x[:, 0], 1e-3))


def _time_axis(src: WindowSource) -> np.ndarray:
    return np.arange(src.length) / src.rate_hz


def _band(ax: Any, t: np.ndarray, values: np.ndarray, cmap: str, norm: Any, dt: float) -> Any:
    """The attribution as a heat band behind the signal, one cell per sample."""
    lo, hi = ax.get_ylim()
    return ax.imshow(values[None, :], extent=(t[0] - dt / 2, t[-1] + dt / 2, lo, hi), aspect="auto",
                     cmap=cmap, norm=norm, interpolation="nearest", zorder=0, alpha=0.9)


def _plot_signal(ax_amp: Any, ax_dist: Any, src: WindowSource, t: np.ndarray, compact: bool = False) -> None:
    """Amplitude (dB) and detected distance (m), with headroom at the top for a one-row legend."""
    amp = _amplitude_db(src.x)
    ax_amp.plot(t, amp, color="black", lw=0.7, label="amplitude", zorder=3)
    if src.threshold_db is not None:
        ax_amp.axhline(src.threshold_db, color="0.3", ls=":", lw=1, label="detection threshold", zorder=3)
    ax_amp.set_ylabel("amplitude (dB)" if compact else "amplitude\n(dB re noise RMS)")
    lo, hi = min(-15.0, float(amp.min()) - 2), max(20.0, float(amp.max()) + 3)
    ax_amp.set_ylim(lo, hi + 0.3 * (hi - lo))
    det = src.x[:, 1] >= 0
    if src.true_range_m is not None:
        ax_dist.plot(t, src.true_range_m, color="0.45", lw=1.2, label="true range", zorder=2)
    ax_dist.scatter(t[det], src.x[det, 1], s=7, color="black", label="detected distance", zorder=3)
    if (~det).any():
        ax_dist.scatter(t[~det], np.full((~det).sum(), -0.04 * src.r_max_m), marker="|", s=12, color="0.55",
                        lw=0.6, label="no detection", zorder=3)
    ax_dist.set_ylim(-0.08 * src.r_max_m, 1.4 * src.r_max_m)
    ax_dist.set_yticks(np.linspace(0, src.r_max_m, 6))
    ax_dist.set_ylabel("distance (m)")


def _plot_estimate(ax_dist: Any, t: np.ndarray, res: "Explanation", src: WindowSource, curve: np.ndarray | None) -> None:
    r = res.r_max_m
    truth = src.truth_m(res.step)
    if truth is not None:
        ax_dist.axhline(truth, color="tab:green", ls="--", lw=1.3, label=f"true Dmin {truth:.0f} m", zorder=3)
    if res.step is None:
        ax_dist.axhline(res.estimate * r, color="tab:orange", lw=2.0, ls="-.", zorder=4,
                        label=f"{res.target} estimate {res.estimate * r:.0f} m")
        return
    if curve is not None:
        ax_dist.plot(t, curve * r, color="tab:orange", lw=1.3, label=f"{res.target} estimate over time", zorder=4)
    ax_dist.plot([t[res.step]], [res.estimate * r], marker="*", ms=14, color="tab:orange", mec="black", zorder=7,
                 ls="none", label=f"explained estimate {res.estimate * r:.0f} m")


def _mark_steps(axes: list[Any], res: "Explanation", src: WindowSource, t: np.ndarray) -> None:
    for k, ax in enumerate(axes):
        if res.step is not None:
            ax.axvline(t[res.step], color="tab:purple", lw=1.0, alpha=0.8, zorder=6,
                       label=f"step t = {t[res.step]:.1f} s (sample {res.step})" if k == 0 else None)
        if src.cpa is not None and 0 <= src.cpa < src.length and src.cpa != res.step:
            ax.axvline(t[src.cpa], color="tab:green", lw=1.0, ls="--", zorder=6,
                       label="closest approach (CPA)" if k == 0 else None)


def _title(res: "Explanation", src: WindowSource, title: str) -> str:
    truth = src.truth_m(res.step)
    where = f"at t = {res.step / src.rate_hz:.1f} s" if res.step is not None else "over the window"
    truth_s = f"truth {truth:.0f} m" if truth is not None else "truth unknown"
    return (f"{title} - {TARGET_LABELS[res.target]}\n"
            f"estimate {where}: {res.estimate_m:.0f} m vs {truth_s}  (error {res.estimate_m - truth:+.0f} m)"
            if truth is not None else
            f"{title} - {TARGET_LABELS[res.target]}\nestimate {where}: {res.estimate_m:.0f} m ({truth_s})")


def _legend(ax: Any) -> None:
    """One row at the top of the panel, in the headroom left free for it."""
    n = len(ax.get_legend_handles_labels()[0])
    ax.legend(loc="upper center", fontsize=8, framealpha=0.9, ncol=max(n, 1), borderaxespad=0.3,
              handletextpad=0.4, columnspacing=1.2)


def _attribution_note(res: Any) -> str:
    r = res.r_max_m
    parts = [f"baseline: {res.baseline_name} (amplitude {res.baseline[0]:g}, distance {res.baseline[1]:g})",
             f"baseline estimate {res.baseline_estimate * r:.0f} m"]
    if res.method == "ig":
        parts.append(f"sum of attributions {res.total * r:+.1f} m = estimate - baseline estimate "
                     f"{(res.estimate - res.baseline_estimate) * r:+.1f} m (delta {abs(res.delta) * r:.2g} m)")
    elif res.method == "shap":
        parts.append(f"sum of SHAP values {res.total * r:+.1f} m")
    keys = [k for k in res.params if k not in ("baseline", "batch_size", "space")]
    parts.append(", ".join(f"{k}={res.params[k]}" for k in keys))
    parts.append(f"{res.seconds * 1000:.0f} ms")
    return " · ".join(p for p in parts if p)


def plot_attribution(res: Any, src: WindowSource, curve: np.ndarray | None, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize, TwoSlopeNorm

    t = _time_axis(src)
    dt = 1.0 / src.rate_hz
    a = np.asarray(res.attributions, np.float64) * res.r_max_m
    fig, axes = plt.subplots(2, 1, sharex=True, figsize=(13, 7.5), constrained_layout=True)
    _plot_signal(axes[0], axes[1], src, t)
    _plot_estimate(axes[1], t, res, src, curve)
    signed = res.method != "saliency" or (a < 0).any()
    lim = float(np.abs(a).max()) or 1e-9
    if signed:
        norm, cmap = TwoSlopeNorm(0.0, -lim, lim), "RdBu_r"
        unit = "attribution (m of estimate)\nred raises, blue lowers it"
    else:
        norm, cmap = Normalize(0.0, lim), "Reds"
        unit = "|d estimate / d feature|\n(m per feature unit)"
    for c, ax in enumerate(axes):
        im = _band(ax, t, a[:, c], cmap, norm, dt)
        cb = fig.colorbar(im, ax=ax, pad=0.01, fraction=0.04)
        cb.set_label(f"{unit}\n- {res.channels[c]} channel", fontsize=8)
        cb.ax.tick_params(labelsize=8)
    _mark_steps(list(axes), res, src, t)
    for ax in axes:
        _legend(ax)
        ax.grid(alpha=0.25, zorder=1)
    axes[-1].set_xlabel(f"time in window (s) - {src.rate_hz:g} samples/s")
    axes[-1].set_xlim(t[0] - dt / 2, t[-1] + dt / 2)
    fig.suptitle(_title(res, src, title), fontsize=12)
    fig.text(0.5, -0.01, _attribution_note(res), ha="center", va="top", fontsize=8, wrap=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_attention(res: Any, src: WindowSource, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    t = _time_axis(src)
    dt = 1.0 / src.rate_hz
    w = np.asarray(res.weights, np.float64)
    fig, axes = plt.subplots(3, 1, sharex=True, figsize=(13, 9), constrained_layout=True,
                             gridspec_kw={"height_ratios": [1, 1, 0.8]})
    _plot_signal(axes[0], axes[1], src, t)
    _plot_estimate(axes[1], t, res, src, None)
    norm = Normalize(0.0, float(w.max()) or 1.0)
    for ax in axes[:2]:
        im = _band(ax, t, w, "Reds", norm, dt)
        cb = fig.colorbar(im, ax=ax, pad=0.01, fraction=0.04)
        cb.set_label("attention weight", fontsize=8)
    ax = axes[2]
    if res.per_head is not None:
        for h, ph in enumerate(np.asarray(res.per_head)):
            ax.plot(t, ph, lw=0.8, alpha=0.8, label=f"head {h + 1}")
    ax.fill_between(t, w, color="tab:red", alpha=0.35, label="attention weight" + (" (mean of heads)" if res.per_head is not None else ""))
    ax.axhline(1.0 / len(w), color="0.3", ls=":", lw=1, label="uniform (1 / T)")
    ax.set_ylabel("share of the\npooled context")
    _spacer_colorbar(fig, ax)
    _mark_steps(list(axes), res, src, t)
    for ax in axes:
        _legend(ax)
        ax.grid(alpha=0.25, zorder=1)
    axes[-1].set_xlabel(f"time in window (s) - {src.rate_hz:g} samples/s")
    axes[-1].set_xlim(t[0] - dt / 2, t[-1] + dt / 2)
    fig.suptitle(_title(res, src, f"{title} ({res.pooling} pooling)"), fontsize=12)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _spacer_colorbar(fig: Any, ax: Any) -> None:
    """An invisible colour bar, so that panels without one keep the same width as those with one."""
    import matplotlib.pyplot as plt

    cb = fig.colorbar(plt.cm.ScalarMappable(cmap="Greys"), ax=ax, pad=0.01, fraction=0.04)
    cb.ax.set_visible(False)


def _unit_heatmap(fig: Any, ax: Any, blocks: list[np.ndarray], t: np.ndarray, dt: float, cmap: str,
                  vmin: float, vmax: float, cbar_label: str, directions: int) -> None:
    """Units × time heatmap of stacked blocks (layers), each split forward | backward when
    bidirectional, with separators and a label per block (or half-block)."""
    data = np.concatenate([b.T for b in blocks], axis=0)  # [units total, T]
    im = ax.imshow(data, extent=(t[0] - dt / 2, t[-1] + dt / 2, data.shape[0], 0), aspect="auto", cmap=cmap,
                   vmin=vmin, vmax=vmax, interpolation="nearest")
    edges = np.cumsum([0] + [b.shape[1] for b in blocks])
    for e in edges[1:-1]:
        ax.axhline(e, color="black", lw=1.5)
    ticks, labels = [], []
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        layer = f"L{k + 1} " if len(blocks) > 1 else ""
        if directions == 2:
            mid = (lo + hi) / 2
            ax.axhline(mid, color="0.2", lw=0.8, ls="--")
            ticks += [(lo + mid) / 2, (mid + hi) / 2]
            labels += [f"{layer}fwd", f"{layer}bwd"]
        else:
            ticks.append((lo + hi) / 2)
            labels.append(f"{layer}units" if layer else f"{hi - lo} units")
    ax.set_yticks(ticks, labels, fontsize=8)
    cb = fig.colorbar(im, ax=ax, pad=0.01, fraction=0.04)
    cb.set_label(cbar_label, fontsize=8)
    cb.ax.tick_params(labelsize=8)


def _symmetric_limit(a: np.ndarray) -> float:
    """Colour limit that shows structure: the 99th percentile of |a| (a few saturated cells)."""
    v = float(np.percentile(np.abs(a), 99)) if a.size else 1.0
    return v if v > 0 else 1.0


def plot_internal(res: Any, src: WindowSource, curve: np.ndarray | None, path: Path, title: str) -> Path:
    """State (h, c per layer) or gates (i, f, g, o; layers stacked) over time, under the signal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = _time_axis(src)
    dt = 1.0 / src.rate_hz
    dirs = res.directions
    if res.method == "state":
        layers = res.h.shape[0]
        rows = []
        for name, arr, what in (("hidden state h", res.h, "h"), ("cell state c", res.c, "c (memory)")):
            for k in range(layers):
                lim = _symmetric_limit(arr[k])
                rows.append((f"{name}\nlayer {k + 1}", [arr[k]], "RdBu_r", -lim, lim, f"{what}, layer {k + 1}"))
    else:
        names = {"i": ("input gate i", "Greens", 0.0, 1.0, "i: 1 = write c"), "f": ("forget gate f", "Blues", 0.0, 1.0, "f: 1 = keep c"),
                 "g": ("candidate g (ĉ)", "RdBu_r", -1.0, 1.0, "g: value written"), "o": ("output gate o", "Purples", 0.0, 1.0, "o: 1 = expose c")}
        layers = res.i.shape[0]
        rows = [(names[g][0], [getattr(res, g)[k] for k in range(layers)], *names[g][1:]) for g in ("i", "f", "g", "o")]
    heights = [1.5, 1.5] + [1.5] * len(rows)
    fig, axes = plt.subplots(len(rows) + 2, 1, sharex=True, figsize=(13, 2.0 + 1.6 * (len(rows) + 2)),
                             constrained_layout=True, gridspec_kw={"height_ratios": heights})
    _plot_signal(axes[0], axes[1], src, t, compact=True)
    _plot_estimate(axes[1], t, res, src, curve)
    for ax in axes[:2]:
        _spacer_colorbar(fig, ax)
    for ax, (label, blocks, cmap, vmin, vmax, cbl) in zip(axes[2:], rows):
        _unit_heatmap(fig, ax, blocks, t, dt, cmap, vmin, vmax, cbl, dirs)
        ax.set_ylabel(label, fontsize=9)
    _mark_steps(list(axes), res, src, t)
    for ax in axes[:2]:
        _legend(ax)
        ax.grid(alpha=0.25)
    axes[-1].set_xlabel(f"time in window (s) - {src.rate_hz:g} samples/s")
    axes[-1].set_xlim(t[0] - dt / 2, t[-1] + dt / 2)
    note = ("bidirectional LSTM: 'fwd' units at t have read the samples up to t, 'bwd' units those from the end "
            "back to t" if dirs == 2 else "unidirectional LSTM: each unit at t has read only the samples up to t")
    fig.suptitle(_title(res, src, title) + f"\n{note}", fontsize=11)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_explanation(res: "Explanation", src: WindowSource, curve: np.ndarray | None, path: Path) -> Path:
    from models.attribution import EXPLAINERS

    title = EXPLAINERS[res.method].title
    if res.method == "attention":
        return plot_attention(res, src, path, title)
    if res.method in ("state", "gates"):
        return plot_internal(res, src, curve, path, title)
    return plot_attribution(res, src, curve, path, title)


# ---------------------------------------------------------------- commands


def cmd_explain(args: argparse.Namespace) -> int:
    try:
        return _explain(args)
    except ExplainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _explain(args: argparse.Namespace) -> int:
    import torch

    from models.attribution import available_methods, explain_window

    torch.set_num_threads(args.threads)
    if args.simulate == bool(args.input):
        raise ExplainError("give exactly one source: --simulate or --input FILE.mcap")
    if args.input:
        src = recorded_window(args.input, args.sensor, args.start, args.end, args.window)
    else:
        src = simulated_window(args.seed, args.encounter, args.window, args.manoeuvre_prob)
    model = load_target(args.target, args.weights)
    methods = available_methods(model, args.target) if args.method == "all" else (args.method,)
    if args.method == "attention" and "attention" not in methods:
        methods = ()
    if not methods:
        pooling = getattr(model, "pooling", None)
        raise ExplainError(f"attention weights need a pooled model with attention pooling; the {args.target} model"
                           + (f" uses {pooling!r} pooling" if pooling else " has no attention"))
    step = args.step
    if step is None and args.target != "pooled":
        step = src.cpa if src.cpa is not None and 0 <= src.cpa < src.length else src.length - 1
    if step is not None and not -src.length <= step < src.length:
        raise ExplainError(f"--step {step} is outside the window of {src.length} samples")
    curve = per_step_estimates(model, args.target, src.x)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for method in methods:
        from models.attribution import EXPLAINERS

        slow = getattr(EXPLAINERS[method], "slow", False)
        progress, close = tqdm_progress(f"{method} ({args.target})", slow and not args.quiet)
        try:
            res = explain_window(args.target, model, src.x, method, step, progress=progress,
                                 **method_options(args, method))
        except ValueError as exc:
            raise ExplainError(str(exc)) from exc
        finally:
            close()
        stem = out / f"{args.target}-{method}"
        png = plot_explanation(res, src, curve, stem.with_suffix(".png"))
        js, npz = save_numbers(res, src, stem, {"weights": str(args.weights or "shipped")})
        truth = src.truth_m(res.step)
        truth_s = f"truth {truth:.0f} m" if truth is not None else "truth unknown"
        extra = f", delta {abs(res.delta) * res.r_max_m:.2g} m" if getattr(res, "delta", None) is not None else ""
        print(f"{method:>9}: estimate {res.estimate_m:.0f} m ({truth_s}), {res.seconds * 1000:.0f} ms{extra} -> {png}, "
              f"{js.name}, {npz.name}")
    return 0


def bench_models(args: argparse.Namespace) -> tuple[dict[str, "nn.Module"], str]:
    """The three models to time, and a note on which weights they carry."""
    import torch

    from models.bundle import build_model

    if args.untrained:
        torch.manual_seed(0)
        cfg = {"hidden_size": args.hidden, "num_layers": 2, "r_max_m": 1000.0}
        models = {k: build_model(k, dict(cfg, pooling=args.pooling) if k == "pooled" else cfg).eval()
                  for k in ("causal", "bidir", "pooled")}
        return models, (f"untrained weights of the shipped architecture (2 layers x {args.hidden}, pooled with "
                        f"{args.pooling} pooling; cost does not depend on the weight values)")
    models = {k: load_target(k, args.weights) for k in ("causal", "bidir", "pooled")}
    where = args.weights or "shipped weights (models/weights)"
    pooling = getattr(models["pooled"], "pooling", "?")
    hidden = models["causal"].lstm.hidden_size
    return models, f"{where}: 2 layers x {hidden}, pooled with {pooling} pooling"


def cost_table(costs: list[Any], targets: list[str]) -> str:
    from models.attribution import EXPLAINERS

    by = {(c.method, c.target): c for c in costs}
    methods = list(dict.fromkeys(c.method for c in costs))
    head = "| method | settings | " + " | ".join(f"{t} (ms)" for t in targets) + " |"
    rows = [head, "|---|---|" + "---:|" * len(targets)]
    for m in methods:
        some = next(c for c in costs if c.method == m)
        shown = {k: v for k, v in some.params.items()
                 if k not in ("baseline", "batch_size", "space", "features", "perturbed_samples")}
        settings = ", ".join(f"{k}={v}" for k, v in shown.items())
        cells = [f"{by[(m, t)].seconds * 1000:,.0f}" if (m, t) in by else "n/a" for t in targets]
        rows.append(f"| {EXPLAINERS[m].title} | {settings} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def cmd_bench_explain(args: argparse.Namespace) -> int:
    try:
        return _bench_explain(args)
    except ExplainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _bench_explain(args: argparse.Namespace) -> int:
    import torch

    from models.attribution import METHODS, time_methods
    from bench.doc import machine_line, update_section

    torch.set_num_threads(args.threads)
    models, weights_note = bench_models(args)
    src = simulated_window(0, 0, args.window)
    targets = list(models)
    opts = {m: method_options(args, m) for m in METHODS}
    t0 = time.perf_counter()
    progress, close = tqdm_progress("bench-explain", not args.quiet)
    costs = time_methods(models, src.x, opts=opts, step=src.cpa, repeats=args.repeats,
                         slow_repeats=args.slow_repeats, progress=progress)
    close()
    anchor_src = simulated_window(0, 0, 100)
    anchor = time_methods({"causal": models["causal"]}, anchor_src.x, methods=("saliency", "ig"), opts=opts,
                          repeats=max(args.repeats, 3))
    took = time.perf_counter() - t0
    table = cost_table(costs, targets)
    cmd = "radarstream bench-explain" + (f" --window {args.window}" if args.window != BENCH_WINDOW else "") + \
        (" --untrained" if args.untrained else "") + (f" --weights {args.weights}" if args.weights else "") + \
        (f" --threads {args.threads}" if args.threads != 1 else "")
    a = {c.method: c.seconds * 1000 for c in anchor}
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    body = (
        f"## Explanation cost\n\n"
        f"Wall time of one explanation of one window of {args.window} samples (simulator seed 0, centred on the first "
        f"encounter's CPA; per-step targets explained at the CPA, as `radarstream explain` does), {args.threads} torch "
        f"thread(s); median of {args.repeats} runs after a warm-up for the fast methods, {args.slow_repeats} run(s) for "
        f"occlusion, ablation, LIME and SHAP. Models: {weights_note}. Settings are the `radarstream explain` defaults "
        f"except IG, timed at a fixed {args.ig_steps} steps (explain doubles them until |delta| <= 2% of the explained "
        f"change, up to 800 steps, so up to ~30x this when the model is stiff along the path). LIME/SHAP/ablation "
        f"features are time segments x channel; for the causal target LIME/SHAP perturb only the samples up to t. "
        f"Load average at the end: {load} (the 2 CPUs were shared).\n\n"
        f"Command: `{cmd}` ({took:.0f} s; {machine_line()}).\n\n{table}\n\n"
        f"Anchor (causal, 100-sample window): Saliency {a.get('saliency', float('nan')):.0f} ms, "
        f"IG n_steps={args.ig_steps} {a.get('ig', float('nan')):.0f} ms (reference on this project's machine: "
        f"~9 ms and ~115 ms).\n"
    )
    print(table)
    print(body.splitlines()[-1])
    if not args.no_write:
        print(f"wrote {update_section('explain', body, args.doc)}")
    return 0


# ---------------------------------------------------------------- parser


def _add_method_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("method settings")
    g.add_argument("--baseline", choices=["noise", "zeros"], default="noise",
                   help="reference input: 'noise' = noise only (amplitude 1 = noise RMS, distance -1 = no "
                        "detection; default), 'zeros' = raw zeros, for comparison only")
    g.add_argument("--ig-steps", type=int, default=50, metavar="N", help="integrated gradients: integration steps (default 50)")
    g.add_argument("--ig-tolerance", type=float, default=None, metavar="R",
                   help="integrated gradients: double the steps until |delta| <= R x |estimate - baseline estimate| "
                        "(explain default 0.02, 0 = off: fixed --ig-steps; bench-explain: off)")
    g.add_argument("--ig-max-steps", type=int, default=800, metavar="N",
                   help="integrated gradients: most steps --ig-tolerance may use (default 800)")
    g.add_argument("--occlusion-window", type=int, default=16, metavar="N",
                   help="occlusion: samples replaced by noise at a time (default 16 = 0.8 s at 20 Hz)")
    g.add_argument("--occlusion-stride", type=int, default=None, metavar="N",
                   help="occlusion: shift between windows (default: half the window)")
    g.add_argument("--segment", type=int, default=16, metavar="N",
                   help="ablation/LIME/SHAP: samples per time segment (one feature per segment and channel)")
    g.add_argument("--joint-channels", action="store_true",
                   help="ablation/LIME/SHAP: one feature per segment covering both channels")
    g.add_argument("--samples", type=int, default=None, metavar="N",
                   help="LIME/SHAP: perturbed samples (default: LIME 300, SHAP 1000, as SHAP's estimate is noisier)")
    g.add_argument("--rng-seed", type=int, default=0, metavar="N", help="LIME/SHAP: sampling seed (results repeat exactly)")
    g.add_argument("--threads", type=int, default=1, metavar="N", help="torch threads (default 1)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


METHOD_NAMES = ("saliency", "ig", "occlusion", "ablation", "lime", "shap", "attention", "state", "gates")
"""``models.attribution.METHODS``, spelled out so that building the parser (every ``radarstream``
command does) does not import torch and captum (tested equal)."""


def register(sub: argparse._SubParsersAction) -> None:
    METHODS = METHOD_NAMES  # noqa: N806

    p = sub.add_parser(
        "explain", help="explain one window: attribution (Captum), attention, LSTM state and gates, as PNG + JSON + NPZ",
        description="Explain one estimate over one window of samples. Writes <out>/<target>-<method>.png (the "
                    "signal with the attribution as a heat band), .json (summary) and .npz (all numbers). "
                    "See docs/explain.md for what each method answers.",
    )
    src = p.add_argument_group("window source (one of)")
    src.add_argument("--simulate", action="store_true", help="take the window from the built-in simulator")
    src.add_argument("--seed", type=int, default=0, help="simulator seed (default 0)")
    src.add_argument("--encounter", type=int, default=None, metavar="K",
                     help="centre the window on the CPA of encounter K of the simulated stream (default: the first)")
    src.add_argument("--manoeuvre-prob", type=float, default=0.0, metavar="P",
                     help="simulator: share of manoeuvring passes (default 0)")
    src.add_argument("--input", default=None, metavar="FILE.mcap", help="take the window from a recording")
    src.add_argument("--sensor", default=None, metavar="S",
                     help="recording: sensor id (default: the only one recorded)")
    src.add_argument("--start", type=float, default=None, metavar="SEC",
                     help="recording: window start, seconds from the start of the recording (default: its start)")
    src.add_argument("--end", type=float, default=None, metavar="SEC",
                     help="recording: window end (exclusive), seconds; the window also stops after --window samples")
    p.add_argument("--method", choices=[*METHODS, "all"], default="ig",
                   help="saliency | ig (integrated gradients) | occlusion | ablation | lime | shap | attention | "
                        "state | gates | all (every method that applies to the target; default ig)")
    p.add_argument("--target", choices=["causal", "bidir", "pooled"], default="causal",
                   help="which model's estimate to explain (default causal)")
    p.add_argument("--step", type=int, default=None, metavar="T",
                   help="step whose estimate is explained (default: the CPA of the window's encounter, else the "
                        "last step; ignored by the pooled model, which has one estimate per window)")
    p.add_argument("--window", type=int, default=EXPLAIN_DEFAULT_WINDOW, metavar="W",
                   help=f"window length in samples (default {EXPLAIN_DEFAULT_WINDOW}); with --input, the most samples taken")
    p.add_argument("--out", default="explain-out", metavar="DIR", help="output directory (default ./explain-out)")
    p.add_argument("--weights", default=None, metavar="DIR", help="weights directory (default: the shipped weights)")
    _add_method_options(p)
    p.set_defaults(func=cmd_explain, ig_tolerance=0.02)

    b = sub.add_parser(
        "bench-explain", help="time every explanation method on one window for the three models; writes docs/benchmarks.md",
        description="Times each method (defaults of `radarstream explain`) on one simulated window for the causal, "
                    "bidirectional and pooled models and writes the table to the 'explain' section of docs/benchmarks.md.",
    )
    b.add_argument("--window", type=int, default=BENCH_WINDOW, metavar="W", help=f"window length (default {BENCH_WINDOW})")
    b.add_argument("--weights", default=None, metavar="DIR", help="weights directory (default: the shipped weights)")
    b.add_argument("--untrained", action="store_true",
                   help="time untrained models of the shipped architecture instead of loading weights (same cost)")
    b.add_argument("--hidden", type=int, default=64, metavar="H", help="--untrained: LSTM width (default 64, as shipped)")
    b.add_argument("--pooling", choices=["mean", "last", "attention", "multihead"], default="attention",
                   help="--untrained: pooling of the pooled model (default attention, so attention is timed too)")
    b.add_argument("--repeats", type=int, default=3, metavar="N", help="timed runs of the fast methods (default 3)")
    b.add_argument("--slow-repeats", type=int, default=1, metavar="N", help="timed runs of the slow methods (default 1)")
    b.add_argument("--doc", default="docs/benchmarks.md", help="markdown file to update (default docs/benchmarks.md)")
    b.add_argument("--no-write", action="store_true", help="print the table only")
    _add_method_options(b)
    b.set_defaults(func=cmd_bench_explain)
