"""``radarstream bench NAME``: every benchmark behind one command; each writes its section of
docs/benchmarks.md through ``bench.doc``. The code of each benchmark is ``bench/<name>.py``.

``bench-record``, ``bench-gui`` and ``bench-explain`` are the old spellings: they still run (and
write their own spelling into the section's command line) but are hidden from ``--help``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from tools.options import add_field_option, hidden_parser, positive

DOC = "docs/benchmarks.md"


# ------------------------------------------------------------------ handlers (thin)


def cmd_bench_stream(args: argparse.Namespace) -> int:
    import json

    from bench import stream
    from bench.doc import command_line, machine_line, write_section

    res = stream.run(args.weights, quick=args.quick, backend=args.backend, progress=lambda m: print(m, flush=True))
    ok, why = stream.may_write(res, args.force)
    forced = why if args.force and "busy" in why else None
    md = stream.to_markdown(res, command_line(args.bench_prog, [("--quick", args.quick, False),
                                                                ("--backend", args.backend, "onnx"),
                                                                ("--force", bool(forced), False)]),
                            machine_line(), forced=forced)
    print(md)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({k: (v if k != "sockets" else [s.__dict__ for s in v]) for k, v in res.items()}, fh, indent=2)
    if not args.no_write:
        print(why, flush=True)
    write_section("stream-quick" if args.quick else "stream", md, args.doc, write=not args.no_write and ok)
    return 0


def cmd_bench_quality(args: argparse.Namespace) -> int:
    import time

    from bench.doc import command_line, machine_line, weights_label, write_section
    from bench.alerts import alert_table
    from bench.quality import HELD_OUT_SEED, evaluate_models, failure_table, held_out, mae_table
    from models.bundle import load_bundle
    from streamer.sim.simulator import MANOEUVRING, RadarConfig
    from tools.process import limit_threads

    if args.shifted:  # the shifted-radars section (bench/quality.py), labelled before/after
        from bench.quality import main as shifted
        return shifted(["--label", args.label, "--threads", str(args.threads), "--doc", args.doc,
                        "--encounters", str(args.encounters or (150 if args.quick else 1000))]
                       + ["--weights", args.weights] * bool(args.weights) + ["--no-declare"] * args.no_declare
                       + ["--no-write"] * args.no_write)
    limit_threads(args.threads)
    n = args.encounters or (150 if args.quick else 2000)
    t0 = time.perf_counter()
    bundle = load_bundle(args.weights)
    sections = []
    for title, radar, seed in (("Straight passes", RadarConfig(), HELD_OUT_SEED),
                               ("Manoeuvring passes (turning or accelerating)", MANOEUVRING, HELD_OUT_SEED + 1)):
        data = held_out(n, radar, seed)
        est = evaluate_models(bundle, data)
        tables = mae_table(est, data) + "\n\n" + failure_table(est, data) + "\n\n" + alert_table(bundle, data, args.alert_dmin_m)
        print(f"\n{title}\n{tables}", flush=True)
        sections.append(f"### {title} ({len(data.encounters)} encounters, seed {seed})\n\n{tables}\n")
    cmd = command_line(args.bench_prog, [("--quick", args.quick, False), ("--encounters", args.encounters, None)])
    body = (
        f"## Model quality{' (quick)' if args.quick else ''}\n\n"
        f"MAE of Dmin in metres [95% bootstrap interval] per peak-SNR band, on held-out simulated encounters "
        f"(default simulator settings, R_max 1000 m, 20 Hz; seeds never used in training), and the "
        f"near-miss alerts `serve --alert-dmin-m {args.alert_dmin_m:g}` would raise on them (bench/alerts.py). "
        f"Weights: {weights_label(args.weights)}.\n\n"
        f"Command: `{cmd}` ({time.perf_counter() - t0:.0f} s; {machine_line()}).\n\n" + "\n".join(sections)
    )
    write_section("quality-quick" if args.quick else "quality", body, args.doc, write=not args.no_write)
    return 0


def cmd_bench_record(args: argparse.Namespace) -> int:
    from bench.doc import command_line, machine_line, write_section
    from bench.record import RecordBenchConfig, bench_recording

    d = RecordBenchConfig()
    res = bench_recording(duration_s=args.duration, samples_per_message=args.samples_per_message,
                          sensors=args.sensors, paced_sps=args.paced, replay_samples=args.replay_samples)
    cmd = command_line(args.bench_prog, [
        ("--duration", args.duration, d.duration_s), ("--samples-per-message", args.samples_per_message,
                                                      d.samples_per_message),
        ("--sensors", args.sensors, d.sensors), ("--paced", args.paced, d.paced_sps),
        ("--replay-samples", args.replay_samples, d.replay_samples)])
    body = res.markdown(cmd, machine_line())
    print(body)
    write_section("recording", body, args.doc, write=not args.no_write)
    return 0


def cmd_bench_gui(args: argparse.Namespace) -> int:
    from bench.doc import command_line, write_section
    from bench.gui import BenchConfig, markdown, run_bench

    cfg = BenchConfig(sensors=args.sensors, rate_hz=args.rate, window_s=args.window, frames=args.frames,
                      live_s=args.live, weights=Path(args.weights) if args.weights else None)
    result = run_bench(cfg, progress=lambda m: print(m, flush=True))
    d = BenchConfig()
    body = markdown(result, command_line(args.bench_prog, [
        ("--sensors", cfg.sensors, d.sensors), ("--rate", cfg.rate_hz, d.rate_hz), ("--window", cfg.window_s, d.window_s),
        ("--frames", cfg.frames, d.frames), ("--live", cfg.live_s, d.live_s)]))
    print(body)
    write_section("gui", body, args.doc, write=not args.no_write)
    return 0 if result.kept_up else 1


def cmd_bench_explain(args: argparse.Namespace) -> int:
    from bench.doc import command_line, machine_line, write_section
    from bench.explain import ExplainBenchConfig, run_bench
    from models.attribution import METHODS
    from tools.explain_options import method_options, tqdm_progress

    cfg = ExplainBenchConfig(window=args.window, weights=Path(args.weights) if args.weights else None,
                             untrained=args.untrained, hidden=args.hidden, pooling=args.pooling, repeats=args.repeats,
                             slow_repeats=args.slow_repeats, threads=args.threads, ig_steps=args.ig_steps)
    progress, close = tqdm_progress(args.bench_prog.removeprefix("radarstream "), not args.quiet)
    try:
        res = run_bench(cfg, {m: method_options(args, m) for m in METHODS}, progress)
    finally:
        close()
    d = ExplainBenchConfig()
    cmd = command_line(args.bench_prog, [("--window", args.window, d.window), ("--untrained", args.untrained, False),
                                         ("--weights", args.weights, None), ("--threads", args.threads, d.threads)])
    body = res.markdown(cmd, machine_line())
    print(res.table)
    print(body.splitlines()[-1])
    write_section("explain", body, args.doc, write=not args.no_write)
    return 0


# ------------------------------------------------------------------ parsers

def _common(p: argparse.ArgumentParser, prog: str, section: str) -> None:
    p.add_argument("--doc", default=DOC, help=f"markdown file to update (section '{section}'; default {DOC})")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.set_defaults(bench_prog=prog)


def _stream(p: argparse.ArgumentParser, prog: str) -> None:
    p.add_argument("--quick", action="store_true", help="CI-sized run (about 1 minute)")
    p.add_argument("--backend", choices=["onnx", "torch", "fused", "auto"], default="onnx",
                   help="backend of the service scenarios")
    p.add_argument("--weights", default=None, metavar="DIR", help="weights directory (default: the shipped weights)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the raw figures as JSON")
    p.add_argument("--force", action="store_true",
                   help="write docs/benchmarks.md even when the machine is busy (1-minute load above 0.5 per core); "
                        "the section then says the run was forced")
    _common(p, prog, "stream")
    p.set_defaults(func=cmd_bench_stream)


def _quality(p: argparse.ArgumentParser, prog: str) -> None:
    p.add_argument("--quick", action="store_true", help="CI-sized run (150 encounters per scenario)")
    p.add_argument("--encounters", type=int, default=None, help="override the number of encounters")
    p.add_argument("--weights", default=None, metavar="DIR", help="weights directory (default: the shipped weights)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--shifted", action="store_true",
                   help="the shifted-radars section instead: 10 / 50 Hz, R_max 2000 m, noise +6 dB, RCS spread 30 dB, coverage")
    p.add_argument("--label", default="after", help="with --shifted: the section's label (before | after)")
    p.add_argument("--no-declare", action="store_true", help="with --shifted: the models at their own R_max")
    p.add_argument("--alert-dmin-m", type=positive, default=100.0, metavar="M",
                   help="near-miss threshold of the alert table (recall, false alarms, lead time; default 100)")
    _common(p, prog, "quality")
    p.set_defaults(func=cmd_bench_quality)


def _record(p: argparse.ArgumentParser, prog: str) -> None:
    from bench.record import RecordBenchConfig as C

    add_field_option(p, "--duration", C, "duration_s", type=positive, metavar="S")
    add_field_option(p, "--samples-per-message", C, "samples_per_message", metavar="K")
    add_field_option(p, "--sensors", C, "sensors")
    add_field_option(p, "--paced", C, "paced_sps", type=positive, metavar="SPS")
    add_field_option(p, "--replay-samples", C, "replay_samples", metavar="N")
    _common(p, prog, "recording")
    p.set_defaults(func=cmd_bench_record)


def add_bench_record_arguments(p: argparse.ArgumentParser, prog: str = "radarstream bench record") -> None:
    """Flags and handler of the recording benchmark on ``p`` (the pre-issue-12 hook, kept)."""
    _record(p, prog)


def _gui(p: argparse.ArgumentParser, prog: str) -> None:
    from bench.gui import BenchConfig as C

    add_field_option(p, "--sensors", C, "sensors")
    add_field_option(p, "--rate", C, "rate_hz", type=positive, metavar="HZ")
    add_field_option(p, "--window", C, "window_s", type=positive, metavar="S")
    add_field_option(p, "--frames", C, "frames")
    add_field_option(p, "--live", C, "live_s", metavar="S")
    p.add_argument("--weights", default=None, metavar="DIR",
                   help="weights for the service and the state view (default: shipped, else random weights: timing only)")
    _common(p, prog, "gui")
    p.set_defaults(func=cmd_bench_gui)


def _explain(p: argparse.ArgumentParser, prog: str) -> None:
    from bench.explain import ExplainBenchConfig as C
    from tools.explain_options import add_method_options

    add_field_option(p, "--window", C, "window", metavar="W", help="window length")
    p.add_argument("--weights", default=None, metavar="DIR", help="weights directory (default: the shipped weights)")
    add_field_option(p, "--untrained", C, "untrained", action="store_true")
    add_field_option(p, "--hidden", C, "hidden", metavar="H")
    add_field_option(p, "--pooling", C, "pooling", choices=["mean", "last", "attention", "multihead"])
    add_field_option(p, "--repeats", C, "repeats", metavar="N")
    add_field_option(p, "--slow-repeats", C, "slow_repeats", metavar="N")
    _common(p, prog, "explain")
    add_method_options(p)
    p.set_defaults(func=cmd_bench_explain)


BENCHMARKS: dict[str, tuple[Callable[[argparse.ArgumentParser, str], None], str]] = {
    "stream": (_stream, "backends, naive baselines, FLOP floor and the service over real sockets"),
    "quality": (_quality, "MAE of Dmin per SNR band on a held-out simulated set"),
    "record": (_record, "recording and replay throughput (MCAP over ZeroMQ)"),
    "gui": (_gui, "the monitor's redraw (16 sensors x 1 kHz, 60 s window) and whether it keeps up live"),
    "explain": (_explain, "time every explanation method on one window for the three models"),
    "cluster": (lambda p, prog: __import__("bench.cluster").cluster.add_arguments(p, prog), "Ray shards: scaling, latency, failover"),
}
"""Benchmark name -> (adds its flags, one-line help). The order of ``bench --help``."""

ALIASES = {"bench-record": "record", "bench-gui": "gui", "bench-explain": "explain"}
"""Old spellings, hidden from ``--help``."""


def register(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("bench", help=f"benchmarks ({', '.join(BENCHMARKS)}); each writes its section of {DOC}",
                       description=f"Run one benchmark; it prints its table and writes its section of {DOC}.")
    bsub = b.add_subparsers(dest="bench", required=True, metavar="NAME")
    for name, (add, text) in BENCHMARKS.items():
        add(bsub.add_parser(name, help=text, description=text), f"radarstream bench {name}")
    for alias, name in ALIASES.items():
        add, text = BENCHMARKS[name]
        add(hidden_parser(sub, alias, description=f"{text} (old spelling of `radarstream bench {name}`)"),
            f"radarstream {alias}")
