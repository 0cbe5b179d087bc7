"""Tests for the classical CPA (miss-distance) fits in models/classical.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.classical import (
    CPAFitConfig,
    CPAFitResult,
    RecursiveCPAFit,
    StreamingCPAEstimator,
    fit_cpa,
    fit_cpa_weighted_ls,
    with_fallback,
)

EPOCH = 1.7e9  # Unix-epoch-scale clock: squaring it naively destroys all precision
DT = 0.05  # 20 Hz dwell


def make_pass(
    dmin: float,
    v: float,
    t0_rel: float,
    *,
    epoch: float = EPOCH,
    n: int = 300,
    sigma: float = 0.0,
    p_outlier: float = 0.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Straight pass sampled at 20 Hz from ``epoch``; CPA at epoch + t0_rel.

    True ranges use the *stored* float64 times (t − epoch is exact by Sterbenz), so noise-free
    data are exactly consistent with the times the fit sees.
    """
    rng = np.random.default_rng(seed)
    t = epoch + np.arange(n) * DT
    u = (t - epoch) - t0_rel
    r = np.sqrt(dmin**2 + (v * u) ** 2)
    d = np.abs(r + sigma * rng.standard_normal(n))
    out = rng.random(n) < p_outlier
    d[out] = rng.uniform(0.0, 1000.0, int(out.sum()))
    return t, d


def run_recursive(
    t: np.ndarray, d: np.ndarray, config: CPAFitConfig = CPAFitConfig()
) -> RecursiveCPAFit:
    fit = RecursiveCPAFit(config)
    for ti, di in zip(t, d):
        fit.update(ti, di)
    return fit


def assert_same_fit(rec: CPAFitResult, batch: CPAFitResult, span: float, rtol: float) -> None:
    assert rec.ok == batch.ok and rec.failure == batch.failure
    assert rec.n_inliers == batch.n_inliers
    if not batch.ok:
        return
    atol_m = 1e-9 * 1000.0  # only matters when both clipped Dmin² < 0 to 0
    assert rec.dmin_m == pytest.approx(batch.dmin_m, rel=rtol, abs=atol_m)
    assert rec.speed == pytest.approx(batch.speed, rel=rtol)
    assert abs(rec.t_cpa - batch.t_cpa) <= rtol * max(span, abs(rec.t_cpa - batch.t_ref))
    # the whole curve, about a common reference, relative to its size on the data
    ra, rb, rc = rec.coefficients_about(batch.t_ref)
    scale = abs(batch.a) * span**2 + abs(batch.b) * span + abs(batch.c)
    diff = abs(ra - batch.a) * span**2 + abs(rb - batch.b) * span + abs(rc - batch.c)
    assert diff <= rtol * scale


# ---------------------------------------------------------------------------------------------
# noise-free recovery

GEOMETRIES = [
    # dmin, v, t0 relative to the first sample (window is 0..15 s)
    (150.0, 40.0, 7.5),  # CPA mid-window
    (20.0, 60.0, 3.0),  # near miss, CPA early
    (600.0, 15.0, 12.0),  # slow, far
    (300.0, 30.0, -8.0),  # CPA before the window: receding only
    (80.0, 50.0, 25.0),  # CPA after the window: approaching only
]


@pytest.mark.parametrize("epoch", [0.0, EPOCH])
@pytest.mark.parametrize(("dmin", "v", "t0_rel"), GEOMETRIES)
def test_noise_free_recovery_all_solvers(
    epoch: float, dmin: float, v: float, t0_rel: float
) -> None:
    t, d = make_pass(dmin, v, t0_rel, epoch=epoch)
    t_cpa = epoch + t0_rel
    rec = run_recursive(t, d).estimate()
    for res in (fit_cpa(t, d), fit_cpa_weighted_ls(t, d), rec):
        assert res.ok and res.failure is None
        assert res.dmin_m == pytest.approx(dmin, rel=1e-6)
        assert res.dmin_norm == pytest.approx(dmin / 1000.0, rel=1e-6)
        assert res.speed == pytest.approx(v, rel=1e-6)
        assert abs(res.t_cpa - t_cpa) < 1e-5  # 1.7e9 s holds ~2.4e-7 s resolution
        assert res.n_detections == t.size and res.n_inliers == t.size
        assert res.rms_residual_m < 1e-3
        # R² = v²(t − t_cpa)² + Dmin², so about t_cpa the coefficients are (v², 0, Dmin²)
        a, b, c = res.coefficients_about(t_cpa)
        assert a == pytest.approx(v * v, rel=1e-6)
        assert abs(b) < 1e-4 * v * v * 15.0
        assert c == pytest.approx(dmin * dmin, rel=1e-5)


