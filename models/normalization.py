"""Input normalisation, inside the models so that every backend sees raw wire samples.

The numbers it uses (R_max, noise RMS, nominal period) come from the model's
:class:`models.profile.RadarProfile`, and are baked into the ONNX graphs at export.
"""

from __future__ import annotations

import math

import torch
from torch import nn

REFERENCE_PERIOD_S = 0.05
"""The period feature is ``ln(period_s / REFERENCE_PERIOD_S)``: 0 at 20 Hz, ±1.4 at 5 / 50 Hz."""


class InputNormalizer(nn.Module):
    """Maps raw ``[amplitude, distance(, period_s)]`` to the LSTM's features.

    * amplitude / noise_rms -> log10(max(., 1e-3)): noise sits near 0, strong targets at 1..4, a
      scale an LSTM handles without saturating its gates; dividing by the profile's noise RMS
      makes it relative to the radar's noise, not its amplitude units.
    * distance (metres, -1 = no detection) -> distance / R_max on a detection, 0 otherwise;
    * a detection flag (1 on a detection, 0 otherwise), so "no detection" never looks like a range.
    * ``with_period`` only: ``ln(period_s / 0.05)`` from a third raw channel ``period_s`` (the
      sample period in seconds); a 2-channel input gets the profile's nominal period, so callers
      that only have ``[amplitude, distance]`` windows keep working (at the nominal rate).

    Raw input: 2 (or 3) channels; features: ``features`` = 3 (4 with the period).
    """

    FEATURES = 3
    """Features of the legacy (2-channel) normaliser."""

    def __init__(self, r_max_m: float = 1000.0, noise_rms: float = 1.0, *, with_period: bool = False,
                 nominal_period_s: float = REFERENCE_PERIOD_S):
        super().__init__()
        self.r_max_m = float(r_max_m)
        self.noise_rms = float(noise_rms)
        self.with_period = bool(with_period)
        self.features = self.FEATURES + int(self.with_period)
        self.register_buffer("inv_r_max", torch.tensor(1.0 / float(r_max_m)), persistent=False)
        self.register_buffer("inv_noise", torch.tensor(1.0 / float(noise_rms)), persistent=False)
        self.register_buffer("nominal_period", torch.tensor(float(nominal_period_s)), persistent=False)
        self._log_ref = math.log(REFERENCE_PERIOD_S)

    def fold_for(self, channels: int = 2) -> torch.Tensor:
        """How features fold back onto ``channels`` raw channels, ``[F, channels]`` (attributions
        are additive): log-amplitude -> amplitude; range and detection flag -> distance; the
        period feature -> ``period_s`` (or nowhere for 2-channel input, where it is a constant)."""
        rows = [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]
        if channels == 3:
            rows = [r + [0.0] for r in rows]
        if self.with_period:
            rows.append([0.0, 0.0, 1.0] if channels == 3 else [0.0, 0.0])
        return torch.tensor(rows)

    @property
    def fold(self) -> torch.Tensor:
        """``fold_for`` the model's own raw channel count."""
        return self.fold_for(3 if self.with_period else 2)

    @property
    def feature_names(self) -> tuple[str, ...]:
        names = ("log10 amplitude / noise RMS", "range / R_max", "detection flag")
        return names + (("ln(period / 50 ms)",) if self.with_period else ())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        amp = torch.log10(torch.clamp(x[..., 0:1] * self.inv_noise, min=1e-3))  # x * 1.0 is exact
        d = x[..., 1:2]
        det = (d >= 0).to(x.dtype)
        feats = [amp, d * self.inv_r_max * det, det]
        if self.with_period:
            # branch-free for ONNX (dynamic channel axis): a 2-channel x gets the nominal period
            padded = torch.cat([x, torch.ones_like(x[..., 0:1]) * self.nominal_period], dim=-1)
            period = torch.clamp(padded[..., 2:3], min=1e-4)
            feats.append(torch.log(period) - self._log_ref)
        return torch.cat(feats, dim=-1)


def radar_normalizer(profile, input_size: int) -> InputNormalizer:
    """The radar normaliser of a model with ``input_size`` raw channels (2, or 3 with period)."""
    if input_size not in (2, 3):
        raise ValueError(f"the radar normaliser takes 2 or 3 raw channels, got input_size={input_size}")
    return InputNormalizer(profile.r_max_m, profile.noise_rms, with_period=input_size == 3,
                           nominal_period_s=1.0 / profile.rate_hz)
