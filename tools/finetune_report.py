"""Before/after figures of ``radarstream train … --from`` (``report.json``), measured with the
code of ``bench quality`` (``bench.quality.evaluate_models``, pooled as ``radarstream evaluate``
pools them): on the user's validation encounters with the user's profile declared, and on a
default simulated set (``bench.quality.held_out``, seed 10,001) with the model's profile declared
for the default radar (what the model knew before fine-tuning).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from models.bundle import ModelBundle, load_model, shipped_weights_dir
from models.profile import RadarProfile

if TYPE_CHECKING:
    from streamer.offline.training_data import Rows
    from tools.finetune import Prepared

HEADLINE = {"causal": "causal LSTM @ CPA+1 s", "bidir": "bidirectional LSTM", "pooled": "pooled DminRegressorLSTM"}
METHODS = {"causal": "causal LSTM", "bidir": "bidirectional LSTM", "pooled": "pooled DminRegressorLSTM"}


def _default_profile(profile: RadarProfile) -> RadarProfile:  # declared for the default radar
    return profile.with_(r_max_m=1000.0, noise_rms=1.0, rate_hz=20.0)


def metrics(kind: str, weights: Path, profile: RadarProfile, sets: list, window: int = 512) -> dict[str, float]:
    """MAE (m) of the ``kind`` model of ``weights`` (declared with ``profile``) per method of
    ``bench quality`` over the encounters of ``sets`` (HeldOutSets), pooled."""
    from bench.evaluate import Evaluation, _merge
    from bench.quality import evaluate_models

    model, _ = load_model(kind, weights, profile=profile)
    causal = model if kind == "causal" else load_model("causal", shipped_weights_dir(), profile=profile)[0]
    bundle = ModelBundle(causal, model if kind == "bidir" else None, model if kind == "pooled" else None, weights, {})
    parts = [(d, evaluate_models(bundle, d, window, classical=False)) for d in sets]
    mae = Evaluation(*_merge(parts)).summary()["mae_m"]
    return {k: v for k, v in mae.items() if k.startswith(METHODS[kind])}


def measure(p: "Prepared", weights: Path, own: RadarProfile, user_sets: list, default_sets: list) -> dict:
    """Before/after figures: on the user's validation encounters (the user's profile declared)
    and on the default simulated set (the model's own profile declared for the default radar)."""
    k, w = p.recipe.kind, p.recipe.window
    return {"validation": metrics(k, weights, p.profile, user_sets, w) if user_sets else {},
            "default_simulated": metrics(k, weights, _default_profile(own), default_sets, w)}


def sets(p: "Prepared", window: int) -> tuple[list, list]:
    from bench.quality import HELD_OUT_SEED, HeldOutSet, held_out
    from streamer.sim.simulator import RadarConfig

    user = [HeldOutSet(s.samples, encs, RadarConfig(rate_hz=s.rate_hz, r_max_m=p.profile.r_max_m))
            for s, encs in p.data.validation_encounters() if s.samples.shape[0] >= window]
    return user, [held_out(p.recipe.report_encounters, RadarConfig(), HELD_OUT_SEED)]


def report(p: "Prepared", n_user, train: "Rows", val: "Rows", before: dict, after: dict, hist, seconds: float) -> dict:
    r, head = p.recipe, HEADLINE[p.recipe.kind]
    pick = lambda d: next((v for k, v in d.items() if k.startswith(head)), None)  # noqa: E731
    return {
        "kind": r.kind, "recordings": list(r.recordings), "labels": list(r.labels), "profile": p.profile.to_dict(),
        "init_from": str(p.init_dir) if p.init_dir else None, "before_weights": str(p.before_dir) if p.before_dir else None,
        "mix_sim": p.mix, "simulated_physics": p.physics,
        "encounters": {"train": n_user[0], "validation": n_user[1], "simulated_train": train.encounters - n_user[0],
                       "simulated_validation": val.encounters - n_user[1]},
        "validation_groups": [{"recording": p.data.sources[g.stream], "sensor": p.data.streams[g.stream].sensor,
                               "first_sample": g.lo, "end_sample": g.hi} for g in p.data.val],
        "default_simulated_set": {"encounters": r.report_encounters, "seed": 10_001, "radar": "RadarConfig() (20 Hz, R_max 1000 m)"},
        "before": before, "after": after,
        "headline": {"method": head, "validation_before_m": pick(before.get("validation", {})),
                     "validation_after_m": pick(after["validation"]),
                     "default_before_m": pick(before.get("default_simulated", {})),
                     "default_after_m": pick(after["default_simulated"])},
        "epochs_run": len(hist.val_loss), "best_epoch": hist.best_epoch, "seconds": seconds,
    }
