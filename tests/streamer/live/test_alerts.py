"""Near-miss alerts: one per encounter, with hysteresis, from the estimate and its uncertainty."""

from __future__ import annotations

import numpy as np
import pytest

from radarstream.checks import check_estimator
from radarstream.online import Block
from streamer.live.alerts import AlertConfig, NearMissDetector, near_miss_probability

CFG = AlertConfig(dmin_m=100.0, confidence=0.9, clear_confidence=0.5)


def block(d_m, std_m, inside) -> Block:
    d_m, std_m, inside = (np.broadcast_to(np.asarray(v, np.float64), (len(d_m),)) for v in (d_m, std_m, inside))
    x = np.zeros((len(d_m), 2), np.float32)
    return Block.regular(x, estimate=np.stack([d_m, std_m, inside], axis=1))


def pass_(n: int, start_m: float, end_m: float, std_m: float = 10.0, tail: int = 30) -> Block:
    """An encounter whose estimate converges from start_m to end_m, then no target for ``tail``."""
    d = np.concatenate([np.linspace(start_m, end_m, n), np.full(tail, np.nan)])
    inside = np.concatenate([np.ones(n), np.zeros(tail)])
    return block(d, np.full(n + tail, std_m), inside)


def test_probability_is_gaussian_and_a_step_without_sigma() -> None:
    p = near_miss_probability(np.array([100.0, 80.0, 120.0, 80.0, np.nan]), np.array([10.0, 10.0, 10.0, np.nan, 5.0]), 100.0)
    assert p[0] == pytest.approx(0.5) and p[1] == pytest.approx(0.97725, abs=1e-4) and p[2] == pytest.approx(0.02275, abs=1e-4)
    assert p[3] == 1.0 and np.isnan(p[4])


def test_a_near_pass_raises_exactly_one_alert_and_clears_when_it_is_over() -> None:
    out = NearMissDetector(CFG).update(pass_(200, 300.0, 60.0))
    assert list(np.flatnonzero(out[:, 2] == 1)) == [int(np.argmax(out[:, 0] > 0.9))]
    assert (out[:, 2] == -1).sum() == 1 and out[200, 2] == -1  # cleared when the estimate ends
    fired = int(np.flatnonzero(out[:, 2] == 1)[0])
    d_at = np.linspace(300.0, 60.0, 200)[fired]
    assert 100.0 - d_at == pytest.approx(10.0 * 1.2816, abs=2.5)  # margin ≈ z₀.₉ σ


def test_hysteresis_one_alert_per_encounter_and_a_new_one_for_the_next() -> None:
    wobble = 100.0 - 14.0 * np.sin(np.linspace(0, 12 * np.pi, 300))  # crosses p = 0.9 many times
    b = block(np.concatenate([wobble, np.full(20, np.nan), np.full(50, 50.0)]), 10.0,
              np.concatenate([np.ones(300), np.zeros(20), np.ones(50)]))
    out = NearMissDetector(CFG).update(b)
    assert (out[:, 2] == 1).sum() == 2  # one in the wobbling encounter, one in the next
    assert (out[:, 2] == -1).sum() <= 2
    far = NearMissDetector(CFG).update(pass_(200, 400.0, 150.0))
    assert not (far[:, 2] != 0).any()


def test_detector_conforms() -> None:
    b = block(np.concatenate([np.linspace(300, 60, 300), np.full(40, np.nan), np.linspace(90, 130, 200)]), 12.0,
              np.concatenate([np.ones(300), np.zeros(40), np.ones(200)]))
    check_estimator(lambda: NearMissDetector(CFG), b, rtol=0, atol=0)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        AlertConfig(dmin_m=-5.0)
    with pytest.raises(ValueError, match="clear_confidence"):
        AlertConfig(dmin_m=50.0, confidence=0.4, clear_confidence=0.5)


def test_alert_quality_bench_counts_consistently():
    """bench quality's alert table: recall over near encounters, lead times only for alerted near
    ones, false alarms = alerted far encounters + alerts on noise (a seeded held-out set)."""
    from bench.alerts import alert_outcomes, alert_table
    from bench.quality import held_out
    from models.bundle import load_bundle
    from streamer.sim.simulator import RadarConfig

    bundle = load_bundle()
    data = held_out(60, RadarConfig(dmin_range_norm=(0.02, 0.3)), 20_001)
    o = alert_outcomes(bundle, data, threshold_m=150.0)
    near, alerted, lead = o["near"], o["alerted"], o["lead_s"]
    assert near.sum() > 5 and (near & alerted).sum() > 0
    assert np.array_equal(np.isfinite(lead), near & alerted)
    assert int(o["false_alarms"]) == int((alerted & ~near).sum()) + int(o["noise_alarms"])
    table = alert_table(bundle, data, 150.0)
    assert "recall" in table and "lead time" in table and "false alarms per hour" in table
