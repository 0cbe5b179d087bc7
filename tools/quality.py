"""Model quality on a held-out simulated set: MAE of Dmin in metres, per peak-SNR band."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from models.bundle import ModelBundle
from streamer.simulator import Encounter, RadarConfig, StreamSimulator

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
def evaluate_models(bundle: ModelBundle, data: HeldOutSet, window: int = 512) -> Estimates:
    rate = data.config.rate_hz
    one_s = int(round(rate))
    est = Estimates()
    encs = data.encounters
    y = causal_stream(bundle.causal, data.samples)
    est.by_method["causal @ CPA−1 s"] = np.array([y[max(e.cpa_index - one_s, e.start)] for e in encs])
    est.by_method["causal @ CPA+1 s"] = np.array([y[min(e.cpa_index + one_s, e.stop - 1)] for e in encs])
    est.by_method["causal @ end"] = np.array([y[e.stop - 1] for e in encs])
    starts = np.array([int(np.clip(e.cpa_index - window // 2, 0, data.samples.shape[0] - window)) for e in encs])
    X = np.stack([data.samples[s : s + window] for s in starts])
    if bundle.bidir is not None:
        yb = np.concatenate([bundle.bidir(torch.from_numpy(X[k : k + 256])).numpy() for k in range(0, len(X), 256)])
        est.by_method["bidirectional @ CPA"] = np.array([yb[k, e.cpa_index - s] for k, (e, s) in enumerate(zip(encs, starts))])
    if bundle.pooled is not None:
        outs = []
        for k in range(0, len(X), 256):
            o = bundle.pooled(torch.from_numpy(X[k : k + 256]))
            outs.append((o[0] if isinstance(o, tuple) else o).numpy())
        est.by_method["pooled DminRegressorLSTM"] = np.concatenate(outs)
    lo, hi = data.config.dmin_range_norm
    est.by_method["prior mean (baseline)"] = np.full(len(encs), 0.5 * (lo + hi))
    return est


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
