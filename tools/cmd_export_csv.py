"""``radarstream export-csv``: one CSV row per recorded sample, with prediction and truth (docs/csv.md)."""

from __future__ import annotations

import argparse

from tools.options import add_time_window, sensor_list


def cmd_export_csv(args: argparse.Namespace) -> int:
    from streamer.recording.export import export_csv

    import sys

    res = export_csv(args.file, args.out, start=args.start, end=args.end, sensors=sensor_list(args))
    print(f"wrote {res.rows} rows ({', '.join(res.columns)}) -> {res.path}")
    damage = res.integrity.summary(args.file) if res.integrity is not None else None
    if damage:
        print(f"warning: {damage}", file=sys.stderr)
    if res.undecodable:
        print(f"warning: {res.undecodable} recorded samples message(s) did not decode and are not in the CSV",
              file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser("export-csv", help="one CSV row per recorded sample, with prediction and truth")
    ex.add_argument("file", metavar="FILE.mcap", help="finished recording")
    ex.add_argument("--out", required=True, metavar="FILE.csv", help="CSV file to write")
    add_time_window(ex)
    ex.set_defaults(func=cmd_export_csv)
