"""Plot construction for the main window: theme, curves, state heatmaps, disagreement bands.

Only builds and styles pyqtgraph items; the window feeds them data from its own timer (GUI thread).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui

from gui.buffers import GATE_NAMES


@dataclass(frozen=True)
class Theme:
    """Colours for one palette; Okabe-Ito hues, readable on dark and light backgrounds."""

    dark: bool
    background: str
    foreground: str
    grid_alpha: float
    amplitude: str
    detections: str
    true_range: str
    causal: str
    bidir: str
    truth: str
    bands: tuple[int, int, int, int]
    cursor: tuple[int, int, int, int]
    hybrid: str = "#000000"
    """The best estimate (hybrid): the strongest contrast, no Okabe–Ito hue taken from another curve."""
    hybrid_band: tuple[int, int, int, int] = (0, 0, 0, 40)
    warning: str = "#D55E00"


def theme_for(palette: QtGui.QPalette) -> Theme:
    """Follow the platform palette: dark when the window colour is dark."""
    window = palette.color(QtGui.QPalette.ColorRole.Base)
    text = palette.color(QtGui.QPalette.ColorRole.Text)
    dark = window.lightness() < 128
    if dark:
        return Theme(True, window.name(), text.name(), 0.25, "#56B4E9", "#CC79A7", "#7FD4B8", "#56B4E9",
                     "#E69F00", "#3FD09E", (230, 120, 60, 70), (255, 255, 255, 110), "#F2F2F2", (255, 255, 255, 50),
                     "#F0A040")
    return Theme(False, window.name(), text.name(), 0.18, "#0072B2", "#B8489A", "#009E73", "#0072B2",
                 "#D55E00", "#009E73", (213, 94, 0, 45), (0, 0, 0, 110), "#1A1A1A", (0, 0, 0, 38), "#C04800")


def style_plot(plot: pg.PlotItem, theme: Theme) -> None:
    """Axis pens, grid and title colours from the theme (re-run on a palette change)."""
    fg = pg.mkColor(theme.foreground)
    for name in ("left", "bottom", "right", "top"):
        ax = plot.getAxis(name)
        ax.setPen(pg.mkPen(fg))
        ax.setTextPen(pg.mkPen(fg))
    # No grid lines: with the raster engine they cost ~14 ms per plot per frame (measured, pyqtgraph
    # 0.14 offscreen); the cursor readout gives exact values instead.
    if plot.titleLabel is not None and plot.titleLabel.text:
        plot.setTitle(plot.titleLabel.text, color=theme.foreground, size="10pt")
    if plot.legend is not None:
        style_legend(plot.legend, theme)


def style_legend(legend: pg.LegendItem, theme: Theme) -> None:
    fg = pg.mkColor(theme.foreground)
    legend.setLabelTextColor(fg)
    for _sample, label in legend.items:
        label.setText(label.text)  # LabelItem re-renders only on setText
    legend.setBrush(pg.mkBrush(None))
    legend.setPen(pg.mkPen(None))


def cache_static_text(plot: pg.PlotItem) -> None:
    """Titles and legends change rarely: paint them from a pixmap cache instead of laying out and
    rasterising their text on every frame."""
    cache = pg.QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache
    plot.titleLabel.setCacheMode(cache)
    if plot.legend is not None:
        plot.legend.setCacheMode(cache)


def with_gaps(t: np.ndarray, ys: tuple[np.ndarray, ...], max_dt: float) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Break the curves where consecutive samples are more than ``max_dt`` apart (an outage):
    a NaN row is inserted in the middle of every such gap, so a ``connect="finite"`` curve draws
    nothing across it. No gap: the inputs themselves (views, no copy)."""
    if len(t) < 2 or not max_dt > 0:
        return t, ys
    cut = np.flatnonzero(np.diff(t) > max_dt) + 1
    if not len(cut):
        return t, ys
    tt = np.insert(t, cut, 0.5 * (t[cut - 1] + t[cut]))
    return tt, tuple(np.insert(np.asarray(y, np.float64), cut, np.nan) for y in ys)


