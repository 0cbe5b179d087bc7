"""``radarstream gui`` (the desktop monitor) and ``radarstream bench-gui`` (its redraw benchmark)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_FEED = "tcp://127.0.0.1:5555"
DEFAULT_SERVICE = "tcp://127.0.0.1:5556"


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError("expected WIDTHxHEIGHT, e.g. 1600x1000") from None
    return w, h


def cmd_gui(args: argparse.Namespace) -> int:
    from gui.app import GuiOptions, has_display, run_gui
    from gui.buffers import HistoryConfig
    from gui.replay import ReplayUnavailable, open_replay
    from gui.stream import ReceiverConfig
    from gui.window import WindowConfig
    from gui.worker import WorkerConfig

    ok, why = has_display()
    if not ok:
        print(f"error: cannot open the monitor: {why}. Use QT_QPA_PLATFORM=offscreen with --screenshot, "
              "or `radarstream demo --headless` for a text summary.", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(1)
    feeds = tuple(args.feed or [DEFAULT_FEED])
    services = tuple(args.service or [DEFAULT_SERVICE])
    controller = local = None
    if args.replay is not None:
        try:
            controller = open_replay(args.replay)
        except ReplayUnavailable as exc:
            print(f"error: --replay: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:  # unreadable/torn file: the replay module's own sentence
            print(f"error: --replay {args.replay}: {exc}", file=sys.stderr)
            return 2
        feeds = (controller.endpoint,)
        services = (controller.endpoint, *(args.service or []))
        local = _service_for_recording(args, controller)
        if local is not None:
            services = (*services, local.endpoint)
    options = GuiOptions(
        window=WindowConfig(window_s=args.window, threshold_m=args.threshold,
                            history=HistoryConfig(samples=args.history)),
        worker=WorkerConfig(receiver=ReceiverConfig(feeds=feeds, services=services),
                            weights=Path(args.weights) if args.weights else None),
        screenshot=Path(args.screenshot) if args.screenshot else None,
        quit_after_s=args.quit_after, size=args.size, sensor=args.sensor, autoplay=not args.paused,
    )
    try:
        return run_gui(options, replay=controller)
    finally:
        if controller is not None and local is not None:
            local.stop()


def _service_for_recording(args: argparse.Namespace, controller):
    """A recording without predictions (e.g. a raw feed) is run through the causal service here,
    like the live pipeline; None when it has them, or without weights (then samples only)."""
    from gui.pipeline import LocalService

    try:
        from streamer.recording.replay import Recording

        if Recording(args.replay).topics(kinds=["pred"]):
            return None
    except Exception:  # cannot tell: show what the recording holds
        return None
    try:
        local = LocalService(controller.endpoint, Path(args.weights) if args.weights else None)
    except Exception as exc:
        print(f"note: the recording has no predictions and the causal service could not start ({exc}); "
              "showing the samples only", file=sys.stderr)
        return None
    print(f"the recording has no predictions: running the causal service on it ({local.endpoint})", flush=True)
    return local


def cmd_bench_gui(args: argparse.Namespace) -> int:
    from bench.gui import BenchConfig, markdown, run_bench
    from bench.doc import update_section

    cfg = BenchConfig(sensors=args.sensors, rate_hz=args.rate, window_s=args.window, frames=args.frames,
                      live_s=args.live, weights=Path(args.weights) if args.weights else None)
    result = run_bench(cfg, progress=lambda m: print(m, flush=True))
    command = "radarstream bench-gui" + "".join(
        f" --{k} {v:g}" for k, v, d in (("sensors", args.sensors, 16), ("rate", args.rate, 1000.0),
                                         ("window", args.window, 60.0), ("frames", args.frames, 120),
                                         ("live", args.live, 10.0)) if v != d)
    body = markdown(result, command)
    print(body)
    if not args.no_write:
        print(f"wrote {update_section('gui', body, args.doc)}")
    return 0 if result.kept_up else 1


def register(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("gui", help="desktop monitor: signal, causal and bidirectional estimates, LSTM state, stream health",
                       description="Open the monitor on a sample feed and a service output (see docs/gui.md).")
    g.add_argument("--feed", action="append", default=None, metavar="ENDPOINT",
                   help=f"sample feed to subscribe to (samples/*; connects, prefix @ to bind); repeatable. Default {DEFAULT_FEED}")
    g.add_argument("--service", action="append", default=None, metavar="ENDPOINT",
                   help="service output to subscribe to (pred/, rescore/, state/, event/; connects, prefix @ to bind); "
                        f"repeatable, e.g. serve's pub and a re-scorer's pub. Default {DEFAULT_SERVICE}")
    g.add_argument("--weights", default=None, metavar="DIR",
                   help="causal model weights for the live h/c/gate view (default: the shipped weights)")
    g.add_argument("--replay", default=None, metavar="FILE.mcap",
                   help="replay a recording with play/pause, speed and seek controls (needs streamer.recording.replay)")
    g.add_argument("--paused", action="store_true", help="with --replay: open paused at the start (default: play at 1x)")
    g.add_argument("--window", type=_positive, default=60.0, metavar="S", help="scrolling time window in seconds (default 60)")
    g.add_argument("--threshold", type=float, default=50.0, metavar="M",
                   help="shade where |causal - bidirectional| exceeds M metres (default 50)")
    g.add_argument("--history", type=int, default=32768, metavar="SAMPLES",
                   help="samples kept per sensor (preallocated; default 32768 = 27 min at 20 Hz). Raise it to "
                        "show long windows at high rates, e.g. 65536 for 60 s at 1 kHz")
    g.add_argument("--sensor", default=None, metavar="ID", help="sensor to show first (default: the first seen)")
    g.add_argument("--size", type=_size, default=(1600, 1000), metavar="WxH", help="window size (default 1600x1000)")
    g.add_argument("--screenshot", default=None, metavar="FILE.png",
                   help="save a PNG of the window after --quit-after seconds (default 5), then quit")
    g.add_argument("--quit-after", type=_positive, default=None, metavar="SECONDS",
                   help="close the monitor after this many seconds")
    g.set_defaults(func=cmd_gui)

    b = sub.add_parser("bench-gui", help="benchmark the monitor's redraw (16 sensors x 1 kHz, 60 s window) and write docs/benchmarks.md",
                       description="Median/p95 ms per redraw offscreen with a full window, then a live run over "
                                   "real sockets showing that the monitor keeps up (bounded queue, drops counted).")
    b.add_argument("--sensors", type=int, default=16, help="simulated sensors (default 16)")
    b.add_argument("--rate", type=_positive, default=1000.0, metavar="HZ", help="samples per second per sensor (default 1000)")
    b.add_argument("--window", type=_positive, default=60.0, metavar="S", help="time window shown (default 60)")
    b.add_argument("--frames", type=int, default=120, help="frames timed on the full window (default 120)")
    b.add_argument("--live", type=float, default=10.0, metavar="S", help="seconds of live feed + service run; 0 skips it (default 10)")
    b.add_argument("--weights", default=None, metavar="DIR",
                   help="weights for the service and the state view (default: shipped, else random weights: timing only)")
    b.add_argument("--doc", default="docs/benchmarks.md", help="markdown file to update (section 'gui')")
    b.add_argument("--no-write", action="store_true", help="print the table only")
    b.set_defaults(func=cmd_bench_gui)
