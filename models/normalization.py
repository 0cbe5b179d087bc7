"""Input normalisation, inside the models so that every backend sees raw wire samples."""

from __future__ import annotations

import torch
from torch import nn


class InputNormalizer(nn.Module):
    """Maps raw ``[amplitude, distance]`` to the LSTM's features.

    * amplitude (noise RMS = 1) -> log10(max(amplitude, 1e-3)): noise sits near 0, strong
      targets at 1..4, a scale an LSTM handles without saturating its gates.
    * distance (metres, -1 = no detection) -> distance / R_max on a detection, 0 otherwise;
    * a detection flag (1 on a detection, 0 otherwise), so "no detection" never looks like a range.

    Raw input: 2 channels; features: ``FEATURES`` = 3.
    """

    FEATURES = 3

    def __init__(self, r_max_m: float = 1000.0):
        super().__init__()
        self.r_max_m = float(r_max_m)
        self.register_buffer("inv_r_max", torch.tensor(1.0 / float(r_max_m)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        amp = torch.log10(torch.clamp(x[..., 0:1], min=1e-3))
        d = x[..., 1:2]
        det = (d >= 0).to(x.dtype)
        return torch.cat([amp, d * self.inv_r_max * det, det], dim=-1)
