"""``radarstream simulate``: simulated radar sensors on ZeroMQ, or (``--out``) straight to an MCAP file.

``simulate-file`` is the old spelling of ``simulate --out`` (hidden from ``--help``; its defaults
are kept: 60 s, ``--out`` required).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from radarstream.errors import UsageError
from tools.options import add_curve_arguments, add_field_option, curve_config, hidden_parser, positive, rate_or_max

if TYPE_CHECKING:
    from streamer.sim.publisher import FeedConfig


def _feed_config(args: argparse.Namespace) -> FeedConfig:
    from streamer.sim.publisher import FeedConfig
    from streamer.sim.simulator import RadarConfig

    to_file = args.out is not None
    return FeedConfig(sensors=args.sensors, rate_hz=args.rate, samples_per_message=args.samples_per_message,
                      duration_s=args.duration, seed=args.seed,
                      realtime=not to_file and (args.rate is not None or args.realtime),
                      radar=RadarConfig(manoeuvre_prob=args.manoeuvre_prob))


def cmd_simulate(args: argparse.Namespace) -> int:
    feed_cfg = _feed_config(args)
    if args.out is not None:
        return _to_file(args, feed_cfg)
    import threading

    import zmq

    from streamer.live.service import attach
    from streamer.sim.publisher import SimulatedFeed, publish
    from streamer.wire.security import Curve, RefusalWatch, endpoint_mode, exposure_warning, socket_role
    from tools.process import install_signal_stop

    feed = SimulatedFeed(feed_cfg)
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, 1_000_000)
    curve_cfg = curve_config(args)
    warning = exposure_warning(args.pub, "bind", curve_cfg is not None)
    if warning is not None:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    curve = None
    if curve_cfg is not None:
        curve = Curve(curve_cfg, ctx)
        curve.secure(sock, socket_role([args.pub], "bind"))
    endpoint = attach(sock, args.pub, "bind")
    watch = None
    if endpoint_mode(args.pub, "bind")[0] == "connect":  # a refused handshake: reconnect, and say so
        watch = RefusalWatch(sock, [endpoint], what="simulate --pub",
                             alarm=lambda line, level: print(("warning: " if level >= 30 else "") + line,
                                                             file=sys.stderr, flush=True))
    stop = threading.Event()
    install_signal_stop(stop.set)
    print(f"simulating {args.sensors} sensor(s) at {1e9 / feed.period_ns:g} Hz, "
          f"{args.samples_per_message} sample(s)/message, epoch {feed.epoch} -> {endpoint}", flush=True)
    sent = publish(feed, sock, stop, housekeeping=watch.poll if watch is not None else None)
    print(f"sent {sent} messages ({feed.seq} samples per sensor)", flush=True)
    if watch is not None:
        watch.close()
        if watch.refusals:
            print(f"warning: {watch.refusals} refused handshake(s), {watch.reconnects} reconnection(s) after a "
                  "refusal; what was sent while refused went nowhere", file=sys.stderr, flush=True)
    sock.close(linger=2000)
    if curve is not None:
        curve.stop()
    return 0


def _to_file(args: argparse.Namespace, feed_cfg: FeedConfig) -> int:
    from streamer.recording.writer import simulate_to_file

    if args.duration is None:
        raise UsageError("--out needs --duration (a recording has an end)")
    res = simulate_to_file(args.out, feed_cfg, epoch=args.epoch)
    print(f"wrote {res.messages} messages ({res.samples} samples, {args.sensors} sensor(s), "
          f"{res.duration_s:g} s, epoch {res.epoch}) -> {res.path}")
    return 0


def _add_arguments(p: argparse.ArgumentParser, *, file_alias: bool) -> None:
    from streamer.sim.publisher import FeedConfig
    from streamer.sim.simulator import RadarConfig

    if not file_alias:
        p.add_argument("--pub", default="tcp://127.0.0.1:5555", metavar="ENDPOINT",
                       help="where to publish (binds; > connects)")
    add_field_option(p, "--sensors", FeedConfig, "sensors", help="simulated sensors")
    if file_alias:
        add_field_option(p, "--rate", FeedConfig, "rate_hz", type=positive, metavar="HZ",
                         help="samples per second per sensor", default_text="the radar's rate")
    else:
        add_field_option(p, "--rate", RadarConfig, "rate_hz", type=rate_or_max, metavar="HZ|max",
                         help="samples per second per sensor, or 'max' for as fast as possible")
    add_field_option(p, "--samples-per-message", FeedConfig, "samples_per_message", metavar="K",
                     help="samples per message")
    if file_alias:
        p.add_argument("--duration", type=positive, default=60.0, metavar="S", help="simulated seconds (default 60)")
    else:
        add_field_option(p, "--duration", FeedConfig, "duration_s", type=positive, metavar="S",
                         default_text="forever; needed with --out")
    add_field_option(p, "--seed", FeedConfig, "seed", help="simulator seed")
    add_field_option(p, "--manoeuvre-prob", RadarConfig, "manoeuvre_prob", metavar="P")
    p.add_argument("--realtime", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", required=file_alias, default=None, metavar="FILE.mcap",
                   help="write an MCAP recording instead of publishing: no sockets, as fast as the "
                        "simulator goes, sample times as log times (needs --duration)")
    p.add_argument("--epoch", type=int, default=None,
                   help="with --out: publisher epoch = time of the first sample in ns (default: now)")
    if not file_alias:
        add_curve_arguments(p)
    p.set_defaults(func=cmd_simulate)


def register(sub: argparse._SubParsersAction) -> None:
    _add_arguments(sub.add_parser("simulate", help="publish simulated radar sensors on ZeroMQ (with ground truth), "
                                                   "or write them to an MCAP file (--out)"), file_alias=False)
    _add_arguments(hidden_parser(sub, "simulate-file", description="Old spelling of `simulate --out`."),
                   file_alias=True)
