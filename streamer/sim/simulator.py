"""Radar simulator: continuous streams of passing targets, one measurement per dwell.

Pure numpy, no I/O. Every random draw goes through an explicit ``np.random.Generator`` so that a
seed reproduces a stream exactly, whatever block sizes it is read in.

Conventions (also in docs/simulator.md):

* A sample is ``[amplitude, distance]`` (float32). ``amplitude`` is the magnitude of target plus
  complex Gaussian noise, with the noise power normalised to 1 (so noise-only amplitude is
  Rayleigh with RMS 1). ``distance`` is the measured range in metres on a detection, and
  ``NO_DETECTION`` (-1.0) when the dwell's power stayed under the detection threshold.
* A detection happens when ``amplitude**2`` exceeds the threshold set by ``pfa`` on the noise.
  Inside an encounter a detection reports the true range plus Gaussian noise whose sigma grows as
  SNR falls (``range_sigma_at_10db_m * sqrt(10 dB / SNR)``, capped), except for a small fraction of
  clutter hits (``clutter_prob``) that report a uniform range. Outside encounters a threshold
  crossing is a false alarm with a uniform range in [0, R_max].
* SNR follows the radar equation: ``SNR = snr_at_rmax * rcs * (R_max / R)**4``; the RCS is drawn
  per encounter (log-normal mean) and fluctuates per dwell (Swerling I: exponential power, or
  Swerling III: chi-square with 4 degrees of freedom), so a far pass is a faint one.
* An encounter lasts while the target is within R_max; noise-only gaps separate encounters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

NO_DETECTION = -1.0
SAMPLE_CHANNELS = ("amplitude", "distance")
TRUTH_CHANNELS = ("dmin_norm", "in_encounter", "true_range_m", "snr_db")


@dataclass(frozen=True)
class RadarConfig:
    """Physics and scenario settings. The defaults are the documented benchmark settings."""

    rate_hz: float = 20.0
    """Measurements (dwells) per second; the causal LSTM steps once per measurement."""
    r_max_m: float = 1000.0
    """Instrumented range: an encounter lasts while R <= r_max_m; Dmin is normalised by it."""
    dmin_range_norm: tuple[float, float] = (0.02, 0.9)
    """Uniform draw of Dmin / R_max per encounter."""
    speed_range_mps: tuple[float, float] = (40.0, 120.0)
    """Uniform draw of the target speed per encounter."""
    gap_range_s: tuple[float, float] = (2.0, 8.0)
    """Noise-only time between two encounters."""
    snr_at_rmax_db: float = 0.0
    """Mean SNR of a unit-RCS target at R_max (radar equation reference)."""
    rcs_sigma_db: float = 3.0
    """Spread (dB, one sigma) of the per-encounter mean RCS around 1 (0 dB)."""
    swerling: Literal[0, 1, 3] = 1
    """Per-dwell fluctuation: 0 none, 1 exponential power, 3 chi-square 4 dof."""
    pfa: float = 1e-3
    """Per-dwell false-alarm probability on noise; sets the detection threshold."""
    range_sigma_at_10db_m: float = 5.0
    """Range noise sigma of a detection at 10 dB SNR; scales as sqrt(10 dB / SNR)."""
    range_sigma_max_m: float = 60.0
    """Cap on the range noise sigma at very low SNR."""
    clutter_prob: float = 0.01
    """Probability that an in-encounter detection reports a uniform random range (outlier)."""
    manoeuvre_prob: float = 0.0
    """Probability that an encounter is a manoeuvring (turning or accelerating) pass."""
    turn_rate_range_dps: tuple[float, float] = (3.0, 12.0)
    """Turn-rate magnitude (deg/s) of a turning pass."""
    accel_range_mps2: tuple[float, float] = (5.0, 20.0)
    """Acceleration magnitude (m/s^2) along track of an accelerating pass."""
    rcs_db_range: tuple[float, float] | None = None
    """If set, the per-encounter mean RCS is log-uniform over this range (dB re 1) instead of
    log-normal with ``rcs_sigma_db`` (domain randomisation: a wide spread of target sizes)."""
    noise_gain_db: float = 0.0
    """Receiver noise floor re the unit noise of the radar equation (dB): the noise amplitude RMS
    becomes ``10**(noise_gain_db / 20)`` and every SNR falls by ``noise_gain_db``; the detection
    threshold follows the noise (CFAR), so ``pfa`` holds."""
    partial_prob: float = 0.0
    """Probability that a pass is partial: its track starts (pop-up) and/or ends (drop-out) inside
    coverage, at a uniform point before / after the CPA (the CPA itself stays observed)."""

    def __post_init__(self) -> None:
        if self.rate_hz <= 0 or self.r_max_m <= 0:
            raise ValueError("rate_hz and r_max_m must be positive")
        lo, hi = self.dmin_range_norm
        if not 0.0 <= lo <= hi < 1.0:
            raise ValueError("dmin_range_norm must satisfy 0 <= lo <= hi < 1")
        if not 0.0 < self.pfa < 1.0:
            raise ValueError("pfa must lie in (0, 1)")
        if self.swerling not in (0, 1, 3):
            raise ValueError("swerling must be 0, 1 or 3")
        if not 0.0 <= self.partial_prob <= 1.0:
            raise ValueError("partial_prob must lie in [0, 1]")
        if self.rcs_db_range is not None and not self.rcs_db_range[0] <= self.rcs_db_range[1]:
            raise ValueError("rcs_db_range must satisfy lo <= hi")

    @property
    def period_s(self) -> float:
        return 1.0 / self.rate_hz

    @property
    def noise_rms(self) -> float:
        """Noise amplitude RMS of the stream (1 unless ``noise_gain_db`` moves the floor)."""
        return float(10 ** (self.noise_gain_db / 20)) if self.noise_gain_db else 1.0

    @property
    def threshold_power(self) -> float:
        """Detection threshold on |s + n|^2 with unit noise power (exponential noise power)."""
        return float(-np.log(self.pfa))


MANOEUVRING = RadarConfig(manoeuvre_prob=1.0)
"""The second benchmark scenario: every pass turns or accelerates."""


@dataclass(frozen=True)
class Encounter:
    """Ground truth of one pass, in sample indices of the stream it belongs to."""

    index: int
    start: int
    stop: int
    cpa_index: int
    dmin_m: float
    dmin_norm: float
    speed_mps: float
    peak_snr_db: float
    rcs_db: float
    manoeuvre: str


@dataclass(frozen=True)
class StreamBlock:
    """A block of consecutive samples with their per-sample labels."""

    start: int
    samples: np.ndarray  # [n, 2] float32
    truth: np.ndarray  # [n, 4] float32: dmin_norm (NaN outside), in_encounter, true range, snr_db
    encounter_id: np.ndarray  # [n] int64, -1 outside encounters
    cpa_time_s: np.ndarray  # [n] float64, NaN outside encounters

    @property
    def dmin_norm(self) -> np.ndarray:
        return self.truth[:, 0]

    @property
    def in_encounter(self) -> np.ndarray:
        return self.truth[:, 1] > 0.5

    @property
    def true_range_m(self) -> np.ndarray:
        return self.truth[:, 2]

    @property
    def snr_db(self) -> np.ndarray:
        return self.truth[:, 3]


# ---------------------------------------------------------------- pure physics functions


def straight_range(t: np.ndarray, dmin: float, speed: float, t0: float) -> np.ndarray:
    """R(t) = sqrt(Dmin^2 + v^2 (t - t0)^2) for a straight, constant-speed pass."""
    return np.sqrt(dmin**2 + (speed * (t - t0)) ** 2)


def manoeuvring_track(
    t: np.ndarray, dmin: float, speed: float, t0: float, turn_rate: float, accel: float
) -> np.ndarray:
    """Positions [len(t), 2] of a pass through (dmin, 0) at t0 heading +y at ``speed``, turning at
    ``turn_rate`` rad/s and accelerating at ``accel`` m/s^2 (speed floored at 10 m/s).

    Integrated numerically on a fine grid, so t0 need not be the closest approach any more: that is
    the point of a manoeuvre, the straight-line model becomes wrong.
    """
    lo, hi = float(min(np.min(t), t0)), float(max(np.max(t), t0))
    n = max(int(np.ceil((hi - lo) / 0.005)) + 1, 2)
    grid = np.linspace(lo, hi, n)
    dt = grid - t0
    v = np.maximum(speed + accel * dt, 10.0)
    heading = turn_rate * dt
    vel = np.stack([-v * np.sin(heading), v * np.cos(heading)], axis=1)
    step = np.diff(grid)[:, None]
    pos = np.concatenate([np.zeros((1, 2)), np.cumsum(0.5 * (vel[1:] + vel[:-1]) * step, axis=0)])
    pos -= np.array([np.interp(t0, grid, pos[:, 0]), np.interp(t0, grid, pos[:, 1])])
    pos[:, 0] += dmin
    return np.stack([np.interp(t, grid, pos[:, 0]), np.interp(t, grid, pos[:, 1])], axis=1)


def radar_equation_snr(range_m: np.ndarray, rcs: float, cfg: RadarConfig) -> np.ndarray:
    """Mean SNR (linear) of a target of relative RCS ``rcs`` at ``range_m``: SNR ∝ σ / R^4."""
    r = np.maximum(range_m, 1.0)
    return 10 ** (cfg.snr_at_rmax_db / 10) * rcs * (cfg.r_max_m / r) ** 4


def fluctuate(mean_snr: np.ndarray, swerling: int, rng: np.random.Generator) -> np.ndarray:
    """Per-dwell SNR with Swerling I (exponential) or III (chi-square, 4 dof) fluctuation."""
    if swerling == 0:
        return mean_snr
    if swerling == 1:
        return mean_snr * rng.exponential(1.0, size=mean_snr.shape)
    return mean_snr * rng.gamma(2.0, 0.5, size=mean_snr.shape)


def receive(
    snr: np.ndarray, true_range: np.ndarray | None, cfg: RadarConfig, rng: np.random.Generator
) -> np.ndarray:
    """Amplitude and measured distance for dwells with instantaneous SNR ``snr``.

    ``true_range`` None means noise only. Returns float32 [n, 2].
    """
    n = snr.shape[0]
    g = cfg.noise_rms  # 1.0 by default: every product with it below is then exact
    noise = (rng.standard_normal(n) + 1j * rng.standard_normal(n)) / np.sqrt(2.0)
    phase = rng.uniform(0.0, 2 * np.pi, size=n)
    signal = np.sqrt(snr) * np.exp(1j * phase)
    amplitude = np.abs(signal + noise * g) if g != 1.0 else np.abs(signal + noise)
    detected = amplitude**2 > cfg.threshold_power * (g * g)
    distance = np.full(n, NO_DETECTION)
    uniform_range = rng.uniform(0.0, cfg.r_max_m, size=n)
    if true_range is None:
        distance[detected] = uniform_range[detected]
    else:
        snr_eff = np.maximum(snr / (g * g), 1e-3)
        sigma = np.minimum(cfg.range_sigma_at_10db_m * np.sqrt(10.0 / snr_eff), cfg.range_sigma_max_m)
        measured = np.abs(true_range + sigma * rng.standard_normal(n))
        clutter = rng.random(n) < cfg.clutter_prob
        measured = np.where(clutter, uniform_range, measured)
        distance[detected] = measured[detected]
    return np.stack([amplitude, distance], axis=1).astype(np.float32)


# ---------------------------------------------------------------- stream


@dataclass
class _Pending:
    samples: list[np.ndarray] = field(default_factory=list)
    truth: list[np.ndarray] = field(default_factory=list)
    enc_id: list[np.ndarray] = field(default_factory=list)
    cpa_t: list[np.ndarray] = field(default_factory=list)
    size: int = 0


class StreamSimulator:
    """An endless stream of gaps and encounters, read in blocks of any size.

    The stream is generated segment by segment (gap, encounter, gap, ...) from one generator, so the
    samples depend only on the seed, never on how the stream is read.
    """

    def __init__(self, config: RadarConfig = RadarConfig(), seed: int | np.random.SeedSequence = 0):
        self.config = config
        self._rng = np.random.default_rng(seed)
        self._produced = 0  # samples generated so far (including pending)
        self._pending = _Pending()
        self._pending_offset = 0  # read position inside the first pending array
        self._encounters: list[Encounter] = []

    @property
    def encounters(self) -> list[Encounter]:
        """Encounters generated so far (some may lie beyond what has been read)."""
        return list(self._encounters)

    def read(self, n: int) -> StreamBlock:
        """The next ``n`` samples of the stream."""
        if n < 0:
            raise ValueError("n must be >= 0")
        start = self._produced - self._pending.size
        while self._pending.size - self._pending_offset < n:
            self._generate_segment()
        p = self._pending
        cat = lambda parts: np.concatenate(parts) if parts else np.empty(0)  # noqa: E731
        samples, truth = cat(p.samples), cat(p.truth)
        enc_id, cpa_t = cat(p.enc_id), cat(p.cpa_t)
        o = self._pending_offset
        block = StreamBlock(
            start=start + o,
            samples=samples[o : o + n].reshape(-1, 2).astype(np.float32),
            truth=truth[o : o + n].reshape(-1, 4).astype(np.float32),
            encounter_id=enc_id[o : o + n].astype(np.int64),
            cpa_time_s=cpa_t[o : o + n].astype(np.float64),
        )
        rest = o + n
        self._pending = _Pending(
            samples=[samples[rest:]], truth=[truth[rest:]], enc_id=[enc_id[rest:]],
            cpa_t=[cpa_t[rest:]], size=samples.shape[0] - rest,
        )
        self._pending_offset = 0
        return block

    def _append(self, samples, truth, enc_id, cpa_t) -> None:
        p = self._pending
        p.samples.append(samples)
        p.truth.append(truth)
        p.enc_id.append(enc_id)
        p.cpa_t.append(cpa_t)
        p.size += samples.shape[0]
        self._produced += samples.shape[0]

    def _generate_segment(self) -> None:
        cfg, rng = self.config, self._rng
        # noise-only gap
        n_gap = max(1, int(round(rng.uniform(*cfg.gap_range_s) * cfg.rate_hz)))
        gap = receive(np.zeros(n_gap), None, cfg, rng)
        nan4 = np.full((n_gap, 4), np.nan, dtype=np.float32)
        nan4[:, 1] = 0.0
        self._append(gap, nan4, np.full(n_gap, -1), np.full(n_gap, np.nan))
        # encounter
        start = self._produced
        enc, samples, truth = simulate_encounter(cfg, rng, len(self._encounters), start)
        self._encounters.append(enc)
        n = samples.shape[0]
        cpa_time = enc.cpa_index / cfg.rate_hz
        self._append(samples, truth, np.full(n, enc.index), np.full(n, cpa_time))


def simulate_encounter(
    cfg: RadarConfig, rng: np.random.Generator, index: int = 0, start: int = 0
) -> tuple[Encounter, np.ndarray, np.ndarray]:
    """One pass: (truth record, samples [n, 2], per-sample truth [n, 4])."""
    dmin_norm = rng.uniform(*cfg.dmin_range_norm)
    dmin = dmin_norm * cfg.r_max_m
    speed = rng.uniform(*cfg.speed_range_mps)
    rcs_db = rng.uniform(*cfg.rcs_db_range) if cfg.rcs_db_range is not None else rng.normal(0.0, cfg.rcs_sigma_db)
    manoeuvre = "straight"
    turn = accel = 0.0
    if rng.random() < cfg.manoeuvre_prob:
        if rng.random() < 0.5:
            manoeuvre = "turn"
            turn = np.deg2rad(rng.uniform(*cfg.turn_rate_range_dps)) * rng.choice([-1.0, 1.0])
        else:
            manoeuvre = "accelerate"
            accel = rng.uniform(*cfg.accel_range_mps2)
    half = np.sqrt(cfg.r_max_m**2 - dmin**2) / speed
    dt = 1.0 / cfg.rate_hz
    phase = rng.uniform(0.0, dt)  # CPA falls anywhere between two dwells
    n_half = int(np.ceil(half / dt)) + 1
    t = (np.arange(-n_half, n_half + 1) * dt) + phase
    if manoeuvre == "straight":
        rng_true = straight_range(t, dmin, speed, 0.0)
        dmin_true = dmin
    else:
        pos = manoeuvring_track(t, dmin, speed, 0.0, turn, accel)
        rng_true = np.hypot(pos[:, 0], pos[:, 1])
        fine = np.linspace(t[0], t[-1], 20 * t.size)
        fpos = manoeuvring_track(fine, dmin, speed, 0.0, turn, accel)
        dmin_true = float(np.min(np.hypot(fpos[:, 0], fpos[:, 1])))
        if dmin_true >= cfg.r_max_m:  # turned away before entering: fall back to its straight part
            rng_true, dmin_true, manoeuvre = straight_range(t, dmin, speed, 0.0), dmin, "straight"
    # keep the contiguous stretch around the CPA
    cpa = int(np.argmin(rng_true))
    lo, hi = cpa, cpa
    while lo - 1 >= 0 and rng_true[lo - 1] <= cfg.r_max_m:
        lo -= 1
    while hi + 1 < t.size and rng_true[hi + 1] <= cfg.r_max_m:
        hi += 1
    if cfg.partial_prob > 0.0 and rng.random() < cfg.partial_prob:
        # pop-up and/or drop-out inside coverage; the CPA stays observed so Dmin stays defined
        cut = rng.integers(0, 3)  # 0: starts late, 1: ends early, 2: both
        if cut in (0, 2):
            lo = int(rng.integers(lo, cpa + 1))
        if cut in (1, 2):
            hi = int(rng.integers(cpa, hi + 1))
    t, rng_true = t[lo : hi + 1], rng_true[lo : hi + 1]
    cpa -= lo
    rcs = 10 ** (rcs_db / 10)
    mean_snr = radar_equation_snr(rng_true, rcs, cfg)
    snr = fluctuate(mean_snr, cfg.swerling, rng)
    samples = receive(snr, rng_true, cfg, rng)
    n = t.size
    dmin_true = min(dmin_true, cfg.r_max_m)
    floor = cfg.noise_rms**2  # SNR re the stream's own noise floor
    truth = np.stack(
        [
            np.full(n, dmin_true / cfg.r_max_m),
            np.ones(n),
            rng_true,
            10 * np.log10(np.maximum(mean_snr / floor, 1e-12)),
        ],
        axis=1,
    ).astype(np.float32)
    enc = Encounter(
        index=index, start=start, stop=start + n, cpa_index=start + cpa, dmin_m=float(dmin_true),
        dmin_norm=float(dmin_true / cfg.r_max_m), speed_mps=float(speed),
        peak_snr_db=float(10 * np.log10(radar_equation_snr(np.array([dmin_true]), rcs, cfg)[0] / floor)),
        rcs_db=float(rcs_db), manoeuvre=manoeuvre,
    )
    return enc, samples, truth


def simulate_stream(
    n_samples: int, config: RadarConfig = RadarConfig(), seed: int = 0
) -> tuple[StreamBlock, list[Encounter]]:
    """``n_samples`` of a stream and the encounters that lie entirely inside it."""
    sim = StreamSimulator(config, seed)
    block = sim.read(n_samples)
    return block, [e for e in sim.encounters if e.stop <= n_samples]


def sensor_seeds(seed: int, n_sensors: int) -> list[np.random.SeedSequence]:
    """Independent, reproducible seeds for ``n_sensors`` simulated sensors."""
    return np.random.SeedSequence(seed).spawn(n_sensors)
