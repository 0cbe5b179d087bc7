"""``radarstream explain``: attribution of one window, as figures (PNG) and numbers (JSON + NPZ).

The window comes from ``streamer.offline.explain_windows``, the explanation from
``models.attribution``, the figure from ``models.attribution.plotting``; the cost of each method is
``radarstream bench explain`` (``bench/explain.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tools.explain_options import METHOD_NAMES, add_method_options, method_options, tqdm_progress

EXPLAIN_DEFAULT_WINDOW = 512


def __getattr__(name: str):
    """The window sources (``ExplainError`` …), figures and the benchmark lived here before issue 12: still importable."""
    import importlib

    if name == "cmd_bench_explain":
        return importlib.import_module("tools.cmd_bench").cmd_bench_explain
    for home in ("streamer.offline.explain_windows", "models.attribution.plotting", "bench.explain"):
        module = importlib.import_module(home)
        if name in module.__all__:
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def cmd_explain(args: argparse.Namespace) -> int:
    import torch

    from models.attribution import EXPLAINERS, available_methods, explain_window
    from models.attribution.plotting import plot_explanation
    from streamer.offline.explain_windows import (ExplainError, load_target, per_step_estimates, recorded_window,
                                                  save_numbers, simulated_window)

    torch.set_num_threads(args.threads)
    if args.simulate == bool(args.input):
        raise ExplainError("give exactly one source: --simulate or --input FILE.mcap")
    if args.input:
        src = recorded_window(args.input, args.sensor, args.start, args.end, args.window)
        if src.origin["gaps_or_restarts"]:
            print(f"warning: the window spans {src.origin['gaps_or_restarts']} gap(s) or restart(s); the model sees "
                  "its samples as contiguous", file=sys.stderr)
    else:
        src = simulated_window(args.seed, args.encounter, args.window, args.manoeuvre_prob)
    model = load_target(args.target, args.weights)
    methods = available_methods(model, args.target) if args.method == "all" else (args.method,)
    if args.method == "attention" and "attention" not in methods:
        methods = ()
    if not methods:
        pooling = getattr(model, "pooling", None)
        raise ExplainError(f"attention weights need a pooled model with attention pooling; the {args.target} model"
                           + (f" uses {pooling!r} pooling" if pooling else " has no attention"))
    step = args.step
    if step is None and args.target != "pooled":
        step = src.cpa if src.cpa is not None and 0 <= src.cpa < src.length else src.length - 1
    if step is not None and not -src.length <= step < src.length:
        raise ExplainError(f"--step {step} is outside the window of {src.length} samples")
    curve = per_step_estimates(model, args.target, src.x)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for method in methods:
        slow = getattr(EXPLAINERS[method], "slow", False)
        progress, close = tqdm_progress(f"{method} ({args.target})", slow and not args.quiet)
        try:
            res = explain_window(args.target, model, src.x, method, step, progress=progress,
                                 **method_options(args, method))
        except ValueError as exc:
            raise ExplainError(str(exc)) from exc
        finally:
            close()
        stem = out / f"{args.target}-{method}"
        png = plot_explanation(res, src, curve, stem.with_suffix(".png"))
        js, npz = save_numbers(res, src, stem, {"weights": str(args.weights or "shipped")})
        truth = src.truth_m(res.step)
        truth_s = f"truth {truth:.0f} m" if truth is not None else "truth unknown"
        extra = f", delta {abs(res.delta) * res.r_max_m:.2g} m" if getattr(res, "delta", None) is not None else ""
        print(f"{method:>9}: estimate {res.estimate_m:.0f} m ({truth_s}), {res.seconds * 1000:.0f} ms{extra} -> {png}, "
              f"{js.name}, {npz.name}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    METHODS = METHOD_NAMES  # noqa: N806

    p = sub.add_parser(
        "explain", help="explain one window: attribution (Captum), attention, LSTM state and gates, as PNG + JSON + NPZ",
        description="Explain one estimate over one window of samples. Writes <out>/<target>-<method>.png (the "
                    "signal with the attribution as a heat band), .json (summary) and .npz (all numbers). "
                    "See docs/explain.md for what each method answers.",
    )
    src = p.add_argument_group("window source (one of)")
    src.add_argument("--simulate", action="store_true", help="take the window from the built-in simulator")
    src.add_argument("--seed", type=int, default=0, help="simulator seed (default 0)")
    src.add_argument("--encounter", type=int, default=None, metavar="K",
                     help="centre the window on the CPA of encounter K of the simulated stream (default: the first)")
    src.add_argument("--manoeuvre-prob", type=float, default=0.0, metavar="P",
                     help="simulator: share of manoeuvring passes (default 0)")
    src.add_argument("--input", default=None, metavar="FILE.mcap", help="take the window from a recording")
    src.add_argument("--sensor", default=None, metavar="S",
                     help="recording: sensor id (default: the only one recorded)")
    src.add_argument("--start", type=float, default=None, metavar="SEC",
                     help="recording: window start, seconds from the start of the recording (default: its start)")
    src.add_argument("--end", type=float, default=None, metavar="SEC",
                     help="recording: window end (exclusive), seconds; the window also stops after --window samples")
    p.add_argument("--method", choices=[*METHODS, "all"], default="ig",
                   help="saliency | ig (integrated gradients) | occlusion | ablation | lime | shap | attention | "
                        "state | gates | all (every method that applies to the target; default ig)")
    p.add_argument("--target", choices=["causal", "bidir", "pooled"], default="causal",
                   help="which model's estimate to explain (default causal)")
    p.add_argument("--step", type=int, default=None, metavar="T",
                   help="step whose estimate is explained (default: the CPA of the window's encounter, else the "
                        "last step; ignored by the pooled model, which has one estimate per window)")
    p.add_argument("--window", type=int, default=EXPLAIN_DEFAULT_WINDOW, metavar="W",
                   help=f"window length in samples (default {EXPLAIN_DEFAULT_WINDOW}); with --input, the most samples taken")
    p.add_argument("--out", default="explain-out", metavar="DIR", help="output directory (default ./explain-out)")
    p.add_argument("--weights", default=None, metavar="DIR", help="weights directory (default: the shipped weights)")
    add_method_options(p)
    p.set_defaults(func=cmd_explain, ig_tolerance=0.02)
