"""Classical (non-learned) miss-distance estimator: a robust fit of R² = a t² + b t + c.

For a target on a straight line at speed v, R(t)² = Dmin² + v²(t − t0)² is *exactly* quadratic in
t, so the miss distance follows from three linear coefficients:

    a = v²,  b = −2 v² t0,  c = Dmin² + v² t0²   ⇒   Dmin² = c − b²/(4a),  t_cpa = −b/(2a).

Fitting R² (not R) keeps the problem linear, so it can be solved in closed form, in batch and
recursively from a handful of running sums. This is the baseline the learned models must beat and
the fallback when they are not available.

Conventions shared by every solver here:

* A *detection* is a sample with a finite ``distance >= 0``; anything else (the radar's ``-1``)
  is "no detection" and is ignored.
* Time is never used raw: Unix times (~1.7e9 s) squared lose all precision. Solvers fit on
  τ = (t − t_ref) / t_scale and ranges on ρ = R / r_max, then convert back. Reported coefficients
  are about ``t_ref``: R² = a (t − t_ref)² + b (t − t_ref) + c (metres, seconds).
* Failures (too few detections, a ≤ 0, singular design) are returned in the result, never raised;
  only programmer errors (bad shapes, bad config) raise ``ValueError``.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

import numpy as np

__all__ = (
    "CPAFitConfig",
    "CPAFitResult",
    "RecursiveCPAFit",
    "StreamingCPAEstimator",
    "CPA_OUTPUTS",
    "fit_cpa",
    "fit_cpa_weighted_ls",
    "with_fallback",
)

FailureReason = Literal[
    "too_few_detections",
    "too_few_inliers",
    "non_positive_curvature",
    "degenerate",
]

_MAD_TO_SIGMA = 1.482602218505602  # 1 / Φ⁻¹(3/4): MAD of a Gaussian → its σ
_PIVOT_RTOL = 1e-13  # LDLᵀ pivot / diagonal below this ⇒ the 3×3 normal matrix is singular


@dataclass(frozen=True)
class CPAFitConfig:
    """Knobs for every fit in this module (batch, recursive, streaming).

    Weights: the fit is least squares on y = R², whose noise is not constant: var(R²) ≈ (2R σ_r)²,
    so far samples would dominate an unweighted fit although they carry the least information
    about Dmin. Weighting each sample by 1/R² makes the weighted R² residual (model − R²)/R equal
    to twice the residual in range, i.e. it restores the range-domain least squares the noise
    model calls for, while keeping the problem linear. ``min_range_m`` floors R in that weight so
    a (false) detection at R ≈ 0 cannot get an unbounded weight.

    Robustness: residuals for RANSAC consensus, Huber weights and recursive gating are all
    measured in range metres, against σ = ``sigma_m`` (the nominal range noise, ≈5 m at 10 dB).
    With ``adaptive_sigma`` the σ used is the robust estimate from the data clipped to
    [sigma_m, sigma_max_m], because the range noise grows as SNR falls.
    """

    min_detections: int = 6
    """Fewer detections (or accepted samples) than this ⇒ ``too_few_detections``; at least 3."""
    ransac_iterations: int = 64
    """Minimal 3-point hypotheses per RANSAC run (all subsets are used when there are fewer)."""
    sigma_m: float = 5.0
    """Nominal range noise σ in metres; the unit of every robust threshold below."""
    inlier_k: float = 3.0
    """Inlier threshold / recursive gate, in σ: |range residual| ≤ inlier_k·σ."""
    adaptive_sigma: bool = True
    """Estimate σ from the residuals (MAD in batch, weighted RMS recursively); see sigma_max_m."""
    sigma_max_m: float = 30.0
    """Cap on the adaptive σ (worst plausible range noise at low SNR), so a handful of junk
    detections cannot widen the inlier band until everything fits."""
    huber_delta: float = 1.345
    """Huber corner in σ: residuals beyond huber_delta·σ get weight ∝ 1/|residual|."""
    irls_iterations: int = 10
    """Maximum Huber IRLS iterations per refinement (stops earlier once converged)."""
    weight_rule: Literal["inverse_r2", "uniform"] = "inverse_r2"
    """``inverse_r2`` (see class doc) or ``uniform`` (plain LS on R², for comparison only)."""
    min_range_m: float = 1.0
    """Floor on R inside the 1/R² weight."""
    r_max: float = 1000.0
    """Instrumented range in metres; ``dmin_norm = dmin_m / r_max`` (clipped to [0, 1])."""
    time_scale_s: float = 10.0
    """Recursive fit's time unit: τ = (t − t_first) / time_scale_s (batch uses the half-span)."""
    bootstrap_window: int = 24
    """Recursive fit: most recent detections kept while looking for an initial consensus."""
    max_consecutive_rejections: int = 10
    """Recursive fit: this many gated-out detections in a row ⇒ the fit has locked onto the wrong
    track; restart it from those rejected detections."""
    seed: int = 0
    """Seed of the RANSAC generator (``np.random.default_rng(seed)``) when none is passed."""
    snr_sigma_m: float | None = None
    """Range noise σ of a detection at 10 dB SNR (the radar profile's ``range_sigma_m``). With it,
    the recursive fit predicts each detection's range noise from its amplitude
    (σ = snr_sigma_m·√(10 dB / SNR), SNR = (A / amplitude_rms)² − 1) and compares the residuals
    with it (:meth:`RecursiveCPAFit.chi2`): a straight pass gives ≈ 1, a manoeuvre the parabola
    cannot follow gives ≫ 1 at high SNR, where the noise is small and the misfit is not."""
    amplitude_rms: float = 1.0
    """Noise RMS in the stream's amplitude units (the profile's ``noise_rms``)."""
    vertex_slack_s: float = 0.75
    """Recursive fit: how far before the fit's first accepted detection its vertex may lie and
    still count as observed (:meth:`RecursiveCPAFit.cpa_passed`). 0.75 s: chosen on held-out
    seeds 40,001/40,002 (0.5–1 s alike; 0 loses faint fits that start just after the CPA, ∞ is
    the old rule that trusted fits restarted on a manoeuvre's outgoing leg)."""

    @classmethod
    def for_profile(cls, profile, **changes) -> "CPAFitConfig":
        """The fit for a radar profile (``models.profile.RadarProfile``): its R_max, and its range
        precision as the nominal σ (the adaptive cap keeps the default's ratio of 6)."""
        sigma = float(profile.range_sigma_m)
        return cls(**{"r_max": float(profile.r_max_m), "sigma_m": sigma, "sigma_max_m": 6.0 * sigma,
                      "snr_sigma_m": sigma, "amplitude_rms": float(profile.noise_rms), **changes})

    def __post_init__(self) -> None:
        if self.min_detections < 3:
            raise ValueError("min_detections must be >= 3 (a parabola has 3 coefficients)")
        if self.ransac_iterations < 1 or self.irls_iterations < 0:
            raise ValueError("ransac_iterations must be >= 1 and irls_iterations >= 0")
        for name in ("sigma_m", "inlier_k", "huber_delta", "min_range_m", "r_max", "time_scale_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and > 0, got {value!r}")
        if not (math.isfinite(self.vertex_slack_s) and self.vertex_slack_s >= 0):
            raise ValueError(f"vertex_slack_s must be finite and >= 0, got {self.vertex_slack_s!r}")
        if not self.sigma_max_m >= self.sigma_m:
            raise ValueError("sigma_max_m must be >= sigma_m")
        if self.weight_rule not in ("inverse_r2", "uniform"):
            raise ValueError(f"unknown weight_rule {self.weight_rule!r}")
        if self.bootstrap_window < self.min_detections:
            raise ValueError("bootstrap_window must be >= min_detections")
        if self.max_consecutive_rejections < 1:
            raise ValueError("max_consecutive_rejections must be >= 1")
        if self.snr_sigma_m is not None and not (math.isfinite(self.snr_sigma_m) and self.snr_sigma_m > 0):
            raise ValueError(f"snr_sigma_m must be None or finite and > 0, got {self.snr_sigma_m!r}")
        if not (math.isfinite(self.amplitude_rms) and self.amplitude_rms > 0):
            raise ValueError(f"amplitude_rms must be finite and > 0, got {self.amplitude_rms!r}")


