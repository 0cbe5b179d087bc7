"""Domain-randomised training configuration: every stream a different radar, every pass a
different target, so that no model can read Dmin off one radar's amplitude-vs-range law.

Pure physics with an explicit ``np.random.Generator`` (docs/simulator.md lists every
distribution). A stream's radar is drawn once (:func:`draw_radar`); the per-encounter draws
(RCS, speed, Dmin, manoeuvre, partial pass, Swerling fluctuation) happen inside the simulator.
The training sets carry a third input channel ``period_s`` (the stream's sample period), as the
engine feeds it to 3-channel models.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from streamer.sim.datasets import EncounterSet, WindowSet, encounter_windows, stream_windows
from streamer.sim.simulator import RadarConfig


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


@dataclass(frozen=True)
class RandomisedRadar:
    """The ranges streams are drawn from (per stream unless noted)."""

    rate_hz: tuple[float, float] = (5.0, 50.0)
    """Dwell rate, log-uniform."""
    r_max_m: float = 1000.0
    """Kept fixed: the models see range / R_max and Dmin / R_max (the profile scales metres)."""
    rcs_db_range: tuple[float, float] = (-12.0, 12.0)
    """Per-encounter mean RCS, log-uniform (uniform in dB): a 24 dB spread."""
    swerling: tuple[int, ...] = (1, 3)
    """Per-dwell fluctuation model, one of these per stream."""
    speed_range_mps: tuple[float, float] = (10.0, 400.0)
    """Per-encounter speed, log-uniform (drawn in the simulator as uniform in log space: see
    ``speed_bins``)."""
    dmin_range_norm: tuple[float, float] = (0.0, 0.995)
    """Per-encounter Dmin / R_max, uniform: all of [0, R_max)."""
    noise_gain_db: tuple[float, float] = (-10.0, 10.0)
    """Receiver gain / noise floor re the profile's noise RMS, uniform in dB."""
    pfa: tuple[float, float] = (1e-4, 1e-2)
    """Per-dwell false-alarm probability, log-uniform."""
    range_noise_scale: tuple[float, float] = (0.3, 3.0)
    """Multiplies the range-noise sigma (and its cap), log-uniform."""
    clutter_prob: tuple[float, float] = (0.0, 0.03)
    """Share of in-encounter detections at a uniform random range, uniform."""
    manoeuvre_prob: float = 0.3
    """Per-encounter probability of a turning or accelerating pass."""
    partial_prob: float = 0.25
    """Per-encounter probability of a partial pass (starts and/or ends inside coverage)."""
    gap_range_s: tuple[float, float] = (2.0, 8.0)
    speed_bins: int = 4
    """A stream draws its speed range as one of this many log-spaced sub-ranges of
    ``speed_range_mps`` (the simulator draws speed uniformly within it): log-uniform overall."""


def draw_radar(rng: np.random.Generator, rr: RandomisedRadar = RandomisedRadar()) -> RadarConfig:
    """One stream's radar, drawn from ``rr``."""
    rate = _log_uniform(rng, *rr.rate_hz)
    scale = _log_uniform(rng, *rr.range_noise_scale)
    edges = np.geomspace(rr.speed_range_mps[0], rr.speed_range_mps[1], rr.speed_bins + 1)
    k = int(rng.integers(0, rr.speed_bins))
    base = RadarConfig()
    return RadarConfig(
        rate_hz=rate,
        r_max_m=rr.r_max_m,
        dmin_range_norm=rr.dmin_range_norm,
        speed_range_mps=(float(edges[k]), float(edges[k + 1])),
        gap_range_s=rr.gap_range_s,
        rcs_db_range=rr.rcs_db_range,
        swerling=int(rng.choice(rr.swerling)),  # type: ignore[arg-type]
        pfa=_log_uniform(rng, *rr.pfa),
        range_sigma_at_10db_m=base.range_sigma_at_10db_m * scale,
        range_sigma_max_m=base.range_sigma_max_m * scale,
        clutter_prob=float(rng.uniform(*rr.clutter_prob)),
        manoeuvre_prob=rr.manoeuvre_prob,
        noise_gain_db=float(rng.uniform(*rr.noise_gain_db)),
        partial_prob=rr.partial_prob,
    )


def with_period(X: np.ndarray, rate_hz: float) -> np.ndarray:
    """``X [N, T, 2]`` plus the channel ``period_s`` = 1 / rate_hz."""
    col = np.full(X.shape[:2] + (1,), 1.0 / rate_hz, np.float32)
    return np.concatenate([X.astype(np.float32), col], axis=2)


def _stream_seeds(seed: int, n: int) -> list[np.random.SeedSequence]:
    return np.random.SeedSequence([seed, 13]).spawn(n)


def randomised_stream_windows(
    n_streams: int, length: int, windows_per_stream: int = 1, rr: RandomisedRadar = RandomisedRadar(), seed: int = 0
) -> tuple[WindowSet, list[RadarConfig]]:
    """``n_streams`` radars, each giving ``windows_per_stream`` consecutive windows of ``length``
    samples (one row each; with 1 window per stream and a long ``length``, the rows are the long
    streams of stateful training). X has 3 channels: amplitude, distance, period_s."""
    Xs, ys, ms, radars = [], [], [], []
    for ss in _stream_seeds(seed, n_streams):
        rng = np.random.default_rng(ss.spawn(1)[0])
        radar = draw_radar(rng, rr)
        w = stream_windows(windows_per_stream, length, radar, seed=ss)
        Xs.append(with_period(w.X, radar.rate_hz))
        ys.append(w.y)
        ms.append(w.mask)
        radars.append(radar)
    return WindowSet(np.concatenate(Xs), np.concatenate(ys), np.concatenate(ms)), radars


def randomised_encounter_windows(
    n_streams: int, encounters_per_stream: int, length: int, rr: RandomisedRadar = RandomisedRadar(), seed: int = 0
) -> tuple[EncounterSet, list[RadarConfig]]:
    """One window per encounter (CPA near the centre), ``encounters_per_stream`` from each of
    ``n_streams`` radars; X has the period channel."""
    Xs, ys, encs, offs, radars = [], [], [], [], []
    for ss in _stream_seeds(seed, n_streams):
        rng = np.random.default_rng(ss.spawn(1)[0])
        radar = draw_radar(rng, rr)
        e = encounter_windows(encounters_per_stream, length, radar, seed=int(ss.generate_state(1)[0]))
        Xs.append(with_period(e.X, radar.rate_hz))
        ys.append(e.y)
        encs.extend(e.encounters)
        offs.append(e.offsets)
        radars.extend([radar] * len(e.encounters))
    return EncounterSet(np.concatenate(Xs), np.concatenate(ys), encs, np.concatenate(offs)), radars


def shifted(base: RadarConfig = RadarConfig(), **changes) -> RadarConfig:
    """A copy of ``base`` with some physics changed (the benchmark's shifted radars)."""
    return replace(base, **changes)
