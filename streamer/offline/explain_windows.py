"""One window of raw samples to explain, from the simulator or a recording, and the model to explain.

What ``radarstream explain`` (and ``radarstream bench explain``) read before calling
:func:`models.attribution.explain_window`: a :class:`WindowSource` (the samples, their rate and
whatever truth is known), the model loaded with a message that says what to do when its weights
are missing, and the JSON/NPZ files of an explanation's numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from radarstream.errors import RadarstreamError

if TYPE_CHECKING:
    from torch import nn

    from models.attribution import Explanation

__all__ = ["ExplainError", "WindowSource", "load_target", "per_step_estimates", "recorded_window", "save_numbers",
           "simulated_window"]


class ExplainError(RadarstreamError, RuntimeError):
    """A window or model that cannot be explained as asked (printed as ``error: ...``, exit 2)."""


@dataclass(frozen=True)
class WindowSource:
    """One window of raw samples and what is known about it (truth only for simulated data)."""

    x: np.ndarray  # [T, 2] amplitude, distance (-1 = no detection)
    rate_hz: float
    origin: dict[str, Any]  # how to get this window again (JSON)
    r_max_m: float = 1000.0
    true_range_m: np.ndarray | None = None  # [T], NaN outside encounters
    dmin_norm: np.ndarray | None = None  # [T], NaN outside encounters
    cpa: int | None = None  # index of the encounter's CPA in the window
    encounter_dmin_m: float | None = None
    threshold_db: float | None = None  # detection threshold on the amplitude, dB re noise RMS
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return int(self.x.shape[0])

    def truth_m(self, step: int | None) -> float | None:
        """Dmin truth in metres for the estimate at ``step`` (None: the window's encounter)."""
        if step is None or self.dmin_norm is None:
            return self.encounter_dmin_m
        v = float(self.dmin_norm[step])
        return None if not np.isfinite(v) else v * self.r_max_m


def simulated_window(seed: int, encounter: int | None, window: int, manoeuvre_prob: float = 0.0) -> WindowSource:
    """A window of ``window`` samples centred on the CPA of encounter ``encounter`` (default: the
    first one) of the simulated stream ``seed`` (default simulator settings, as in training)."""
    from streamer.sim.simulator import RadarConfig, StreamSimulator

    cfg = RadarConfig(manoeuvre_prob=manoeuvre_prob)
    k = 0 if encounter is None else int(encounter)
    if k < 0:
        raise ExplainError("--encounter must be >= 0")
    sim = StreamSimulator(cfg, seed)
    chunks, read = [], 0
    while True:
        encs = sim.encounters
        if len(encs) > k and encs[k].cpa_index + window <= read:
            break
        chunks.append(sim.read(4096))
        read += 4096
    enc = encs[k]
    start = max(0, enc.cpa_index - window // 2)
    cat = lambda name: np.concatenate([getattr(c, name) for c in chunks])[start : start + window]  # noqa: E731
    x = cat("samples")
    return WindowSource(
        x=x, rate_hz=cfg.rate_hz, r_max_m=cfg.r_max_m, true_range_m=cat("true_range_m"), dmin_norm=cat("dmin_norm"),
        cpa=enc.cpa_index - start, encounter_dmin_m=enc.dmin_m, threshold_db=10 * np.log10(cfg.threshold_power),
        origin={"source": "simulator", "seed": seed, "encounter": k, "window_start": start, "window": window,
                "manoeuvre_prob": manoeuvre_prob, "encounter_record": {
                    "dmin_m": enc.dmin_m, "speed_mps": enc.speed_mps, "peak_snr_db": enc.peak_snr_db,
                    "cpa_index": enc.cpa_index, "start": enc.start, "stop": enc.stop, "manoeuvre": enc.manoeuvre}},
        arrays={"true_range_m": cat("true_range_m"), "dmin_norm": cat("dmin_norm"), "snr_db": cat("snr_db")},
    )


def recorded_window(path: str, sensor: str | None, start_s: float | None, end_s: float | None,
                    window: int) -> WindowSource:
    """The first ``window`` samples of ``sensor`` logged in [start_s, end_s) (seconds from the start
    of the recording), read through a :class:`~streamer.sources.recorded.RecordedSource`. Recorded truth (simulated
    feeds carry it) is used for the figure; gaps or publisher restarts inside the window are counted
    in ``origin["gaps_or_restarts"]`` (the model sees the samples as contiguous: worth a warning)."""
    from streamer.sources import SourceError
    from streamer.sources.recorded import RecordedSource
    from streamer.wire import protocol as P

    try:
        sensors = list(RecordedSource(path).recorded_sensors)
        if sensor is None:
            if len(sensors) != 1:
                raise ExplainError(f"{path}: choose a sensor with --sensor (recorded: {', '.join(sensors) or 'none'})")
            sensor = sensors[0]
        elif sensor not in sensors:
            raise ExplainError(f"{path}: no samples for sensor {sensor!r} (recorded: {', '.join(sensors) or 'none'})")
        blocks: list[Any] = []
        truths: list[Any] = []
        rejected = 0
        for frames in RecordedSource(path, sensors=(sensor,), start_s=start_s, end_s=end_s, batch=16):
            msg = P.decode_message(frames)
            if isinstance(msg, P.DecodeError):
                rejected += 1
                continue
            blocks.append(msg.block)
            truths.append(msg.truth)
            if sum(b.count for b in blocks) >= window:
                break
    except SourceError as exc:
        raise ExplainError(str(exc)) from exc
    if not blocks:
        raise ExplainError(f"{path}: no samples of {sensor!r} between --start and --end")
    x = np.concatenate([np.asarray(b.data, np.float32) for b in blocks])[:window]
    if x.shape[0] < 2:
        raise ExplainError(f"{path}: fewer than 2 samples of {sensor!r} in the selected window")
    breaks = sum(1 for a, b in zip(blocks, blocks[1:]) if (b.epoch, b.seq) != (a.epoch, a.seq + a.count))
    cfg_r_max = 1000.0
    truth = None
    if all(t is not None for t in truths):
        truth = np.concatenate([np.asarray(t.data, np.float64) for t in truths])[: x.shape[0]]
    cpa = None
    if truth is not None and np.isfinite(truth[:, 2]).any():
        cpa = int(np.nanargmin(np.where(truth[:, 1] > 0.5, truth[:, 2], np.nan)))
    first = blocks[0]
    return WindowSource(
        x=x, rate_hz=1e9 / first.period_ns, r_max_m=cfg_r_max,
        true_range_m=None if truth is None else truth[:, 2], dmin_norm=None if truth is None else truth[:, 0],
        cpa=cpa, encounter_dmin_m=None if truth is None or cpa is None else float(truth[cpa, 0]) * cfg_r_max,
        origin={"source": "recording", "path": str(path), "sensor": sensor, "start_s": start_s, "end_s": end_s,
                "window": int(x.shape[0]), "first_seq": int(first.seq), "epoch": int(first.epoch),
                "gaps_or_restarts": breaks, "rejected_messages": rejected},
        arrays={} if truth is None else {"dmin_norm": truth[:, 0], "true_range_m": truth[:, 2], "snr_db": truth[:, 3]},
    )


def load_target(kind: str, weights: str | None) -> "nn.Module":
    """The model to explain, with a clear message when the weights are missing."""
    from models.bundle import load_model, shipped_weights_dir
    from models.weights import WeightsError

    try:
        model, _ = load_model(kind, weights)
    except WeightsError as exc:
        where = weights or shipped_weights_dir()
        hint = ("the shipped weights are missing from this install (they may still be training); "
                "pass --weights DIR, or make some with `radarstream train all --out DIR`") if weights is None else \
            "check --weights"
        raise ExplainError(f"cannot load the {kind} model from {where}: {exc}\n  {hint}") from exc
    return model.eval()


def per_step_estimates(model: "nn.Module", kind: str, x: np.ndarray) -> np.ndarray | None:
    """The model's estimate at every step of the window (None for the pooled model)."""
    import torch

    if kind == "pooled":
        return None
    with torch.no_grad():
        out = model(torch.from_numpy(np.asarray(x, np.float32))[None])
    y = out[0] if isinstance(out, tuple) else out
    return y[0].numpy()


def save_numbers(res: "Explanation", src: WindowSource, path_stem: Path, extra: dict[str, Any]) -> tuple[Path, Path]:
    """``<stem>.json`` (summary, source, truth) and ``<stem>.npz`` (every array, plus the window)."""
    summary = res.summary()
    summary.update(extra)
    summary["source"] = src.origin
    summary["truth_m"] = src.truth_m(res.step)
    js = path_stem.with_suffix(".json")
    js.write_text(json.dumps(summary, indent=2, default=float) + "\n")
    arrays = {k: v for k, v in res.arrays().items()}
    arrays["x"] = src.x
    arrays.update({f"truth_{k}": v for k, v in src.arrays.items()})
    npz = path_stem.with_suffix(".npz")
    np.savez_compressed(npz, **arrays)
    return js, npz
