"""Training on labelled recordings: ``radarstream train KIND --from REC.mcap …`` (docs/your-radar.md).

:func:`prepare` checks everything (recordings, labels, the split by encounter, the ``--init-from``
weights, the radar profile) and writes nothing; :func:`run` trains on the user's rows mixed with
simulated rows of what the starting model knew (``streamer.offline.training_data``), measures
before and after with ``bench.quality.evaluate_models`` on the user's validation encounters and on
a default simulated set, and only then moves weights, ONNX, ``profile.json`` and ``report.json``
into the output directory.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.bundle import build_model, load_model, shipped_weights_dir
from models.profile import PROFILE_FILE, RadarProfile
from models.weights import WeightsError, load_into, read_meta, save_weights
from radarstream.errors import UsageError
from streamer.offline.training_data import SIM_ROW, RecordingSet, Rows, load_recordings, rows_for, simulated_rows
from tools.finetune_report import measure, report, sets
from tools.recipes import NORMALISATION, envelope_of

DEFAULT_MIX = 0.7


@dataclass(frozen=True)
class RecordingRecipe:
    """Everything that determines a model trained on recordings besides the code and the data."""

    kind: str
    recordings: tuple[str, ...]
    labels: tuple[str, ...] = ()
    init_from: str | None = None
    """Weights directory to fine-tune (``shipped``: the shipped weights); the architecture,
    input channels and uncertainty head follow it. None: a fresh model."""
    mix_sim: float | None = None
    """Share of simulated encounters in the training and validation rows (None: 0.7); ``lr``
    None: 1e-3 when fine-tuning, else 3e-3; ``randomised``: a fresh model with the period channel
    and an uncertainty head."""
    radar: str | None = None
    epochs: int = 12
    batch_size: int = 8
    lr: float | None = None
    seed: int = 1
    loss: str = "mse"
    patience: int = 5
    max_seconds: float | None = None
    val_fraction: float = 0.2
    group: int = 4
    window: int = 512
    randomised: bool = False
    pooling: str = "mean"
    hidden_size: int = 64
    num_layers: int = 2
    report_encounters: int = 100
    tbptt: int | None = 512
    """Causal: the stretches and simulated streams side by side in chunks of this many steps,
    state carried (None: minibatches of rows of SIM_ROW samples)."""
    early_weight: float = 1.0
    """Loss weight of in-encounter samples more than 1 s before the CPA (per-step models)."""


@dataclass
class Prepared:
    recipe: RecordingRecipe
    data: RecordingSet
    profile: RadarProfile  # the user's radar: declared (--radar), else the starting model's at the recordings' rate
    config: dict[str, Any]
    init_dir: Path | None
    before_dir: Path | None
    physics: str
    sim_rate_hz: float
    mix: float


def _init_dir(name: str | None) -> Path | None:
    return None if name is None else (shipped_weights_dir() if name == "shipped" else Path(name))

def prepare(r: RecordingRecipe) -> Prepared:
    """Every check, nothing written (bad input raises a RadarstreamError: exit 2)."""
    mix = DEFAULT_MIX if r.mix_sim is None else float(r.mix_sim)
    if not 0.0 <= mix < 1.0:
        raise UsageError(f"--mix-sim must lie in [0, 1), got {r.mix_sim}")
    init = _init_dir(r.init_from)
    if init is not None:
        if not init.is_dir():
            raise WeightsError(f"--init-from {init}: no such weights directory")
        held = read_meta(init / r.kind).get("kind", r.kind)
        if held != r.kind:
            raise WeightsError(f"--init-from {init}/{r.kind}.json holds a {held!r} model, not {r.kind}")
        try:
            model0, _ = load_model(r.kind, init)
        except WeightsError as exc:  # torch's mismatch report spans lines: one line, trimmed
            raise WeightsError(f"--init-from {init}: incompatible {r.kind} weights: {' '.join(str(exc).split())[:400]}") from exc
        config, base = dict(model0.config), model0.profile
    else:
        base = RadarProfile()
        config = dict(input_size=3 if r.randomised else 2, hidden_size=r.hidden_size, num_layers=r.num_layers)
        config.update(dict(pooling=r.pooling, normalizer="radar") if r.kind == "pooled" else dict(uncertainty=r.randomised))
    declared = RadarProfile.from_json(r.radar) if r.radar else None
    ref = declared or base
    data = load_recordings(r.recordings, r.labels, r_max_m=ref.r_max_m, noise_rms=ref.noise_rms,
                           val_fraction=r.val_fraction, group=r.group, seed=r.seed)
    profile = declared or base.with_(rate_hz=round(data.rate_hz, 6), name=f"{base.name}, at the recordings' rate")
    physics = "randomised" if int(config.get("input_size", 2)) == 3 else "default"
    before = init if init is not None else shipped_weights_dir()
    if not (before / f"{r.kind}.safetensors").is_file():
        before = None
    return Prepared(r, data, profile, config, init, before, physics, base.rate_hz, mix)


def _sim(p: Prepared, user: Rows, seed: int) -> Rows:
    """The simulated share next to the user's rows: ``mix`` of the encounters (of the samples
    for causal rows, whose simulated streams hold any number of encounters)."""
    f = p.mix / (1.0 - p.mix)
    return simulated_rows(p.recipe.kind, int(round(f * user.encounters)), physics=p.physics, r_max_m=p.profile.r_max_m,
                          noise_rms=p.profile.noise_rms, rate_hz=p.sim_rate_hz, channels=int(p.config.get("input_size", 2)),
                          group=p.recipe.group, window=p.recipe.window, seed=seed, early=p.recipe.early_weight,
                          n_samples=int(round(f * sum(x.shape[0] for x in user.X))),
                          row=max(x.shape[0] for x in user.X) if p.recipe.tbptt and p.recipe.kind == "causal" else SIM_ROW)


def _val_loss(model, rows: Rows, loss: str) -> float:
    from models.training import evaluate, pad_sequences

    X, y, m, n = pad_sequences(rows.X, rows.targets(), rows.mask)
    t = torch.from_numpy
    return evaluate(model, t(X), t(y), None if m is None else t(m), loss, lengths=t(n))[0]


def _profile_of(p: Prepared, train: Rows) -> RadarProfile:
    lo, hi = p.profile.rate_envelope_hz
    if p.mix > 0:
        s_lo, s_hi = (5.0, 50.0) if p.physics == "randomised" else (p.sim_rate_hz, p.sim_rate_hz)
        lo, hi = min(lo, s_lo), max(hi, s_hi)
    X = np.concatenate([x[:, :2] for x in train.X])[None]
    return p.profile.with_(rate_envelope_hz=(lo, hi), envelope=envelope_of(X, p.profile))


def run(p: Prepared, out_dir: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Train (see the module docstring); returns the weights' metadata (``report`` inside)."""
    from models.export import export_all
    from models.training import fit

    r, t0 = p.recipe, time.perf_counter()
    torch.manual_seed(r.seed)
    c = int(p.config.get("input_size", 2))
    row = None if r.tbptt else SIM_ROW  # TBPTT: whole stretches, simulated streams as long
    train = rows_for(r.kind, p.data, p.data.train, channels=c, window=r.window, seed=r.seed, early=r.early_weight, row=row)
    val = rows_for(r.kind, p.data, p.data.val, channels=c, window=r.window, seed=r.seed + 1, early=r.early_weight, row=row)
    n_user = (train.encounters, val.encounters)
    train.extend(_sim(p, train, r.seed))
    val.extend(_sim(p, val, r.seed + 1000))
    profile = _profile_of(p, train)
    config = {k: v for k, v in p.config.items() if k != "r_max_m"}
    model = build_model(r.kind, dict(config, profile=profile.to_dict()))
    if p.init_dir is not None:
        load_into(model, p.init_dir / f"{r.kind}.safetensors")
    user_sets, default_sets = sets(p, r.window)
    before = {} if p.before_dir is None else measure(p, p.before_dir, load_model(r.kind, p.before_dir)[0].profile,
                                                      user_sets, default_sets)
    lr = r.lr if r.lr is not None else (1e-3 if p.init_dir is not None else 3e-3)
    start, start_loss = copy.deepcopy(model.state_dict()), _val_loss(model, val, r.loss)
    hist = fit(model, train.X, train.targets(), train.mask, validation=(val.X, val.targets(), val.mask),
               epochs=r.epochs, batch_size=r.batch_size, lr=lr, seed=r.seed, loss=r.loss, patience=r.patience,
               max_seconds=r.max_seconds, progress=progress, tbptt=r.tbptt if r.kind == "causal" else None)
    kept = p.init_dir is not None and not hist.best_val_loss < start_loss
    if kept:  # no epoch beat the starting weights on validation: keep them (never ship worse)
        model.load_state_dict(start)
    out = Path(out_dir).absolute()
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}-{r.kind}-", dir=_mkdir(out.parent)))
    try:
        r_max, mae = profile.r_max_m, hist.val_mae[hist.best_epoch]
        meta = {
            "model": type(model).__name__, "kind": r.kind, "config": model.config,
            "normalisation": dict(NORMALISATION, r_max_m=r_max),
            "radar": {"recordings": list(r.recordings), "labels": list(r.labels), "simulated_rows": p.physics},
            "recipe": dict(asdict(r), lr=lr, mix_sim=p.mix, from_recordings=True, kept_starting_weights=kept),
            "history": hist.as_dict(),
            "validation": {"mae_norm": mae, "mae_m": mae * r_max, "note": "the user's validation encounters + simulated share"},
        }
        save_weights(model, stage / r.kind, meta)
        after = measure(p, stage, profile, user_sets, default_sets)
        meta["trained_on"] = {"torch": torch.__version__, "python": platform.python_version(),
                              "seconds": round(time.perf_counter() - t0, 1)}
        meta["report"] = rep = report(p, n_user, train, val, before, after, hist, meta["trained_on"]["seconds"])
        rep["kept_starting_weights"] = kept
        save_weights(model, stage / r.kind, meta)
        profile.to_json(stage / PROFILE_FILE)
        export_all(stage)
        _publish(stage, out, r.kind, rep)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return meta


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _publish(stage: Path, out: Path, kind: str, report: dict) -> None:
    """Move the staged files into ``out``: the profile only when training causal or when ``out``
    has none (the causal model's wins, as for the simulator recipes); ``report.json`` merged."""
    _mkdir(out)
    for f in stage.iterdir():
        if f.name == PROFILE_FILE and kind != "causal" and (out / PROFILE_FILE).is_file():
            continue
        os.replace(f, out / f.name)
    path = out / "report.json"
    merged = {**(json.loads(path.read_text()) if path.is_file() else {}), kind: report}
    path.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