@dataclass(frozen=True)
class CPAFitResult:
    """Outcome of one fit; on failure ``ok`` is False, ``failure`` says why, estimates are NaN.

    A fitted Dmin² < 0 (noise on a near-collision pass) is clipped to 0 and is *not* a failure:
    the data are consistent with a curve that touches zero, and 0 is the closest valid miss
    distance. ``non_positive_curvature`` (a ≤ 0) still reports a, b, c for diagnosis.
    """

    ok: bool
    failure: FailureReason | None
    dmin_m: float
    """Miss distance in metres (≥ 0), NaN on failure."""
    dmin_norm: float
    """dmin_m / r_max clipped to [0, 1], NaN on failure."""
    t_cpa: float
    """Time of closest approach (same clock as the input t), NaN unless a > 0."""
    speed: float
    """√a in m/s, NaN unless a > 0."""
    a: float
    b: float
    c: float
    t_ref: float
    """Reference of the coefficients: R² = a (t − t_ref)² + b (t − t_ref) + c."""
    n_detections: int
    """Detections seen (batch: valid samples in the input; recursive: since reset())."""
    n_inliers: int
    """Samples in the final fit (RANSAC/gating survivors)."""
    rms_residual_m: float
    """RMS range residual of the samples in the fit, metres (see each solver for its weighting)."""
    dmin_std_m: float = math.nan
    """Standard deviation of dmin_m from the weighted least-squares covariance (range noise σ
    propagated through Dmin² = c − b²/4a), metres; NaN when unknown. It describes the noise of a
    straight-line fit only: a manoeuvring target fitted by the wrong model is not covered."""

    def coefficients_about(self, t_ref: float) -> tuple[float, float, float]:
        """(a, b, c) re-expressed about another reference time, to compare fits made about
        different references without going through ill-conditioned absolute-time coefficients."""
        shift = float(t_ref) - self.t_ref
        a, b, c = self.a, self.b, self.c
        return a, b + 2.0 * a * shift, c + (a * shift + b) * shift


# --------------------------------------------------------------------------------------------
# shared helpers


def _failure(
    reason: FailureReason,
    n_detections: int,
    n_inliers: int = 0,
    coeffs: tuple[float, float, float] = (math.nan, math.nan, math.nan),
    t_ref: float = math.nan,
    rms: float = math.nan,
) -> CPAFitResult:
    a, b, c = coeffs
    nan = math.nan
    return CPAFitResult(
        ok=False, failure=reason, dmin_m=nan, dmin_norm=nan, t_cpa=nan, speed=nan,
        a=a, b=b, c=c, t_ref=t_ref, n_detections=n_detections, n_inliers=n_inliers,
        rms_residual_m=rms,
    )  # fmt: skip


def _result_from_scaled(
    c0: float,
    c1: float,
    c2: float,
    t_ref: float,
    t_scale: float,
    cfg: CPAFitConfig,
    n_detections: int,
    n_inliers: int,
    rms: float,
    std_norm: float = math.nan,
) -> CPAFitResult:
    """Convert ρ² = c2 τ² + c1 τ + c0 (τ = (t − t_ref)/t_scale, ρ = R/r_max) to physical units.

    Dmin and t_cpa are taken from the scaled coefficients directly (both are invariant to the
    scaling), which avoids forming huge or tiny intermediate numbers.
    """
    r2 = cfg.r_max * cfg.r_max
    a = r2 * c2 / (t_scale * t_scale)
    b = r2 * c1 / t_scale
    c = r2 * c0
    if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(c)):
        return _failure("degenerate", n_detections, n_inliers, t_ref=t_ref, rms=rms)
    if c2 <= 0.0:
        return _failure("non_positive_curvature", n_detections, n_inliers, (a, b, c), t_ref, rms)
    dmin2_norm = c0 - c1 * c1 / (4.0 * c2)
    dmin_norm_raw = math.sqrt(dmin2_norm) if dmin2_norm > 0.0 else 0.0  # clip, not a failure
    return CPAFitResult(
        ok=True,
        failure=None,
        dmin_m=cfg.r_max * dmin_norm_raw,
        dmin_norm=min(dmin_norm_raw, 1.0),
        t_cpa=t_ref - t_scale * c1 / (2.0 * c2),
        speed=math.sqrt(a),
        a=a,
        b=b,
        c=c,
        t_ref=t_ref,
        n_detections=n_detections,
        n_inliers=n_inliers,
        rms_residual_m=rms,
        dmin_std_m=cfg.r_max * std_norm,
    )


def _dmin_std(coef: tuple[float, float, float], ldl: tuple[float, float, float, float, float, float],
              sigma: float) -> float:
    """σ of Dmin (ρ units) for the fit ``coef`` whose normal matrix M = XᵀWX has the LDLᵀ factors
    ``ldl``, with weights w = 1/ρ² and range noise σ (ρ units).

    With w = 1/ρ², the weighted R² residual is twice the range residual, so Cov(θ) = 4σ² M⁻¹;
    g = ∇(Dmin²) = (1, −c1/2c2, c1²/4c2²) gives var(Dmin²) = 4σ² gᵀM⁻¹g (gᵀM⁻¹g = Σ zᵢ²/dᵢ with
    L z = g). Then σ(Dmin) = s / (2 Dmin + √s), s = σ(Dmin²): the delta method s/(2 Dmin) away
    from zero, √s near a collision where the square root is not linear."""
    c0, c1, c2 = coef
    if not c2 > 0.0:
        return math.nan
    l10, l20, l21, d0, d1, d2 = ldl
    g1 = -c1 / (2.0 * c2)
    g2 = g1 * g1
    z0 = 1.0
    z1 = g1 - l10 * z0
    z2 = g2 - l20 * z0 - l21 * z1
    q = z0 * z0 / d0 + z1 * z1 / d1 + z2 * z2 / d2
    if not (q >= 0.0 and math.isfinite(q)):
        return math.nan
    s_d2 = 2.0 * sigma * math.sqrt(q)
    dmin2 = c0 - c1 * c1 / (4.0 * c2)
    dmin = math.sqrt(dmin2) if dmin2 > 0.0 else 0.0
    return s_d2 / (2.0 * dmin + math.sqrt(s_d2))


