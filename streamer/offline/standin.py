"""A stand-in for "your own radar": a simulated radar deliberately unlike the one the shipped
models know — 10 Hz instead of 20, R_max 2000 m instead of 1000, a receiver noise floor 16 dB
above the unit its user believes (the profile declares noise RMS 1; the radar is 16 dB more
sensitive at R_max, so SNRs match the default law) — recorded as a real radar would be: samples
only, no truth channel, with a label file of its encounters as GPS tracks would give them
(docs/your-radar.md)::

    python -m streamer.offline.standin --out run.mcap --labels run-labels.csv --duration 1800 --seed 1

The same physics with another seed gives a second, held-out recording to evaluate on.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

from streamer.sim.simulator import RadarConfig

STANDIN = RadarConfig(rate_hz=10.0, r_max_m=2000.0, noise_gain_db=16.0, snr_at_rmax_db=16.0)
"""The stand-in radar's physics."""
EPOCH_NS = 1_750_000_000_000_000_000
"""First sample time of a stand-in recording (fixed: the same seed gives the same bytes)."""


def standin_profile():
    """The stand-in radar's profile as its user declares it (``--radar radar.json``): R_max and
    rate from the data sheet, the noise RMS left at 1 (not known in the receiver's units)."""
    from models.profile import RadarProfile

    return RadarProfile(r_max_m=STANDIN.r_max_m, rate_hz=STANDIN.rate_hz, rate_envelope_hz=(STANDIN.rate_hz,) * 2,
                        noise_rms=1.0, range_sigma_m=STANDIN.range_sigma_at_10db_m, name="my radar")


def write_standin(out: str | Path, labels: str | Path | None, *, duration_s: float, seed: int = 1,
                  sensors: int = 1, config: RadarConfig = STANDIN) -> tuple[int, int]:
    """Write the recording (no truth channel) and, with ``labels``, one label row per encounter
    wholly inside it (``sensor,start_s,end_s,dmin_m,cpa_s``). Returns (samples per sensor, labels)."""
    from streamer.recording.writer import RecordingWriter
    from streamer.sim.publisher import FeedConfig, SimulatedFeed

    feed = SimulatedFeed(FeedConfig(sensors=sensors, samples_per_message=10, duration_s=duration_s, seed=seed,
                                    realtime=False, truth=False, radar=config), epoch=EPOCH_NS)
    total = feed.total_messages() or 0
    with RecordingWriter(out, metadata={"source": "streamer.offline.standin", "seed": seed}) as w:
        for _ in range(total):
            t0 = feed.epoch + feed.seq * feed.period_ns
            for sensor, frames in zip(feed.sensor_ids, feed.next_messages()):
                w.write_frames("samples", sensor, frames[1:], t0, t0)
    n = feed.seq
    rows = 0
    if labels is not None:
        dt = feed.period_ns / 1e9
        with Path(labels).open("w", newline="") as fh:
            wr = csv.writer(fh)
            wr.writerow(["sensor", "start_s", "end_s", "dmin_m", "cpa_s"])
            for sensor, sim in zip(feed.sensor_ids, feed.sims):
                for e in sim.encounters:
                    if e.stop <= n:
                        wr.writerow([sensor, f"{e.start * dt:.3f}", f"{(e.stop - 1) * dt:.3f}",
                                     f"{e.dmin_m:.2f}", f"{e.cpa_index * dt:.3f}"])
                        rows += 1
    return n, rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m streamer.offline.standin", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, metavar="FILE.mcap")
    p.add_argument("--labels", default=None, metavar="FILE.csv", help="also write the label file")
    p.add_argument("--duration", type=float, default=1800.0, metavar="S", help="seconds per sensor")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--sensors", type=int, default=1)
    a = p.parse_args(argv)
    if not (math.isfinite(a.duration) and a.duration > 0):
        p.error("--duration must be > 0")
    n, rows = write_standin(a.out, a.labels, duration_s=a.duration, seed=a.seed, sensors=a.sensors)
    print(f"wrote {a.out}: {a.sensors} sensor(s) x {n} samples at {STANDIN.rate_hz:g} Hz"
          + (f"; {a.labels}: {rows} labelled encounters" if a.labels else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
