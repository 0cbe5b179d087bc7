"""The domain-randomised training configuration: documented ranges, reproducible, physical."""

import numpy as np

from streamer.sim.randomised import RandomisedRadar, draw_radar, randomised_encounter_windows, randomised_stream_windows
from streamer.sim.simulator import RadarConfig, StreamSimulator


def test_radars_are_drawn_inside_the_documented_ranges_and_reproducibly():
    rr = RandomisedRadar()
    radars = [draw_radar(np.random.default_rng(s), rr) for s in range(300)]
    rates = np.array([r.rate_hz for r in radars])
    assert 5.0 <= rates.min() and rates.max() <= 50.0 and rates.min() < 7 and rates.max() > 35
    gains = np.array([r.noise_gain_db for r in radars])
    assert -10 <= gains.min() < -8 and 8 < gains.max() <= 10
    pfa = np.array([r.pfa for r in radars])
    assert 1e-4 <= pfa.min() and pfa.max() <= 1e-2
    scale = np.array([r.range_sigma_at_10db_m / RadarConfig().range_sigma_at_10db_m for r in radars])
    assert 0.3 <= scale.min() < 0.4 and 2.5 < scale.max() <= 3.0
    assert {r.swerling for r in radars} == {1, 3}
    speeds = np.array([r.speed_range_mps for r in radars])
    assert speeds.min() >= 10.0 and speeds.max() <= 400.0
    assert draw_radar(np.random.default_rng(7), rr) == draw_radar(np.random.default_rng(7), rr)


def test_per_encounter_draws_span_rcs_dmin_manoeuvres_and_partial_passes():
    radar = draw_radar(np.random.default_rng(3))
    sim = StreamSimulator(radar, 3)
    sim.read(200_000)
    encs = sim.encounters
    rcs = np.array([e.rcs_db for e in encs])
    assert rcs.max() - rcs.min() >= 20.0  # ≥ 20 dB spread of mean RCS
    dmin = np.array([e.dmin_norm for e in encs])
    assert dmin.min() < 0.1 and dmin.max() > 0.85
    assert {e.manoeuvre for e in encs} >= {"straight", "turn", "accelerate"}


def test_partial_passes_start_or_end_inside_coverage_with_the_cpa_observed():
    full = RadarConfig(rcs_db_range=(20.0, 20.0))
    part = RadarConfig(rcs_db_range=(20.0, 20.0), partial_prob=1.0)
    for cfg, partial in ((full, False), (part, True)):
        sim = StreamSimulator(cfg, 5)
        block = sim.read(50_000)
        edges = []
        for e in sim.encounters:
            if e.stop > 50_000:
                break
            assert e.start <= e.cpa_index < e.stop
            r = block.true_range_m[e.start - block.start : e.stop - block.start]
            edges.append(min(r[0], r[-1]))
        edges = np.array(edges)
        if partial:
            assert np.mean(edges < 0.9 * cfg.r_max_m) > 0.5  # tracks that begin/end well inside R_max
        else:
            assert edges.min() > 0.9 * cfg.r_max_m


def test_noise_floor_moves_the_noise_rms_and_the_snr():
    quiet = StreamSimulator(RadarConfig(), 1).read(40_000)
    loud = StreamSimulator(RadarConfig(noise_gain_db=6.0), 1).read(40_000)
    rms = lambda b: float(np.sqrt(np.mean(b.samples[~b.in_encounter, 0] ** 2)))  # noqa: E731
    assert abs(rms(quiet) - 1.0) < 0.02
    assert abs(rms(loud) - 10 ** (6 / 20)) < 0.05
    # the false-alarm rate holds (the threshold follows the noise)
    fa = lambda b: float(np.mean(b.samples[~b.in_encounter, 1] >= 0))  # noqa: E731
    assert abs(fa(loud) - 1e-3) < 1e-3
    sim = StreamSimulator(RadarConfig(noise_gain_db=6.0), 1)
    sim.read(40_000)
    ref = StreamSimulator(RadarConfig(), 1)
    ref.read(40_000)
    assert abs(sim.encounters[0].peak_snr_db - (ref.encounters[0].peak_snr_db - 6.0)) < 1e-6


def test_training_sets_carry_the_period_channel():
    w, radars = randomised_stream_windows(3, 500, 2, seed=1)
    assert w.X.shape == (6, 500, 3) and w.y.shape == (6, 500) and w.mask.shape == (6, 500)
    for k, r in enumerate(radars):
        assert np.all(w.X[2 * k : 2 * k + 2, :, 2] == np.float32(1.0 / r.rate_hz))
    e, per = randomised_encounter_windows(2, 3, 256, seed=1)
    assert e.X.shape == (6, 256, 3) and len(per) == 6 and np.all((0 <= e.y) & (e.y < 1))
    again, _ = randomised_stream_windows(3, 500, 2, seed=1)
    assert np.array_equal(again.X, w.X)