_Z90 = 1.6448536269514722  # two-sided 90 % normal quantile


def _t_inflation(dof: int) -> float:
    """t₀.₉₅(dof) / z₀.₉₅ (Cornish–Fisher): a fit of few points knows its noise level poorly,
    so its interval widens like Student's t (1.36 at 3 dof, 1.03 at 30)."""
    if dof < 1:
        return math.nan
    z = _Z90
    t = z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2) \
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * dof**3)
    return t / z


def _misfit_factor(rho: float) -> float:
    """√((1+ρ)/(1−ρ)) for a lag-1 autocorrelation ρ of the time-ordered residuals: the variance
    of a mean of AR(1) errors. White residuals (the straight-line model is right) give ≈ 1; a
    manoeuvring target fitted by a parabola leaves slow, correlated residuals and its σ grows,
    so a well-posed fit of the wrong model is no longer trusted as if it were right."""
    r = min(max(rho, 0.0), 0.98) if math.isfinite(rho) else 0.0
    return math.sqrt((1.0 + r) / (1.0 - r))


def _lag1(res: np.ndarray) -> float:
    """Lag-1 autocorrelation of a residual series (0 for fewer than 4 values)."""
    if res.size < 4:
        return 0.0
    r = res - res.mean()
    den = float(np.dot(r, r))
    return float(np.dot(r[1:], r[:-1])) / den if den > 0.0 else 0.0


def _noise_sigma(rms: float, n: int, cfg: CPAFitConfig) -> float:
    """Range noise σ (ρ units) from the residual RMS of an n-point fit: dof-corrected, floored at a
    tenth of the nominal σ (a lucky handful of points must not claim centimetres)."""
    if n <= 3 or not math.isfinite(rms):
        return math.nan
    return max(rms * math.sqrt(n / (n - 3.0)), 0.1 * cfg.sigma_m / cfg.r_max)


def _ldl_of(powers_w: np.ndarray) -> tuple[float, float, float, float, float, float] | None:
    """LDLᵀ factors of the Hankel normal matrix from its five moments Σw·τ^k."""
    sol = _ldl_solve(*powers_w.tolist(), 0.0, 0.0, 0.0)
    return None if sol is None else sol[1]


def _as_1d_pair(t: np.ndarray, distance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t_arr = np.asarray(t, dtype=np.float64)
    d_arr = np.asarray(distance, dtype=np.float64)
    if t_arr.ndim != 1 or t_arr.shape != d_arr.shape:
        raise ValueError(f"t and distance must be 1-D, equal shape: {t_arr.shape}, {d_arr.shape}")
    return t_arr, d_arr


def _detection_mask(t: np.ndarray, d: np.ndarray) -> np.ndarray:
    return np.isfinite(t) & np.isfinite(d) & (d >= 0.0)


def _base_weights(rho: np.ndarray, cfg: CPAFitConfig) -> np.ndarray:
    if cfg.weight_rule == "uniform":
        return np.ones_like(rho)
    floor = cfg.min_range_m / cfg.r_max
    return 1.0 / np.square(np.maximum(rho, floor))


def _centre_times(t: np.ndarray) -> tuple[float, float]:
    """(t_ref, t_scale): mean and half-span, computed relative to t[0] so 1.7e9-s clocks keep
    their sub-millisecond resolution."""
    rel = t - t[0]
    t_ref = float(t[0]) + float(rel.mean())
    t_scale = 0.5 * float(rel.max() - rel.min())
    return t_ref, t_scale


def _design(tau: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(tau), tau, tau * tau], axis=1)


def _ldl_solve(
    s0: float, s1: float, s2: float, s3: float, s4: float, b0: float, b1: float, b2: float
) -> tuple[tuple[float, float, float], tuple[float, float, float, float, float, float]] | None:
    """Solve the Hankel normal equations [[s0,s1,s2],[s1,s2,s3],[s2,s3,s4]] θ = b by LDLᵀ.

    Scalar code: ~1 µs, versus ~25 µs for np.linalg.solve on a 3×3. LDLᵀ of an SPD matrix is
    accurate to the *diagonally scaled* condition number (van der Sluis), so no explicit
    equilibration is needed however τ is scaled. Returns (θ, (l10, l20, l21, d0, d1, d2)) or None
    when a pivot collapses (fewer than 3 distinct times carrying weight)."""
    d0 = s0
    if not d0 > 0.0:
        return None
    l10 = s1 / d0
    l20 = s2 / d0
    d1 = s2 - l10 * s1
    if not d1 > _PIVOT_RTOL * s2:
        return None
    l21 = (s3 - l20 * s1) / d1
    d2 = s4 - l20 * s2 - l21 * l21 * d1
    if not d2 > _PIVOT_RTOL * s4:
        return None
    z1 = b1 - l10 * b0
    z2 = b2 - l20 * b0 - l21 * z1
    c2 = z2 / d2
    c1 = z1 / d1 - l21 * c2
    c0 = b0 / d0 - l10 * c1 - l20 * c2
    if not (math.isfinite(c0) and math.isfinite(c1) and math.isfinite(c2)):
        return None
    return (c0, c1, c2), (l10, l20, l21, d0, d1, d2)


