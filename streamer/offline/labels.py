"""Labelled recordings: each sensor's stream with its encounters, from the recorded truth channel
or from a label file (docs/your-radar.md).

A label file is CSV, one row per encounter::

    sensor,start_s,end_s,dmin_m[,cpa_s]

``start_s``/``end_s``/``cpa_s`` are seconds from the recording's first sample (what the GUI's
export calls ``time_s``); ``start_time_ns``/``end_time_ns``/``cpa_time_ns`` (absolute ns, the
``time_ns`` of export-csv and score) may be used instead. A label covers the samples of ``sensor``
with ``start <= t <= end``. Without a CPA time, the CPA is the sample with the smallest detected
range inside the label (on a straight pass the closest detection is within a sample or two of the
true CPA). Every bad row is reported with its line number, never silently dropped: a row that
does not parse, ends before it starts, has a negative Dmin, overlaps another label of its sensor,
lies outside the recording, names a sensor the recording does not have, or covers no sample.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radarstream.errors import RadarstreamError
from streamer.sim.simulator import Encounter

__all__ = ["Label", "LabelError", "LabelledStream", "read_labels", "labelled_streams"]


class LabelError(RadarstreamError, ValueError):
    """A label file (or a recording to label) that cannot be used; lists every bad line."""


@dataclass(frozen=True)
class Label:
    """One labelled encounter (times in ns since the Unix epoch once resolved)."""

    line: int
    sensor: str
    start_ns: int
    end_ns: int
    dmin_m: float
    cpa_ns: int | None = None


@dataclass
class LabelledStream:
    """One sensor's samples (in arrival order) and its encounters (sample indices into them)."""

    sensor: str
    samples: np.ndarray  # float32 [N, 2]
    time_ns: np.ndarray  # int64 [N]
    period_ns: int
    encounters: list[Encounter]

    @property
    def rate_hz(self) -> float:
        return 1e9 / self.period_ns


_TIME_COLUMNS = (("start_s", "end_s", "cpa_s"), ("start_time_ns", "end_time_ns", "cpa_time_ns"))


def read_labels(path: str | Path, origin_ns: int = 0) -> list[Label]:
    """The labels of ``path``; relative ``*_s`` times are taken from ``origin_ns`` (the
    recording's first sample). Raises :class:`LabelError` listing every bad line."""
    p = Path(path)
    if not p.is_file():
        raise LabelError(f"{p}: no such label file")
    problems: list[str] = []
    labels: list[Label] = []
    with p.open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields = set(reader.fieldnames or ())
        rel = next((cols for cols in _TIME_COLUMNS if {cols[0], cols[1]} <= fields), None)
        if rel is None or not {"sensor", "dmin_m"} <= fields:
            raise LabelError(f"{p}: line 1: the header needs sensor, dmin_m and start_s,end_s (or start_time_ns,"
                             f"end_time_ns); it has {', '.join(sorted(fields)) or 'nothing'}")
        absolute = rel is _TIME_COLUMNS[1]
        for row in reader:
            line = reader.line_num
            try:
                sensor = (row.get("sensor") or "").strip()
                if not sensor:
                    raise ValueError("empty sensor")
                t = [row.get(c) for c in rel]
                start, end = (_time(t[0], absolute, origin_ns), _time(t[1], absolute, origin_ns))
                cpa = _time(t[2], absolute, origin_ns) if t[2] not in (None, "") else None
                dmin = float(row["dmin_m"])
            except (TypeError, ValueError) as exc:
                problems.append(f"line {line}: cannot read the row ({exc})")
                continue
            if not (math.isfinite(dmin) and dmin >= 0):
                problems.append(f"line {line}: dmin_m must be a number >= 0, got {row['dmin_m']!r}")
            elif end <= start:
                problems.append(f"line {line}: the label ends ({end} ns) before it starts ({start} ns)")
            elif cpa is not None and not start <= cpa <= end:
                problems.append(f"line {line}: the CPA time lies outside the label")
            else:
                labels.append(Label(line, sensor, start, end, dmin, cpa))
    by_sensor: dict[str, list[Label]] = {}
    for lab in labels:
        by_sensor.setdefault(lab.sensor, []).append(lab)
    for sensor_labels in by_sensor.values():
        sensor_labels.sort(key=lambda x: x.start_ns)
        for a, b in zip(sensor_labels, sensor_labels[1:]):
            if b.start_ns <= a.end_ns:
                problems.append(f"line {b.line}: overlaps the label of line {a.line} (sensor {b.sensor})")
    if problems:
        raise LabelError(f"{p}: " + "; ".join(problems))
    if not labels:
        raise LabelError(f"{p}: no labels")
    return labels


def _time(text: str | None, absolute: bool, origin_ns: int) -> int:
    if text is None or text == "":
        raise ValueError("missing time")
    if absolute:
        return int(text)
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"time {text!r}")
    return origin_ns + int(round(v * 1e9))


