"""What is being explained: a model reduced to one scalar per window, its baseline, its features.

Captum explains a function ``f(x [B, T, C]) -> [B]``. Each of the three models gives one:

* causal: the estimate at step ``t`` (``model(x)[0][:, t]``); the samples after ``t`` cannot
  reach it, which is the property the tests check;
* bidir: the estimate at step ``t`` of the bidirectional re-scorer, which does see the future;
* pooled: the seed's ``DminRegressorLSTM`` window estimate (one value per window, no step).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, Mapping

import numpy as np
import torch
from torch import nn

from models.normalization import InputNormalizer

TargetKind = Literal["causal", "bidir", "pooled"]
TARGETS: tuple[str, ...] = ("causal", "bidir", "pooled")
LSTMState = tuple[torch.Tensor, torch.Tensor]

FEATURE_NAMES: tuple[str, ...] = ("log10 amplitude", "range / R_max", "detection flag")
FEATURE_TO_RAW = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
"""How the normaliser's features fold back onto raw channels: log-amplitude -> amplitude; the range
and the detection flag both come from the distance channel (-1 = no detection)."""


@dataclass(frozen=True)
class Baseline:
    """The reference input an attribution is measured against: one raw value per channel."""

    name: str
    amplitude: float
    distance: float
    description: str

    def raw(self) -> np.ndarray:
        return np.array([self.amplitude, self.distance], np.float32)

    def like(self, x: torch.Tensor) -> torch.Tensor:
        """A tensor shaped like ``x [B, T, 2]`` filled with the baseline sample."""
        return torch.tensor(self.raw(), dtype=x.dtype, device=x.device).expand_as(x).clone()


NOISE_ONLY = Baseline(
    "noise", 1.0, -1.0,
    "noise only: amplitude = noise RMS (1), distance = -1 (no detection). It is what the radar "
    "reports with no target, and it is the origin of the normalised feature space "
    "(log10 1 = 0, no range, no detection flag).",
)
ZEROS = Baseline(
    "zeros", 0.0, 0.0,
    "raw zeros: amplitude 0 (quieter than any noise) and a detection at 0 m - not a state the radar "
    "can be in; offered only to compare against the noise-only baseline.",
)
BASELINES: Mapping[str, Baseline] = MappingProxyType({b.name: b for b in (NOISE_ONLY, ZEROS)})


def model_kind(model: nn.Module, kind: str | None = None) -> str:
    """The target kind of ``model``: ``kind`` if given (checked against the model), else its own."""
    own = getattr(model, "kind", None)
    if kind is None:
        if own not in TARGETS:
            raise ValueError(f"cannot tell the target kind of {type(model).__name__}; pass one of {TARGETS}")
        return own
    if kind not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {kind!r}")
    if own in TARGETS and own != kind:
        raise ValueError(f"model is a {own!r} model, not {kind!r}")
    return kind


def resolve_step(kind: str, step: int | None, length: int) -> int | None:
    """Per-step targets default to the last step and accept negative indices; pooled has none."""
    if kind == "pooled":
        return None
    if step is None:
        return length - 1
    if not -length <= step < length:
        raise ValueError(f"step {step} outside the window of {length} samples")
    return int(step) % length


def r_max_of(model: nn.Module) -> float:
    cfg = getattr(model, "config", {}) or {}
    return float(cfg.get("r_max_m", 1000.0))


class EstimateAt(nn.Module):
    """The scalar Captum explains: one estimate per batch row (see the module docstring).

    ``initial_state`` (causal only) is the recurrent state the window starts from, held fixed: the
    live service carries state into a window, and it is not part of what is attributed.
    """

    def __init__(self, model: nn.Module, kind: str, step: int | None, initial_state: LSTMState | None = None):
        super().__init__()
        if initial_state is not None and kind != "causal":
            raise ValueError("initial_state applies to the causal model only")
        self.model = model
        self.kind = kind
        self.step = step
        self.initial_state = initial_state

    def _state(self, batch: int) -> LSTMState | None:
        if self.initial_state is None:
            return None
        h, c = self.initial_state
        return h.expand(-1, batch, -1).contiguous(), c.expand(-1, batch, -1).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "causal":
            y, _ = self.model(x, self._state(x.shape[0]))
            return y[:, self.step]
        if self.kind == "bidir":
            return self.model(x)[:, self.step]
        out = self.model(x)
        return out[0] if isinstance(out, tuple) else out


@dataclass(frozen=True)
class FeatureSpace:
    """A copy of a model that takes normalised features instead of raw samples.

    Gradient methods work here: the detection flag is a step function of the raw distance, so a
    raw-space gradient misses the jump from "no detection" (-1) to a range, and integrated
    gradients along a raw path would break completeness at every detection. In feature space
    the flag is an ordinary input and the noise-only baseline is the origin.
    """

    model: nn.Module
    normalizer: nn.Module
    fold: torch.Tensor  # [F, C]: feature attribution -> raw-channel attribution
    names: tuple[str, ...]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.normalizer(x)

    def to_raw(self, feature_attr: torch.Tensor) -> torch.Tensor:
        """[..., F] -> [..., C] by summing each raw channel's features (attributions are additive)."""
        return feature_attr @ self.fold.to(feature_attr.dtype)


def feature_space(model: nn.Module) -> FeatureSpace:
    """Deep copy with an identity normaliser (never mutates ``model``: a GUI may be running it)."""
    norm = getattr(model, "normalizer", None)
    if isinstance(norm, InputNormalizer):
        clone = copy.deepcopy(model)
        clone.normalizer = nn.Identity()
        # explained windows are raw [amplitude, distance]: a period-aware model sees its nominal
        # period as a fourth, constant feature, which folds onto no raw channel
        names = FEATURE_NAMES if norm.features == len(FEATURE_NAMES) else norm.feature_names
        return FeatureSpace(clone.eval(), norm, norm.fold_for(2).float(), names)
    channels = getattr(getattr(model, "lstm", None), "input_size", 2)
    return FeatureSpace(model, nn.Identity(), torch.eye(channels), tuple(f"input {k}" for k in range(channels)))


def time_segment_mask(
    length: int, channels: int, segment: int, *, joint_channels: bool, anchor: int | None = None
) -> torch.Tensor:
    """Captum feature mask [1, T, C]: consecutive time segments of ``segment`` samples.

    ``joint_channels`` makes one feature per segment (both channels together: "this stretch of
    time"); otherwise one per segment and channel ("the amplitude of this stretch" vs "its
    ranges"), ids ``channel * n_segments + segment``. ``anchor`` (the explained step) puts a
    segment boundary right after it, so that no segment mixes samples before and after the step.
    """
    if segment < 1:
        raise ValueError("segment must be >= 1 sample")
    start = 0 if anchor is None else (anchor + 1) % segment
    seg = torch.div(torch.arange(length) - start, segment, rounding_mode="floor")
    seg = seg - seg.min()
    n_seg = int(seg.max()) + 1
    ch = torch.arange(channels)
    ids = seg[:, None].expand(length, channels) if joint_channels else ch[None, :] * n_seg + seg[:, None]
    return ids.contiguous().unsqueeze(0)


def as_window(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """[T, C] or [1, T, C] array -> float32 tensor [1, T, C] (one window is explained at a time)."""
    t = torch.as_tensor(np.asarray(x, np.float32) if not isinstance(x, torch.Tensor) else x).float()
    if t.ndim == 2:
        t = t.unsqueeze(0)
    if t.ndim != 3 or t.shape[0] != 1:
        raise ValueError(f"expected one window [T, C] or [1, T, C], got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError("window contains NaN or inf samples")
    return t.detach()
