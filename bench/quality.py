"""Model quality on a held-out simulated set: MAE of Dmin in metres, per peak-SNR band."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from models.bundle import ModelBundle
from streamer.sim.simulator import Encounter, RadarConfig, StreamSimulator

SNR_BANDS_DB: tuple[tuple[float, float], ...] = ((-np.inf, 5.0), (5.0, 10.0), (10.0, 20.0), (20.0, np.inf))
HELD_OUT_SEED = 10_001
"""Seed of the held-out set: never used for training (training uses seeds < 10,000)."""


def band_label(lo: float, hi: float) -> str:
    if lo == -np.inf:
        return f"< {hi:g} dB"
    if hi == np.inf:
        return f"≥ {lo:g} dB"
    return f"{lo:g}–{hi:g} dB"


@dataclass
class HeldOutSet:
    """A continuous held-out stream and the encounters wholly inside it."""

    samples: np.ndarray
    encounters: list[Encounter]
    config: RadarConfig


def held_out(n_encounters: int, config: RadarConfig = RadarConfig(), seed: int = HELD_OUT_SEED) -> HeldOutSet:
    sim = StreamSimulator(config, seed)
    parts = []
    while len([e for e in sim.encounters if e.stop + 600 <= sum(p.shape[0] for p in parts)]) < n_encounters:
        parts.append(sim.read(8192).samples)
    samples = np.concatenate(parts)
    encs = [e for e in sim.encounters if e.stop + 600 <= samples.shape[0]][:n_encounters]
    return HeldOutSet(samples, encs, config)


@dataclass
class Estimates:
    """Per-encounter estimates (Dmin / the data's R_max, NaN = no estimate) of every method, and
    the standard deviations of those that predict one (same units)."""

    by_method: dict[str, np.ndarray] = field(default_factory=dict)
    failed: dict[str, np.ndarray] = field(default_factory=dict)
    std: dict[str, np.ndarray] = field(default_factory=dict)


def model_input(model, samples: np.ndarray, rate_hz: float) -> np.ndarray:
    """What a model takes: raw ``[amplitude, distance]``, plus ``period_s`` for 3-channel models
    (as the engine feeds them)."""
    if int(model.config.get("input_size", 2)) != 3:
        return samples
    return np.concatenate([samples, np.full((samples.shape[0], 1), 1.0 / rate_hz, np.float32)], axis=1)


def _has_std(model) -> bool:
    return bool(getattr(model, "uncertainty", False))


@torch.no_grad()
def causal_stream(model, samples: np.ndarray, chunk: int = 8192, *, return_std: bool = False):
    """The causal model over a whole stream, state carried across chunks (and its std)."""
    state = None
    out, stds = [], []
    for s in range(0, samples.shape[0], chunk):
        x = torch.from_numpy(np.ascontiguousarray(samples[None, s : s + chunk]))
        if return_std:
            y, std, state = model(x, state, return_std=True)
            stds.append(std[0].numpy())
        else:
            y, state = model(x, state)
        out.append(y[0].numpy())
    return (np.concatenate(out), np.concatenate(stds)) if return_std else np.concatenate(out)


@torch.no_grad()
def evaluate_models(bundle: ModelBundle, data: HeldOutSet, window: int = 512, *, classical: bool = True) -> Estimates:
    """Every method's per-encounter estimate (normalised Dmin, NaN = no estimate)."""
    from models.classical import fit_cpa, with_fallback
    from models.hybrid import HybridRule, OnlineHybrid, hybrid_whole

    from models.classical import CPAFitConfig

    rate = data.config.rate_hz
    one_s = int(round(rate))
    est = Estimates()
    encs = data.encounters
    lo, hi = data.config.dmin_range_norm
    prior = 0.5 * (lo + hi)
    # model outputs are Dmin / the model's R_max (its profile): re-expressed per the data's R_max
    to_data = lambda model: float(model.profile.r_max_m) / data.config.r_max_m  # noqa: E731
    at = lambda arr, which: np.array([arr[_point(e, which, one_s)] for e in encs])  # noqa: E731
    xin = model_input(bundle.causal, data.samples, rate)
    if _has_std(bundle.causal):
        y, y_std = causal_stream(bundle.causal, xin, return_std=True)
        y_std = y_std * to_data(bundle.causal)
    else:
        y, y_std = causal_stream(bundle.causal, xin), None
    y = y * to_data(bundle.causal)
    t = np.arange(data.samples.shape[0]) / rate
    # the fit as serve runs it: the model's (declared) profile, in the data's R_max units
    cfg = CPAFitConfig.for_profile(bundle.causal.profile, r_max=data.config.r_max_m)
    if classical:
        hyb = OnlineHybrid(cfg, rule=HybridRule())
        y_cls, y_hyb = hyb.process(t, data.samples[:, 1].astype(np.float64), y, y_std)
        whole = [fit_cpa(t[e.start : e.stop], data.samples[e.start : e.stop, 1].astype(np.float64), cfg) for e in encs]
        ok = np.array([f.ok for f in whole])
        est.failed["classical LS, whole encounter"] = ~ok
        est.by_method["classical LS, whole encounter (successes only)"] = np.array([f.dmin_norm if f.ok else np.nan for f in whole])
        est.std["classical LS, whole encounter (successes only)"] = np.array(
            [getattr(f, "dmin_std_m", np.nan) / data.config.r_max_m if f.ok else np.nan for f in whole])
        est.by_method["classical LS, whole encounter (prior mean if it fails)"] = np.array([with_fallback(f, prior) for f in whole])
        for which in ("CPA−1 s", "CPA+1 s"):
            v = at(y_cls, which)
            est.failed[f"classical LS, causal @ {which}"] = ~np.isfinite(v)
            est.by_method[f"classical LS, causal @ {which} (prior mean if no fit)"] = np.where(np.isfinite(v), v, prior)
    for which in ("CPA−1 s", "CPA+1 s", "end"):
        est.by_method[f"causal LSTM @ {which}"] = at(y, which)
        if y_std is not None:
            est.std[f"causal LSTM @ {which}"] = at(y_std, which)
    starts = np.array([int(np.clip(e.cpa_index - window // 2, 0, data.samples.shape[0] - window)) for e in encs])
    yb_cpa = yb_std = None
    if bundle.bidir is not None:
        Xb = model_input(bundle.bidir, data.samples, rate)
        Xb = np.stack([Xb[s : s + window] for s in starts])
        ys, ss = [], []
        for k in range(0, len(Xb), 256):
            xb = torch.from_numpy(Xb[k : k + 256])
            if _has_std(bundle.bidir):
                a, b = bundle.bidir(xb, return_std=True)
                ss.append(b.numpy())
            else:
                a = bundle.bidir(xb)
            ys.append(a.numpy())
        idx = [(k, e.cpa_index - s) for k, (e, s) in enumerate(zip(encs, starts))]
        yb = np.concatenate(ys) * to_data(bundle.bidir)
        yb_cpa = np.array([yb[k, j] for k, j in idx])
        est.by_method["bidirectional LSTM @ CPA (512-sample window)"] = yb_cpa
        if ss:
            sb = np.concatenate(ss) * to_data(bundle.bidir)
            yb_std = np.array([sb[k, j] for k, j in idx])
            est.std["bidirectional LSTM @ CPA (512-sample window)"] = yb_std
    if bundle.pooled is not None:
        Xp = model_input(bundle.pooled, data.samples, rate)
        Xp = np.stack([Xp[s : s + window] for s in starts])
        outs = []
        for k in range(0, len(Xp), 256):
            o = bundle.pooled(torch.from_numpy(Xp[k : k + 256]))
            outs.append((o[0] if isinstance(o, tuple) else o).numpy())
        est.by_method[f"pooled DminRegressorLSTM ({bundle.pooled.pooling}, 512-sample window)"] = np.concatenate(outs) * to_data(bundle.pooled)
    if classical:
        for which in ("CPA−1 s", "CPA+1 s", "end"):
            est.by_method[f"hybrid (online) @ {which}"] = at(y_hyb, which)
        fallback = yb_cpa if yb_cpa is not None else at(y, "end")
        fb_std = yb_std if yb_std is not None else (at(y_std, "end") if y_std is not None else None)
        choice = [hybrid_whole(f, float(t[e.start]), float(t[e.stop - 1]), float(fb))
                  for f, e, fb in zip(whole, encs, fallback)]
        name = "hybrid, whole encounter (classical, else bidirectional)"
        est.by_method[name] = np.array([v for v, _ in choice])
        if fb_std is not None:
            cls_std = est.std["classical LS, whole encounter (successes only)"]
            est.std[name] = np.array([cls_std[k] if src == "classical" else fb_std[k] for k, (_, src) in enumerate(choice)])
    est.by_method["prior mean (baseline)"] = np.full(len(encs), prior)
    return est


def _point(e: Encounter, which: str, one_s: int) -> int:
    if which == "CPA−1 s":
        return max(e.cpa_index - one_s, e.start)
    if which == "CPA+1 s":
        return min(e.cpa_index + one_s, e.stop - 1)
    return e.stop - 1


def failure_table(est: Estimates, data: HeldOutSet) -> str:
    """Share of encounters where the classical fit gave no estimate, per SNR band."""
    snr = np.array([e.peak_snr_db for e in data.encounters])
    bands = [(band_label(lo, hi), (snr >= lo) & (snr < hi)) for lo, hi in SNR_BANDS_DB]
    bands.append(("all", np.ones_like(snr, bool)))
    lines = ["| classical fit failure rate | " + " | ".join(n for n, _ in bands) + " |", "|---" * (len(bands) + 1) + "|"]
    for name, failed in est.failed.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * failed[m].mean():.1f} %" if m.any() else "–" for _, m in bands) + " |")
    return "\n".join(lines)


def bootstrap_ci(err: np.ndarray, rng: np.random.Generator, n_boot: int = 1000) -> tuple[float, float]:
    if err.size < 2:
        return (np.nan, np.nan)
    idx = rng.integers(0, err.size, size=(n_boot, err.size))
    means = err[idx].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def mae_table(est: Estimates, data: HeldOutSet, *, ci: bool = True, seed: int = 0) -> str:
    """Markdown table: MAE in metres (95% bootstrap interval) per method and SNR band."""
    rng = np.random.default_rng(seed)
    r_max = data.config.r_max_m
    truth = np.array([e.dmin_norm for e in data.encounters])
    snr = np.array([e.peak_snr_db for e in data.encounters])
    bands = [(band_label(lo, hi), (snr >= lo) & (snr < hi)) for lo, hi in SNR_BANDS_DB]
    bands.append(("all", np.ones_like(snr, bool)))
    head = "| method | " + " | ".join(f"{name} (n={int(m.sum())})" for name, m in bands) + " |"
    lines = [head, "|---" * (len(bands) + 1) + "|"]
    for method, values in est.by_method.items():
        cells = []
        for _, m in bands:
            ok = m & np.isfinite(values)
            err = np.abs(values[ok] - truth[ok]) * r_max
            if err.size == 0:
                cells.append("–")
                continue
            cell = f"{err.mean():.1f}"
            if ci:
                lo, hi = bootstrap_ci(err, rng)
                cell += f" [{lo:.1f}, {hi:.1f}]"
            cells.append(cell)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- shifted radars (issue 13)


def shifted_radars() -> tuple[tuple[str, RadarConfig], ...]:
    """The held-out radars away from the training centre, beside the default set."""
    return (
        ("default (20 Hz, R_max 1000 m)", RadarConfig()),
        ("10 Hz", RadarConfig(rate_hz=10.0)),
        ("50 Hz", RadarConfig(rate_hz=50.0)),
        ("R_max 2000 m", RadarConfig(r_max_m=2000.0)),
        ("noise floor +6 dB", RadarConfig(noise_gain_db=6.0)),
        ("RCS spread 30 dB", RadarConfig(rcs_db_range=(-15.0, 15.0))),
    )


SHIFTED_SEED = 30_001
"""Seeds of the shifted sets: SHIFTED_SEED + k for the k-th radar (never used in training)."""

HEADLINE_METHODS: tuple[str, ...] = (
    "causal LSTM @ CPA+1 s",
    "causal LSTM @ end",
    "bidirectional LSTM @ CPA (512-sample window)",
    "pooled DminRegressorLSTM",
    "classical LS, whole encounter (prior mean if it fails)",
    "classical LS, causal @ CPA−1 s (prior mean if no fit)",
    "classical LS, causal @ CPA+1 s (prior mean if no fit)",
    "hybrid (online) @ CPA−1 s",
    "hybrid (online) @ CPA+1 s",
    "hybrid, whole encounter (classical, else bidirectional)",
)


def declared_bundle(weights_dir, radar: RadarConfig, *, declare: bool = True) -> ModelBundle:
    """The bundle as a user of this radar would run it: the weights' own profile with R_max
    declared (``--radar``); the noise floor is *not* declared (an undeclared shift)."""
    from models.bundle import load_bundle, load_model

    if not declare:
        return load_bundle(weights_dir)
    causal, _ = load_model("causal", weights_dir)
    return load_bundle(weights_dir, profile=causal.profile.with_(r_max_m=radar.r_max_m))


def coverage_table(est: Estimates, data: HeldOutSet, level: float = 0.9) -> str:
    """Share of truths inside the nominal ``level`` interval, per method with a std and band."""
    from models.uncertainty import interval_coverage

    truth = np.array([e.dmin_norm for e in data.encounters])
    snr = np.array([e.peak_snr_db for e in data.encounters])
    bands = [(band_label(lo, hi), (snr >= lo) & (snr < hi)) for lo, hi in SNR_BANDS_DB]
    bands.append(("all", np.ones_like(snr, bool)))
    lines = [f"| {int(level * 100)} % interval coverage | " + " | ".join(n for n, _ in bands) + " |",
             "|---" * (len(bands) + 1) + "|"]
    if not est.std:
        return lines[0] + "\n" + lines[1] + "\n| (no method of these weights predicts a standard deviation) |" + " – |" * len(bands)
    for name, std in est.std.items():
        mean = est.by_method[name]
        cells = []
        for _, m in bands:
            ok = m & np.isfinite(mean) & np.isfinite(std)
            cells.append(f"{100 * interval_coverage(truth[ok], mean[ok], std[ok], level):.1f} % (n={int(ok.sum())})" if ok.any() else "–")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _overall_mae(est: Estimates, data: HeldOutSet, method: str) -> float:
    truth = np.array([e.dmin_norm for e in data.encounters])
    name = next((k for k in est.by_method if k.startswith(method)), None)
    if name is None:
        return float("nan")
    v = est.by_method[name]
    ok = np.isfinite(v)
    return float(np.mean(np.abs(v[ok] - truth[ok]))) * data.config.r_max_m


def run_shifted(weights_dir=None, n_encounters: int = 1000, *, declare: bool = True, progress=print) -> tuple[str, dict]:
    """Every shifted radar: MAE per band (bootstrap intervals) and coverage tables. Returns the
    markdown and a summary ``{radar: {method: overall MAE m}}``."""
    parts, summary = [], {}
    for k, (title, radar) in enumerate(shifted_radars()):
        data = held_out(n_encounters, radar, SHIFTED_SEED + k)
        bundle = declared_bundle(weights_dir, radar, declare=declare)
        est = evaluate_models(bundle, data)
        keep = {m: v for m, v in est.by_method.items() if any(m.startswith(h) for h in HEADLINE_METHODS)}
        shown = Estimates(keep, est.failed, est.std)
        tables = mae_table(shown, data) + "\n\n" + coverage_table(est, data)
        summary[title] = {h: _overall_mae(est, data, h) for h in HEADLINE_METHODS}
        progress(f"\n{title}\n{tables}")
        parts.append(f"#### {title} ({len(data.encounters)} encounters, seed {SHIFTED_SEED + k}; "
                     f"R_max {radar.r_max_m:g} m, {radar.rate_hz:g} Hz)\n\n{tables}\n")
    return "\n".join(parts), summary


def summary_table(summary: dict) -> str:
    """Overall MAE (m) per radar for the headline methods, and the causal ratio to default."""
    radars = list(summary)
    head = "| method | " + " | ".join(radars) + " |"
    lines = [head, "|---" * (len(radars) + 1) + "|"]
    for h in HEADLINE_METHODS:
        lines.append(f"| {h} | " + " | ".join(f"{summary[r][h]:.1f}" for r in radars) + " |")
    base = summary[radars[0]]["causal LSTM @ CPA+1 s"]
    lines.append("| causal @ CPA+1 s ÷ its default-set MAE | " + " | ".join(
        f"{summary[r]['causal LSTM @ CPA+1 s'] / base:.2f}×" for r in radars) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.quality --label after``: the shifted-radars section of docs/benchmarks.md."""
    import argparse
    import time

    from bench.doc import machine_line, weights_label, write_section

    p = argparse.ArgumentParser(prog="python -m bench.quality", description=main.__doc__)
    p.add_argument("--weights", default=None, metavar="DIR")
    p.add_argument("--encounters", type=int, default=1000)
    p.add_argument("--label", default="after", help="'before' (the old shipped models) or 'after'")
    p.add_argument("--no-declare", action="store_true", help="run the models at their own R_max")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--doc", default="docs/benchmarks.md")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    md, summary = run_shifted(args.weights, args.encounters, declare=not args.no_declare)
    cmd = "python -m bench.quality" + "".join(
        f" {flag}" for flag, on in ((f"--weights {args.weights}", args.weights), (f"--encounters {args.encounters}", args.encounters != 1000),
                                    (f"--label {args.label}", True), ("--no-declare", args.no_declare)) if on)
    body = (
        f"### Shifted radars — {args.label}\n\n"
        f"Weights: {weights_label(args.weights)}. MAE of Dmin in metres [95% bootstrap interval] per peak-SNR band "
        f"(SNR re the stream's own noise floor) on held-out sets from radars away from the training centre, "
        f"and the share of truths inside each method's nominal 90 % interval. "
        + ("R_max is declared to the models through their profile (`--radar`); the noise floor is not declared. "
           if not args.no_declare else "Models run at their own R_max. ")
        + f"Command: `{cmd}` ({time.perf_counter() - t0:.0f} s; {machine_line()}).\n\n"
        f"Overall MAE (m):\n\n{summary_table(summary)}\n\n{md}"
    )
    print(summary_table(summary))
    write_section(f"quality-shifted-{args.label}", body, args.doc, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
