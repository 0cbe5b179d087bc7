"""Figures of one explanation (matplotlib, Agg): the signal with the attribution as a heat band,
attention weights, LSTM state and gates over time. What ``radarstream explain`` writes as PNG.

Attribution colours come from :mod:`radarstream.palette`, the mapping the GUI's explain overlay
uses too, so a figure and the monitor read the same way. matplotlib is imported inside the
functions: importing this module costs nothing.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping, Protocol

import numpy as np

from radarstream import palette

if TYPE_CHECKING:
    from models.attribution.results import Explanation

__all__ = ["TARGET_LABELS", "WindowLike", "attribution_cmap", "plot_attention", "plot_attribution",
           "plot_explanation", "plot_internal"]

TARGET_LABELS: Mapping[str, str] = MappingProxyType({
    "causal": "causal model (online, sees only the past)",
    "bidir": "bidirectional re-scorer (sees the whole window)",
    "pooled": "pooled DminRegressorLSTM (one estimate per window)",
})


class WindowLike(Protocol):
    """What a figure needs of the explained window (``streamer.offline.explain_windows.WindowSource``)."""

    x: np.ndarray
    rate_hz: float
    r_max_m: float
    true_range_m: np.ndarray | None
    cpa: int | None
    threshold_db: float | None

    @property
    def length(self) -> int: ...

    def truth_m(self, step: int | None) -> float | None: ...


def attribution_cmap(signed: bool) -> Any:
    """The matplotlib colour map of an attribution: lowers → white → raises (signed), or white →
    raises (unsigned importance), in the shared palette's colours."""
    from matplotlib.colors import LinearSegmentedColormap

    if signed:
        return LinearSegmentedColormap.from_list("radarstream-attribution", palette.diverging_stops())
    return LinearSegmentedColormap.from_list("radarstream-importance", palette.sequential_stops())


def _amplitude_db(x: np.ndarray) -> np.ndarray:
    return 20 * np.log10(np.maximum(x[:, 0], 1e-3))


def _time_axis(src: WindowLike) -> np.ndarray:
    return np.arange(src.length) / src.rate_hz


def _band(ax: Any, t: np.ndarray, values: np.ndarray, cmap: Any, norm: Any, dt: float) -> Any:
    """The attribution as a heat band behind the signal, one cell per sample."""
    lo, hi = ax.get_ylim()
    return ax.imshow(values[None, :], extent=(t[0] - dt / 2, t[-1] + dt / 2, lo, hi), aspect="auto",
                     cmap=cmap, norm=norm, interpolation="nearest", zorder=0, alpha=0.9)


def _plot_signal(ax_amp: Any, ax_dist: Any, src: WindowLike, t: np.ndarray, compact: bool = False) -> None:
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


def _plot_estimate(ax_dist: Any, t: np.ndarray, res: "Explanation", src: WindowLike, curve: np.ndarray | None) -> None:
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


def _mark_steps(axes: list[Any], res: "Explanation", src: WindowLike, t: np.ndarray) -> None:
    for k, ax in enumerate(axes):
        if res.step is not None:
            ax.axvline(t[res.step], color="0.15", lw=1.1, ls="-.", alpha=0.9, zorder=6,
                       label=f"step t = {t[res.step]:.1f} s (sample {res.step})" if k == 0 else None)
        if src.cpa is not None and 0 <= src.cpa < src.length and src.cpa != res.step:
            ax.axvline(t[src.cpa], color="tab:green", lw=1.0, ls="--", zorder=6,
                       label="closest approach (CPA)" if k == 0 else None)


def _title(res: "Explanation", src: WindowLike, title: str) -> str:
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


def _finish_axes(axes: list[Any], with_legend: list[Any], res: Any, src: WindowLike, t: np.ndarray) -> None:
    """Step and CPA markers on every panel, legend and grid on ``with_legend``, the shared time axis."""
    dt = 1.0 / src.rate_hz
    _mark_steps(axes, res, src, t)
    for ax in with_legend:
        _legend(ax)
        ax.grid(alpha=0.25, zorder=1)
    axes[-1].set_xlabel(f"time in window (s) - {src.rate_hz:g} samples/s")
    axes[-1].set_xlim(t[0] - dt / 2, t[-1] + dt / 2)


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


def plot_attribution(res: Any, src: WindowLike, curve: np.ndarray | None, path: Path, title: str) -> Path:
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
        norm, cmap = TwoSlopeNorm(0.0, -lim, lim), attribution_cmap(signed=True)
        unit = "attribution (m of estimate)\npurple raises, blue lowers it"
    else:
        norm, cmap = Normalize(0.0, lim), attribution_cmap(signed=False)
        unit = "|d estimate / d feature|\n(m per feature unit)"
    for c, ax in enumerate(axes):
        im = _band(ax, t, a[:, c], cmap, norm, dt)
        cb = fig.colorbar(im, ax=ax, pad=0.01, fraction=0.04)
        cb.set_label(f"{unit}\n- {res.channels[c]} channel", fontsize=8)
        cb.ax.tick_params(labelsize=8)
    _finish_axes(list(axes), list(axes), res, src, t)
    fig.suptitle(_title(res, src, title), fontsize=12)
    fig.text(0.5, -0.01, _attribution_note(res), ha="center", va="top", fontsize=8, wrap=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_attention(res: Any, src: WindowLike, path: Path, title: str) -> Path:
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
        im = _band(ax, t, w, attribution_cmap(signed=False), norm, dt)
        cb = fig.colorbar(im, ax=ax, pad=0.01, fraction=0.04)
        cb.set_label("attention weight", fontsize=8)
    ax = axes[2]
    if res.per_head is not None:
        for h, ph in enumerate(np.asarray(res.per_head)):
            ax.plot(t, ph, lw=0.8, alpha=0.8, label=f"head {h + 1}")
    ax.fill_between(t, w, color=palette.hex_colour(palette.RAISES), alpha=0.35, label="attention weight" + (" (mean of heads)" if res.per_head is not None else ""))
    ax.axhline(1.0 / len(w), color="0.3", ls=":", lw=1, label="uniform (1 / T)")
    ax.set_ylabel("share of the\npooled context")
    _spacer_colorbar(fig, ax)
    _finish_axes(list(axes), list(axes), res, src, t)
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


def plot_internal(res: Any, src: WindowLike, curve: np.ndarray | None, path: Path, title: str) -> Path:
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
    _finish_axes(list(axes), list(axes[:2]), res, src, t)
    note = ("bidirectional LSTM: 'fwd' units at t have read the samples up to t, 'bwd' units those from the end "
            "back to t" if dirs == 2 else "unidirectional LSTM: each unit at t has read only the samples up to t")
    fig.suptitle(_title(res, src, title) + f"\n{note}", fontsize=11)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_explanation(res: Explanation, src: WindowLike, curve: np.ndarray | None, path: Path) -> Path:
    from models.attribution import EXPLAINERS

    title = EXPLAINERS[res.method].title
    if res.method == "attention":
        return plot_attention(res, src, path, title)
    if res.method in ("state", "gates"):
        return plot_internal(res, src, curve, path, title)
    return plot_attribution(res, src, curve, path, title)
