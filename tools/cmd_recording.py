"""``radarstream recording info|repair``: what a (torn) recording holds; a clean, indexed copy of it."""

from __future__ import annotations

import argparse
import json
import sys


def cmd_info(args: argparse.Namespace) -> int:
    from streamer.recording.scan import scan

    report = scan(args.file)
    print(json.dumps(report.to_json(), indent=1) if args.json else report.format_text())
    if report.damaged:
        print(f"warning: {args.file}: {report.damage_text()}", file=sys.stderr)
    if not report.complete:
        print(f"warning: {args.file} is not finished ({report.problem}); "
              f"`radarstream recording repair {args.file} --out CLEAN.mcap` writes an indexed copy",
              file=sys.stderr)
    return 0


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
    if report.damaged:
        print(f"warning: {args.file}: {report.damage_text()}", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
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
