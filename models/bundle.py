"""The trained models that ship with radarstream, and how to load any weights directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.pooled import DminRegressorLSTM
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


def build_model(kind: str, config: dict[str, Any]) -> torch.nn.Module:
    if kind not in MODEL_CLASSES:
        raise WeightsError(f"unknown model kind {kind!r} (expected one of {sorted(MODEL_CLASSES)})")
    try:
        return MODEL_CLASSES[kind](**config)
    except TypeError as exc:
        raise WeightsError(f"bad config for {kind}: {exc}") from exc


def load_model(kind: str, weights_dir: str | Path | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """``(model in eval mode, its metadata)`` from ``<weights_dir>/<kind>.safetensors|.json``."""
    base = Path(weights_dir) if weights_dir is not None else shipped_weights_dir()
    meta = read_meta(base / kind)
    model = build_model(kind, meta["config"])
    load_into(model, base / f"{kind}.safetensors")
    return model, meta


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
        return float(self.causal.config["r_max_m"])


def load_bundle(weights_dir: str | Path | None = None, *, require_all: bool = False) -> ModelBundle:
    base = Path(weights_dir) if weights_dir is not None else shipped_weights_dir()
    causal, meta_c = load_model("causal", base)
    loaded: dict[str, Any] = {}
    metas = {"causal": meta_c}
    for kind in ("bidir", "pooled"):
        try:
            loaded[kind], metas[kind] = load_model(kind, base)
        except WeightsError:
            if require_all:
                raise
            loaded[kind] = None
    return ModelBundle(causal, loaded["bidir"], loaded["pooled"], base, metas)
