"""Explanation cost: wall time of every attribution method on one window, for the three models.

``radarstream bench explain`` writes the 'explain' section of docs/benchmarks.md. The methods and
their options are ``models.attribution``'s; this module only times them.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["BENCH_WINDOW", "ExplainBenchConfig", "ExplainBenchResult", "MethodCost", "bench_models", "cost_table",
           "run_bench", "time_methods"]

ProgressFn = Callable[[int, int], None]

BENCH_WINDOW = 1024
"""Samples in the timed window (51 s at 20 Hz)."""


@dataclass(frozen=True)
class MethodCost:
    """Wall time of one method on one window (median of ``repeats`` runs, first run excluded
    when repeated: it pays one-off allocations)."""

    method: str
    target: str
    window: int
    seconds: float
    repeats: int
    params: Mapping[str, Any]


def time_methods(
    models: Mapping[str, nn.Module],
    x: np.ndarray | torch.Tensor,
    *,
    methods: Sequence[str] | None = None,
    step: int | None = None,
    repeats: int = 3,
    slow_repeats: int = 1,
    opts: Mapping[str, Mapping[str, Any]] | None = None,
    progress: ProgressFn | None = None,
) -> list[MethodCost]:
    """Time every applicable method on window ``x`` for each model in ``models`` (kind -> model).

    ``methods`` defaults to every method; ``opts[method]`` overrides that method's options.
    ``progress(done, total)`` counts timed runs.
    """
    from models.attribution import METHODS, available_methods, make_explainer

    methods = METHODS if methods is None else methods
    opts = opts or {}
    plan = [(kind, m) for kind, model in models.items() for m in methods if m in available_methods(model, kind)]
    out: list[MethodCost] = []
    for n, (kind, method) in enumerate(plan):
        explainer = make_explainer(method, models[kind], kind, **dict(opts.get(method, {})))
        runs = slow_repeats if getattr(explainer, "slow", False) else repeats
        times, params = [], {}
        for _ in range(max(runs, 1) + (1 if runs > 1 else 0)):
            t0 = time.perf_counter()
            res = explainer.explain(x, step)
            times.append(time.perf_counter() - t0)
            params = dict(res.params)
        kept = times[1:] if len(times) > 1 else times
        out.append(MethodCost(method, kind, int(np.asarray(x).shape[-2]), statistics.median(kept), len(kept),
                              MappingProxyType(params)))
        if progress is not None:
            progress(n + 1, len(plan))
    return out


@dataclass(frozen=True)
class ExplainBenchConfig:
    """What ``radarstream bench explain`` times (its flags have these defaults)."""

    window: int = BENCH_WINDOW
    weights: Path | None = None
    """Weights directory; None: the shipped weights."""
    untrained: bool = False
    """Time untrained models of the shipped architecture instead of loading weights (same cost)."""
    hidden: int = 64
    """With ``untrained``: LSTM width (64, as shipped)."""
    pooling: str = "attention"
    """With ``untrained``: pooling of the pooled model (attention, so attention is timed too)."""
    repeats: int = 3
    """Timed runs of the fast methods."""
    slow_repeats: int = 1
    """Timed runs of the slow methods (occlusion, ablation, LIME, SHAP)."""
    threads: int = 1
    ig_steps: int = 50


def bench_models(cfg: ExplainBenchConfig) -> tuple[dict[str, nn.Module], str]:
    """The three models to time, and a note on which weights they carry."""
    import torch

    from bench.doc import weights_label
    from models.bundle import build_model
    from streamer.offline.explain_windows import load_target

    if cfg.untrained:
        torch.manual_seed(0)
        arch = {"hidden_size": cfg.hidden, "num_layers": 2, "r_max_m": 1000.0}
        models = {k: build_model(k, dict(arch, pooling=cfg.pooling) if k == "pooled" else arch).eval()
                  for k in ("causal", "bidir", "pooled")}
        return models, (f"untrained weights of the shipped architecture (2 layers x {cfg.hidden}, pooled with "
                        f"{cfg.pooling} pooling; cost does not depend on the weight values)")
    models = {k: load_target(k, None if cfg.weights is None else str(cfg.weights)) for k in ("causal", "bidir", "pooled")}
    pooling = getattr(models["pooled"], "pooling", "?")
    hidden = models["causal"].lstm.hidden_size
    return models, f"{weights_label(cfg.weights)}: 2 layers x {hidden}, pooled with {pooling} pooling"


def cost_table(costs: Sequence[MethodCost], targets: Sequence[str]) -> str:
    """Markdown: one row per method, one column per target, milliseconds."""
    from models.attribution import EXPLAINERS

    by = {(c.method, c.target): c for c in costs}
    methods = list(dict.fromkeys(c.method for c in costs))
    head = "| method | settings | " + " | ".join(f"{t} (ms)" for t in targets) + " |"
    rows = [head, "|---|---|" + "---:|" * len(targets)]
    for m in methods:
        some = next(c for c in costs if c.method == m)
        shown = {k: v for k, v in some.params.items()
                 if k not in ("baseline", "batch_size", "space", "features", "perturbed_samples")}
        settings = ", ".join(f"{k}={v}" for k, v in shown.items())
        cells = [f"{by[(m, t)].seconds * 1000:,.0f}" if (m, t) in by else "n/a" for t in targets]
        rows.append(f"| {EXPLAINERS[m].title} | {settings} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


@dataclass(frozen=True)
class ExplainBenchResult:
    config: ExplainBenchConfig
    weights_note: str
    table: str
    anchor_ms: Mapping[str, float]
    """Saliency and IG on the causal model over a 100-sample window: comparable across machines."""
    seconds: float

    def markdown(self, command: str, machine: str) -> str:
        """The 'explain' section of docs/benchmarks.md."""
        c, a = self.config, self.anchor_ms
        load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
        return (
            f"## Explanation cost\n\n"
            f"Wall time of one explanation of one window of {c.window} samples (simulator seed 0, centred on the first "
            f"encounter's CPA; per-step targets explained at the CPA, as `radarstream explain` does), {c.threads} torch "
            f"thread(s); median of {c.repeats} runs after a warm-up for the fast methods, {c.slow_repeats} run(s) for "
            f"occlusion, ablation, LIME and SHAP. Models: {self.weights_note}. Settings are the `radarstream explain` "
            f"defaults except IG, timed at a fixed {c.ig_steps} steps (explain doubles them until |delta| <= 2% of the "
            f"explained change, up to 800 steps, so up to ~30x this when the model is stiff along the path). "
            f"LIME/SHAP/ablation features are time segments x channel; for the causal target LIME/SHAP perturb only the "
            f"samples up to t. Load average at the end: {load} (the 2 CPUs were shared).\n\n"
            f"Command: `{command}` ({self.seconds:.0f} s; {machine}).\n\n{self.table}\n\n"
            f"Anchor (causal, 100-sample window): Saliency {a.get('saliency', float('nan')):.0f} ms, "
            f"IG n_steps={c.ig_steps} {a.get('ig', float('nan')):.0f} ms (reference on this project's machine: "
            f"~9 ms and ~115 ms).\n"
        )


def run_bench(cfg: ExplainBenchConfig, opts: Mapping[str, Mapping[str, Any]],
              progress: ProgressFn | None = None) -> ExplainBenchResult:
    """Time every method (``opts[method]``: its options) for the three models on one window."""
    import torch

    from models.attribution import METHODS
    from streamer.offline.explain_windows import simulated_window

    torch.set_num_threads(cfg.threads)
    models, weights_note = bench_models(cfg)
    src = simulated_window(0, 0, cfg.window)
    t0 = time.perf_counter()
    costs = time_methods(models, src.x, methods=METHODS, opts=opts, step=src.cpa, repeats=cfg.repeats,
                         slow_repeats=cfg.slow_repeats, progress=progress)
    anchor_src = simulated_window(0, 0, 100)
    anchor = time_methods({"causal": models["causal"]}, anchor_src.x, methods=("saliency", "ig"), opts=opts,
                          repeats=max(cfg.repeats, 3))
    return ExplainBenchResult(cfg, weights_note, cost_table(costs, list(models)),
                              MappingProxyType({c.method: c.seconds * 1000 for c in anchor}), time.perf_counter() - t0)
