"""``radarstream gui``: the desktop monitor (its redraw benchmark is ``radarstream bench gui``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from radarstream.errors import RadarstreamError
from tools.options import add_curve_arguments, add_field_option, curve_config, positive, source_field

DEFAULT_FEED = "tcp://127.0.0.1:5555"
DEFAULT_SERVICE = "tcp://127.0.0.1:5556"


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
        raise RadarstreamError(f"cannot open the monitor: {why}. Use QT_QPA_PLATFORM=offscreen with --screenshot, "
                               "or `radarstream demo --headless` for a text summary.")
    import torch

    torch.set_num_threads(1)
    feeds = tuple(args.feed or [DEFAULT_FEED])
    services = tuple(args.service or [DEFAULT_SERVICE])
    controller = local = None
    if args.replay is not None:
        try:
            controller = open_replay(args.replay)
        except ReplayUnavailable as exc:
            raise ReplayUnavailable(f"--replay: {exc}") from exc
        except Exception as exc:  # unreadable/torn file: the replay module's own sentence
            raise RadarstreamError(f"--replay {args.replay}: {exc}") from exc
        feeds = (controller.endpoint,)
        services = (controller.endpoint, *(args.service or []))
        local = _service_for_recording(args, controller)
        if local is not None:
            services = (*services, local.endpoint)
    options = GuiOptions(
        window=WindowConfig(window_s=args.window, threshold_m=args.threshold,
                            history=HistoryConfig(samples=args.history), start_view=args.view),
        worker=WorkerConfig(receiver=ReceiverConfig(feeds=feeds, services=services, curve=curve_config(args)),
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


def register(sub: argparse._SubParsersAction) -> None:
    from gui.buffers import HistoryConfig  # numpy only: WindowConfig's module would pull Qt into every command

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
    window_s, _ = source_field("gui.window", "WindowConfig", "window_s")  # read, not imported: no Qt here
    threshold_m, _ = source_field("gui.window", "WindowConfig", "threshold_m")
    g.add_argument("--window", type=positive, default=window_s, metavar="S",
                   help=f"scrolling time window in seconds (default {window_s:g})")
    g.add_argument("--threshold", type=float, default=threshold_m, metavar="M",
                   help=f"shade where |causal - bidirectional| exceeds M metres (default {threshold_m:g})")
    add_field_option(g, "--history", HistoryConfig, "samples", metavar="SAMPLES",
                     help="samples kept per sensor (preallocated; 27 min at 20 Hz). Raise it to show long windows "
                          "at high rates, e.g. 65536 for 60 s at 1 kHz")
    g.add_argument("--sensor", default=None, metavar="ID", help="sensor to show first (default: the first seen)")
    view, _ = source_field("gui.window", "WindowConfig", "start_view")
    g.add_argument("--view", choices=("fleet", "detail"), default=view,
                   help=f"tab to open on: fleet (every sensor's health, estimate and alerts) or detail (default {view})")
    g.add_argument("--size", type=_size, default=(1600, 1000), metavar="WxH", help="window size (default 1600x1000)")
    g.add_argument("--screenshot", default=None, metavar="FILE.png",
                   help="save a PNG of the window after --quit-after seconds (default 5), then quit")
    g.add_argument("--quit-after", type=positive, default=None, metavar="SECONDS",
                   help="close the monitor after this many seconds")
    add_curve_arguments(g)
    g.set_defaults(func=cmd_gui)


def __getattr__(name: str):
    """``cmd_bench_gui`` lived here before ``radarstream bench gui`` (issue 12): still importable."""
    if name == "cmd_bench_gui":
        from tools.cmd_bench import cmd_bench_gui

        return cmd_bench_gui
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
