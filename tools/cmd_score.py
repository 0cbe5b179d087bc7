"""``radarstream score``: offline per-sample estimates of a recording or a simulation, as CSV/Parquet.

Heavy modules (torch, onnxruntime, the engine) are imported in the handler only: every
``radarstream`` command builds this parser.
"""

from __future__ import annotations

import argparse
import sys

from tools.options import add_field_option


def cmd_score(args: argparse.Namespace) -> int:
    from pathlib import Path

    from streamer.offline.scoring import (ScoreError, recorded_frames, score_messages, simulated_frames,
                                  summary_table, write_csv, write_parquet)

    if (args.input is None) == (args.simulate is None):
        raise ScoreError("give either an INPUT recording or --simulate SECONDS (not both, not neither)")
    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ScoreError(f"--out must end in .csv or .parquet, not {out.name!r}")
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise ScoreError("writing Parquet needs pyarrow: pip install -e '.[parquet]' (the project's extra), "
                             "or use --out FILE.csv") from None
    if args.simulate is not None:
        frames, total = simulated_frames(args.simulate, args.seed, args.sensors, args.samples_per_message)
        source = f"simulation ({args.simulate:g} s, seed {args.seed}, {args.sensors} sensor(s))"
    else:
        frames, total = recorded_frames(args.input)
        source = str(args.input)

    from models.weights import WeightsError
    from streamer.live.backends import make_backend

    try:
        backend = make_backend(args.backend, args.weights, profile=args.radar)
    except (WeightsError, OSError, ValueError) as exc:
        raise ScoreError(f"cannot load the causal model: {exc}") from None

    from tqdm import tqdm

    long_input = total is None or total >= 2000
    with tqdm(total=total, desc="score", unit="msg", leave=False, file=sys.stderr,
              disable=True if (args.quiet or not long_input) else None, mininterval=0.5) as bar:
        try:
            result = score_messages(frames, backend, weights_dir=args.weights, bidir_backend=args.backend,
                                    window=args.window, hop=args.hop, max_gap=args.max_gap, progress=bar.update)
        except WeightsError as exc:
            raise ScoreError(f"cannot load the bidirectional model: {exc}") from None
    if result.rows == 0:
        raise ScoreError(f"{source}: no samples to score ({result.rejected} message(s) rejected)")
    (write_parquet if suffix == ".parquet" else write_csv)(result, out)
    print(summary_table(result))
    extra = f", {result.rejected} rejected message(s)" if result.rejected else ""
    noted = {k: v for k, v in result.counters.items() if k in ("duplicate", "gap", "epoch_change", "backwards") and v}
    if noted:
        extra += ", stream: " + ", ".join(f"{k} {v}" for k, v in sorted(noted.items()))
    print(f"wrote {result.rows} rows from {source}{extra} -> {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from streamer.live.engine import StreamPolicy
    from streamer.live.rescore import RescoreConfig
    from streamer.sim.publisher import FeedConfig

    p = sub.add_parser(
        "score", help="per-sample causal, bidirectional, classical and hybrid estimates of a recording or simulation (CSV/Parquet)",
        description="Run every sensor's samples through the same stream engine and backend as `serve` (gaps, "
                    "epochs and duplicates handled as live) and write one row per sample: sensor, seq, time_ns, "
                    "amplitude, distance, causal (normalised Dmin), causal_m, bidir (last re-scoring window "
                    "covering the sample; empty where none does), classical, hybrid (normalised, as serve "
                    "publishes them; empty where undefined) and, when the source carries ground truth, dmin_m, "
                    "in_encounter, true_range_m. Prints a per-sensor summary (MAE in metres over in-encounter "
                    "samples when truth is known).",
    )
    p.add_argument("input", nargs="?", default=None, metavar="INPUT",
                   help="MCAP recording to score (or use --simulate)")
    p.add_argument("--out", required=True, metavar="FILE.csv|FILE.parquet", help="output table")
    p.add_argument("--simulate", type=float, default=None, metavar="SECONDS",
                   help="score a fresh simulation of this many seconds instead of a recording")
    add_field_option(p, "--seed", FeedConfig, "seed", help="--simulate: simulator seed")
    add_field_option(p, "--sensors", FeedConfig, "sensors", help="--simulate: number of sensors")
    add_field_option(p, "--samples-per-message", FeedConfig, "samples_per_message", metavar="K",
                     help="--simulate: samples per message, as `radarstream simulate`")
    p.add_argument("--weights", default=None, metavar="DIR", help="weights directory (default: shipped)")
    p.add_argument("--radar", default=None, metavar="PROFILE.json",
                   help="the radar's profile (default: the profile stored with the weights)")
    p.add_argument("--backend", choices=["onnx", "torch"], default="onnx", help="inference backend (default onnx)")
    add_field_option(p, "--window", RescoreConfig, "window", help="re-scoring window in samples, as serve --rescore")
    add_field_option(p, "--hop", RescoreConfig, "hop")
    add_field_option(p, "--max-gap", StreamPolicy, "max_gap")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_score)
