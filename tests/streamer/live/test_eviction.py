"""Issue 16.3: sensors that left must not hold the table for good, and a fleet going quiet at
once is summed up, not published sensor by sensor."""

from __future__ import annotations

import time

import numpy as np

from streamer.live.engine import StreamPolicy
from streamer.live.health import HealthConfig
from streamer.wire import protocol as P
from tests.streamkit import collect, events, preds_by_sensor, running_service


def _send(pub, sensor: str, seq: int, x: np.ndarray) -> None:
    blk = P.make_block(P.Kind.SAMPLES, x, epoch=1, seq=seq, t0_ns=seq * 50_000_000, period_ns=50_000_000)
    pub.send_multipart(P.encode_message(P.Message(P.Kind.SAMPLES, sensor, blk)))


def test_silent_sensors_are_evicted_and_a_late_sensor_gets_in(tiny_weights, offline):
    """A 4-sensor table (the probe holds one): three sensors send and go quiet; a fourth is
    refused while they hold their slots, then — once they were evicted — it is served, and an
    evicted sensor that comes back starts from a fresh state."""
    x = np.random.default_rng(0).rayleigh(1.0, (40, 2)).astype(np.float32)
    health = HealthConfig(evict_after_s=1.0, silence_min_s=0.2)
    with running_service(tiny_weights, policy=StreamPolicy(max_sensors=4), health=health) as (service, pub, out):
        for k in range(3):
            _send(pub, f"old{k}", 0, x[:20])
        first = collect(out, lambda ms: all(len(preds_by_sensor(ms).get(f"old{k}", {})) == 20 for k in range(3)))
        _send(pub, "late", 0, x[:10])  # the table is full: refused
        refused = collect(out, lambda ms: any(e.meta.get("reason") == "sensor_limit" for e in events(ms, "dropped")))
        assert [e.sensor for e in events(refused, "dropped")] == ["late"]
        # the probe is evicted too (it went quiet first); the three after ~1 s of silence
        gone = collect(out, lambda ms: {e.sensor for e in events(ms, "sensor_evicted")} >= {"old0", "old1", "old2"},
                       timeout=20)
        assert {"old0", "old1", "old2"} <= {e.sensor for e in events(gone, "sensor_evicted")}
        assert "old0" not in service.engine.sensors
        _send(pub, "late", 10, x[10:30])
        _send(pub, "old0", 20, x[20:40])  # back after eviction: a new sensor, fresh state
        back = collect(out, lambda ms: len(preds_by_sensor(ms).get("late", {})) == 20
                       and len(preds_by_sensor(ms).get("old0", {})) == 20)
        stats = service.snapshot()
    assert len(preds_by_sensor(back)["late"]) == 20
    assert "old0" in {e.sensor for e in events(back, "new_sensor")}
    y_back = np.array([row[0] for _, row in sorted(preds_by_sensor(back)["old0"].items())])
    np.testing.assert_allclose(y_back, offline(x[20:40]), atol=1e-5)  # from zero state
    assert stats["health"]["counters"]["sensor_evicted"] >= 3
    assert len(first) > 0


def test_a_fleet_going_quiet_at_once_is_summed_up(tiny_weights):
    """300 sensors stop together with a cap of 10 events per check: at most 10 ``sensor_silent``
    per check, a ``sensors_silent`` summary for the rest; each sensor is counted once, and the
    counter counts all 300. (Admitting 300 new sensors takes a few checks, so their silences
    spread over several checks too.)"""
    x = np.ones((1, 2), np.float32)
    health = HealthConfig(silence_min_s=0.3, silent_events_per_check=10, evict_after_s=None)

    def accounted(ms) -> int:
        return (sum(1 for e in events(ms, "sensor_silent") if e.sensor.startswith("f"))
                + sum(e.meta["count"] for e in events(ms, "sensors_silent")))

    with running_service(tiny_weights, health=health) as (service, pub, out):
        for k in range(300):
            _send(pub, f"f{k:03d}", 0, x)
        msgs = collect(out, lambda ms: accounted(ms) >= 300, timeout=20)
        time.sleep(0.5)
        stats = service.snapshot()
    per_sensor = [e for e in events(msgs, "sensor_silent") if e.sensor.startswith("f")]
    summaries = events(msgs, "sensors_silent")
    assert accounted(msgs) == 300 and len({e.sensor for e in per_sensor}) == len(per_sensor)
    assert summaries and len(per_sensor) < 300  # the cap held: not one event per sensor
    for summary in summaries:  # on the service's topic; the first 20 names (or all, when fewer)
        assert summary.sensor == "_service" and len(summary.meta["sensors"]) == min(20, summary.meta["count"])
    assert stats["health"]["counters"]["sensor_silent"] >= 300
