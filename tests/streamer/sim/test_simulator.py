import numpy as np
import pytest

from streamer.sim.simulator import (
    MANOEUVRING, NO_DETECTION, RadarConfig, StreamSimulator, manoeuvring_track, radar_equation_snr,
    receive, simulate_encounter, simulate_stream, straight_range,
)


def test_noise_free_range_has_its_minimum_dmin_at_t0():
    t = np.linspace(-10, 10, 20001)
    r = straight_range(t, dmin=123.0, speed=50.0, t0=1.5)
    k = np.argmin(r)
    assert r[k] == pytest.approx(123.0, abs=1e-3)
    assert t[k] == pytest.approx(1.5, abs=1e-3)


def test_received_power_follows_r_minus_4_without_noise_or_fluctuation():
    cfg = RadarConfig(swerling=0)
    ranges = np.array([100.0, 200.0, 400.0])
    snr = radar_equation_snr(ranges, 1.0, cfg)
    assert snr[0] / snr[1] == pytest.approx(16.0)
    assert snr[1] / snr[2] == pytest.approx(16.0)
    # amplitude without noise is sqrt(SNR) (noise power normalised to 1): amplitude ∝ R^-2
    amp = np.sqrt(snr)
    assert amp[0] / amp[1] == pytest.approx(4.0)


def test_amplitude_is_magnitude_of_target_plus_unit_noise():
    cfg = RadarConfig()
    rng = np.random.default_rng(0)
    noise_only = receive(np.zeros(200_000), None, cfg, rng)
    assert np.sqrt(np.mean(noise_only[:, 0].astype(np.float64) ** 2)) == pytest.approx(1.0, abs=0.01)
    # false alarms at the configured rate, with uniform ranges
    det = noise_only[:, 1] >= 0
    assert det.mean() == pytest.approx(cfg.pfa, rel=0.2)
    strong = receive(np.full(10_000, 1e4), np.full(10_000, 300.0), cfg, rng)
    assert np.mean(strong[:, 0]) == pytest.approx(100.0, rel=0.01)
    assert np.median(strong[:, 1]) == pytest.approx(300.0, abs=1.0)


def test_seeds_reproduce_and_block_sizes_do_not_matter():
    a = StreamSimulator(RadarConfig(), seed=7)
    parts = [a.read(n) for n in (1, 13, 500, 2048, 3)]
    b = StreamSimulator(RadarConfig(), seed=7).read(sum(p.samples.shape[0] for p in parts))
    assert np.array_equal(np.concatenate([p.samples for p in parts]), b.samples)
    assert np.array_equal(np.concatenate([p.truth for p in parts]), b.truth, equal_nan=True)
    c = StreamSimulator(RadarConfig(), seed=8).read(b.samples.shape[0])
    assert not np.array_equal(b.samples, c.samples)


def test_labels_are_consistent():
    cfg = RadarConfig()
    block, encs = simulate_stream(40_000, cfg, seed=3)
    assert len(encs) > 20
    inside = block.in_encounter
    assert np.all(np.isnan(block.dmin_norm[~inside]))
    assert np.all(block.encounter_id[~inside] == -1)
    for e in encs:
        sl = slice(e.start, e.stop)
        assert np.all(block.encounter_id[sl] == e.index)
        assert np.allclose(block.dmin_norm[sl], e.dmin_norm)
        assert np.all(block.true_range_m[sl] <= cfg.r_max_m + 1e-3)
        # the true range's minimum sits at the CPA and is Dmin (within one dwell of motion)
        assert np.argmin(block.true_range_m[sl]) + e.start == e.cpa_index
        assert block.true_range_m[e.cpa_index] >= e.dmin_m - 1e-3
        assert block.true_range_m[e.cpa_index] <= e.dmin_m + e.speed_mps / cfg.rate_hz
        assert np.all(block.cpa_time_s[sl] == pytest.approx(e.cpa_index / cfg.rate_hz))
    # no detection is encoded as -1, detections as ranges within [0, R_max]-ish
    d = block.samples[:, 1]
    assert set(np.unique(d[d < 0])) <= {NO_DETECTION}


def test_far_passes_are_faint():
    encs = simulate_stream(200_000, RadarConfig(), seed=4)[1]
    dmin = np.array([e.dmin_m for e in encs])
    snr = np.array([e.peak_snr_db for e in encs])
    assert np.corrcoef(np.log10(dmin), snr)[0, 1] < -0.8


def test_manoeuvring_passes_break_the_straight_line_model():
    rng = np.random.default_rng(1)
    enc, samples, truth = simulate_encounter(MANOEUVRING, rng)
    assert enc.manoeuvre in ("turn", "accelerate")
    t = np.linspace(-5, 5, 101)
    straight = manoeuvring_track(t, 200.0, 60.0, 0.0, 0.0, 0.0)
    assert np.allclose(np.hypot(*straight.T), straight_range(t, 200.0, 60.0, 0.0), atol=1e-6)
    turning = manoeuvring_track(t, 200.0, 60.0, 0.0, np.deg2rad(10), 0.0)
    assert np.max(np.abs(np.hypot(*turning.T) - straight_range(t, 200.0, 60.0, 0.0))) > 5.0


def test_bad_config_is_refused():
    with pytest.raises(ValueError):
        RadarConfig(pfa=0.0)
    with pytest.raises(ValueError):
        RadarConfig(dmin_range_norm=(0.5, 1.2))
