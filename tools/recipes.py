"""Training recipes: simulator data -> ``models.fit`` -> weights + JSON. Reproducible by seed.

Two data regimes: the documented default radar (``randomised=False``, the legacy recipes) and
the domain-randomised configuration of ``streamer.sim.randomised`` (``randomised=True``): every
stream a different radar, models with the period input channel, a radar profile recorded with the
weights (``profile.json`` and each JSON's ``config.profile``), per-step models with a calibrated
uncertainty head.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from models.bundle import build_model
from models.profile import PROFILE_FILE, AmplitudeEnvelope, RadarProfile
from models.training import fit
from models.weights import save_weights
from streamer.sim.datasets import encounter_windows, stream_windows
from streamer.sim.simulator import RadarConfig


NORMALISATION = {
    "amplitude": "log10(max(amplitude / noise_rms, 1e-3))",
    "distance": "distance / r_max_m on a detection (distance >= 0), -1 otherwise",
    "period": "ln(period_s / 0.05) from input channel 2 (input_size 3 only)",
}
"""What every weights JSON says about the inputs (``r_max_m`` added per model)."""


@dataclass(frozen=True)
class TrainRecipe:
    """Everything that determines a trained model besides the code."""

    kind: str  # causal | bidir | pooled
    windows: int = 1600
    length: int = 512
    epochs: int = 12
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 1
    loss: str = "mse"
    manoeuvre_prob: float = 0.0
    max_minutes: float | None = None
    pooling: str = "mean"
    hidden_size: int = 64
    num_layers: int = 2
    patience: int = 5
    init_from: str | None = None
    """Start from the weights of this kind in that directory (fine-tuning) instead of random."""
    tbptt: int | None = None
    """Causal model only: train on ``windows`` long streams side by side, state carried across
    chunks of this many steps (see ``models.fit``)."""
    randomised: bool = False
    """Domain-randomised data (streamer.sim.randomised), period input channel, uncertainty head."""
    radar: str | None = None
    """A RadarProfile JSON: R_max, noise RMS and nominal rate of the radar trained for (the
    randomised data are generated at that R_max / noise RMS, amplitudes in its units)."""
    per_stream: int = 8
    """Randomised bidir / pooled: windows (encounters) cut from each randomised stream."""
    max_seconds: float | None = None
    """Time budget in seconds (with ``max_minutes`` too, the shorter one counts)."""

    @property
    def budget_s(self) -> float | None:
        budgets = [b for b in (self.max_seconds, self.max_minutes * 60 if self.max_minutes else None) if b]
        return min(budgets) if budgets else None


def envelope_of(X: np.ndarray, profile: RadarProfile, block: int = 400, margin_db: float = 3.0) -> AmplitudeEnvelope:
    """The amplitude / detection envelope of training inputs, for out-of-domain checks: the
    0.1–99.9 % range of per-block medians of log10(amplitude / noise_rms), widened by
    ``margin_db``, and of the per-block detection fraction (widened by 50 %)."""
    n = X.shape[1] // block
    if n == 0:
        block, n = X.shape[1], 1
    Xb = X[:, : n * block].reshape(X.shape[0] * n, block, X.shape[2])
    med = np.median(np.log10(np.maximum(Xb[..., 0] / profile.noise_rms, 1e-6)), axis=1)
    det = np.mean(Xb[..., 1] >= 0, axis=1)
    m = margin_db / 20
    lo, hi = np.quantile(med, [0.001, 0.999])
    dlo, dhi = np.quantile(det, [0.001, 0.999])
    return AmplitudeEnvelope((float(lo - m), float(hi + m)), (float(dlo * 0.5), float(min(1.0, dhi * 1.5))))


def _randomised_data(recipe: TrainRecipe, seed: int, n: int | None = None):
    from streamer.sim.randomised import RandomisedRadar, randomised_encounter_windows, randomised_stream_windows

    rr = RandomisedRadar()
    n = n if n is not None else recipe.windows
    if recipe.kind == "pooled":
        data, _ = randomised_encounter_windows(max(1, n // recipe.per_stream), recipe.per_stream, recipe.length, rr, seed=seed)
        return data.X, data.y, None
    per = 1 if recipe.tbptt else recipe.per_stream
    data, _ = randomised_stream_windows(max(1, n // per), recipe.length, per, rr, seed=seed)
    return data.X, data.y, data.mask


@torch.no_grad()
def _calibrate(model, recipe: TrainRecipe, seed: int) -> dict:
    """Fresh randomised data (another seed): validation MAE and the post-hoc std scale that makes
    the nominal 90 % interval cover 90 % (stored as ``config.std_scale``)."""
    from models.uncertainty import calibration_scale, interval_coverage

    n = 8 if recipe.tbptt else 400
    X, y, mask = _randomised_data(recipe, seed, n)
    tX = torch.from_numpy(X)
    out = {}
    if recipe.kind == "pooled":
        o = model(tX)
        pred = (o[0] if isinstance(o, tuple) else o).numpy()
        out["mae_norm"] = float(np.mean(np.abs(pred - y)))
        return out
    model.std_scale = 1.0
    if recipe.kind == "causal":
        pred, std, _ = model(tX, None, return_std=True)
    else:
        pred, std = model(tX, return_std=True)
    m = mask > 0.5
    pred, std = pred.numpy()[m], std.numpy()[m]
    truth = y[m]
    scale = calibration_scale(truth, pred, std)
    model.std_scale = scale
    model.config["std_scale"] = scale
    out.update(mae_norm=float(np.mean(np.abs(pred - truth))), std_scale=scale,
               coverage90_raw=interval_coverage(truth, pred, std), coverage90=interval_coverage(truth, pred, std * scale))
    return out


def train(recipe: TrainRecipe, out_dir: str | Path, *, progress: bool = True) -> dict:
    """Train one model on simulated data and write ``<out>/<kind>.safetensors|.json`` (and, for
    randomised recipes, ``<out>/profile.json``)."""
    torch.manual_seed(recipe.seed)
    radar = RadarConfig(manoeuvre_prob=recipe.manoeuvre_prob)
    t0 = time.perf_counter()
    profile = None
    if recipe.randomised:
        declared = RadarProfile.from_json(recipe.radar) if recipe.radar else RadarProfile()
        X, y, mask = _randomised_data(recipe, recipe.seed)
        X[..., 0] *= declared.noise_rms  # amplitudes in the declared radar's units
        profile = declared.with_(rate_envelope_hz=(5.0, 50.0), envelope=envelope_of(X, declared),
                                 name=declared.name if recipe.radar else "randomised training (5–50 Hz)")
        base = dict(input_size=3, hidden_size=recipe.hidden_size, num_layers=recipe.num_layers, profile=profile)
        if recipe.kind == "pooled":
            model = build_model("pooled", dict(base, pooling=recipe.pooling, normalizer="radar"))
        elif recipe.kind in ("causal", "bidir"):
            model = build_model(recipe.kind, dict(base, uncertainty=True))
        else:
            raise ValueError(f"unknown model kind {recipe.kind!r}")
        y = y.copy()
    else:
        base = dict(hidden_size=recipe.hidden_size, num_layers=recipe.num_layers, r_max_m=radar.r_max_m)
        if recipe.kind == "pooled":
            data = encounter_windows(recipe.windows, recipe.length, radar, seed=recipe.seed)
            model = build_model("pooled", dict(base, pooling=recipe.pooling, normalizer="radar"))
            X, y, mask = data.X, data.y, None
        elif recipe.kind in ("causal", "bidir"):
            data = stream_windows(recipe.windows, recipe.length, radar, seed=recipe.seed)
            model = build_model(recipe.kind, base)
            X, y, mask = data.X, data.y, data.mask
        else:
            raise ValueError(f"unknown model kind {recipe.kind!r}")
    if recipe.init_from:
        from models.weights import load_into

        load_into(model, Path(recipe.init_from) / f"{recipe.kind}.safetensors")
        model.train()
    hist = fit(
        model, X, y, mask, epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr,
        seed=recipe.seed, loss=recipe.loss, progress=progress, tbptt=recipe.tbptt, patience=recipe.patience,
        max_seconds=recipe.budget_s,
    )
    calibration = _calibrate(model, recipe, recipe.seed + 5000) if recipe.randomised else None
    r_max = profile.r_max_m if profile is not None else radar.r_max_m
    meta = {
        "model": type(model).__name__,
        "kind": recipe.kind,
        "config": model.config,
        "normalisation": dict(NORMALISATION, r_max_m=r_max),
        "radar": "randomised (streamer.sim.randomised.RandomisedRadar defaults)" if recipe.randomised else asdict(radar),
        "recipe": asdict(recipe),
        "history": hist.as_dict(),
        "validation": {"mae_norm": hist.val_mae[hist.best_epoch], "mae_m": hist.val_mae[hist.best_epoch] * r_max},
        "trained_on": {"torch": torch.__version__, "python": platform.python_version(),
                       "seconds": round(time.perf_counter() - t0, 1)},
    }
    if calibration is not None:
        meta["calibration"] = dict(calibration, seed=recipe.seed + 5000, mae_m=calibration["mae_norm"] * r_max)
    out = Path(out_dir)
    save_weights(model, out / recipe.kind, meta)
    if profile is not None and (recipe.kind == "causal" or not (out / PROFILE_FILE).is_file()):
        profile.to_json(out / PROFILE_FILE)  # the causal model's (the one the service runs) wins
    return meta
