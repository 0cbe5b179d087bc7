"""The ``radarstream`` command line: thin sub-commands over the packages."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

Handler = Callable[[argparse.Namespace], int]


def _limit_threads(n: int = 1) -> None:
    """Streaming processes use one torch/ORT thread: more threads wreck small work on 2 cores."""
    import torch

    torch.set_num_threads(n)


# ------------------------------------------------------------------ export


def cmd_export(args: argparse.Namespace) -> int:
    from models.bundle import shipped_weights_dir
    from models.export import export_all

    src = args.weights or shipped_weights_dir()
    written = export_all(src, args.out)
    if not written:
        print(f"error: no weights found in {src}", file=sys.stderr)
        return 2
    for p in written:
        print(f"wrote {p}")
    return 0


# ------------------------------------------------------------------ streaming


def _install_signal_stop(stop: Callable[[], None]) -> None:
    """SIGINT/SIGTERM ask the loop to stop; it finishes its iteration and closes sockets cleanly."""
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop())


def _setup_logging(verbose: bool) -> None:
    import logging

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _curve_config(args: argparse.Namespace):
    """``--curve-keys DIR`` (and ``--curve-client NAME``) as a CurveConfig, or None."""
    if getattr(args, "curve_keys", None) is None:
        return None
    from streamer.wire.security import CurveConfig

    return CurveConfig(keys_dir=args.curve_keys, client=args.curve_client)


def cmd_serve(args: argparse.Namespace) -> int:
    from streamer.live.backends import make_backend
    from streamer.live.engine import StreamPolicy
    from streamer.live.health import HealthConfig
    from streamer.live.rescore import RescoreConfig
    from streamer.wire.security import SecurityError
    from streamer.live.service import ServiceConfig, StreamService

    _setup_logging(args.verbose)
    _limit_threads(1)
    backend = make_backend(args.backend, args.weights, threads=1)
    cfg = ServiceConfig(
        feeds=tuple(args.feed), pub=args.pub, stats_interval_s=args.stats_interval,
        policy=StreamPolicy(max_gap=args.max_gap), rcvhwm=args.rcvhwm,
        max_samples_per_message=args.max_samples, checkpoint_every=args.checkpoint_every,
        hybrid=not args.no_hybrid,
        rescore=RescoreConfig(window=args.window, hop=args.hop, threshold_m=args.threshold_m,
                              backend=args.backend) if args.rescore else None,
        health=HealthConfig(lag_threshold_s=args.lag_threshold, max_sensor_rate=args.max_sensor_rate,
                            heartbeat_ivl_ms=args.heartbeat_ivl),
        curve=_curve_config(args),
    )
    service = StreamService(cfg, backend, weights_dir=args.weights)
    _install_signal_stop(service.stop)
    import signal

    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: service.reload_keys())  # re-read the CURVE allow-list
    try:
        service.run()
    except SecurityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _parse_rate(text: str) -> float | None:
    if text == "max":
        return None
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("rate must be > 0 or 'max'")
    return value


def cmd_simulate(args: argparse.Namespace) -> int:
    import threading

    import zmq

    from streamer.sim.publisher import FeedConfig, SimulatedFeed, publish
    from streamer.live.service import attach
    from streamer.sim.simulator import RadarConfig

    rate = args.rate
    feed_cfg = FeedConfig(
        sensors=args.sensors, rate_hz=rate, samples_per_message=args.samples_per_message,
        duration_s=args.duration, seed=args.seed, realtime=rate is not None or args.realtime,
        radar=RadarConfig(manoeuvre_prob=args.manoeuvre_prob),
    )
    if args.out is not None:
        from streamer.recording.writer import simulate_to_file

        if args.duration is None:
            print("error: --out needs --duration (a recording has an end)", file=sys.stderr)
            return 2
        res = simulate_to_file(args.out, feed_cfg)
        print(f"wrote {res.messages} messages ({res.samples} samples, {args.sensors} sensor(s), "
              f"{res.duration_s:g} s, epoch {res.epoch}) -> {res.path}")
        return 0
    from streamer.wire.security import Curve, SecurityError, exposure_warning, socket_role

    feed = SimulatedFeed(feed_cfg)
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, 1_000_000)
    curve_cfg = _curve_config(args)
    warning = exposure_warning(args.pub, "bind", curve_cfg is not None)
    if warning is not None:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    curve = None
    if curve_cfg is not None:
        try:
            curve = Curve(curve_cfg, ctx)
            curve.secure(sock, socket_role([args.pub], "bind"))
        except SecurityError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    endpoint = attach(sock, args.pub, "bind")
    stop = threading.Event()
    _install_signal_stop(stop.set)
    print(f"simulating {args.sensors} sensor(s) at {1e9 / feed.period_ns:g} Hz, "
          f"{args.samples_per_message} sample(s)/message, epoch {feed.epoch} -> {endpoint}", flush=True)
    sent = publish(feed, sock, stop)
    print(f"sent {sent} messages ({feed.seq} samples per sensor)", flush=True)
    sock.close(linger=2000)
    if curve is not None:
        curve.stop()
    return 0


# ------------------------------------------------------------------ benchmarks


def cmd_bench_quality(args: argparse.Namespace) -> int:
    import time

    from models.bundle import load_bundle
    from streamer.sim.simulator import MANOEUVRING, RadarConfig
    from bench.doc import machine_line, update_section
    from bench.quality import HELD_OUT_SEED, evaluate_models, failure_table, held_out, mae_table

    _limit_threads(args.threads)
    n = args.encounters or (150 if args.quick else 2000)
    t0 = time.perf_counter()
    bundle = load_bundle(args.weights)
    sections = []
    for title, radar, seed in (("Straight passes", RadarConfig(), HELD_OUT_SEED),
                               ("Manoeuvring passes (turning or accelerating)", MANOEUVRING, HELD_OUT_SEED + 1)):
        data = held_out(n, radar, seed)
        est = evaluate_models(bundle, data)
        tables = mae_table(est, data) + "\n\n" + failure_table(est, data)
        print(f"\n{title}\n{tables}", flush=True)
        sections.append(f"### {title} ({len(data.encounters)} encounters, seed {seed})\n\n{tables}\n")
    took = time.perf_counter() - t0
    cmd = "radarstream bench quality" + (" --quick" if args.quick else "") + (f" --encounters {n}" if args.encounters else "")
    body = (
        f"## Model quality{' (quick)' if args.quick else ''}\n\n"
        f"MAE of Dmin in metres [95% bootstrap interval] per peak-SNR band, on held-out simulated encounters "
        f"(default simulator settings, R_max 1000 m, 20 Hz; seeds never used in training). "
        f"Weights: `{bundle.weights_dir}`.\n\n"
        f"Command: `{cmd}` ({took:.0f} s; {machine_line()}).\n\n" + "\n".join(sections)
    )
    if not args.no_write:
        path = update_section("quality-quick" if args.quick else "quality", body, args.doc)
        print(f"wrote {path}")
    return 0


def cmd_bench_stream(args: argparse.Namespace) -> int:
    import json

    from tools import bench_stream
    from bench.doc import machine_line, update_section

    res = bench_stream.run(args.weights, quick=args.quick, backend=args.backend,
                           progress=lambda m: print(m, flush=True))
    cmd = "radarstream bench stream" + (" --quick" if args.quick else "") + (f" --backend {args.backend}" if args.backend != "onnx" else "")
    md = bench_stream.to_markdown(res, cmd, machine_line())
    print(md)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({k: (v if k != "sockets" else [s.__dict__ for s in v]) for k, v in res.items()}, fh, indent=2)
    if not args.no_write:
        print(f"wrote {update_section('stream-quick' if args.quick else 'stream', md, args.doc)}")
    return 0


# ------------------------------------------------------------------ parser


def _add_curve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--curve-keys", default=None, metavar="DIR",
                   help="CurveZMQ encryption + authentication with the keys of `radarstream keys DIR`: "
                        "binding sockets admit only the clients in DIR/authorized_clients (SIGHUP or "
                        "any change there reloads it), connecting sockets use the client key")
    p.add_argument("--curve-client", default="client", metavar="NAME",
                   help="client keypair (DIR/NAME.key_secret) used when connecting (default: client)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="radarstream",
        description="Streaming radar processor: causal LSTM per sensor over ZeroMQ, re-scoring, record/replay, GUI.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    e = sub.add_parser("export", help="export models to ONNX (causal with explicit h/c; dynamic time axis)")
    e.add_argument("--weights", default=None, help="weights directory (default: the shipped weights)")
    e.add_argument("--out", default=None, help="output directory (default: next to the weights)")
    e.set_defaults(func=cmd_export)

    sv = sub.add_parser("serve", help="run the causal model on a ZeroMQ sample feed and publish predictions")
    sv.add_argument("--feed", action="append", default=None, metavar="ENDPOINT",
                    help="sample feed to SUBscribe to (connects; prefix @ to bind); repeatable. "
                         "Default tcp://127.0.0.1:5555")
    sv.add_argument("--pub", default="tcp://127.0.0.1:5556", metavar="ENDPOINT",
                    help="where to PUBlish pred/event messages (binds; prefix > to connect)")
    sv.add_argument("--backend", choices=["onnx", "torch"], default="onnx", help="inference backend (default: onnx, the faster in bench stream)")
    sv.add_argument("--weights", default=None, metavar="DIR", help="weights directory (default: shipped)")
    sv.add_argument("--stats-interval", type=float, default=1.0, metavar="S", help="seconds between stats")
    sv.add_argument("--max-gap", type=int, default=100, help="reset a sensor's state after a gap of more samples")
    sv.add_argument("--rcvhwm", type=int, default=100_000, help="receive high-water mark (messages)")
    sv.add_argument("--max-samples", type=int, default=65536, help="largest accepted message (samples)")
    sv.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                    help="publish each sensor's (h, c) on state/<sensor> every N samples (for replay seeking)")
    sv.add_argument("--rescore", action="store_true",
                    help="re-score completed windows with the bidirectional model (rescore/<sensor>), beside the causal path")
    sv.add_argument("--window", type=int, default=512, help="re-scoring window in samples (default 512 = 25.6 s at 20 Hz)")
    sv.add_argument("--hop", type=int, default=256, help="samples between re-scored windows (default 256)")
    sv.add_argument("--threshold-m", type=float, default=50.0, help="disagreement threshold in metres (default 50)")
    sv.add_argument("--no-hybrid", action="store_true",
                    help="do not run the classical CPA fit beside the LSTM (pred then has 3 channels, not 5)")
    sv.add_argument("--lag-threshold", type=float, default=0.5, metavar="S",
                    help="publish a 'lag' event when input may have waited longer than this (default 0.5)")
    sv.add_argument("--max-sensor-rate", type=float, default=None, metavar="HZ",
                    help="drop (and count) a sensor's samples beyond this rate: one flooding sensor cannot "
                         "starve the others (default: unlimited)")
    sv.add_argument("--heartbeat-ivl", type=int, default=1000, metavar="MS",
                    help="ZMTP heartbeat interval; a hung peer is dropped after 3 intervals (0: off; default 1000)")
    _add_curve_arguments(sv)
    sv.add_argument("-v", "--verbose", action="store_true")
    sv.set_defaults(func=cmd_serve)

    sm = sub.add_parser("simulate", help="publish simulated radar sensors on ZeroMQ (with ground truth)")
    sm.add_argument("--pub", default="tcp://127.0.0.1:5555", metavar="ENDPOINT", help="where to publish (binds; > connects)")
    sm.add_argument("--sensors", type=int, default=1)
    sm.add_argument("--rate", type=_parse_rate, default=20.0, metavar="HZ|max",
                    help="samples per second per sensor, or 'max' for as fast as possible (default 20)")
    sm.add_argument("--samples-per-message", type=int, default=1, metavar="K")
    sm.add_argument("--duration", type=float, default=None, metavar="S", help="simulated seconds (default: forever)")
    sm.add_argument("--seed", type=int, default=0)
    sm.add_argument("--manoeuvre-prob", type=float, default=0.0, help="share of manoeuvring passes")
    sm.add_argument("--realtime", action="store_true", help=argparse.SUPPRESS)
    sm.add_argument("--out", default=None, metavar="FILE.mcap",
                    help="write an MCAP recording instead of publishing: no sockets, as fast as the "
                         "simulator goes, sample times as log times (needs --duration)")
    _add_curve_arguments(sm)
    sm.set_defaults(func=cmd_simulate)

    b = sub.add_parser("bench", help="benchmarks; they write their tables to docs/benchmarks.md")
    bsub = b.add_subparsers(dest="bench", required=True, metavar="BENCH")
    bq = bsub.add_parser("quality", help="MAE of Dmin per SNR band on a held-out simulated set")
    bq.add_argument("--quick", action="store_true", help="CI-sized run (150 encounters per scenario)")
    bq.add_argument("--encounters", type=int, default=None, help="override the number of encounters")
    bq.add_argument("--weights", default=None, metavar="DIR")
    bq.add_argument("--doc", default="docs/benchmarks.md", help="markdown file to update")
    bq.add_argument("--no-write", action="store_true", help="print only")
    bq.add_argument("--threads", type=int, default=2)
    bq.set_defaults(func=cmd_bench_quality)

    from tools.cmd_record import add_bench_record_arguments

    add_bench_record_arguments(bsub.add_parser("record", help="recording and replay throughput (MCAP over ZeroMQ)"))

    bs = bsub.add_parser("stream", help="backends, naive baselines, FLOP floor and the service over real sockets")
    bs.add_argument("--quick", action="store_true", help="CI-sized run (about 1 minute)")
    bs.add_argument("--backend", choices=["onnx", "torch"], default="onnx", help="backend of the service scenarios")
    bs.add_argument("--weights", default=None, metavar="DIR")
    bs.add_argument("--doc", default="docs/benchmarks.md", help="markdown file to update")
    bs.add_argument("--json", default=None, metavar="FILE", help="also write the raw figures as JSON")
    bs.add_argument("--no-write", action="store_true", help="print only")
    bs.set_defaults(func=cmd_bench_stream)

    for register in _command_modules():
        register(sub)
    return p


def _command_modules() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Sub-commands that live in their own ``tools/cmd_*.py`` module, each with ``register``."""
    import importlib
    import pkgutil

    import tools

    found = []
    for info in sorted(pkgutil.iter_modules(tools.__path__), key=lambda i: i.name):
        if info.name.startswith("cmd_"):
            found.append(importlib.import_module(f"tools.{info.name}").register)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve" and args.feed is None:
        args.feed = ["tcp://127.0.0.1:5555"]
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