def _wls_moments(powers: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray | None:
    """Weighted LS of y on [1, τ, τ²] given powers = [τ⁰..τ⁴] (5×n): two mat-vecs + LDLᵀ."""
    s = powers @ w
    b = powers[:3] @ (w * y)
    sol = _ldl_solve(*s.tolist(), *b.tolist())
    return None if sol is None else np.array(sol[0])


def _range_residual(coef: np.ndarray, tau: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """Signed residual in range (ρ units): √max(model, 0) − ρ."""
    model = (coef[2] * tau + coef[1]) * tau + coef[0]
    return np.sqrt(np.maximum(model, 0.0)) - rho


def _triplets(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """k index triplets with distinct members; every subset when there are at most k of them."""
    if math.comb(n, 3) <= k:
        return np.array(list(combinations(range(n), 3)), dtype=np.intp)
    i0 = rng.integers(0, n, k)
    i1 = rng.integers(0, n - 1, k)
    i1 += i1 >= i0
    lo, hi = np.minimum(i0, i1), np.maximum(i0, i1)
    i2 = rng.integers(0, n - 2, k)
    i2 += i2 >= lo  # skip the two taken indices in increasing order ⇒ uniform over the rest
    i2 += i2 >= hi
    return np.stack([i0, i1, i2], axis=1)


def _ransac(
    tau: np.ndarray, rho: np.ndarray, cfg: CPAFitConfig, rng: np.random.Generator
) -> tuple[np.ndarray, float] | None:
    """Best 3-point parabola in R² by MSAC cost (truncated squared range residual), all
    hypotheses scored in one array op. Returns (inlier mask, σ in ρ units) or None."""
    idx = _triplets(tau.size, cfg.ransac_iterations, rng)
    tt = tau[idx]
    yy = np.square(rho[idx])
    t1, t2, t3 = tt[:, 0], tt[:, 1], tt[:, 2]
    y1, y2, y3 = yy[:, 0], yy[:, 1], yy[:, 2]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        f12 = (y2 - y1) / (t2 - t1)  # Newton divided differences: the exact interpolant
        f23 = (y3 - y2) / (t3 - t2)
        a2 = (f23 - f12) / (t3 - t1)
        a1 = f12 - a2 * (t1 + t2)
        a0 = y1 - (a2 * t1 + a1) * t1
    valid = np.isfinite(a0) & np.isfinite(a1) & np.isfinite(a2)  # equal times ⇒ invalid
    if not valid.any():
        return None
    thr = cfg.inlier_k * cfg.sigma_m / cfg.r_max
    model = a2[:, None] * tau
    model += a1[:, None]
    model *= tau
    model += a0[:, None]
    np.maximum(model, 0.0, out=model)
    np.sqrt(model, out=model)
    model -= rho
    np.square(model, out=model)
    np.minimum(model, thr * thr, out=model)
    cost = model.sum(axis=1)
    cost[~valid] = np.inf
    best = int(np.argmin(cost))
    res = np.abs(_range_residual(np.array([a0[best], a1[best], a2[best]]), tau, rho))
    sigma = _scale(res, cfg)
    return res <= cfg.inlier_k * sigma, sigma


def _scale(abs_res: np.ndarray, cfg: CPAFitConfig) -> float:
    """σ in ρ units: sigma_m, or 1.4826·median|res| (robust to < 50 % outliers) clipped to
    [sigma_m, sigma_max_m]."""
    floor = cfg.sigma_m / cfg.r_max
    if not cfg.adaptive_sigma or abs_res.size == 0:
        return floor
    est = _MAD_TO_SIGMA * float(np.median(abs_res))
    return min(max(floor, est), cfg.sigma_max_m / cfg.r_max)


def _irls(
    tau: np.ndarray, rho: np.ndarray, w: np.ndarray, sigma: float, cfg: CPAFitConfig
) -> np.ndarray | None:
    """Huber IRLS on ρ² with weights w·huber(range residual / σ); stops when the Huber weights
    stop changing or the coefficients move by < 1e-8 relative (≪ σ)."""
    y = rho * rho
    tau2 = tau * tau
    powers = np.stack([np.ones_like(tau), tau, tau2, tau2 * tau, tau2 * tau2])
    coef = _wls_moments(powers, y, w)
    if coef is None:
        return None
    corner = cfg.huber_delta * sigma
    h_prev = np.ones_like(tau)
    for _ in range(cfg.irls_iterations):
        res = np.abs(_range_residual(coef, tau, rho))
        h = np.minimum(1.0, corner / np.maximum(res, 1e-300))
        if np.array_equal(h, h_prev):
            break
        new = _wls_moments(powers, y, w * h)
        if new is None:
            break
        done = bool(np.all(np.abs(new - coef) <= 1e-8 * (np.abs(new) + 1e-8)))
        coef, h_prev = new, h
        if done:
            break
    return coef


# --------------------------------------------------------------------------------------------
# batch solvers


def fit_cpa_weighted_ls(
    t: np.ndarray,
    distance: np.ndarray,
    weights: np.ndarray | None = None,
    config: CPAFitConfig = CPAFitConfig(),
) -> CPAFitResult:
    """Plain (non-robust) weighted LS of R² = a t² + b t + c over the detections.

    ``weights`` are the final per-sample weights on the R² residual (None ⇒ the config's rule,
    1/R² by default); non-detections are ignored whatever their weight, and samples with weight 0
    do not count towards ``min_detections``. This is the reference the recursive fit reproduces.
    Solved by lstsq (SVD) on the √w-scaled, centred design. ``rms_residual_m`` is the weighted RMS
    of the linearised range residual (model − R²)/(2R) with range-domain weights w·R².
    """
    t_arr, d_arr = _as_1d_pair(t, distance)
    det = _detection_mask(t_arr, d_arr)
    rho_all = d_arr / config.r_max
    if weights is None:
        w_all = np.zeros_like(d_arr)
        w_all[det] = _base_weights(rho_all[det], config)
    else:
        w_all = np.asarray(weights, dtype=np.float64)
        if w_all.shape != t_arr.shape:
            raise ValueError(f"weights shape {w_all.shape} != t shape {t_arr.shape}")
        if np.any(~np.isfinite(w_all[det])) or np.any(w_all[det] < 0):
            raise ValueError("weights must be finite and >= 0 on detections")
    n_det = int(det.sum())
    use = det & (w_all > 0)
    n_use = int(use.sum())
    if n_use < config.min_detections:
        return _failure("too_few_detections", n_det, n_use)
    tt, rho, w = t_arr[use], rho_all[use], w_all[use]
    t_ref, t_scale = _centre_times(tt)
    if not t_scale > 0:
        return _failure("degenerate", n_det, n_use, t_ref=t_ref)
    x = _design(((tt - tt[0]) - (t_ref - tt[0])) / t_scale)
    y = rho * rho
    sw = np.sqrt(w)
    coef, _, rank, _ = np.linalg.lstsq(x * sw[:, None], y * sw, rcond=None)
    if rank < 3 or not np.all(np.isfinite(coef)):
        return _failure("degenerate", n_det, n_use, t_ref=t_ref)
    e = x @ coef - y
    wy = float(np.dot(w, y))
    rms = config.r_max * math.sqrt(float(np.dot(w, e * e)) / (4.0 * wy)) if wy > 0 else math.nan
    std = _batch_std(coef, x[:, 1], w, e / (2.0 * np.maximum(rho, config.min_range_m / config.r_max)), config)
    return _result_from_scaled(*map(float, coef), t_ref, t_scale, config, n_det, n_use, rms, std)


def fit_cpa(
    t: np.ndarray,
    distance: np.ndarray,
    config: CPAFitConfig = CPAFitConfig(),
    rng: np.random.Generator | None = None,
) -> CPAFitResult:
    """Robust whole-encounter fit: RANSAC consensus, then Huber IRLS with 1/R² weights.

    1. detections only; τ centred on their mean time and scaled by their half-span;
    2. RANSAC over 3-point subsets (MSAC cost, range-metre residuals, all hypotheses at once);
    3. Huber IRLS on the inliers, then the inliers are re-selected against the refined curve (with
       σ re-estimated) and the IRLS repeated, at most 3 rounds, until the inlier set is stable.

    Deterministic: ``rng`` defaults to ``np.random.default_rng(config.seed)``. ``rms_residual_m``
    is the plain RMS of the exact range residual √model − R over the final inliers.
    """
    t_arr, d_arr = _as_1d_pair(t, distance)
    det = _detection_mask(t_arr, d_arr)
    n_det = int(det.sum())
    if n_det < config.min_detections:
        return _failure("too_few_detections", n_det)
    tt = t_arr[det]
    rho = d_arr[det] / config.r_max
    t_ref, t_scale = _centre_times(tt)
    if not t_scale > 0:
        return _failure("degenerate", n_det, t_ref=t_ref)
    tau = ((tt - tt[0]) - (t_ref - tt[0])) / t_scale
    gen = rng if rng is not None else np.random.default_rng(config.seed)
    found = _ransac(tau, rho, config, gen)
    if found is None:
        return _failure("degenerate", n_det, t_ref=t_ref)
    inl, sigma = found
    if int(inl.sum()) < config.min_detections:
        return _failure("too_few_inliers", n_det, int(inl.sum()), t_ref=t_ref)
    w_all = _base_weights(rho, config)
    coef = _irls(tau[inl], rho[inl], w_all[inl], sigma, config)
    for _ in range(3):
        if coef is None:
            return _failure("degenerate", n_det, int(inl.sum()), t_ref=t_ref)
        res = np.abs(_range_residual(coef, tau, rho))
        sigma = _scale(res, config)
        new_inl = res <= config.inlier_k * sigma
        if int(new_inl.sum()) < config.min_detections or np.array_equal(new_inl, inl):
            break
        inl = new_inl
        coef = _irls(tau[inl], rho[inl], w_all[inl], sigma, config)
    if coef is None:
        return _failure("degenerate", n_det, int(inl.sum()), t_ref=t_ref)
    res_in = _range_residual(coef, tau[inl], rho[inl])
    rms = config.r_max * math.sqrt(float(np.mean(res_in * res_in)))
    n_in = int(inl.sum())
    std = _batch_std(coef, tau[inl], w_all[inl], res_in, config)
    return _result_from_scaled(*map(float, coef), t_ref, t_scale, config, n_det, n_in, rms, std)


def _batch_std(coef: np.ndarray, tau: np.ndarray, w: np.ndarray, res: np.ndarray, cfg: CPAFitConfig) -> float:
    """σ(Dmin) in ρ units of a batch fit over n points (τ, weights w, range residuals ``res`` in
    ρ units, time order): the covariance of the weighted LS with the residuals' own noise level,
    widened for few points (t) and for correlated residuals (model misfit)."""
    n = tau.size
    tau2 = tau * tau
    ldl = _ldl_of(np.stack([np.ones_like(tau), tau, tau2, tau2 * tau, tau2 * tau2]) @ w)
    sigma = _noise_sigma(math.sqrt(float(np.mean(res * res))) if n else math.nan, n, cfg)
    if ldl is None or not math.isfinite(sigma):
        return math.nan
    return _dmin_std(tuple(map(float, coef)), ldl, sigma) * _t_inflation(n - 3) * _misfit_factor(_lag1(res))


def with_fallback(result: CPAFitResult, prior_norm: float) -> float:
    """The fit's dmin_norm, or ``prior_norm`` (e.g. the training-set mean) when the fit failed,
    so downstream code always gets a usable number."""
    if result.ok and math.isfinite(result.dmin_norm):
        return result.dmin_norm
    return float(prior_norm)


# --------------------------------------------------------------------------------------------
# recursive / streaming


class RecursiveCPAFit:
    """Causal per-encounter fit, updated one sample at a time in O(1) amortised.

    State is the weighted sufficient statistics of the 3×3 normal equations on
    τ = (t − t_first) / time_scale_s and y = (R / r_max)²: Σw·τ^k (k = 0..4), Σw·τ^k·y (k = 0..2)
    and Σw·y². After every accepted sample the normal equations are re-solved by an LDLᵀ
    factorisation (scale-invariant, so early short spans stay accurate).

    **Equivalence.** The recursive fit equals the batch weighted LS
    ``fit_cpa_weighted_ls(t, d, weights)`` on the same accepted samples and weights (as returned
    by :meth:`history` when ``keep_history=True``), up to rounding (≈1e-12 relative).

    Which samples are accepted, and with which weight:

    * **Bootstrap.** Until a consensus exists, detections are buffered (the last
      ``bootstrap_window``); once there are ≥ min_detections, RANSAC on the buffer seeks
      ≥ min_detections inliers. They seed the sums with the base weight (1/R²); the buffered
      outliers are counted as rejected. Before that, ``estimate()`` fails with
      ``too_few_detections`` (< min_detections buffered), else ``too_few_inliers`` (no consensus
      yet) or ``degenerate`` (no usable 3-point subset, e.g. < 3 distinct times).
    * **Tracking.** Each new detection is compared with the current fit's predicted range; the
      innovation σ_i = σ·√(1 + w_pred·q) includes the fit's own prediction variance
      (q = xᵀM⁻¹x), so extrapolation early in the pass is not mistaken for outliers. |residual| >
      inlier_k·σ_i ⇒ rejected (counted, not added); otherwise added with weight
      base·min(1, huber_delta·σ_i/|residual|). σ is the running weighted RMS clipped to
      [sigma_m, sigma_max_m] when ``adaptive_sigma``.
    * **Recovery.** ``max_consecutive_rejections`` rejections in a row ⇒ restart the bootstrap
      from those rejected detections (the previous fit is dropped).

    ``rms_residual_m`` is the weighted RMS of the linearised range residual, as in
    :func:`fit_cpa_weighted_ls`, from the running sums.
    """

    def __init__(self, config: CPAFitConfig = CPAFitConfig(), *, keep_history: bool = False):
        self._cfg = config
        self._keep_history = keep_history
        self._rho_floor = config.min_range_m / config.r_max
        self._inv_r_max = 1.0 / config.r_max
        self._inv_ts = 1.0 / config.time_scale_s
        self._uniform = config.weight_rule == "uniform"
        self._adaptive = config.adaptive_sigma
        self._sig_floor = config.sigma_m / config.r_max
        self._sig_cap = config.sigma_max_m / config.r_max
        self._snr_sigma = None if config.snr_sigma_m is None else config.snr_sigma_m / config.r_max
        self._sigma_cap_noise = 12.0 * (config.snr_sigma_m or 0.0) / config.r_max
        self._inv_amp = 1.0 / config.amplitude_rms
        self.reset()

    # -- public -------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything, including the RNG state (so a fit never depends on its past)."""
        self._rng: np.random.Generator | None = None  # created lazily: resets are frequent
        self._n_det = 0
        self._n_rej = 0
        self._buffer: deque[tuple[float, float]] = deque(maxlen=self._cfg.bootstrap_window)
        self._rejected: deque[tuple[float, float]] = deque(
            maxlen=self._cfg.max_consecutive_rejections
        )
        self._clear_fit()

    def update(self, t: float, distance: float) -> CPAFitResult:
        """Feed one sample (a non-detection changes nothing) and return the current estimate.

        Any time order is accepted (the sums do not care); a non-finite t raises ValueError.
        Building the result costs ~5 µs, so hot loops should use StreamingCPAEstimator.process.
        """
        self._push(float(t), float(distance))
        return self.estimate()

    def estimate(self) -> CPAFitResult:
        """Current fit as a result (cheap; nothing is re-solved)."""
        if not self._tracking:
            return _failure(self._boot_failure, self._n_det, 0)
        if self._coef is None:
            return _failure("degenerate", self._n_det, self._n_acc, t_ref=self._t0)
        c0, c1, c2 = self._coef
        return _result_from_scaled(
            c0, c1, c2, self._t0, self._cfg.time_scale_s, self._cfg,
            self._n_det, self._n_acc, self._rms_m(), self.dmin_std_norm(),
        )  # fmt: skip

    def misfit(self) -> float:
        """Lag-1 autocorrelation of the fit's innovations (each accepted detection's residual
        against the fit before it): ≈ 0 when the straight-pass model is right, towards 1 for a
        manoeuvring target the parabola cannot follow. 0 until there are a few innovations."""
        return self._s_rr / self._s_r2 if self._s_r2 > 0.0 and self._n_acc > 8 else 0.0

    def chi2(self) -> float:
        """Residuals over the noise the amplitudes predict (``config.snr_sigma_m``), per degree of
        freedom: ≈ 1 for a straight pass, ≫ 1 when the straight-line model is wrong (a manoeuvre)
        or the radar's range noise is not what the profile says. NaN without a noise model, an
        amplitude, or more than 3 accepted detections."""
        n = self._n_acc
        if self._coef is None or n <= 3 or not self._ev > 0.0:
            return math.nan
        return self._rss() / (self._ev * (n - 3) / n)

    def dmin_std_norm(self) -> float:
        """σ of the current dmin_norm (see :func:`_dmin_std`): the running residual RMS as range
        noise, widened for few points (t) and for correlated innovations (:meth:`misfit`); NaN
        without a valid fit."""
        if self._coef is None:
            return math.nan
        sigma = _noise_sigma(self._rms_est, self._n_acc, self._cfg)
        if not math.isfinite(sigma):
            sigma = self._sig
        return _dmin_std(self._coef, self._ldl, sigma) * _t_inflation(max(self._n_acc - 3, 1)) * _misfit_factor(self.misfit())

    _STATE = ("_rng", "_n_det", "_n_rej", "_buffer", "_rejected", "_tracking", "_boot_failure", "_t0",
              "_s0", "_s1", "_s2", "_s3", "_s4", "_b0", "_b1", "_b2", "_yy", "_n_acc", "_tau_first", "_consec",
              "_coef", "_ldl", "_sig", "_dmin_norm", "_hist", "_rms_est", "_r_prev", "_s_rr", "_s_r2", "_ev")

    def get_state(self) -> dict:
        """Everything the fit carries (sums, buffers, RNG), as a snapshot sharing nothing."""
        return copy.deepcopy({k: getattr(self, k) for k in self._STATE})

    def set_state(self, state: dict) -> None:
        """Resume from :meth:`get_state` (of a fit with the same config)."""
        state = {"_tau_first": -math.inf, **state}  # snapshots from before it: no span check
        missing = set(self._STATE) - set(state)
        if missing:
            raise ValueError(f"RecursiveCPAFit state lacks {sorted(missing)}")
        for k, v in copy.deepcopy(state).items():
            setattr(self, k, v)

    @property
    def config(self) -> CPAFitConfig:
        return self._cfg

    @property
    def n_rejected(self) -> int:
        """Detections rejected so far (bootstrap outliers and gated-out samples)."""
        return self._n_rej

    def history(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(t, distance, weight) of the samples in the current fit; needs keep_history=True."""
        if not self._keep_history:
            raise RuntimeError("history() needs RecursiveCPAFit(..., keep_history=True)")
        h = np.array(self._hist, dtype=np.float64).reshape(-1, 3)
        return h[:, 0].copy(), h[:, 1].copy(), h[:, 2].copy()

    # -- internals ----------------------------------------------------------------------------

    def _clear_fit(self) -> None:
        self._tracking = False
        self._boot_failure: FailureReason = "too_few_detections"
        self._t0 = math.nan
        self._s0 = self._s1 = self._s2 = self._s3 = self._s4 = 0.0
        self._b0 = self._b1 = self._b2 = self._yy = 0.0
        self._n_acc = 0
        self._tau_first = math.inf  # τ of the earliest accepted detection of the current fit
        self._consec = 0
        self._coef: tuple[float, float, float] | None = None
        self._ldl = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        self._sig = self._sig_floor  # gating σ of the current fit (ρ units)
        self._rms_est = math.nan  # weighted RMS range residual of the current fit (ρ units)
        self._dmin_norm = math.nan
        self._hist: list[tuple[float, float, float]] = []
        self._r_prev = math.nan  # last innovation (ρ units) and the sums of its lag-1 statistics
        self._s_rr = self._s_r2 = 0.0
        self._ev = 0.0  # Σ (Huber share) · 4 σ²_expected (ρ units): the rss a right model would have

    def _base_weight(self, rho: float) -> float:
        if self._uniform:
            return 1.0
        r = rho if rho > self._rho_floor else self._rho_floor
        return 1.0 / (r * r)

    def _expected_var(self, amp: float) -> float:
        """Range-noise variance (ρ units) a detection of amplitude ``amp`` should have; NaN when
        the config has no noise model or the amplitude is unknown."""
        if self._snr_sigma is None or not amp == amp:
            return math.nan
        a = amp * self._inv_amp
        snr = a * a - 1.0
        sigma = self._snr_sigma * math.sqrt(10.0 / (snr if snr > 0.1 else 0.1))
        sigma = sigma if sigma < self._sigma_cap_noise else self._sigma_cap_noise
        return sigma * sigma

    def _push(self, t: float, d: float, amp: float = math.nan) -> float:
        """Core update; returns the current dmin_norm (NaN when there is no valid fit)."""
        if not math.isfinite(t):
            raise ValueError(f"sample time must be finite, got {t!r}")
        if not (d >= 0.0 and math.isfinite(d)):
            return self._dmin_norm
        self._n_det += 1
        e = self._expected_var(amp)
        if not self._tracking:
            self._buffer.append((t, d, e))
            if len(self._buffer) >= self._cfg.min_detections:
                self._bootstrap()
            return self._dmin_norm
        rho = d * self._inv_r_max
        tau = (t - self._t0) * self._inv_ts
        w = self._base_weight(rho)
        if self._coef is not None:
            c0, c1, c2 = self._coef
            pred2 = (c2 * tau + c1) * tau + c0
            pred = math.sqrt(pred2) if pred2 > 0.0 else 0.0
            signed = rho - pred
            res = abs(signed)
            l10, l20, l21, d0, d1, d2 = self._ldl
            v1 = tau - l10
            v2 = tau * tau - l20 - l21 * v1
            q = 1.0 / d0 + v1 * v1 / d1 + v2 * v2 / d2  # xᵀ M⁻¹ x: the fit's prediction variance
            sig = self._sig * math.sqrt(1.0 + self._base_weight(pred) * q)
            if res > self._cfg.inlier_k * sig:
                self._reject(t, d, e)
                return self._dmin_norm
            corner = self._cfg.huber_delta * sig
            if res > corner:
                w *= corner / res
        self._consec = 0
        self._rejected.clear()
        if self._coef is not None:  # innovations of a right model are white; a wrong one's are not
            if self._r_prev == self._r_prev:
                self._s_rr += signed * self._r_prev
            self._s_r2 += signed * signed
            self._r_prev = signed
        self._accept(t, d, tau, rho * rho, w, e)
        self._solve()
        return self._dmin_norm

    def cpa_passed(self, t: float, margin_s: float = 0.0) -> bool:
        """True when the current fit's CPA lies at least ``margin_s`` before time ``t`` *and*
        after the fit's first detection: the parabola's vertex has been observed, so Dmin is
        interpolated, not extrapolated. (A fit restarted on the outgoing leg of a manoeuvring
        pass — :attr:`CPAFitConfig.max_consecutive_rejections` — fits its few recent points
        well and puts its vertex before them: that Dmin is an extrapolation, 200–400 m off on
        accelerating passes, and must not be trusted.)"""
        if self._coef is None:
            return False
        c0, c1, c2 = self._coef
        if not c2 > 0.0:
            return False
        vertex = -c1 / (2.0 * c2)
        tau = (t - margin_s - self._t0) * self._inv_ts
        return tau >= vertex >= self._tau_first - self._cfg.vertex_slack_s * self._inv_ts

    def cpa_time(self) -> float:
        """The fit's time of closest approach (the clock of the samples fed), NaN without a
        parabola opening upwards."""
        if self._coef is None or not self._coef[2] > 0.0:
            return math.nan
        c0, c1, c2 = self._coef
        return self._t0 - self._cfg.time_scale_s * c1 / (2.0 * c2)

    def _reject(self, t: float, d: float, e: float) -> None:
        self._n_rej += 1
        self._consec += 1
        self._rejected.append((t, d, e))
        if self._consec >= self._cfg.max_consecutive_rejections:
            restart = list(self._rejected)
            self._rejected.clear()
            self._n_rej -= len(restart)  # they are re-judged by the new bootstrap
            self._clear_fit()
            self._buffer.clear()
            self._buffer.extend(restart)
            if len(self._buffer) >= self._cfg.min_detections:
                self._bootstrap()

    def _accept(self, t: float, d: float, tau: float, y: float, w: float, e: float = math.nan) -> None:
        if e == e:
            self._ev += 4.0 * e * w / self._base_weight(math.sqrt(y))
        else:
            self._ev = math.nan  # one unknown noise level makes the comparison meaningless
        if tau < self._tau_first:
            self._tau_first = tau
        tau2 = tau * tau
        self._s0 += w
        self._s1 += w * tau
        self._s2 += w * tau2
        self._s3 += w * tau2 * tau
        self._s4 += w * tau2 * tau2
        wy = w * y
        self._b0 += wy
        self._b1 += wy * tau
        self._b2 += wy * tau2
        self._yy += wy * y
        self._n_acc += 1
        if self._keep_history:
            self._hist.append((t, d, w))

    def _bootstrap(self) -> None:
        buf = np.array([b[:2] for b in self._buffer], dtype=np.float64)
        t_rel = buf[:, 0] - buf[0, 0]
        scale = float(np.max(np.abs(t_rel)))
        if not scale > 0:
            self._boot_failure = "degenerate"
            return
        rho = buf[:, 1] * self._inv_r_max
        if self._rng is None:
            self._rng = np.random.default_rng(self._cfg.seed)
        found = _ransac(t_rel / scale, rho, self._cfg, self._rng)
        if found is None:
            self._boot_failure = "degenerate"
            return
        if int(found[0].sum()) < self._cfg.min_detections:
            self._boot_failure = "too_few_inliers"
            return
        inl = found[0]
        self._tracking = True
        self._t0 = float(buf[0, 0])
        self._n_rej += int((~inl).sum())
        for (t, d, e), keep in zip(self._buffer, inl.tolist()):
            if keep:
                rho_i = d * self._inv_r_max
                tau = (t - self._t0) * self._inv_ts
                self._accept(t, d, tau, rho_i * rho_i, self._base_weight(rho_i), e)
        self._buffer.clear()
        self._solve()

    def _solve(self) -> None:
        """Re-solve the normal equations from the sums; cache θ, the LDLᵀ factors, dmin."""
        sol = _ldl_solve(
            self._s0, self._s1, self._s2, self._s3, self._s4, self._b0, self._b1, self._b2
        )
        if sol is None:
            self._coef = None
            self._dmin_norm = math.nan
            return
        self._coef, self._ldl = sol
        c0, c1, c2 = self._coef
        if c2 > 0.0:
            dmin2 = c0 - c1 * c1 / (4.0 * c2)
            dmin = math.sqrt(dmin2) if dmin2 > 0.0 else 0.0
            self._dmin_norm = dmin if dmin < 1.0 else 1.0
        else:
            self._dmin_norm = math.nan
        # gating σ for the next sample: running weighted RMS (dof-corrected), clipped
        sig = self._sig_floor
        n = self._n_acc
        self._rms_est = math.nan
        if n > 3 and self._b0 > 0.0:
            rss = self._yy - (c0 * self._b0 + c1 * self._b1 + c2 * self._b2)
            self._rms_est = math.sqrt(max(rss, 0.0) / (4.0 * self._b0))
        if self._adaptive and n > 3 and self._b0 > 0.0:
            rss = self._yy - (c0 * self._b0 + c1 * self._b1 + c2 * self._b2)
            if rss > 0.0:
                est = math.sqrt(rss / (4.0 * self._b0) * n / (n - 3))
                sig = est if est < self._sig_cap else self._sig_cap
                if sig < self._sig_floor:
                    sig = self._sig_floor
        self._sig = sig

    def _rss(self) -> float:
        """Σw·(model − y)² from the sums: Σw·y² − θᵀb (clipped at 0 against cancellation)."""
        if self._coef is None:
            return math.nan
        c0, c1, c2 = self._coef
        rss = self._yy - (c0 * self._b0 + c1 * self._b1 + c2 * self._b2)
        return rss if rss > 0.0 else 0.0

    def _rms_m(self) -> float:
        if self._coef is None or not self._b0 > 0.0:
            return math.nan
        return self._cfg.r_max * math.sqrt(self._rss() / (4.0 * self._b0))


CPA_OUTPUTS: tuple[str, ...] = ("dmin_norm", "dmin_std_norm", "cpa_passed", "chi2", "time_to_cpa_s")
"""Columns of :meth:`StreamingCPAEstimator.update`'s output."""

_CLOCK_TOLERANCE_NS = 1_000
"""Gaps are compared with this slack: a gap of exactly ``gap_s`` must not become a new encounter
or not depending on how a clock rounds (sub-microsecond differences are rounding, not time)."""


class StreamingCPAEstimator:
    """Runs :class:`RecursiveCPAFit` over a continuous stream with noise-only gaps.

    A detection arriving more than ``gap_s`` after the previous detection starts a new encounter
    (fresh fit, fresh RNG), so encounters never contaminate each other. Per-sample output is the
    current encounter's dmin_norm; NaN where it has no valid fit, and NaN once more than ``gap_s``
    has passed since the last detection (the encounter is over). Times must be non-decreasing,
    also across calls; the output does not depend on how the stream is chunked.

    Online vocabulary (radarstream.online): ``update(block)`` takes integer-nanosecond times and
    returns ``[T, 5]`` = :data:`CPA_OUTPUTS` (estimate, its σ, whether the fit's CPA is at least
    ``cpa_margin_s`` behind, the fit's :meth:`RecursiveCPAFit.chi2` — NaN without a noise model —
    and the time from the sample to the fit's CPA, negative once it is past). The fit runs on seconds since the stream's first sample, taken as an
    integer difference, so the output does not depend on the clock's origin. ``process`` is the
    older float-seconds spelling of the same loop.
    """

    def __init__(self, config: CPAFitConfig = CPAFitConfig(), gap_s: float = 2.0, *, cpa_margin_s: float = 0.5):
        if not (math.isfinite(gap_s) and gap_s > 0):
            raise ValueError(f"gap_s must be finite and > 0, got {gap_s!r}")
        self._fit = RecursiveCPAFit(config)
        self._gap_ns = int(round(gap_s * 1e9))
        self.cpa_margin_s = float(cpa_margin_s)
        self.reset()

    def reset(self) -> None:
        """Forget the stream."""
        self._fit.reset()
        self._origin_ns: int | None = None  # first detection of the current encounter
        self._last_sample_ns: int | None = None
        self._last_det_ns: int | None = None
        self._last = (math.nan, math.nan, 0.0, math.nan, math.nan)

    def current(self) -> CPAFitResult:
        """The current (or, until the next detection, the last) encounter's fit."""
        return self._fit.estimate()

    def get_state(self) -> dict:
        return {"fit": self._fit.get_state(), "origin_ns": self._origin_ns, "last_sample_ns": self._last_sample_ns,
                "last_det_ns": self._last_det_ns, "last": self._last}

    def set_state(self, state: dict) -> None:
        self._fit.set_state(state["fit"])
        self._origin_ns, self._last_sample_ns = state["origin_ns"], state["last_sample_ns"]
        self._last_det_ns, self._last = state["last_det_ns"], tuple(state["last"])

    def update(self, block) -> np.ndarray:
        """``[T, 5]`` :data:`CPA_OUTPUTS` after each sample of ``block`` (a radarstream.online.Block)."""
        x = np.asarray(block.x)
        return self._run(np.asarray(block.t_ns, np.int64), x[:, 1].astype(np.float64), self.cpa_margin_s,
                         amp=x[:, 0].astype(np.float64))

    def process(
        self, t: np.ndarray, distance: np.ndarray, *, cpa_margin_s: float | None = None
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """dmin_norm after each sample, times in float seconds (and, with ``cpa_margin_s``,
        whether the fit's CPA was passed by that margin at the latest detection). The fit sees
        these times as given; gaps are judged on them rounded to the nanosecond."""
        t_arr, d_arr = _as_1d_pair(t, distance)
        if not np.all(np.isfinite(t_arr)):
            raise ValueError("sample times must be finite")
        margin = self.cpa_margin_s if cpa_margin_s is None else float(cpa_margin_s)
        out = self._run(np.round(t_arr * 1e9).astype(np.int64), d_arr, margin, t_arr)
        return (out[:, 0], out[:, 2] > 0.5) if cpa_margin_s is not None else out[:, 0]

    def process_full(self, t: np.ndarray, distance: np.ndarray) -> np.ndarray:
        """:meth:`process` with every output: ``[T, 5]`` :data:`CPA_OUTPUTS` (float seconds)."""
        t_arr, d_arr = _as_1d_pair(t, distance)
        if not np.all(np.isfinite(t_arr)):
            raise ValueError("sample times must be finite")
        return self._run(np.round(t_arr * 1e9).astype(np.int64), d_arr, self.cpa_margin_s, t_arr)

    def _run(self, t_ns: np.ndarray, d_arr: np.ndarray, margin_s: float, t_s: np.ndarray | None = None,
             amp: np.ndarray | None = None) -> np.ndarray:
        """The loop: only detections enter Python; other samples are filled by vectorised
        forward-fill + gap masking. Without ``t_s`` the fit runs on seconds since its encounter's
        first detection, an integer difference (exact, whatever the clock's origin)."""
        n = t_ns.size
        out = np.full((n, len(CPA_OUTPUTS)), np.nan)
        out[:, 2] = 0.0
        if n == 0:
            return out
        if (self._last_sample_ns is not None and t_ns[0] < self._last_sample_ns) or np.any(np.diff(t_ns) < 0):
            raise ValueError("sample times must be non-decreasing")
        det_idx = np.flatnonzero(np.isfinite(d_arr) & (d_arr >= 0.0))
        det_ns = t_ns[det_idx]
        det_s = None if t_s is None else t_s[det_idx].tolist()
        det_a = [math.nan] * det_idx.size if amp is None else amp[det_idx].tolist()
        res_det = np.empty((det_idx.size, len(CPA_OUTPUTS)))
        fit, limit = self._fit, self._gap_ns + _CLOCK_TOLERANCE_NS
        push = fit._push
        last, start = self._last_det_ns, self._origin_ns
        prev_start = start if start is not None else 0
        det_start = np.empty(det_idx.size, np.int64)
        for k, (tn, di, ai) in enumerate(zip(det_ns.tolist(), d_arr[det_idx].tolist(), det_a)):
            if last is None or tn - last > limit:
                if last is not None:
                    fit.reset()
                start = tn
            ts = (tn - start) * 1e-9 if det_s is None else det_s[k]
            est = push(ts, di, ai)
            # column 4 holds the CPA's time in the fit's clock until the rows are filled
            row = (est, fit.dmin_std_norm() if est == est else math.nan, float(fit.cpa_passed(ts, margin_s)), fit.chi2(),
                   fit.cpa_time())
            det_start[k] = start
            res_det[k] = row
            last = tn
        # each sample takes the outputs of the latest detection at or before it, unless stale
        pos = np.searchsorted(det_idx, np.arange(n), side="right") - 1
        have = pos >= 0
        if det_idx.size:
            src_ns = np.where(have, det_ns[np.maximum(pos, 0)], self._last_det_ns or 0)
            src = np.where(have[:, None], res_det[np.maximum(pos, 0)], np.asarray(self._last))
        else:
            src_ns = np.full(n, self._last_det_ns or 0, np.int64)
            src = np.broadcast_to(np.asarray(self._last), (n, len(CPA_OUTPUTS)))
        known = have | (self._last_det_ns is not None)
        fresh = known & (t_ns - src_ns <= limit)
        out[fresh] = src[fresh]
        # the CPA's time in the fit's clock -> time to it from each sample (integer ns differences)
        if t_s is None:
            starts = np.where(have, det_start[np.maximum(pos, 0)] if det_idx.size else 0, prev_start)
            out[:, 4] -= (t_ns - starts) * 1e-9
        else:
            out[:, 4] -= t_s
        self._last_sample_ns = int(t_ns[-1])
        if det_idx.size:
            self._last_det_ns, self._origin_ns = int(det_ns[-1]), start
            self._last = tuple(float(v) for v in res_det[-1])
        return out
