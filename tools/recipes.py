"""Training recipes: simulator data -> ``models.fit`` -> weights + JSON. Reproducible by seed."""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from models.bundle import build_model
from models.training import fit
from models.weights import save_weights
from streamer.sim.datasets import encounter_windows, stream_windows
from streamer.sim.simulator import RadarConfig


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


def train(recipe: TrainRecipe, out_dir: str | Path, *, progress: bool = True) -> dict:
    """Train one model on simulated data and write ``<out>/<kind>.safetensors|.json``."""
    torch.manual_seed(recipe.seed)
    radar = RadarConfig(manoeuvre_prob=recipe.manoeuvre_prob)
    base = dict(hidden_size=recipe.hidden_size, num_layers=recipe.num_layers, r_max_m=radar.r_max_m)
    t0 = time.perf_counter()
    if recipe.kind == "pooled":
        data = encounter_windows(recipe.windows, recipe.length, radar, seed=recipe.seed)
        model = build_model("pooled", dict(base, pooling=recipe.pooling))
        X, y, mask = data.X, data.y, None
    elif recipe.kind == "causal" and recipe.tbptt:
        data = stream_windows(recipe.windows, recipe.length, radar, seed=recipe.seed)
        model = build_model("causal", base)
        X, y, mask = data.X, data.y, data.mask
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
        max_seconds=recipe.max_minutes * 60 if recipe.max_minutes else None,
    )
    meta = {
        "model": type(model).__name__,
        "kind": recipe.kind,
        "config": model.config,
        "normalisation": {
            "amplitude": "log10(max(amplitude, 1e-3))",
            "distance": "distance / r_max_m on a detection (distance >= 0), -1 otherwise",
            "r_max_m": radar.r_max_m,
        },
        "radar": asdict(radar),
        "recipe": asdict(recipe),
        "history": hist.as_dict(),
        "validation": {"mae_norm": hist.val_mae[hist.best_epoch], "mae_m": hist.val_mae[hist.best_epoch] * radar.r_max_m},
        "trained_on": {"torch": torch.__version__, "python": platform.python_version(),
                       "seconds": round(time.perf_counter() - t0, 1)},
    }
    save_weights(model, Path(out_dir) / recipe.kind, meta)
    return meta
