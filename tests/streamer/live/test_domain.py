"""Out-of-domain monitor: rate against the profile, noise level and detections against the envelope."""

from __future__ import annotations

import numpy as np

from models.profile import AmplitudeEnvelope, RadarProfile
from radarstream.checks import check_estimator
from radarstream.online import Block
from streamer.live.domain import DomainMonitor
from streamer.sim.simulator import RadarConfig, StreamSimulator

TIGHT = RadarProfile(envelope=AmplitudeEnvelope(median_log10=(0.0, 0.45), detection_fraction=(0.1, 0.6)))
"""20 Hz only; the default simulator's median amplitude is ≈ +4.6 dB re its noise RMS (0.23 in log10)."""


def sim_block(n: int, rate_hz: float = 20.0, gain: float = 1.0, seed: int = 4) -> Block:
    x = StreamSimulator(RadarConfig(rate_hz=rate_hz), seed).read(n).samples.copy()
    x[:, 0] *= gain
    return Block.regular(x, period_ns=int(round(1e9 / rate_hz)))


def test_domain_monitor_conforms() -> None:
    check_estimator(lambda: DomainMonitor(TIGHT, window=500, min_samples=100), sim_block(3000, gain=3.0),
                    rtol=1e-9, atol=1e-9)


def test_in_envelope_stream_is_never_flagged() -> None:
    mon = DomainMonitor(TIGHT)
    out = mon.update(sim_block(20_000))
    assert not out[:, 3].any() and mon.reason is None
    assert out[-1, 0] < 0.5 < out[-1, 1]


def test_a_10_hz_stream_against_a_20_hz_profile_is_out_of_domain_at_once() -> None:
    mon = DomainMonitor(TIGHT)
    out = mon.update(sim_block(50, rate_hz=10.0))
    assert out[:, 3].all()
    assert "10 Hz" in mon.reason and "20 Hz" in mon.reason


def test_a_receiver_6_db_hotter_is_flagged_after_enough_samples_and_clears() -> None:
    mon = DomainMonitor(TIGHT, min_samples=400)
    out = mon.update(sim_block(8000, gain=2.0))  # +6 dB: median ≈ +10.6 dB > +9 dB
    assert not out[:399, 3].any()  # not judged before min_samples
    assert out[-1, 3] == 1.0 and "above the training envelope" in mon.reason
    low = DomainMonitor(TIGHT).update(sim_block(8000, gain=0.5))  # -6 dB: median ≈ -1.4 dB < 0 dB
    assert low[-1, 3] == 1.0
    back = mon.update(sim_block(20_000, seed=5))  # the stream returns to the declared level
    assert back[-1, 3] == 0.0 and mon.reason is None


def test_domain_bank_gives_the_monitors_verdicts_over_runs_of_many_sensors() -> None:
    """The service's vectorised bank ends every run where a per-sensor DomainMonitor is, and
    reports each transition once."""
    from types import SimpleNamespace

    from radarstream.checks import random_splits
    from streamer.live.domain import DomainBank

    streams = {"hot": sim_block(6000, gain=2.0, seed=1), "ok": sim_block(6000, seed=2),
               "slow": sim_block(3000, rate_hz=10.0, seed=3)}
    bank = DomainBank(TIGHT)
    mons = {s: DomainMonitor(TIGHT) for s in streams}
    rng = np.random.default_rng(0)
    cuts = {s: [0, *random_splits(len(b), rng, max_piece=300)] for s, b in streams.items()}
    changes = []
    for step in range(max(len(c) for c in cuts.values())):
        runs = []
        for s, b in streams.items():
            c = cuts[s]
            if step + 1 < len(c):
                part = b.slice(c[step], c[step + 1])
                runs.append(SimpleNamespace(sensor=s, seq=c[step], period_ns=b.period_ns, x=part.x))
                mons[s].update(part)
        changes += bank.update(runs)
        for r in runs:  # same verdicts (entering at once; leaving is held back by the hysteresis)
            if mons[r.sensor].reason is not None:
                assert r.sensor in bank.out_of_domain
    assert sorted(s for s, _, why in changes if why) == ["hot", "slow"]
    assert set(bank.out_of_domain) == {"hot", "slow"}
