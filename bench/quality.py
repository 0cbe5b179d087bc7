"""Model quality on a held-out simulated set: MAE of Dmin in metres, per peak-SNR band."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from models.bundle import ModelBundle
from streamer.sim.simulator import Encounter, RadarConfig, StreamSimulator

SNR_BANDS_DB: tuple[tuple[float, float], ...] = ((-np.inf, 5.0), (5.0, 10.0), (10.0, 20.0), (20.0, np.inf))
HELD_OUT_SEED = 10_001
"""Seed of the held-out set: never used for training (training uses seeds < 10,000)."""


def band_label(lo: float, hi: float) -> str:
    if lo == -np.inf:
        return f"< {hi:g} dB"
    if hi == np.inf:
        return f"≥ {lo:g} dB"
    return f"{lo:g}–{hi:g} dB"


@dataclass
class HeldOutSet:
    """A continuous held-out stream and the encounters wholly inside it."""

    samples: np.ndarray
    encounters: list[Encounter]
    config: RadarConfig


def held_out(n_encounters: int, config: RadarConfig = RadarConfig(), seed: int = HELD_OUT_SEED) -> HeldOutSet:
    sim = StreamSimulator(config, seed)
    parts = []
    while len([e for e in sim.encounters if e.stop + 600 <= sum(p.shape[0] for p in parts)]) < n_encounters:
        parts.append(sim.read(8192).samples)
    samples = np.concatenate(parts)
    encs = [e for e in sim.encounters if e.stop + 600 <= samples.shape[0]][:n_encounters]
    return HeldOutSet(samples, encs, config)


@dataclass
class Estimates:
    """Per-encounter estimates (normalised Dmin, NaN = no estimate) of every method."""

    by_method: dict[str, np.ndarray] = field(default_factory=dict)
    failed: dict[str, np.ndarray] = field(default_factory=dict)


@torch.no_grad()
def causal_stream(model, samples: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """The causal model over a whole stream, state carried across chunks."""
    state = None
    out = []
    for s in range(0, samples.shape[0], chunk):
        y, state = model(torch.from_numpy(samples[None, s : s + chunk]), state)
        out.append(y[0].numpy())
    return np.concatenate(out)


@torch.no_grad()
def evaluate_models(bundle: ModelBundle, data: HeldOutSet, window: int = 512, *, classical: bool = True) -> Estimates:
    """Every method's per-encounter estimate (normalised Dmin, NaN = no estimate)."""
    from models.classical import fit_cpa, with_fallback
    from models.hybrid import HybridRule, OnlineHybrid, hybrid_whole

    rate = data.config.rate_hz
    one_s = int(round(rate))
    est = Estimates()
    encs = data.encounters
    lo, hi = data.config.dmin_range_norm
    prior = 0.5 * (lo + hi)
    at = lambda arr, which: np.array([arr[_point(e, which, one_s)] for e in encs])  # noqa: E731
    y = causal_stream(bundle.causal, data.samples)
    t = np.arange(data.samples.shape[0]) / rate
    if classical:
        hyb = OnlineHybrid(rule=HybridRule())
        y_cls, y_hyb = hyb.process(t, data.samples[:, 1].astype(np.float64), y)
        whole = [fit_cpa(t[e.start : e.stop], data.samples[e.start : e.stop, 1].astype(np.float64)) for e in encs]
        ok = np.array([f.ok for f in whole])
        est.failed["classical LS, whole encounter"] = ~ok
        est.by_method["classical LS, whole encounter (successes only)"] = np.array([f.dmin_norm if f.ok else np.nan for f in whole])
        est.by_method["classical LS, whole encounter (prior mean if it fails)"] = np.array([with_fallback(f, prior) for f in whole])
        for which in ("CPA−1 s", "CPA+1 s"):
            v = at(y_cls, which)
            est.failed[f"classical LS, causal @ {which}"] = ~np.isfinite(v)
            est.by_method[f"classical LS, causal @ {which} (prior mean if no fit)"] = np.where(np.isfinite(v), v, prior)
    for which in ("CPA−1 s", "CPA+1 s", "end"):
        est.by_method[f"causal LSTM @ {which}"] = at(y, which)
    starts = np.array([int(np.clip(e.cpa_index - window // 2, 0, data.samples.shape[0] - window)) for e in encs])
    X = np.stack([data.samples[s : s + window] for s in starts])
    yb_cpa = None
    if bundle.bidir is not None:
        yb = np.concatenate([bundle.bidir(torch.from_numpy(X[k : k + 256])).numpy() for k in range(0, len(X), 256)])
        yb_cpa = np.array([yb[k, e.cpa_index - s] for k, (e, s) in enumerate(zip(encs, starts))])
        est.by_method["bidirectional LSTM @ CPA (512-sample window)"] = yb_cpa
    if bundle.pooled is not None:
        outs = []
        for k in range(0, len(X), 256):
            o = bundle.pooled(torch.from_numpy(X[k : k + 256]))
            outs.append((o[0] if isinstance(o, tuple) else o).numpy())
        est.by_method[f"pooled DminRegressorLSTM ({bundle.pooled.pooling}, 512-sample window)"] = np.concatenate(outs)
    if classical:
        for which in ("CPA−1 s", "CPA+1 s", "end"):
            est.by_method[f"hybrid (online) @ {which}"] = at(y_hyb, which)
        fallback = yb_cpa if yb_cpa is not None else at(y, "end")
        est.by_method["hybrid, whole encounter (classical, else bidirectional)"] = np.array([
            hybrid_whole(f, float(t[e.start]), float(t[e.stop - 1]), float(fb))[0]
            for f, e, fb in zip(whole, encs, fallback)
        ])
    est.by_method["prior mean (baseline)"] = np.full(len(encs), prior)
    return est


def _point(e: Encounter, which: str, one_s: int) -> int:
    if which == "CPA−1 s":
        return max(e.cpa_index - one_s, e.start)
    if which == "CPA+1 s":
        return min(e.cpa_index + one_s, e.stop - 1)
    return e.stop - 1


def failure_table(est: Estimates, data: HeldOutSet) -> str:
    """Share of encounters where the classical fit gave no estimate, per SNR band."""
    snr = np.array([e.peak_snr_db for e in data.encounters])
    bands = [(band_label(lo, hi), (snr >= lo) & (snr < hi)) for lo, hi in SNR_BANDS_DB]
    bands.append(("all", np.ones_like(snr, bool)))
    lines = ["| classical fit failure rate | " + " | ".join(n for n, _ in bands) + " |", "|---" * (len(bands) + 1) + "|"]
    for name, failed in est.failed.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * failed[m].mean():.1f} %" if m.any() else "–" for _, m in bands) + " |")
    return "\n".join(lines)


def bootstrap_ci(err: np.ndarray, rng: np.random.Generator, n_boot: int = 1000) -> tuple[float, float]:
    if err.size < 2:
        return (np.nan, np.nan)
    idx = rng.integers(0, err.size, size=(n_boot, err.size))
    means = err[idx].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def mae_table(est: Estimates, data: HeldOutSet, *, ci: bool = True, seed: int = 0) -> str:
    """Markdown table: MAE in metres (95% bootstrap interval) per method and SNR band."""
    rng = np.random.default_rng(seed)
    r_max = data.config.r_max_m
    truth = np.array([e.dmin_norm for e in data.encounters])
    snr = np.array([e.peak_snr_db for e in data.encounters])
    bands = [(band_label(lo, hi), (snr >= lo) & (snr < hi)) for lo, hi in SNR_BANDS_DB]
    bands.append(("all", np.ones_like(snr, bool)))
    head = "| method | " + " | ".join(f"{name} (n={int(m.sum())})" for name, m in bands) + " |"
    lines = [head, "|---" * (len(bands) + 1) + "|"]
    for method, values in est.by_method.items():
        cells = []
        for _, m in bands:
            ok = m & np.isfinite(values)
            err = np.abs(values[ok] - truth[ok]) * r_max
            if err.size == 0:
                cells.append("–")
                continue
            cell = f"{err.mean():.1f}"
            if ci:
                lo, hi = bootstrap_ci(err, rng)
                cell += f" [{lo:.1f}, {hi:.1f}]"
            cells.append(cell)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
