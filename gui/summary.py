"""Text summary of a live stream for terminals without a display (``radarstream demo --headless``).

Reads the same batches as the window (:class:`gui.stream.StreamReceiver`), keeps only the latest
values per sensor, and formats a few lines per second: rates, latest estimate against the truth,
service latency, stream health, and the causal–bidirectional disagreement once re-scores arrive.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from gui.stream import Batch, natural_key


@dataclass
class SensorLatest:
    samples: int = 0
    causal_m: float = math.nan
    best_m: float = math.nan
    """The product's best estimate: the hybrid where the service publishes it, else the causal."""
    best_std_m: float = math.nan
    truth_m: float = math.nan
    snr_db: float = math.nan
    bidir_m: float = math.nan
    disagreement_m: float = math.nan
    rescored: int = 0


@dataclass
class HeadlessSummary:
    """Accumulates batches; ``lines()`` reports since the previous call."""

    max_sensors: int = 8
    started: float = field(default_factory=time.monotonic)
    sensors: dict[str, SensorLatest] = field(default_factory=dict)
    stats: dict | None = None
    events: dict[str, int] = field(default_factory=dict)
    last_report: float = field(default_factory=time.monotonic)
    last_counts: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    lost: int = 0

    def update(self, batch: Batch) -> None:
        for sensor, ch in batch.samples.items():
            s = self.sensors.setdefault(sensor, SensorLatest())
            s.samples += len(ch)
            s.truth_m = float(ch.dmin_m[-1])
            s.snr_db = float(ch.snr_db[-1])
        for sensor, ch in batch.preds.items():
            s = self.sensors.setdefault(sensor, SensorLatest())
            s.causal_m = float(ch.y_m[-1])
            best, std = ch.best()
            s.best_m, s.best_std_m = float(best[-1]), float(std[-1])
        for sensor, chunks in batch.rescores.items():
            s = self.sensors.setdefault(sensor, SensorLatest())
            ch = chunks[-1]
            s.bidir_m = float(ch.bidir_m[-1])
            dis = ch.disagreement_m
            if np.isnan(dis).all() and not np.isnan(ch.causal_m).all():
                dis = np.abs(ch.bidir_m - ch.causal_m)
            s.disagreement_m = float(np.nanmean(dis)) if not np.isnan(dis).all() else math.nan
            s.rescored += len(chunks)
        for ev in batch.events:
            self.events[ev.type] = self.events.get(ev.type, 0) + 1
        if batch.stats is not None:
            self.stats = batch.stats
        self.dropped = batch.counters.dropped_samples
        self.lost = batch.counters.feed_gap_samples

    def lines(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        dt = max(now - self.last_report, 1e-6)
        st = self.stats or {}
        lat = st.get("latency_us") or {}
        counters = st.get("counters") or {}
        resets = sum(v for k, v in counters.items() if k.startswith("reset_")) + counters.get("epoch_change", 0) \
            + counters.get("backwards", 0)
        total_in = sum(s.samples - self.last_counts.get(k, 0) for k, s in self.sensors.items()) / dt

        def ms(v) -> str:
            return "–" if v is None else f"{float(v) / 1000:.1f} ms"

        head = (f"[{now - self.started:6.1f} s] input {total_in:,.0f} samples/s · service "
                f"{st.get('samples_per_s', 0):,.0f} samples/s · latency p50 {ms(lat.get('p50'))} p99 {ms(lat.get('p99'))} · "
                f"gaps {counters.get('gap', 0)} · resets {resets} · malformed {sum((st.get('decode_errors') or {}).values())}"
                f" · lost {self.lost}")
        if not self.stats:
            head += " · (no service stats yet)"
        out = [head]
        names = sorted(self.sensors, key=natural_key)
        for name in names[: self.max_sensors]:
            s = self.sensors[name]
            rate = (s.samples - self.last_counts.get(name, 0)) / dt
            sigma = f" ± {s.best_std_m:4.0f} m" if math.isfinite(s.best_std_m) else "        "
            line = f"  {name:<12} {rate:6.1f} Hz  best {_m(s.best_m)}{sigma}  causal {_m(s.causal_m)}"
            if math.isnan(s.truth_m):
                line += "  truth      –  (no target)      "
            else:
                line += f"  truth {_m(s.truth_m)}  error {s.best_m - s.truth_m:+6.0f} m"
            if not math.isnan(s.snr_db):
                line += f"  SNR {s.snr_db:5.1f} dB"
            if s.rescored:
                line += f"  bidir {_m(s.bidir_m)}  |causal-bidir| {s.disagreement_m:5.0f} m"
            out.append(line.rstrip())
        if len(names) > self.max_sensors:
            out.append(f"  … and {len(names) - self.max_sensors} more sensors")
        self.last_counts = {k: s.samples for k, s in self.sensors.items()}
        self.last_report = now
        return out


def _m(v: float) -> str:
    return "     –" if math.isnan(v) else f"{v:4.0f} m"
