"""``radarstream record``: ZeroMQ feeds to an MCAP file, durable every flush interval.

``python -m tools.cmd_record ...`` runs the recording family (record, recording, replay,
export-csv, simulate --out / simulate-file, bench-record) without importing the other commands:
quick start-up for scripts and the subprocess tests.
"""

from __future__ import annotations

import argparse
import sys

from tools.options import add_curve_arguments, add_field_option, curve_config, positive, topic_kinds

FAMILY = ("cmd_record", "cmd_recording", "cmd_replay", "cmd_export_csv", "cmd_simulate", "cmd_bench")
"""The modules ``python -m tools.cmd_record`` registers."""


def cmd_record(args: argparse.Namespace) -> int:
    from streamer.recording.writer import Recorder, RecorderConfig
    from tools.process import install_signal_stop, setup_logging

    setup_logging(False)
    cfg = RecorderConfig(feeds=tuple(args.feed), out=args.out, kinds=args.kinds,
                         flush_interval_s=args.flush_interval, chunk_size=args.chunk_size,
                         compression=args.compression, rcvhwm=args.rcvhwm, curve=curve_config(args))

    def ready(rec: Recorder) -> None:
        print(f"recording {','.join(cfg.kinds)} from {' '.join(rec.feed_endpoints)} -> {cfg.out}", flush=True)

    def flushed(stats) -> None:
        if args.verbose:
            print(f"flushed: durable={stats.durable} received={stats.received} "
                  f"malformed={sum(stats.malformed.values())} gaps={stats.gaps}", flush=True)

    def rolled(done: str, nxt: str) -> None:
        print(f"{done} is full (the most channels one MCAP file can hold); continuing in {nxt}", flush=True)

    recorder = Recorder(cfg, on_flush=flushed, on_ready=ready, on_rollover=rolled)
    install_signal_stop(recorder.stop)
    recorder.run()
    st = recorder.stats
    parts = f" (+ {len(st.parts) - 1} more part(s): {', '.join(st.parts[1:])})" if len(st.parts) > 1 else ""
    print(f"recorded {st.recorded} messages ({st.received} received, {sum(st.malformed.values())} malformed "
          f"{dict(st.malformed) or ''}, {st.gaps} gaps = {st.gap_samples} missing samples) -> {cfg.out}{parts}",
          flush=True)
    watch = recorder.refusal_watch
    if watch is not None and watch.refusals:
        print(f"warning: {watch.refusals} refused handshake(s), {watch.reconnects} reconnection(s) after a refusal"
              + (f"; still refused: {', '.join(watch.refused_now)}" if watch.refused_now else ""),
              file=sys.stderr, flush=True)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from streamer.recording.writer import RecorderConfig

    r = sub.add_parser("record", help="record ZeroMQ feeds to an MCAP file (durable every flush interval)")
    r.add_argument("--feed", action="append", required=True, metavar="ENDPOINT",
                   help="endpoint to SUBscribe to (connects; prefix @ to bind); repeatable, e.g. the "
                        "simulator's and the service's")
    r.add_argument("--out", required=True, metavar="FILE.mcap", help="recording to write (overwritten)")
    add_field_option(r, "--kinds", RecorderConfig, "kinds", type=topic_kinds, metavar="K[,K...]",
                     default_text=",".join(RecorderConfig.kinds))
    add_field_option(r, "--flush-interval", RecorderConfig, "flush_interval_s", type=positive, metavar="S")
    add_field_option(r, "--chunk-size", RecorderConfig, "chunk_size", metavar="BYTES",
                     help="MCAP chunk size; chunks also close at every flush", default_text="1 MiB")
    add_field_option(r, "--compression", RecorderConfig, "compression", choices=["zstd", "lz4", "none"],
                     help="chunk compression (lz4: a third of zstd's CPU; `recording repair` rewrites with zstd)")
    add_field_option(r, "--rcvhwm", RecorderConfig, "rcvhwm", metavar="N")
    add_curve_arguments(r)
    r.add_argument("-v", "--verbose", action="store_true",
                   help="print a line after every durable flush (messages on disk so far)")
    r.set_defaults(func=cmd_record)


_MOVED = {"cmd_info": ("tools.cmd_recording", "cmd_info"), "cmd_repair": ("tools.cmd_recording", "cmd_repair"),
          "cmd_replay": ("tools.cmd_replay", "cmd_replay"), "cmd_export_csv": ("tools.cmd_export_csv", "cmd_export_csv"),
          "cmd_simulate_file": ("tools.cmd_simulate", "cmd_simulate"),
          "cmd_bench_record": ("tools.cmd_bench", "cmd_bench_record"),
          "add_bench_record_arguments": ("tools.cmd_bench", "add_bench_record_arguments")}
"""The recording family's handlers lived here before each command got its own module (issue 12)."""


def __getattr__(name: str):
    if name in _MOVED:
        import importlib

        module, attr = _MOVED[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> int:
    """Only the recording family (``python -m tools.cmd_record``), with the CLI's error handling."""
    from tools.cli import run

    return run(argv, modules=FAMILY, description="radarstream recording commands")


if __name__ == "__main__":
    sys.exit(main())
