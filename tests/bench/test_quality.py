"""The hybrid estimator never does worse than its better part (shipped weights, small seeded set)."""

import numpy as np
import pytest

from models.bundle import load_bundle
from bench.quality import evaluate_models, held_out


@pytest.fixture(scope="module")
def estimates():
    data = held_out(60, seed=20_001)
    return evaluate_models(load_bundle(), data), data


def _mae(est, data, name):
    truth = np.array([e.dmin_norm for e in data.encounters])
    return float(np.mean(np.abs(est.by_method[name] - truth))) * data.config.r_max_m


def test_hybrid_is_never_worse_than_its_better_part(estimates):
    est, data = estimates
    whole = _mae(est, data, "hybrid, whole encounter (classical, else bidirectional)")
    classical = _mae(est, data, "classical LS, whole encounter (prior mean if it fails)")
    bidir = _mae(est, data, "bidirectional LSTM @ CPA (512-sample window)")
    assert whole <= min(classical, bidir) + 1e-9
    online = _mae(est, data, "hybrid (online) @ CPA+1 s")
    classical_online = _mae(est, data, "classical LS, causal @ CPA+1 s (prior mean if no fit)")
    causal = _mae(est, data, "causal LSTM @ CPA+1 s")
    assert online <= min(classical_online, causal) + 1e-9


def test_classical_failures_are_reported_not_raised(estimates):
    est, data = estimates
    failed = est.failed["classical LS, whole encounter"]
    assert failed.dtype == bool and failed.shape == (len(data.encounters),)
    values = est.by_method["classical LS, whole encounter (successes only)"]
    assert np.array_equal(np.isnan(values), failed)


def test_shifted_radar_estimates_are_in_the_data_units_and_coverage_is_reported(tiny_weights):
    """A model declared for R_max 2000 m reports Dmin re 2000 m; the classical fit uses the same
    R_max; a legacy model (no std) has no coverage row."""
    from bench.quality import coverage_table, declared_bundle, shifted_radars
    from streamer.sim.simulator import RadarConfig

    radar = dict(shifted_radars())["R_max 2000 m"]
    assert radar.r_max_m == 2000.0
    bundle = declared_bundle(tiny_weights, radar)
    assert bundle.r_max_m == 2000.0
    data = held_out(12, radar, seed=20_002)
    est = evaluate_models(bundle, data)
    truth = np.array([e.dmin_norm for e in data.encounters])
    cls = est.by_method["classical LS, whole encounter (successes only)"]
    ok = np.isfinite(cls)
    assert ok.sum() >= 6 and np.median(np.abs(cls[ok] - truth[ok])) * 2000 < 10.0  # metres re 2000 m
    table = coverage_table(est, data)
    assert "classical" in table and "causal LSTM" not in table  # legacy LSTMs predict no std