def _streams(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None, int]]:
    """Per sensor: samples, times, truth (None when the recording has none), period."""
    from streamer.sources.recorded import RecordedSource
    from streamer.wire import protocol as P

    parts: dict[str, list] = {}
    for frames in RecordedSource(path):
        msg = P.decode_message(frames)
        if isinstance(msg, P.DecodeError):
            continue
        parts.setdefault(msg.sensor, []).append(msg)
    out = {}
    for sensor, msgs in parts.items():
        x = np.concatenate([np.asarray(m.block.data, np.float32) for m in msgs])
        t = np.concatenate([m.block.times_ns for m in msgs])
        truth = None
        if all(m.truth is not None for m in msgs):
            truth = np.concatenate([np.asarray(m.truth.data, np.float64) for m in msgs])
        period = int(np.median([m.block.period_ns for m in msgs]))
        out[sensor] = (x, t, truth, period)
    return out


def _encounter(k: int, start: int, stop: int, cpa: int, dmin_m: float, r_max_m: float, snr_db: float) -> Encounter:
    return Encounter(index=k, start=start, stop=stop, cpa_index=cpa, dmin_m=dmin_m, dmin_norm=dmin_m / r_max_m,
                     speed_mps=float("nan"), peak_snr_db=snr_db, rcs_db=float("nan"), manoeuvre="unknown")


def _snr_estimate_db(x: np.ndarray, cpa: int, noise_rms: float, half: int) -> float:
    """Peak SNR near the CPA from the amplitudes: median of (A/noise)² − 1 over ±``half``
    samples (fluctuating targets make single samples noisy), in dB."""
    a = x[max(0, cpa - half) : cpa + half + 1, 0].astype(np.float64) / noise_rms
    return float(10.0 * np.log10(max(float(np.median(a * a)) - 1.0, 1e-3)))


def labelled_streams(path: str | Path, labels_path: str | Path | None = None, *, r_max_m: float,
                     noise_rms: float = 1.0) -> list[LabelledStream]:
    """Each sensor of a recording with its encounters: from ``labels_path`` when given, else from
    the recorded truth channel (as the simulator writes it). Raises :class:`LabelError` when
    there is nothing to label with, or for any label that matches no samples."""
    streams = _streams(path)
    if not streams:
        raise LabelError(f"{path}: no samples in the recording")
    out: list[LabelledStream] = []
    if labels_path is None:
        if any(truth is None for _, _, truth, _ in streams.values()):
            raise LabelError(f"{path}: the recording has no truth channel; give a label file with --labels "
                             "(sensor,start_s,end_s,dmin_m[,cpa_s]: docs/your-radar.md)")
        for sensor, (x, t, truth, period) in streams.items():
            inside = truth[:, 1] > 0.5
            edges = np.flatnonzero(np.diff(np.concatenate([[0], inside.astype(np.int8), [0]])))
            encs = []
            for k, (a, b) in enumerate(zip(edges[::2], edges[1::2])):
                if a == 0 or b >= len(inside):  # cut by the start or the end of the recording
                    continue
                rng = np.where(np.isfinite(truth[a:b, 2]), truth[a:b, 2], np.inf)
                cpa = a + int(np.argmin(rng))
                encs.append(_encounter(k, int(a), int(b), cpa, float(truth[a, 0]) * r_max_m, r_max_m,
                                       float(np.nanmax(truth[a:b, 3]))))
            out.append(LabelledStream(sensor, x, t, period, encs))
        return out
    first_ns = min(int(t[0]) for _, t, _, _ in streams.values())
    last_ns = max(int(t[-1]) for _, t, _, _ in streams.values())
    labels = read_labels(labels_path, first_ns)
    problems = []
    by_sensor: dict[str, list[Encounter]] = {s: [] for s in streams}
    for lab in labels:
        if lab.sensor not in streams:
            problems.append(f"line {lab.line}: sensor {lab.sensor!r} is not in the recording "
                            f"(it has {', '.join(sorted(streams))})")
            continue
        if lab.end_ns < first_ns or lab.start_ns > last_ns:
            problems.append(f"line {lab.line}: the label lies outside the recording")
            continue
        x, t, _, period = streams[lab.sensor]
        a, b = int(np.searchsorted(t, lab.start_ns, "left")), int(np.searchsorted(t, lab.end_ns, "right"))
        if b - a < 2:
            problems.append(f"line {lab.line}: the label covers {b - a} sample(s) of {lab.sensor}")
            continue
        if lab.cpa_ns is not None:
            cpa = int(np.clip(np.searchsorted(t, lab.cpa_ns), a, b - 1))
        else:
            d = x[a:b, 1].astype(np.float64)
            d = np.where(d >= 0, d, np.inf)
            cpa = a + int(np.argmin(d)) if np.isfinite(d).any() else (a + b) // 2
        half = max(1, int(round(0.5e9 / period)))
        by_sensor[lab.sensor].append(_encounter(len(by_sensor[lab.sensor]), a, b, cpa, lab.dmin_m, r_max_m,
                                                _snr_estimate_db(x, cpa, noise_rms, half)))
    if problems:
        raise LabelError(f"{labels_path}: " + "; ".join(problems))
    return [LabelledStream(s, x, t, period, by_sensor[s]) for s, (x, t, _, period) in streams.items() if by_sensor[s]]