@settings(max_examples=30, deadline=None)
@given(
    dmin=st.floats(10.0, 900.0),
    v=st.floats(5.0, 60.0),
    t0_rel=st.floats(-10.0, 40.0),
    epoch=st.sampled_from([0.0, 1.0e6, EPOCH, 1.9e9]),
)
def test_noise_free_recovery_property(dmin: float, v: float, t0_rel: float, epoch: float) -> None:
    t, d = make_pass(dmin, v, t0_rel, epoch=epoch, n=600)
    for res in (fit_cpa(t, d), fit_cpa_weighted_ls(t, d), run_recursive(t, d).estimate()):
        assert res.ok
        assert res.dmin_m == pytest.approx(dmin, rel=1e-6)
        assert res.speed == pytest.approx(v, rel=1e-6)
        assert abs(res.t_cpa - (epoch + t0_rel)) < 1e-4


def test_negative_dmin2_is_clipped_not_a_failure() -> None:
    # R² = v²u² − K: a valid parabola whose minimum is below zero (noise near a collision)
    t = EPOCH + np.arange(200) * DT
    u = (t - EPOCH) + 5.0
    d = np.sqrt(40.0**2 * u**2 - 10_000.0)
    for res in (fit_cpa(t, d), fit_cpa_weighted_ls(t, d), run_recursive(t, d).estimate()):
        assert res.ok and res.failure is None
        assert res.dmin_m == 0.0 and res.dmin_norm == 0.0
        assert res.speed == pytest.approx(40.0, rel=1e-6)


def test_dmin_norm_is_clipped_to_one() -> None:
    t, d = make_pass(1500.0, 30.0, 7.5)
    res = fit_cpa(t, d, CPAFitConfig(r_max=1000.0))
    assert res.ok and res.dmin_m == pytest.approx(1500.0, rel=1e-6) and res.dmin_norm == 1.0


# ---------------------------------------------------------------------------------------------
# noise and outliers


def test_robust_fit_with_noise_and_outliers_beats_plain_ls() -> None:
    dmin = 150.0
    err_robust, err_ls, err_rec = [], [], []
    for seed in range(20):
        t, d = make_pass(dmin, 40.0, 7.5, sigma=5.0, p_outlier=0.05, seed=seed)
        err_robust.append(fit_cpa(t, d).dmin_m - dmin)
        err_ls.append(fit_cpa_weighted_ls(t, d, np.ones_like(d)).dmin_m - dmin)
        err_rec.append(run_recursive(t, d).estimate().dmin_m - dmin)
    med_robust = float(np.median(np.abs(err_robust)))
    med_ls = float(np.median(np.abs(err_ls)))
    assert med_robust < 3.0
    assert float(np.median(np.abs(err_rec))) < 3.0
    assert med_ls > 3.0 * med_robust
    assert max(np.abs(err_robust)) < 10.0  # no seed breaks down


def test_robust_fit_reports_inliers_and_sigma_scale() -> None:
    t, d = make_pass(150.0, 40.0, 7.5, sigma=5.0, p_outlier=0.05, seed=3)
    res = fit_cpa(t, d)
    n_bad = int(np.sum(np.abs(d - make_pass(150.0, 40.0, 7.5)[1]) > 15.0))
    assert res.n_detections == 300
    assert 300 - 2 * n_bad <= res.n_inliers <= 300 - n_bad + 3
    assert 3.0 < res.rms_residual_m < 6.0


