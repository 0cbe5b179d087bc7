"""Soak: 16 sensors at 1 kHz with re-scoring and recording (campaign case 11)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.faults import FULL, ROOT, SIMULATOR, free_port, last_stats, serve_process, stop_process

# ------------------------------------------------------------------ 11. soak


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("seconds", [60.0] if FULL else [15.0])
def test_soak_16_sensors_at_1khz_with_rescoring_and_recording(tiny_weights, tmp_path, figures, seconds):
    """simulator -> ``serve --rescore`` -> recorder, three processes, 16 × 1 kHz: the service's
    RSS is flat after warm-up and nothing is lost; latency per stats interval is reported."""
    warmup = seconds / 3
    feed, out = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    rss: list[tuple[float, int]] = []
    with open(tmp_path / "simulate.log", "w") as sim_log, open(tmp_path / "record.log", "w") as rec_log:
        # all three start together (start-up is seconds of imports); the simulator streams at once
        sim = subprocess.Popen([sys.executable, "-c", SIMULATOR, feed], cwd=ROOT, stdout=sim_log, stderr=subprocess.STDOUT)
        rec = subprocess.Popen([sys.executable, "-m", "tools.cmd_record", "record", "--feed", out, "--out",
                                str(tmp_path / "soak.mcap"), "--kinds", "pred,rescore,event"],
                               cwd=ROOT, stdout=rec_log, stderr=subprocess.STDOUT)
        try:
            with serve_process(tiny_weights, (feed,), "--rescore", "--window", "512", "--hop", "256", "--stats-interval", "1",
                               log_path=tmp_path / "serve.log", out=out) as (serve, col):
                assert col.wait(lambda: any(m.meta["samples_per_s"] > 0 for _, m in col.events("stats")), 60)
                t0 = time.monotonic()
                while time.monotonic() - t0 < seconds:
                    rss.append((time.monotonic() - t0, rss_kib(serve.pid)))
                    time.sleep(0.5)
                sim.send_signal(signal.SIGINT)
                assert sim.wait(30) == 0
                n_stats = len(col.events("stats"))
                assert col.wait(lambda: len(col.events("stats")) > n_stats + 1, 10)
                stats = last_stats(col)
        finally:
            for p in (sim, rec):
                stop_process(p)
    steady = [m.meta for t, m in col.events("stats") if m.meta["samples_per_s"] > 0]
    base = np.mean([r for t, r in rss if warmup - 1 <= t <= warmup + 1])
    tail = max(r for t, r in rss if t >= seconds - 3)
    growth = (tail - base) / base
    assert growth < 0.05, (base, tail, rss)  # RSS flat after warm-up (the bound is 5%)
    p99 = [m["latency_us"]["p99"] for m in steady if m["latency_us"]["p99"] is not None]
    third = len(p99) // 3
    assert stats["counters"].get("gap", 0) == 0 and not stats["decode_errors"]  # nothing lost on the way
    assert stats["rescore"].get("windows_scored", 0) > 0
    assert (tmp_path / "soak.mcap").stat().st_size > 0
    figures["11_soak"] = {
        "seconds": seconds, "sensors": 16, "rate_hz": 1000, "samples": stats["samples"],
        "rss_warm_mib": round(base / 1024, 1), "rss_end_mib": round(tail / 1024, 1), "rss_growth_pct": round(100 * growth, 2),
        "p99_us_median_first_third": round(float(np.median(p99[:third])), 1) if third else None,
        "p99_us_median_last_third": round(float(np.median(p99[-third:])), 1) if third else None,
        "p99_us_slope_per_min": round(float(np.polyfit(np.arange(len(p99)), p99, 1)[0] * 60), 1) if len(p99) > 2 else None,
        "rescore": stats["rescore"], "gaps": stats["counters"].get("gap", 0)}
