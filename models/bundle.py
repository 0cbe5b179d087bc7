"""The trained models that ship with radarstream, and how to load any weights directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.pooled import DminRegressorLSTM
from models.profile import RadarProfile
from models.regressors import BidirectionalRegressor, CausalRegressor
from models.weights import WeightsError, load_into, read_meta

MODEL_CLASSES: dict[str, type[torch.nn.Module]] = {
    "causal": CausalRegressor,
    "bidir": BidirectionalRegressor,
    "pooled": DminRegressorLSTM,
}


def shipped_weights_dir() -> Path:
    """The weights trained for and shipped with this release."""
    return Path(__file__).resolve().parent / "weights"


def upgrade_config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """A saved config in today's terms. Pooled configs without ``normalizer`` (weights made
    before it existed) keep their behaviour: the radar normaliser when ``normalize`` (default
    True then) and two input channels, else none."""
    config = dict(config)
    if kind == "pooled" and "normalizer" not in config:
        legacy = config.pop("normalize", True) and int(config.get("input_size", 2)) == 2
        config["normalizer"] = "radar" if legacy else None
    elif kind == "pooled":
        config.pop("normalize", None)
    return config


def build_model(kind: str, config: dict[str, Any]) -> torch.nn.Module:
    if kind not in MODEL_CLASSES:
        raise WeightsError(f"unknown model kind {kind!r} (expected one of {sorted(MODEL_CLASSES)})")
    try:
        return MODEL_CLASSES[kind](**upgrade_config(kind, config))
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"bad config for {kind}: {exc}") from exc


def load_model(
    kind: str, weights_dir: str | Path | None = None, *, profile: RadarProfile | str | Path | None = None
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """``(model in eval mode, its metadata)`` from ``<weights_dir>/<kind>.safetensors|.json``.

    The model's radar profile is, first found: ``profile`` (a :class:`RadarProfile` or the path
    of its JSON: the radar the user declares, e.g. ``--radar PROFILE.json``), then
    ``<weights_dir>/profile.json``, then the profile in the weights' config, then the legacy
    profile of its ``r_max_m``. ``meta["profile"]`` is the profile used.
    """
    base = Path(weights_dir) if weights_dir is not None else shipped_weights_dir()
    meta = read_meta(base / kind)
    config = dict(meta["config"])
    chosen = resolve_declared_profile(base, profile)
    if chosen is not None:
        config["profile"] = chosen.to_dict()
        config.pop("r_max_m", None)
    model = build_model(kind, config)
    load_into(model, base / f"{kind}.safetensors")
    meta = dict(meta, profile=model.profile.to_dict())
    return model, meta


def resolve_declared_profile(base: Path, profile: RadarProfile | str | Path | None) -> RadarProfile | None:
    """An explicitly declared profile, else ``<base>/profile.json`` if present, else None."""
    from models.profile import PROFILE_FILE, ProfileError

    try:
        if isinstance(profile, RadarProfile):
            return profile
        if profile is not None:
            return RadarProfile.from_json(profile)
        if (base / PROFILE_FILE).is_file():
            return RadarProfile.from_json(base / PROFILE_FILE)
    except ProfileError as exc:
        raise WeightsError(str(exc)) from exc
    return None


@dataclass(frozen=True)
class ModelBundle:
    """The causal model the service steps, the bidirectional re-scorer and the pooled model."""

    causal: CausalRegressor
    bidir: BidirectionalRegressor | None
    pooled: DminRegressorLSTM | None
    weights_dir: Path
    meta: dict[str, dict[str, Any]]

    @property
    def r_max_m(self) -> float:
        return float(self.causal.profile.r_max_m)

    @property
    def profile(self) -> RadarProfile:
        """The radar profile of the causal model (the one the service runs)."""
        return self.causal.profile


def load_bundle(
    weights_dir: str | Path | None = None, *, require_all: bool = False, profile: RadarProfile | str | Path | None = None
) -> ModelBundle:
    base = Path(weights_dir) if weights_dir is not None else shipped_weights_dir()
    causal, meta_c = load_model("causal", base, profile=profile)
    loaded: dict[str, Any] = {}
    metas = {"causal": meta_c}
    for kind in ("bidir", "pooled"):
        try:
            loaded[kind], metas[kind] = load_model(kind, base, profile=profile)
        except WeightsError:
            if require_all:
                raise
            loaded[kind] = None
    return ModelBundle(causal, loaded["bidir"], loaded["pooled"], base, metas)