def test_inverse_r2_weights_beat_uniform_on_r2() -> None:
    # range noise is constant, so R² noise grows with R; 1/R² weighting is the efficient LS
    dmin, errs_w, errs_u = 100.0, [], []
    for seed in range(40):
        t, d = make_pass(dmin, 50.0, 15.0, n=600, sigma=5.0, seed=1000 + seed)
        errs_w.append(fit_cpa_weighted_ls(t, d).dmin_m - dmin)
        errs_u.append(fit_cpa_weighted_ls(t, d, np.ones_like(d)).dmin_m - dmin)
    assert np.sqrt(np.mean(np.square(errs_w))) < 0.8 * np.sqrt(np.mean(np.square(errs_u)))


# ---------------------------------------------------------------------------------------------
# failures are reported, never raised


@pytest.mark.parametrize("n_det", [0, 2, 5])
def test_too_few_detections(n_det: int) -> None:
    t, d = make_pass(150.0, 40.0, 7.5, n=40)
    d[n_det:] = -1.0
    rec = run_recursive(t, d).estimate()
    for res in (fit_cpa(t, d), fit_cpa_weighted_ls(t, d), rec):
        assert not res.ok and res.failure == "too_few_detections"
        assert res.n_detections == n_det
        assert math.isnan(res.dmin_m) and math.isnan(res.dmin_norm) and math.isnan(res.t_cpa)
    assert with_fallback(fit_cpa(t, d), 0.3) == 0.3


def test_all_no_detection_and_empty_inputs() -> None:
    t = EPOCH + np.arange(100) * DT
    d = np.full(100, -1.0)
    for tt, dd in ((t, d), (t[:0], d[:0])):
        assert fit_cpa(tt, dd).failure == "too_few_detections"
        assert fit_cpa_weighted_ls(tt, dd).failure == "too_few_detections"
        assert run_recursive(tt, dd).estimate().failure == "too_few_detections"
    out = StreamingCPAEstimator().process(t, d)
    assert out.shape == (100,) and np.all(np.isnan(out))


def test_nan_ranges_are_not_detections() -> None:
    t, d = make_pass(150.0, 40.0, 7.5, n=100)
    d[::2] = np.nan
    res = fit_cpa(t, d)
    assert res.ok and res.n_detections == 50 and res.dmin_m == pytest.approx(150.0, rel=1e-6)


def test_receding_concave_data_is_non_positive_curvature() -> None:
    # receding only (R grows throughout) but R² concave: a < 0, no closest approach exists
    t = EPOCH + np.arange(200) * DT
    u = t - EPOCH
    d = np.sqrt(1e5 + 2e4 * u - 50.0 * u**2)
    assert np.all(np.diff(d) > 0)
    rec = run_recursive(t, d).estimate()
    for res in (fit_cpa(t, d), fit_cpa_weighted_ls(t, d), rec):
        assert not res.ok and res.failure == "non_positive_curvature"
        assert math.isnan(res.dmin_m) and math.isnan(res.speed) and math.isnan(res.t_cpa)
        assert res.a < 0  # coefficients are still reported for diagnosis
        assert res.coefficients_about(EPOCH)[0] == pytest.approx(-50.0, rel=1e-6)
        assert res.coefficients_about(EPOCH)[2] == pytest.approx(1e5, rel=1e-6)


def test_two_distinct_times_is_degenerate() -> None:
    t = np.array([EPOCH] * 4 + [EPOCH + 1.0] * 4)
    d = np.array([100.0, 100.0, 100.0, 100.0, 90.0, 90.0, 90.0, 90.0])
    assert fit_cpa(t, d).failure == "degenerate"
    assert fit_cpa_weighted_ls(t, d).failure == "degenerate"
    assert run_recursive(t, d).estimate().failure == "degenerate"


def test_programmer_errors_raise() -> None:
    t, d = make_pass(150.0, 40.0, 7.5, n=20)
    with pytest.raises(ValueError):
        fit_cpa(t, d[:-1])
    with pytest.raises(ValueError):
        fit_cpa_weighted_ls(t, d, np.ones(3))
    with pytest.raises(ValueError):
        fit_cpa(t.reshape(4, 5), d.reshape(4, 5))
    with pytest.raises(ValueError):
        CPAFitConfig(min_detections=2)
    with pytest.raises(ValueError):
        CPAFitConfig(sigma_m=0.0)
    with pytest.raises(ValueError):
        StreamingCPAEstimator().process(t[::-1], d)


