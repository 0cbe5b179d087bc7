"""Recording sub-commands: record, recording info/repair, replay, export-csv, simulate-file,
bench-record. Discovered by ``tools/cli.py`` through :func:`register`; ``python -m
tools.cmd_record ...`` runs the same commands without importing the others (quick start-up for
scripts and the subprocess tests).

Every command turns a bad file or bad argument into one ``error:`` line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int]

EXIT_ERROR = 2


def _guard(func: Handler) -> Handler:
    """Expected failures (unreadable file, bad value, OS error) -> one line and exit code 2."""

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        from streamer.recording.format import RecordingError

        try:
            return func(args)
        except (RecordingError, ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR

    return wrapper


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _install_signal_stop(stop: Callable[[], None]) -> None:
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop())


def _words(text: str) -> list[str]:
    return [w for w in (p.strip() for p in text.split(",")) if w]


def _kinds(text: str) -> tuple[str, ...]:
    from streamer.recording.format import parse_kinds

    try:
        return parse_kinds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _speed(text: str) -> float:
    from streamer.recording.replay import parse_speed

    try:
        return parse_speed(text)
    except ValueError:
        raise argparse.ArgumentTypeError("speed must be a positive number or 'max'") from None


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _sensors(args: argparse.Namespace) -> list[str] | None:
    return [s for chunk in args.sensors for s in _words(chunk)] if args.sensors else None


# ------------------------------------------------------------------ record


@_guard
def cmd_record(args: argparse.Namespace) -> int:
    from streamer.recording.writer import Recorder, RecorderConfig

    _setup_logging(False)
    cfg = RecorderConfig(feeds=tuple(args.feed), out=args.out, kinds=args.kinds,
                         flush_interval_s=args.flush_interval, chunk_size=args.chunk_size,
                         compression=args.compression, rcvhwm=args.rcvhwm)

    def ready(rec: Recorder) -> None:
        print(f"recording {','.join(cfg.kinds)} from {' '.join(rec.feed_endpoints)} -> {cfg.out}", flush=True)

    def flushed(stats) -> None:
        if args.verbose:
            print(f"flushed: durable={stats.durable} received={stats.received} "
                  f"malformed={sum(stats.malformed.values())} gaps={stats.gaps}", flush=True)

    recorder = Recorder(cfg, on_flush=flushed, on_ready=ready)
    _install_signal_stop(recorder.stop)
    recorder.run()
    st = recorder.stats
    print(f"recorded {st.recorded} messages ({st.received} received, {sum(st.malformed.values())} malformed "
          f"{dict(st.malformed) or ''}, {st.gaps} gaps = {st.gap_samples} missing samples) -> {cfg.out}", flush=True)
    return 0


# ------------------------------------------------------------------ recording info / repair


@_guard
def cmd_info(args: argparse.Namespace) -> int:
    from streamer.recording.scan import scan

    report = scan(args.file)
    print(json.dumps(report.to_json(), indent=1) if args.json else report.format_text())
    if not report.complete:
        print(f"warning: {args.file} is not finished ({report.problem}); "
              f"`radarstream recording repair {args.file} --out CLEAN.mcap` writes an indexed copy",
              file=sys.stderr)
    return 0


@_guard
def cmd_repair(args: argparse.Namespace) -> int:
    from pathlib import Path

    from streamer.recording.format import RecordingError
    from streamer.recording.scan import repair, scan

    if Path(args.out).exists() and not args.force:
        raise RecordingError(f"{args.out} exists (use --force to overwrite)")
    report = repair(args.file, args.out)
    clean = scan(args.out)
    if args.json:
        print(json.dumps({"source": report.to_json(), "output": clean.to_json()}, indent=1))
    else:
        state = "complete" if report.complete else f"torn: {report.problem}"
        print(f"source {args.file}: {state}; recovered {report.messages} messages, "
              f"{report.recovered_bytes} of {report.size} bytes")
        print(clean.format_text())
    return 0


# ------------------------------------------------------------------ replay


@_guard
def cmd_replay(args: argparse.Namespace) -> int:
    import threading

    import zmq

    from streamer.recording.replay import Replayer, publish_recording
    from streamer.recording.format import attach

    replayer = Replayer(args.file, kinds=args.kinds, sensors=_sensors(args), speed=args.speed, clock=args.clock,
                        start_s=args.start, end_s=args.end, loop=args.loop)
    if not replayer.topics:
        raise ValueError(f"nothing to replay: no {','.join(replayer.kinds)} channel for the selected sensors "
                         f"(recorded: {', '.join(replayer.recording.topics()) or 'none'})")
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.XPUB)  # a PUB that also sees subscriptions: we can wait for a subscriber
    sock.setsockopt(zmq.SNDHWM, args.sndhwm)
    endpoint = attach(sock, args.pub, "bind")
    stop = threading.Event()
    _install_signal_stop(stop.set)
    speed = "max" if replayer.speed == float("inf") else f"x{replayer.speed:g}"
    print(f"replaying {args.file} ({replayer.duration_s:.3f} s, {len(replayer.topics)} channel(s)) at {speed} "
          f"-> {endpoint}", flush=True)
    if args.wait > 0:
        if sock.poll(int(args.wait * 1000)):
            sock.recv()
        else:
            print(f"warning: no subscriber after {args.wait:g} s; replaying anyway", file=sys.stderr)
    stats = publish_recording(replayer, sock, stop)
    print(f"sent {stats.messages} messages ({stats.samples} samples) in {stats.seconds:.3f} s, "
          f"{stats.passes} pass(es)", flush=True)
    sock.close(linger=0 if stop.is_set() else 30_000)
    return 0


# ------------------------------------------------------------------ export / simulate-file / bench


@_guard
def cmd_export_csv(args: argparse.Namespace) -> int:
    from streamer.recording.export import export_csv

    res = export_csv(args.file, args.out, start=args.start, end=args.end, sensors=_sensors(args))
    print(f"wrote {res.rows} rows ({', '.join(res.columns)}) -> {res.path}")
    return 0


@_guard
def cmd_simulate_file(args: argparse.Namespace) -> int:
    from streamer.sim.publisher import FeedConfig
    from streamer.recording.writer import simulate_to_file
    from streamer.sim.simulator import RadarConfig

    cfg = FeedConfig(sensors=args.sensors, rate_hz=args.rate, samples_per_message=args.samples_per_message,
                     duration_s=args.duration, seed=args.seed, realtime=False,
                     radar=RadarConfig(manoeuvre_prob=args.manoeuvre_prob))
    res = simulate_to_file(args.out, cfg, epoch=args.epoch)
    print(f"wrote {res.messages} messages ({res.samples} samples, {args.sensors} sensor(s), "
          f"{res.duration_s:g} s, epoch {res.epoch}) -> {res.path}")
    return 0


@_guard
def cmd_bench_record(args: argparse.Namespace) -> int:
    from bench.record import bench_recording
    from bench.doc import machine_line, update_section

    res = bench_recording(duration_s=args.duration, samples_per_message=args.samples_per_message,
                          sensors=args.sensors, paced_sps=args.paced, replay_samples=args.replay_samples)
    parts = ["radarstream bench record" if getattr(args, "bench", None) == "record" else "radarstream bench-record"]
    for flag, value, default in (("--duration", args.duration, 3.0), ("--samples-per-message", args.samples_per_message, 64),
                                 ("--sensors", args.sensors, 4), ("--paced", args.paced, 500_000.0),
                                 ("--replay-samples", args.replay_samples, 2_000_000)):
        if value != default:
            parts.append(f"{flag} {value:g}")
    body = res.markdown(" ".join(parts), machine_line())
    print(body)
    if not args.no_write:
        print(f"wrote {update_section('recording', body, args.doc)}")
    return 0


# ------------------------------------------------------------------ parser


def _add_window(p: argparse.ArgumentParser) -> None:
    p.add_argument("--start", type=float, default=None, metavar="T",
                   help="start at T seconds from the beginning of the recording (receive time)")
    p.add_argument("--end", type=float, default=None, metavar="T",
                   help="stop before T seconds from the beginning of the recording")
    p.add_argument("--sensors", action="append", default=None, metavar="ID[,ID...]",
                   help="only these sensors (comma-separated; repeatable). Default: all")


def add_bench_record_arguments(b: argparse.ArgumentParser) -> None:
    """Flags and handler of the recording benchmark (also for hooking it as ``bench record``)."""
    b.add_argument("--duration", type=_positive, default=3.0, metavar="S", help="seconds per recording run (default 3)")
    b.add_argument("--samples-per-message", type=int, default=64, metavar="K", help="samples per message (default 64)")
    b.add_argument("--sensors", type=int, default=4, help="sensors in the streams (default 4)")
    b.add_argument("--paced", type=_positive, default=500_000.0, metavar="SPS",
                   help="offered rate of the paced recording run, samples/s (default 500000)")
    b.add_argument("--replay-samples", type=int, default=2_000_000, metavar="N",
                   help="samples in the replay file (default 2000000)")
    b.add_argument("--doc", default="docs/benchmarks.md", help="markdown file to update (default docs/benchmarks.md)")
    b.add_argument("--no-write", action="store_true", help="print the table only")
    b.set_defaults(func=cmd_bench_record)


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's sub-commands to the ``radarstream`` parser."""
    from streamer.recording.format import DEFAULT_KINDS

    r = sub.add_parser("record", help="record ZeroMQ feeds to an MCAP file (durable every flush interval)")
    r.add_argument("--feed", action="append", required=True, metavar="ENDPOINT",
                   help="endpoint to SUBscribe to (connects; prefix @ to bind); repeatable, e.g. the "
                        "simulator's and the service's")
    r.add_argument("--out", required=True, metavar="FILE.mcap", help="recording to write (overwritten)")
    r.add_argument("--kinds", type=_kinds, default=DEFAULT_KINDS, metavar="K[,K...]",
                   help=f"topic kinds to record (default {','.join(DEFAULT_KINDS)})")
    r.add_argument("--flush-interval", type=_positive, default=1.0, metavar="S",
                   help="seconds between durable flushes (chunk closed + fsync): the most a crash loses (default 1.0)")
    r.add_argument("--chunk-size", type=int, default=1 << 20, metavar="BYTES",
                   help="MCAP chunk size; chunks also close at every flush (default 1 MiB)")
    r.add_argument("--compression", choices=["zstd", "lz4", "none"], default="lz4",
                   help="chunk compression (default lz4: a third of zstd's CPU; `recording repair` rewrites with zstd)")
    r.add_argument("--rcvhwm", type=int, default=1_000_000, metavar="N",
                   help="receive queue in messages before ZeroMQ drops (default 1000000)")
    r.add_argument("-v", "--verbose", action="store_true",
                   help="print a line after every durable flush (messages on disk so far)")
    r.set_defaults(func=cmd_record)

    rc = sub.add_parser("recording", help="inspect or repair a recording")
    rsub = rc.add_subparsers(dest="recording_command", required=True, metavar="ACTION")
    ri = rsub.add_parser("info", help="channels, counts, sequence ranges and gaps (reads torn files too)")
    ri.add_argument("file", metavar="FILE.mcap", help="recording to inspect")
    ri.add_argument("--json", action="store_true", help="machine-readable output")
    ri.set_defaults(func=cmd_info)
    rr = rsub.add_parser("repair", help="recover a torn recording (recorder killed) into a clean, indexed copy")
    rr.add_argument("file", metavar="FILE.mcap", help="recording to recover (read only)")
    rr.add_argument("--out", required=True, metavar="CLEAN.mcap", help="clean copy to write")
    rr.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    rr.add_argument("--json", action="store_true", help="machine-readable output")
    rr.set_defaults(func=cmd_repair)

    rp = sub.add_parser("replay", help="publish a recording's samples with their original pacing")
    rp.add_argument("file", metavar="FILE.mcap", help="finished recording (repair a torn one first)")
    rp.add_argument("--pub", default="tcp://127.0.0.1:5555", metavar="ENDPOINT",
                    help="where to publish (binds; prefix > to connect). Default: the simulator's endpoint")
    rp.add_argument("--speed", type=_speed, default=1.0, metavar="X|max",
                    help="pacing factor: 1 real time, 10 ten times faster, max as fast as possible (default 1)")
    _add_window(rp)
    rp.add_argument("--loop", action="store_true",
                    help="start again at the end; each pass advances the epochs by one (a publisher restart)")
    rp.add_argument("--kinds", type=_kinds, default=("samples",), metavar="K[,K...]",
                    help="recorded kinds to publish (default samples)")
    rp.add_argument("--clock", choices=["log", "sample"], default="log",
                    help="pace on receive times (log) or on the samples' own timestamps (sample)")
    rp.add_argument("--wait", type=float, default=2.0, metavar="S",
                    help="wait up to S seconds for a first subscriber before sending (default 2; 0: no wait)")
    rp.add_argument("--sndhwm", type=int, default=1_000_000, metavar="N",
                    help="send queue in messages before ZeroMQ drops for a slow subscriber (default 1000000)")
    rp.set_defaults(func=cmd_replay)

    ex = sub.add_parser("export-csv", help="one CSV row per recorded sample, with prediction and truth")
    ex.add_argument("file", metavar="FILE.mcap", help="finished recording")
    ex.add_argument("--out", required=True, metavar="FILE.csv", help="CSV file to write")
    _add_window(ex)
    ex.set_defaults(func=cmd_export_csv)

    sf = sub.add_parser("simulate-file", help="write a simulated recording directly (no sockets, fast)")
    sf.add_argument("--out", required=True, metavar="FILE.mcap", help="recording to write")
    sf.add_argument("--sensors", type=int, default=1, help="simulated sensors (default 1)")
    sf.add_argument("--duration", type=_positive, default=60.0, metavar="S", help="simulated seconds (default 60)")
    sf.add_argument("--samples-per-message", type=int, default=1, metavar="K", help="samples per message (default 1)")
    sf.add_argument("--seed", type=int, default=0, help="simulator seed (default 0)")
    sf.add_argument("--rate", type=_positive, default=None, metavar="HZ",
                    help="samples per second per sensor (default: the radar's rate, 20)")
    sf.add_argument("--manoeuvre-prob", type=float, default=0.0, help="share of manoeuvring passes (default 0)")
    sf.add_argument("--epoch", type=int, default=None,
                    help="publisher epoch = time of the first sample in ns (default: now)")
    sf.set_defaults(func=cmd_simulate_file)

    b = sub.add_parser("bench-record", help="measure recording and replay throughput; writes docs/benchmarks.md")
    add_bench_record_arguments(b)


def main(argv: list[str] | None = None) -> int:
    """Only this module's commands (``python -m tools.cmd_record``)."""
    parser = argparse.ArgumentParser(prog="radarstream", description="radarstream recording commands")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
