"""``radarstream demo``: simulated sensors + the causal service + the monitor, in one command.

Without a display it says so and prints a live text summary every second instead of the window.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from radarstream.errors import RadarstreamError
from tools.options import add_field_option, positive


DEMO_ALERT_M = 100.0
"""The demo's near-miss distance: simulated passes below it raise alerts."""


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _weights_problem(weights: Path | None) -> str | None:
    from models.bundle import shipped_weights_dir

    base = weights or shipped_weights_dir()
    if not (base / "causal.safetensors").is_file():
        where = f"--weights {base}" if weights else f"the shipped weights directory ({base})"
        return (f"no trained causal model in {where}. Train one (`radarstream train causal --out DIR`) "
                "and pass --weights DIR")
    return None


def run_headless(feed: str, service: str, duration: float | None, out=sys.stdout) -> int:
    """Print a summary of the live streams every second until ``duration`` (or Ctrl-C)."""
    from gui.stream import ReceiverConfig, StreamReceiver
    from gui.summary import HeadlessSummary

    receiver = StreamReceiver(ReceiverConfig(feeds=(feed,), services=(service,)))
    receiver.open()
    summary = HeadlessSummary()
    start = time.monotonic()
    next_report = start + 1.0
    try:
        while duration is None or time.monotonic() - start < duration:
            receiver.wait(100)
            summary.update(receiver.poll())
            now = time.monotonic()
            if now >= next_report:
                print("\n".join(summary.lines(now)), file=out, flush=True)
                next_report += 1.0
    except KeyboardInterrupt:
        print("stopped (Ctrl-C)", file=out, flush=True)
    finally:
        receiver.close()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import torch

    from gui.app import has_display
    from gui.pipeline import LocalPipeline, PipelineConfig

    torch.set_num_threads(1)
    weights = Path(args.weights) if args.weights else None
    problem = _weights_problem(weights)
    if problem:
        raise RadarstreamError(problem)
    headless = args.headless
    if not headless:
        ok, why = has_display()
        if not ok:
            print(f"{why}: running headless, printing a summary every second "
                  "(set DISPLAY, or QT_QPA_PLATFORM=offscreen with --screenshot, for the window)", flush=True)
            headless = True
    alert = args.alert_dmin_m if args.alert_dmin_m and args.alert_dmin_m > 0 else None
    pipe = LocalPipeline(PipelineConfig(sensors=args.sensors, rate_hz=args.rate, seed=args.seed, weights=weights,
                                        checkpoint_every=max(1, int(round(args.rate))), alert_dmin_m=alert))
    try:
        feed, service = pipe.start()
    except Exception as exc:  # a clear sentence for a newcomer, not a traceback
        pipe.stop()
        raise RadarstreamError(f"could not start the demo pipeline: {exc}") from exc
    extra = (f"; bidirectional re-scoring on (first window after {pipe.service.config.rescore.window / args.rate:.1f} s)"
             if pipe.rescoring else "")
    print(f"demo: {args.sensors} simulated sensor(s) at {args.rate:g} Hz on {feed}; causal service "
          f"({pipe.service.backend.describe()}) publishing on {service}{extra}", flush=True)
    if alert is not None:
        print(f"      near-miss alerts on: near_miss when P(Dmin < {alert:g} m) > 0.9", flush=True)
    print(f"      (another terminal can watch it: radarstream gui --feed {feed} --service {service})", flush=True)
    try:
        if headless:
            return run_headless(feed, service, args.duration)
        from gui.app import GuiOptions, run_gui
        from gui.stream import ReceiverConfig
        from gui.window import WindowConfig
        from gui.worker import WorkerConfig

        options = GuiOptions(
            window=WindowConfig(title=f"radarstream demo: {args.sensors} simulated sensors", start_view=args.view),
            worker=WorkerConfig(receiver=ReceiverConfig(feeds=(feed,), services=(service,)), weights=weights),
            screenshot=Path(args.screenshot) if args.screenshot else None,
            quit_after_s=args.duration or (10.0 if args.screenshot else None),
        )
        return run_gui(options)
    finally:
        pipe.stop()


def register(sub: argparse._SubParsersAction) -> None:
    from gui.pipeline import PipelineConfig  # zmq and the simulator only: no Qt, no torch

    d = sub.add_parser("demo", help="simulated sensors + causal service + monitor in one command (text summary without a display)",
                       description="Start the simulator and the service on random local ports and open the monitor "
                                   "on them; without a display, print a live summary every second instead.")
    add_field_option(d, "--sensors", PipelineConfig, "sensors", type=_count, metavar="N", help="simulated sensors")
    add_field_option(d, "--rate", PipelineConfig, "rate_hz", type=positive, metavar="HZ",
                     help="samples per second per sensor, real time")
    d.add_argument("--duration", type=positive, default=None, metavar="S", help="stop after S seconds (default: until Ctrl-C or the window closes)")
    d.add_argument("--headless", action="store_true", help="no window: print the text summary every second")
    d.add_argument("--weights", default=None, metavar="DIR", help="model weights directory (default: the shipped weights)")
    add_field_option(d, "--seed", PipelineConfig, "seed", metavar="N", help="simulator seed")
    d.add_argument("--screenshot", default=None, metavar="FILE.png",
                   help="with the window: save a PNG at the end of --duration (default 10 s), then quit")
    d.add_argument("--alert-dmin-m", type=float, default=DEMO_ALERT_M, metavar="M",
                   help=f"near-miss alert distance given to the service (default {DEMO_ALERT_M:g} m: alerts fire on "
                        "the simulated near passes; 0 turns alerts off)")
    d.add_argument("--view", choices=("fleet", "detail"), default="fleet",
                   help="tab the monitor opens on (default fleet: every sensor)")
    d.set_defaults(func=cmd_demo)