def test_with_fallback() -> None:
    t, d = make_pass(150.0, 40.0, 7.5)
    assert with_fallback(fit_cpa(t, d), 0.3) == pytest.approx(0.15, rel=1e-6)
    assert with_fallback(fit_cpa(t[:3], d[:3]), 0.3) == 0.3


# ---------------------------------------------------------------------------------------------
# recursive fit


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recursive_equals_batch_weighted_ls_on_accepted_samples(seed: int) -> None:
    t, d = make_pass(60.0 + 100.0 * seed, 30.0, 6.0, sigma=5.0, p_outlier=0.08, seed=seed)
    fit = RecursiveCPAFit(keep_history=True)
    checked = 0
    for ti, di in zip(t, d):
        res = fit.update(ti, di)
        if res.n_inliers >= fit.config.min_detections:
            ht, hd, hw = fit.history()
            assert ht.size == res.n_inliers
            batch = fit_cpa_weighted_ls(ht, hd, hw)
            assert_same_fit(res, batch, span=float(ht.max() - ht.min()), rtol=1e-9)
            checked += 1
    assert checked > 250
    assert fit.n_rejected > 0  # gating was exercised ...
    _, hd, hw = fit.history()
    base = 1.0 / (hd / 1000.0) ** 2
    assert np.any(hw < 0.999 * base)  # ... and so was Huber down-weighting
    assert abs(fit.estimate().dmin_m - (60.0 + 100.0 * seed)) < 5.0


def test_recursive_without_gating_equals_batch_on_all_detections() -> None:
    cfg = CPAFitConfig(inlier_k=1e9, huber_delta=1e9)
    t, d = make_pass(120.0, 35.0, 9.0, sigma=5.0, seed=7)
    d[::13] = -1.0
    fit = RecursiveCPAFit(cfg)
    for k in range(t.size):
        res = fit.update(t[k], d[k])
        if res.n_detections >= cfg.min_detections:
            batch = fit_cpa_weighted_ls(t[: k + 1], d[: k + 1], config=cfg)
            assert res.n_inliers == res.n_detections
            assert_same_fit(res, batch, span=float(t[k] - t[0]), rtol=1e-9)


def test_recursive_ignores_false_detection_before_encounter() -> None:
    t, d = make_pass(200.0, 40.0, 7.5, sigma=5.0, n=300, seed=4)
    d[0] = 3.0  # false detection at tiny range: a 1/R² weight would make it dominate
    d[2] = 990.0
    fit = run_recursive(t, d)
    assert fit.n_rejected >= 2
    assert abs(fit.estimate().dmin_m - 200.0) < 5.0


def test_recursive_recovers_from_wrong_lock() -> None:
    # 20 samples of one track, then (no gap) a different one: after max_consecutive_rejections
    # the fit must restart on the new track rather than reject it forever
    t1, d1 = make_pass(400.0, 20.0, 0.0, n=20)
    t2, d2 = make_pass(100.0, 40.0, 7.5, n=300, epoch=float(t1[-1] + DT))
    fit = run_recursive(np.concatenate([t1, t2]), np.concatenate([d1, d2]))
    assert fit.estimate().ok
    assert fit.estimate().dmin_m == pytest.approx(100.0, rel=1e-6)


def test_recursive_reset_and_estimate_are_consistent() -> None:
    t, d = make_pass(150.0, 40.0, 7.5, sigma=5.0, p_outlier=0.05, seed=5)
    fit = run_recursive(t, d)
    first = fit.estimate()
    assert first == fit.estimate()
    fit.reset()
    assert fit.estimate().failure == "too_few_detections" and fit.n_rejected == 0
    for ti, di in zip(t, d):
        fit.update(ti, di)
    assert fit.estimate() == first


# ---------------------------------------------------------------------------------------------
# streaming


