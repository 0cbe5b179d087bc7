"""``radarstream evaluate``: the quality tables of ``bench quality`` on your labelled recording."""

from __future__ import annotations

import argparse


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bench.evaluate import evaluate_recording, write_figure, write_report
    from tools.process import limit_threads

    limit_threads(1)
    ev = evaluate_recording(args.recording, args.weights, args.labels, radar=args.radar, window=args.window)
    per = ", ".join(f"{s}: {n}" for s, n in ev.sensors.items())
    print(f"{len(ev.data.encounters)} labelled encounters ({per}); R_max {ev.data.config.r_max_m:g} m, "
          f"{ev.data.config.rate_hz:g} Hz. MAE of Dmin in metres [95 % bootstrap interval] per peak-SNR band:\n")
    print(ev.tables())
    stem = Path(args.out or Path(args.recording).with_suffix(""))
    report = write_report(ev, stem.with_suffix(".evaluation.json"),
                          {"recording": str(args.recording), "labels": args.labels, "weights": args.weights or "shipped"})
    figure = write_figure(ev, stem.with_suffix(".evaluation.png"))
    print(f"\nwrote {report} and {figure}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("evaluate", help="per-SNR-band MAE and interval coverage of every model on a labelled recording")
    e.add_argument("recording", metavar="REC.mcap", help="a recording with a truth channel, or with --labels")
    e.add_argument("--weights", default=None, metavar="DIR", help="weights directory (default: the shipped weights)")
    e.add_argument("--labels", default=None, metavar="FILE.csv",
                   help="one row per encounter: sensor,start_s,end_s,dmin_m[,cpa_s] (docs/your-radar.md)")
    e.add_argument("--radar", default=None, metavar="PROFILE.json", help="the radar's profile (default: the weights')")
    e.add_argument("--window", type=int, default=512, help="window of the bidirectional and pooled models (samples)")
    e.add_argument("--out", default=None, metavar="STEM",
                   help="write STEM.evaluation.json and STEM.evaluation.png (default: next to the recording)")
    e.set_defaults(func=cmd_evaluate)
