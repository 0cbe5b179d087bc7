"""``radarstream evaluate``: the quality tables of ``bench quality``, on a user's labelled recording.

The recording's sensors become labelled streams (streamer/offline/labels.py: the truth channel,
or a label file); every method of ``bench quality`` (causal at CPA − 1 s, CPA + 1 s and the end,
bidirectional and pooled around the CPA, the classical fit, the hybrid) is evaluated per sensor
with the same code, and the per-encounter results of all sensors are pooled into one table per
SNR band with bootstrap intervals, the 90 % interval coverage, a JSON report and a PNG figure
(error against SNR; estimate against truth).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.quality import Estimates, HeldOutSet, coverage_table, evaluate_models, mae_table
from streamer.sim.simulator import RadarConfig

__all__ = ["Evaluation", "evaluate_recording", "write_figure"]


@dataclass
class Evaluation:
    """Pooled per-encounter estimates of every sensor, with the tables made from them."""

    data: HeldOutSet
    estimates: Estimates
    sensors: dict[str, int] = field(default_factory=dict)
    """Encounters per sensor."""

    def tables(self) -> str:
        return mae_table(self.estimates, self.data) + "\n\n" + coverage_table(self.estimates, self.data)

    def summary(self) -> dict[str, Any]:
        truth = np.array([e.dmin_norm for e in self.data.encounters])
        r_max = self.data.config.r_max_m
        mae = {}
        for name, v in self.estimates.by_method.items():
            ok = np.isfinite(v)
            mae[name] = round(float(np.mean(np.abs(v[ok] - truth[ok])) * r_max), 2) if ok.any() else None
        return {"encounters": len(self.data.encounters), "sensors": self.sensors, "r_max_m": r_max,
                "rate_hz": self.data.config.rate_hz, "mae_m": mae}


def _merge(parts: list[tuple[HeldOutSet, Estimates]]) -> tuple[HeldOutSet, Estimates]:
    """One set of encounters (indices shifted past each other) and one Estimates for the tables,
    which only read per-encounter values and each encounter's peak SNR and truth."""
    from dataclasses import replace

    samples, encs, off = [], [], 0
    est = Estimates()
    for data, e in parts:
        samples.append(data.samples)
        encs += [replace(x, start=x.start + off, stop=x.stop + off, cpa_index=x.cpa_index + off) for x in data.encounters]
        off += data.samples.shape[0]
        for attr in ("by_method", "failed", "std"):
            for k, v in getattr(e, attr).items():
                getattr(est, attr).setdefault(k, []).append(v)
    for attr in ("by_method", "failed", "std"):
        d = getattr(est, attr)
        for k in list(d):
            d[k] = np.concatenate(d[k]) if len(d[k]) == len(parts) else None
            if d[k] is None:
                del d[k]
    return HeldOutSet(np.concatenate(samples), encs, parts[0][0].config), est


def evaluate_recording(path: str | Path, weights: str | Path | None = None, labels: str | Path | None = None, *,
                       radar: Any = None, window: int = 512) -> Evaluation:
    """Evaluate the models of ``weights`` (default: shipped) on the labelled recording ``path``."""
    from models.bundle import load_bundle
    from streamer.offline.labels import LabelError, labelled_streams

    bundle = load_bundle(weights, profile=radar)
    profile = bundle.profile
    streams = labelled_streams(path, labels, r_max_m=profile.r_max_m, noise_rms=profile.noise_rms)
    parts, sensors = [], {}
    for s in streams:
        n = s.samples.shape[0]
        encs = [e for e in s.encounters if e.cpa_index - window // 2 >= 0 and e.cpa_index + window // 2 <= n]
        if not encs:
            continue
        config = RadarConfig(rate_hz=s.rate_hz, r_max_m=profile.r_max_m)
        data = HeldOutSet(s.samples, encs, config)
        parts.append((data, evaluate_models(bundle, data, window)))
        sensors[s.sensor] = len(encs)
    if not parts:
        raise LabelError(f"{path}: no labelled encounter with {window // 2} samples on each side of its CPA "
                         "(the windows of the bidirectional and pooled models need them)")
    rates = {round(p[0].config.rate_hz, 6) for p in parts}
    if len(rates) > 1:
        raise LabelError(f"{path}: sensors with different rates ({sorted(rates)} Hz): evaluate them separately")
    data, est = _merge(parts)
    return Evaluation(data, est, sensors)


def write_figure(ev: Evaluation, path: str | Path, methods: tuple[str, ...] = ("causal LSTM @ CPA+1 s",
                 "hybrid (online) @ CPA+1 s", "classical LS, whole encounter (prior mean if it fails)")) -> Path:
    """Error against SNR and estimate against truth for a few methods (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r_max = ev.data.config.r_max_m
    truth = np.array([e.dmin_norm for e in ev.data.encounters]) * r_max
    snr = np.array([e.peak_snr_db for e in ev.data.encounters])
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for name in methods:
        v = ev.estimates.by_method.get(name)
        if v is None:
            continue
        ok = np.isfinite(v)
        a.scatter(snr[ok], np.abs(v[ok] * r_max - truth[ok]), s=10, alpha=0.6, label=name)
        b.scatter(truth[ok], v[ok] * r_max, s=10, alpha=0.6, label=name)
    a.set_yscale("symlog", linthresh=1.0)
    a.set_xlabel("peak SNR (dB)")
    a.set_ylabel("|error| (m)")
    a.set_title("error against SNR")
    b.plot([0, r_max], [0, r_max], color="0.5", lw=1)
    b.set_xlabel("true Dmin (m)")
    b.set_ylabel("estimate (m)")
    b.set_title("estimate against truth")
    b.legend(fontsize=7, loc="upper left")
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_report(ev: Evaluation, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    out = Path(path)
    out.write_text(json.dumps({**ev.summary(), **(extra or {})}, indent=2, sort_keys=True) + "\n")
    return out