def two_encounters() -> tuple[np.ndarray, np.ndarray, int]:
    t1, d1 = make_pass(250.0, 40.0, 5.0, sigma=5.0, p_outlier=0.05, seed=11, n=200)
    gap_n = 100  # 5 s without detections, except one isolated false detection mid-gap
    tg = t1[-1] + DT * (1 + np.arange(gap_n))
    dg = np.full(gap_n, -1.0)
    dg[gap_n // 2] = 432.0
    t2, d2 = make_pass(90.0, 30.0, 6.0, sigma=5.0, p_outlier=0.05, seed=12, n=240)
    t2 = t2 - t2[0] + tg[-1] + DT
    return np.concatenate([t1, tg, t2]), np.concatenate([d1, dg, d2]), t1.size + gap_n


def test_streaming_encounters_are_independent() -> None:
    t, d, start2 = two_encounters()
    out = StreamingCPAEstimator().process(t, d)
    alone = StreamingCPAEstimator().process(t[start2:], d[start2:])
    np.testing.assert_array_equal(out[start2:], alone)
    assert abs(out[199] * 1000.0 - 250.0) < 10.0
    assert abs(out[-1] * 1000.0 - 90.0) < 10.0
    gap_t = t[200:start2]
    stale = gap_t - t[199] > 2.0
    assert np.all(np.isnan(out[200:start2][stale]))
    assert np.all(out[200:start2][~stale] == out[199])


def test_streaming_matches_recursive_within_an_encounter() -> None:
    t, d = make_pass(150.0, 40.0, 7.5, sigma=5.0, p_outlier=0.05, seed=8)
    out = StreamingCPAEstimator().process(t, d)
    fit = RecursiveCPAFit()
    expected = np.array([fit.update(ti, di).dmin_norm for ti, di in zip(t, d)])
    np.testing.assert_array_equal(out, expected)


def test_streaming_is_chunking_invariant() -> None:
    t, d, _ = two_encounters()
    whole = StreamingCPAEstimator().process(t, d)
    est = StreamingCPAEstimator()
    cuts = [0, 1, 7, 150, 199, 200, 260, 333, 420, t.size]
    parts = [est.process(t[a:b], d[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    with pytest.raises(ValueError):
        est.process(t[:5], d[:5])  # time went backwards across calls


# ---------------------------------------------------------------------------------------------
# determinism and speed


def test_determinism_under_seed() -> None:
    t, d = make_pass(150.0, 40.0, 7.5, n=500, sigma=5.0, p_outlier=0.2, seed=9)
    a = fit_cpa(t, d)
    assert fit_cpa(t, d) == a
    assert fit_cpa(t, d, rng=np.random.default_rng(0)) == a  # default rng is default_rng(seed)
    cfg = CPAFitConfig(seed=123)
    assert fit_cpa(t, d, cfg) == fit_cpa(t, d, cfg, rng=np.random.default_rng(123))
    assert run_recursive(t, d).estimate() == run_recursive(t, d).estimate()
    s1 = StreamingCPAEstimator().process(t, d)
    np.testing.assert_array_equal(s1, StreamingCPAEstimator().process(t, d))


def test_junk_detections_find_no_consensus() -> None:
    t = EPOCH + np.arange(8) * DT
    d = np.array([100.0, 900.0, 150.0, 850.0, 200.0, 800.0, 120.0, 950.0])
    assert fit_cpa(t, d).failure == "too_few_inliers"
    fit = run_recursive(t, d)
    assert fit.estimate().failure == "too_few_inliers"
    assert fit.n_rejected == 0  # nothing is judged before a consensus exists
    assert np.all(np.isnan(StreamingCPAEstimator().process(t, d)))


def at_(t: np.ndarray, s: float) -> int:
    return int(np.searchsorted(t, s))


def _bright_pass(dmin_m: float = 80.0, speed: float = 30.0, rate: float = 20.0):
    t = np.arange(-15.0, 15.0, 1.0 / rate)
    rng = np.random.default_rng(7)
    distance = np.sqrt(dmin_m**2 + (speed * t) ** 2) + rng.normal(0.0, 2.0, t.shape)
    return t, np.stack([np.full_like(t, 30.0), distance], axis=1).astype(np.float32)


def test_the_hybrid_takes_the_fit_before_the_cpa_when_its_sigma_is_the_smaller():
    """On the approach the fit of a straight, bright pass is far more precise than the LSTM: the
    σ comparison takes it before the CPA rule can (1 s before the CPA), within a few metres of
    the truth; with ``compare_std=False`` (the first rule) the hybrid is still the LSTM there,
    and with a large extrapolation allowance (a fit that far from its CPA is not trusted) too."""
    from models.hybrid import HybridRule, OnlineHybrid
    from radarstream.online import Block

    t, x = _bright_pass()
    lstm = np.stack([np.full(t.shape, 0.3), np.full(t.shape, 0.08)], axis=1)  # 300 ± 80 m: poor
    i = at_(t, -1.0)
    new = OnlineHybrid(CPAFitConfig()).update(Block.regular(x, period_ns=50_000_000, estimate=lstm))
    old = OnlineHybrid(CPAFitConfig(), rule=HybridRule(compare_std=False)).update(
        Block.regular(x, period_ns=50_000_000, estimate=lstm))
    assert abs(new[i, 2] * 1000.0 - 80.0) < 10.0
    # the hybrid's σ is the fit's, widened for the second still to go to its CPA (20 m/s), and below the LSTM's
    assert new[i, 3] == pytest.approx(np.hypot(new[i, 1], 0.020 * new[i, 4]), rel=1e-9) and new[i, 3] < 0.08
    assert old[i, 2] == pytest.approx(0.3)
    wide = OnlineHybrid(CPAFitConfig(), rule=HybridRule(extrapolation_m_per_s=200.0)).update(
        Block.regular(x, period_ns=50_000_000, estimate=lstm))
    assert wide[i, 2] == pytest.approx(0.3) and abs(wide[at_(t, -0.1), 2] * 1000.0 - 80.0) < 10.0
    # an LSTM without σ keeps the first rule
    plain = OnlineHybrid(CPAFitConfig()).update(Block.regular(x, period_ns=50_000_000, estimate=lstm[:, 0]))
    assert plain[i, 2] == pytest.approx(0.3)


@pytest.mark.parametrize("lstm_std", [None, 0.05], ids=["lstm-without-sigma", "lstm-sigma-50m"])
def test_a_fit_restarted_on_the_outgoing_leg_is_not_trusted_by_the_hybrid(lstm_std) -> None:
    """The known failure of issue 13: a target that changes course after its CPA makes the
    online fit restart on the outgoing leg; that fit matches its few recent points well, and its
    vertex (an extrapolated Dmin, hundreds of metres off) lies before them. The hybrid must keep
    the LSTM's estimate then, and still use the fit that observed its own vertex. With an LSTM σ
    (50 m) the restarted fit's own σ falls below it (5–16 m): the σ comparison must not let it in
    (its CPA lies more than ``trust_past_cpa_s`` behind, vertex unobserved)."""
    from models.hybrid import OnlineHybrid
    from radarstream.online import Block

    rate = 20.0
    t = np.arange(-12.0, 16.0, 1.0 / rate)
    before = np.sqrt(50.0**2 + (40.0 * t) ** 2)  # the pass: Dmin 50 m at t = 0
    after = np.sqrt(400.0**2 + (90.0 * (t + 6.0)) ** 2)  # from t = 4 s another geometry, CPA at -6 s
    rng = np.random.default_rng(3)
    distance = np.where(t < 4.0, before, after) + rng.normal(0.0, 1.0, t.shape)
    x = np.stack([np.full_like(t, 1e3), distance], axis=1).astype(np.float32)  # bright: 60 dB
    lstm = np.full(t.shape, 0.123)
    estimate = lstm if lstm_std is None else np.stack([lstm, np.full(t.shape, lstm_std)], axis=1)
    blk = Block.regular(x, period_ns=50_000_000, estimate=estimate)
    out = OnlineHybrid(CPAFitConfig()).update(blk)
    classical, hybrid = out[:, 0] * 1000.0, out[:, 2]
    if lstm_std is not None:
        assert (out[at_(t, 8.0):, 1] < lstm_std).any()  # the case the σ rule must refuse
    at = lambda s: int(np.searchsorted(t, s))  # noqa: E731
    assert abs(classical[at(3.5)] - 50.0) < 5.0 and abs(hybrid[at(3.5)] * 1000.0 - 50.0) < 5.0
    assert classical[-1] > 300.0  # the restarted fit: well-posed, wrong
    np.testing.assert_array_equal(hybrid[at(8.0):], lstm[at(8.0):])  # ... and not used
    if lstm_std is not None:
        return
    with pytest.raises(ValueError, match="vertex_slack_s"):
        CPAFitConfig(vertex_slack_s=-1.0)