def fast_curve(plot: pg.PlotItem, name: str | None, **kw) -> pg.PlotDataItem:
    """A curve that stays cheap with 10^5 points: peak downsampling, clipped to the view."""
    item = pg.PlotDataItem(name=name, **kw)
    plot.addItem(item)  # PlotItem.addItem imposes the plot's own downsampling settings: set them after
    item.setDownsampling(auto=True, method="peak")
    item.setClipToView(True)
    # One min/max pair per pixel column (pyqtgraph's default keeps 5 per pixel): the same envelope
    # on screen, 5x fewer segments to stroke (the dominant paint cost of a noisy 60k-point trace).
    item.opts["autoDownsampleFactor"] = 1.0
    return item


def nice_ceiling(value: float) -> float:
    """Smallest of 1, 2, 5, 10, 20, 50... that is >= value."""
    exp = math.floor(math.log10(value))
    for m in (1.0, 2.0, 5.0, 10.0):
        if m * 10**exp >= value - 1e-12:
            return m * 10**exp
    return 10.0 ** (exp + 1)


def step_points(t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A piecewise-constant series (truth Dmin: one value per encounter, NaN between) reduced to
    the first and last point of each run: a handful of points instead of one per sample."""
    if len(v) < 3:
        return t, v
    same = (v[1:] == v[:-1]) | (np.isnan(v[1:]) & np.isnan(v[:-1]))
    keep = np.ones(len(v), bool)
    keep[1:-1] = ~(same[:-1] & same[1:])  # drop points whose both neighbours hold the same value
    return t[keep], v[keep]


def detection_ticks(t: np.ndarray, d: np.ndarray, x0: float, x1: float, columns: int,
                    half_height: float) -> tuple[np.ndarray, np.ndarray]:
    """Detections as short vertical ticks (pairs of points), at most the lowest and highest per
    pixel column: a scatter of 10^4 symbols costs ~4 µs per point per frame in pyqtgraph, a path
    of line pairs almost nothing."""
    if len(t) > 2 * columns and x1 > x0:
        col = np.floor((t - x0) * (columns / (x1 - x0))).astype(np.int64)
        starts = np.concatenate(([0], np.flatnonzero(np.diff(col)) + 1))
        lo, hi = np.minimum.reduceat(d, starts), np.maximum.reduceat(d, starts)
        t = np.repeat(t[starts], 2)
        d = np.stack([lo, hi], axis=1).ravel()
    x = np.repeat(t, 2)
    y = np.stack([d - half_height, d + half_height], axis=1).ravel()
    return x, y


class SignalPlots:
    """Amplitude, measured range and the Dmin estimates, one sensor, sharing the time axis."""

    TITLES = {"amp": "Signal amplitude", "rng": "Measured range (detections only)", "est": "Dmin estimates"}
    BAND_Z = 1.6448536269514722
    """The hybrid band is the estimate ± z·σ: a 90 % two-sided interval for a Gaussian error."""

    def __init__(self, layout: pg.GraphicsLayoutWidget, theme: Theme, r_max_m: float):
        self.layout = layout
        self.sensor = ""
        # the legend is a row of checkboxes above the plots (gui/series_legend.py): never over the data
        self.amp = layout.addPlot(row=0, col=0, title=self.TITLES["amp"])
        self.rng = layout.addPlot(row=1, col=0, title=self.TITLES["rng"])
        self.est = layout.addPlot(row=2, col=0, title=self.TITLES["est"])
        for p in (self.amp, self.rng, self.est):
            p.setDownsampling(auto=True, mode="peak")  # also what the plot's context menu would set
            p.setClipToView(True)
            p.setMenuEnabled(False)
            p.hideButtons()
            p.getAxis("left").setWidth(62)
        self.rng.setXLink(self.amp)
        self.est.setXLink(self.amp)
        self.amp.setLabel("left", "amplitude", units="dB")
        self.rng.setLabel("left", "range", units="m")
        self.est.setLabel("left", "Dmin", units="m")
        self.est.setLabel("bottom", "time relative to now (the newest sample while it streams)", units="s")
        for p in (self.amp, self.rng, self.est):
            p.getAxis("left").enableAutoSIPrefix(False)  # metres stay metres (no "km" rescaling)
            p.getAxis("bottom").enableAutoSIPrefix(False)
        # the amplitude's y range follows the data a few times a second (fit_amplitude), not every
        # frame: each change re-generates the axis
        self.amp.disableAutoRange()
        self.amp.setYRange(-30.0, 30.0, padding=0)
        for p in (self.amp, self.rng):
            p.hideAxis("bottom")  # the time axis is drawn once, under the estimates (axes cost paint time)
        self.amplitude = fast_curve(self.amp, None, connect="finite")
        self.detections = pg.PlotDataItem(connect="pairs")
        self.rng.addItem(self.detections)
        self.detections.setDownsampling(ds=1, auto=False)  # already one pair per pixel (detection_ticks);
        self.detections.setClipToView(False)  # pyqtgraph's own would split the pairs
        self.true_range = fast_curve(self.rng, None, connect="finite")
        # the hybrid's band: two boundary curves and the fill between them, behind the curves
        self.band_hi = fast_curve(self.est, None, connect="finite")
        self.band_lo = fast_curve(self.est, None, connect="finite")
        self.band = pg.FillBetweenItem(self.band_hi, self.band_lo)
        self.band.setZValue(-5)
        self.est.addItem(self.band, ignoreBounds=True)
        self.causal = fast_curve(self.est, None, connect="finite")
        self.bidir = fast_curve(self.est, None, connect="finite")
        self.hybrid = fast_curve(self.est, None, connect="finite")
        self.hybrid.setZValue(-1)  # wide, under the others: the causal stays visible where they coincide
        self.truth = fast_curve(self.est, None, connect="finite")
        self.truth.setDownsampling(ds=1, auto=False)  # already reduced to its steps (step_points)
        self.bands = pg.ImageItem(axisOrder="col-major")  # a 1-pixel-high mask stretched over the plot
        self.bands.setZValue(-10)
        self.est.addItem(self.bands, ignoreBounds=True)
        self.bands_legend = _LegendProxy((self.bands,), x0=[], x1=[], y0=[], y1=[], pen=pg.mkPen(None))
        self.band_legend = _LegendProxy((self.band, self.band_hi, self.band_lo), x0=[], x1=[], y0=[], y1=[])
        self.series = {"amplitude": self.amplitude, "detections": self.detections, "true_range": self.true_range,
                       "hybrid": self.hybrid, "band": self.band_legend, "causal": self.causal, "bidir": self.bidir,
                       "truth": self.truth, "disagreement": self.bands_legend}
        """Toggleable series (the legend's checkboxes, or :meth:`set_series_visible`)."""
        self.stale = pg.TextItem("", anchor=(1, 0))
        self.amp.addItem(self.stale, ignoreBounds=True)
        self.cursors = []
        for p in (self.amp, self.rng, self.est):
            line = pg.InfiniteLine(angle=90, movable=False)
            line.setVisible(False)
            p.addItem(line, ignoreBounds=True)
            self.cursors.append(line)
        self.set_r_max(r_max_m)
        self.apply_theme(theme)
        for p in self.plots:
            cache_static_text(p)

    @property
    def plots(self) -> tuple[pg.PlotItem, ...]:
        return (self.amp, self.rng, self.est)

    SERIES_LABELS = {
        "amplitude": "amplitude", "detections": "detections", "true_range": "true range",
        "hybrid": "hybrid (best)", "band": "±1.645σ (90 %)", "causal": "causal", "bidir": "bidirectional",
        "truth": "truth Dmin", "disagreement": "|Δ| > threshold",
    }

    def set_series_visible(self, name: str, visible: bool) -> None:
        """Show or hide one series (as its legend checkbox does)."""
        self.series[name].setVisible(visible)

    def series_style(self) -> dict[str, tuple[str, str, str]]:
        """name -> (label, colour, "line" | "dash" | "fill") for the legend."""
        t = self.theme
        band = "#{:02x}{:02x}{:02x}".format(*(int(round(255 + (c - 255) * 0.3)) if not t.dark else c
                                                for c in t.hybrid_band[:3]))
        shade = "#{:02x}{:02x}{:02x}".format(*t.bands[:3])
        colours = {"amplitude": (t.amplitude, "line"), "detections": (t.detections, "tick"),
                   "true_range": (t.true_range, "line"), "hybrid": (t.hybrid, "line"), "band": (band, "fill"),
                   "causal": (t.causal, "line"), "bidir": (t.bidir, "line"), "truth": (t.truth, "dash"),
                   "disagreement": (shade, "fill")}
        return {k: (self.SERIES_LABELS[k], *colours[k]) for k in self.series}

    def set_sensor(self, sensor: str) -> None:
        """The sensor's name in every plot title."""
        if sensor == self.sensor:
            return
        self.sensor = sensor
        for key, p in (("amp", self.amp), ("rng", self.rng), ("est", self.est)):
            p.setTitle(f"{sensor} · {self.TITLES[key]}" if sensor else self.TITLES[key],
                       color=self.theme.foreground, size="10pt")

    def set_stale(self, text: str, x: float) -> None:
        """A warning at the top right of the amplitude plot (no sample for N s), or none."""
        self.stale.setText(text)
        self.stale.setVisible(bool(text))
        if text:
            self.stale.setPos(x, self.amp.viewRange()[1][1])

    def fit_amplitude(self, values: np.ndarray) -> None:
        """Fit the amplitude's y range to ``values`` (dB) with hysteresis: only a change of more
        than 10% of the span moves the axis."""
        if len(values) == 0:
            return
        lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return
        pad = max(1.0, 0.05 * (hi - lo))
        want = (math.floor(lo - pad), math.ceil(hi + pad))
        cur = self.amp.viewRange()[1]
        tol = 0.1 * (cur[1] - cur[0])
        if abs(want[0] - cur[0]) > tol or abs(want[1] - cur[1]) > tol:
            self.amp.setYRange(*want, padding=0)

    def set_r_max(self, r_max_m: float) -> None:
        self.r_max_m = r_max_m
        for p in (self.rng, self.est):
            p.setYRange(0.0, r_max_m * 1.02, padding=0)
            p.setLimits(yMin=-0.05 * r_max_m, yMax=1.2 * r_max_m)

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.layout.setBackground(theme.background)
        for p in self.plots:
            style_plot(p, theme)
        self.amplitude.setPen(pg.mkPen(theme.amplitude, width=1))
        self.detections.setPen(pg.mkPen(theme.detections, width=2))
        # thin and solid: wide or dashed pens cost ~1.3 ms per curve per frame (raster stroker)
        self.true_range.setPen(pg.mkPen(theme.true_range, width=1))
        self.causal.setPen(pg.mkPen(theme.causal, width=2))
        self.bidir.setPen(pg.mkPen(theme.bidir, width=2))
        self.truth.setPen(pg.mkPen(theme.truth, width=2, style=QtCore.Qt.PenStyle.DashLine))
        self.hybrid.setPen(pg.mkPen(theme.hybrid, width=3))  # under the causal (equal until the fit takes over)
        edge = pg.mkColor(*theme.hybrid_band[:3], min(255, 2 * theme.hybrid_band[3]))
        self.band_hi.setPen(pg.mkPen(edge, width=1))
        self.band_lo.setPen(pg.mkPen(edge, width=1))
        self.band.setBrush(pg.mkBrush(*theme.hybrid_band))
        self.band_legend.setOpts(brush=pg.mkBrush(*theme.hybrid_band), pen=pg.mkPen(edge))
        self.stale.setColor(theme.warning)
        # Opaque: the mask lies behind everything, so "no band" can be the background colour and a band
        # the band colour blended over it beforehand; an opaque image is a plain scaled copy, no blending.
        bg = np.array(pg.mkColor(theme.background).getRgb()[:3], float)
        r, g, b, a = theme.bands
        band = bg + (np.array([r, g, b], float) - bg) * (a / 255.0)
        self._band_lut = np.array([bg, band], np.uint8)
        self.bands_legend.setOpts(brush=pg.mkBrush(*theme.bands))
        for line in self.cursors:
            line.setPen(pg.mkPen(*theme.cursor, width=1))

    def set_bands(self, starts: np.ndarray, ends: np.ndarray, x0: float, x1: float, columns: int = 1024) -> None:
        """Shade [starts, ends) over the estimates' full height, drawn as one ``columns``-wide mask
        image over [x0, x1]: one drawImage, however many bands (many small rectangles cost ~60 µs
        each to paint)."""
        if len(starts) == 0 or x1 <= x0:
            self.bands.setVisible(False)
            return
        scale = columns / (x1 - x0)
        a = np.clip(np.floor((starts - x0) * scale).astype(np.int64), 0, columns)
        b = np.clip(np.ceil((ends - x0) * scale).astype(np.int64), 0, columns)
        edges = np.zeros(columns + 1, np.int32)
        np.add.at(edges, a, 1)
        np.add.at(edges, b, -1)
        mask = (np.cumsum(edges[:-1]) > 0).astype(np.uint8)
        lo, hi = -0.05 * self.r_max_m, 1.2 * self.r_max_m  # the y limits of the plot
        self.bands.setImage(self._band_lut[mask][:, None, :], autoLevels=False)  # [columns, 1, rgb]
        self.bands.setRect(QtCore.QRectF(x0, lo, x1 - x0, hi - lo))
        self.bands.setVisible(self.bands_legend.isVisible())


class _LegendProxy(pg.BarGraphItem):
    """Legend swatch for items a legend cannot draw (the bands image, the hybrid's fill);
    clicking it in the legend hides/shows them."""

    def __init__(self, targets: tuple[pg.GraphicsObject, ...], **kw):
        super().__init__(**kw)
        self._targets = targets

    def setVisible(self, visible: bool) -> None:  # noqa: N802 (Qt name)
        super().setVisible(visible)
        for t in self._targets:
            t.setVisible(visible)


GATE_TITLES: Mapping[str, str] = MappingProxyType({
    "h": "h hidden", "c": "c cell", "i": "i input gate",
    "f": "f forget gate", "g": "ĉ = g candidate", "o": "o output gate",
})
SIGNED = ("h", "c", "g")


class StatePlots:
    """Six heatmaps (units × time) of one layer: h, c, i, f, ĉ, o; time axis linked to the signal.

    Every colour scale is fixed: h and ĉ on [−1, 1], the gates on [0, 1], c on ±L where L is
    picked once (1-2-5 steps) from the first :attr:`LOCK_AFTER` columns, or set by the user, and
    then kept whatever the data do."""

    LOCK_AFTER = 256

    def __init__(self, layout: pg.GraphicsLayoutWidget, theme: Theme, follow: pg.PlotItem):
        self.layout = layout
        self.plots: dict[str, pg.PlotItem] = {}
        self.images: dict[str, pg.ImageItem] = {}
        self.cursors = []
        signed = pg.colormap.get("CET-D1")
        unsigned = pg.colormap.get("viridis")
        self._luts = {True: signed.getLookupTable(nPts=256, alpha=False).astype(np.uint8),
                      False: unsigned.getLookupTable(nPts=256, alpha=False).astype(np.uint8)}
        order = (("h", "c"), ("i", "f"), ("g", "o"))
        for r, row in enumerate(order):
            for col, name in enumerate(row):
                p = layout.addPlot(row=r, col=col, title=GATE_TITLES[name])
                p.setMenuEnabled(False)
                p.hideButtons()
                p.setMouseEnabled(x=False, y=True)  # time follows the signal plots
                p.getAxis("left").setWidth(42)
                if r < len(order) - 1:
                    p.hideAxis("bottom")
                else:
                    p.setLabel("bottom", "time", units="s")
                if col == 0:
                    p.setLabel("left", "unit")
                else:  # same units as on the left; an axis of the same width keeps the columns aligned
                    p.getAxis("left").setStyle(showValues=False)
                img = pg.ImageItem(axisOrder="row-major")  # fed opaque RGB [unit, time, 3] (set_images)
                p.addItem(img)
                line = pg.InfiniteLine(angle=90, movable=False)
                line.setVisible(False)
                p.addItem(line, ignoreBounds=True)
                self.cursors.append(line)
                self.plots[name], self.images[name] = p, img
        self.bar_signed = pg.ColorBarItem(values=(-1, 1), colorMap=signed, orientation="horizontal",
                                          interactive=False, label="h, ĉ: [−1, 1] · c: title")
        self.bar_unsigned = pg.ColorBarItem(values=(0, 1), colorMap=unsigned, orientation="horizontal",
                                            interactive=False, label="i, f, o: [0, 1]")
        layout.addItem(self.bar_signed, row=len(order), col=0)
        layout.addItem(self.bar_unsigned, row=len(order), col=1)
        self.message = pg.TextItem("", anchor=(0.5, 0.5))
        self.plots["h"].addItem(self.message, ignoreBounds=True)
        self.c_limit = 1.0
        self.c_locked: float | None = None
        self.c_auto = False
        self.on_c_locked = None  # callback(limit): the window shows the locked value in its control
        self._c_title = ""
        self.layer_label = ""
        # Follow the signal plots' time range. Not setXLink: pyqtgraph aligns linked views by screen
        # position, which shifts the range of the plots in the second column.
        follow.sigXRangeChanged.connect(self._follow)
        self.apply_theme(theme)
        for p in self.plots.values():
            cache_static_text(p)

    def _follow(self, _vb, x_range) -> None:
        for p in self.plots.values():
            p.setXRange(*x_range, padding=0)

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.layout.setBackground(theme.background)
        for p in self.plots.values():
            style_plot(p, theme)
        for bar in (self.bar_signed, self.bar_unsigned):
            for ax in (bar.axis,):
                ax.setPen(pg.mkPen(theme.foreground))
                ax.setTextPen(pg.mkPen(theme.foreground))
        self.message.setColor(theme.foreground)
        for line in self.cursors:
            line.setPen(pg.mkPen(*theme.cursor, width=1))

    def set_hidden(self, hidden: int, layer_label: str) -> None:
        self.layer_label = layer_label
        for name, p in self.plots.items():
            p.setYRange(0, hidden, padding=0)
            p.setLimits(yMin=0, yMax=hidden)
            title = f"{GATE_TITLES[name]} · {layer_label}" if name == "h" else GATE_TITLES[name]  # layer: once
            if name == "c":
                self._c_title = ""
                self._title_c()
            else:
                p.setTitle(title, color=self.theme.foreground, size="10pt")

    def show_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.setVisible(bool(text))

    def set_images(self, x0: float, x1: float, traces: dict[str, np.ndarray], columns: int | None = None) -> None:
        """``traces[name]`` is [columns, hidden]; drawn from time x0 to x1 (seconds). ``columns``:
        how many state columns the (decimated) traces stand for (default: as many as given)."""
        seen = traces["c"].shape[0] if columns is None else int(columns)
        width = max(x1 - x0, 1e-9)
        for name in GATE_NAMES:
            arr = traces[name]
            img = self.images[name]
            if arr.shape[0] == 0:
                img.clear()
                continue
            if name == "c":  # a fixed scale: the same colour always means the same value
                if self.c_locked is None:  # a robust 1-2-5 value from the first LOCK_AFTER columns, then kept
                    lim = float(np.nanpercentile(np.abs(arr), 99)) if arr.size else 1.0
                    self.c_limit = nice_ceiling(max(lim if math.isfinite(lim) else 1.0, 1.0))
                    if seen >= self.LOCK_AFTER:
                        self.lock_c(self.c_limit, auto=True)
                levels = (-self.c_limit, self.c_limit)
            else:
                levels = (-1.0, 1.0) if name in SIGNED else (0.0, 1.0)
            # colour-map here (numpy) and hand pyqtgraph opaque RGB: it draws it as is, with no
            # per-frame colour table and no alpha blending
            lo, hi = levels
            idx = np.clip((arr.T - lo) * (255.0 / (hi - lo)), 0, 255)  # [unit, time]: row-major, no copy later
            idx = np.nan_to_num(idx, nan=127.0).astype(np.uint8)
            img.setImage(self._luts[name in SIGNED][idx], autoLevels=False)
            img.setRect(QtCore.QRectF(x0, 0.0, width, arr.shape[1]))
        self._title_c()

    def lock_c(self, limit: float, auto: bool = False) -> None:
        """Fix the c colour scale at ±``limit`` (from the first data, or the user's value)."""
        self.c_locked = self.c_limit = float(limit)
        self.c_auto = auto
        self.bar_signed.axis.setLabel(f"h, ĉ: [−1, 1] · c: ±{self.c_limit:g}")
        self._title_c()
        if self.on_c_locked is not None:
            self.on_c_locked(self.c_limit)

    def _title_c(self) -> None:
        scale = f"±{self.c_limit:g}" if self.c_locked is not None else f"±{self.c_limit:g}, locks soon"
        title = f"{GATE_TITLES['c']} ({scale})"
        if title != self._c_title:  # setTitle re-lays out HTML: only when the text changes
            self._c_title = title
            self.plots["c"].setTitle(title, color=self.theme.foreground, size="10pt")

    def levels(self, name: str) -> tuple[float, float]:
        """The colour scale of heatmap ``name`` (fixed; c once locked)."""
        if name == "c":
            return (-self.c_limit, self.c_limit)
        return (-1.0, 1.0) if name in SIGNED else (0.0, 1.0)

    def clear(self) -> None:
        for img in self.images.values():
            img.clear()
