"""Per-step regressors: the causal model the service steps, and its bidirectional twin.

Both read the radar numbers (R_max, noise RMS, nominal rate) from their
:class:`models.profile.RadarProfile` (``config["profile"]``; legacy configs give ``r_max_m`` only).
With ``uncertainty=True`` a second head predicts the standard deviation of the estimate
(trained by Gaussian NLL, see ``models.training``); the first output stays the mean, so callers
that ignore the uncertainty are unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from models.normalization import radar_normalizer
from models.profile import RadarProfile

LSTMState = tuple[torch.Tensor, torch.Tensor]
MIN_STD = 1e-4
"""Floor of the predicted standard deviation (normalised units: 0.1 m at R_max 1000 m)."""


def _head(width: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, 1), nn.Sigmoid())


def _std_head(width: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, 1))


def resolve_profile(r_max_m: float | None, profile: RadarProfile | dict | None) -> RadarProfile:
    """The one profile of a model: ``profile`` if given (``r_max_m``, if also given, must agree),
    else the legacy profile of ``r_max_m`` (default 1000 m)."""
    if profile is None:
        return RadarProfile.legacy(1000.0 if r_max_m is None else float(r_max_m))
    prof = profile if isinstance(profile, RadarProfile) else RadarProfile.from_dict(profile)
    if r_max_m is not None and abs(float(r_max_m) - prof.r_max_m) > 1e-9 * prof.r_max_m:
        raise ValueError(f"config r_max_m={r_max_m} disagrees with profile.r_max_m={prof.r_max_m}: "
                         "R_max comes from the profile; edit the profile (and re-export the ONNX graphs)")
    return prof


class _PerStep(nn.Module):
    """Shared plumbing of the per-step regressors."""

    def _setup(self, input_size: int, hidden_size: int, num_layers: int, head_hidden: int,
               r_max_m: float | None, profile: Any, uncertainty: bool, std_scale: float, bidirectional: bool) -> None:
        self.profile = resolve_profile(r_max_m, profile)
        self.config = dict(
            input_size=input_size, hidden_size=hidden_size, num_layers=num_layers,
            head_hidden=head_hidden, r_max_m=self.profile.r_max_m,
        )
        if profile is not None or input_size != 2 or uncertainty:  # new-style config (legacy ones stay as they were)
            self.config.update(profile=self.profile.to_dict(), uncertainty=bool(uncertainty), std_scale=float(std_scale))
        self.uncertainty = bool(uncertainty)
        self.std_scale = float(std_scale)
        self.normalizer = radar_normalizer(self.profile, input_size)
        self.lstm = nn.LSTM(self.normalizer.features, hidden_size, num_layers, batch_first=True, bidirectional=bidirectional)
        width = hidden_size * (2 if bidirectional else 1)
        self.head = _head(width, head_hidden)
        self.std_head = _std_head(width, head_hidden) if uncertainty else None

    def _outputs(self, out: torch.Tensor, return_std: bool):
        y = self.head(out).squeeze(-1)
        if not return_std:
            return y, None
        if self.std_head is None:
            raise ValueError(f"this {type(self).__name__} has no uncertainty head (trained without uncertainty=True)")
        # the head reads LSTM features detached from the graph: it never shapes the state, so the
        # mean is what MSE training alone would give (detach is a no-op at inference and in ONNX)
        std = nn.functional.softplus(self.std_head(out.detach()).squeeze(-1)) + MIN_STD
        return y, std * self.std_scale


class CausalRegressor(_PerStep):
    """Unidirectional LSTM + per-step MLP head: ``y_t = f(x_1..x_t) ∈ [0, 1]`` (Dmin / R_max).

    ``forward`` takes and returns the recurrent state explicitly so that a stream can be processed
    in pieces of any size: stepping one sample at a time equals one call over the whole stream.
    Raw input ``[amplitude, distance]``, plus ``period_s`` when ``input_size == 3``.
    """

    kind = "causal"

    def __init__(
        self,
        input_size: int = 2,
        hidden_size: int = 64,
        num_layers: int = 2,
        head_hidden: int = 32,
        r_max_m: float | None = None,
        *,
        profile: RadarProfile | dict | None = None,
        uncertainty: bool = False,
        std_scale: float = 1.0,
    ):
        super().__init__()
        self._setup(input_size, hidden_size, num_layers, head_hidden, r_max_m, profile, uncertainty, std_scale, False)

    def zero_state(self, batch: int = 1) -> LSTMState:
        shape = (self.lstm.num_layers, batch, self.lstm.hidden_size)
        return torch.zeros(shape), torch.zeros(shape)

    def forward(self, x: torch.Tensor, state: LSTMState | None = None, *, return_std: bool = False):
        """x [B, T, C] raw samples -> (y [B, T], (h, c) each [layers, B, hidden]);
        with ``return_std``: (y, std [B, T], (h, c)), std in Dmin / R_max units."""
        out, new_state = self.lstm(self.normalizer(x), state)
        y, std = self._outputs(out, return_std)
        return (y, std, new_state) if return_std else (y, new_state)


class BidirectionalRegressor(_PerStep):
    """Bidirectional LSTM + per-step head: re-scores a completed window using its future too."""

    kind = "bidir"

    def __init__(
        self,
        input_size: int = 2,
        hidden_size: int = 64,
        num_layers: int = 2,
        head_hidden: int = 32,
        r_max_m: float | None = None,
        *,
        profile: RadarProfile | dict | None = None,
        uncertainty: bool = False,
        std_scale: float = 1.0,
    ):
        super().__init__()
        self._setup(input_size, hidden_size, num_layers, head_hidden, r_max_m, profile, uncertainty, std_scale, True)

    def forward(self, x: torch.Tensor, *, return_std: bool = False, lengths: torch.Tensor | None = None):
        """x [B, T, C] -> y [B, T]; with ``return_std``: (y, std [B, T]). ``lengths [B]``
        (optional): the real length of each right-padded row; the LSTM then runs packed, so the
        backward direction starts at each row's own end (outputs at padded steps are meaningless)."""
        if lengths is not None:
            from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

            n = torch.as_tensor(lengths).to(torch.int64).cpu().clamp(1, x.shape[1])
            packed = pack_padded_sequence(self.normalizer(x), n, batch_first=True, enforce_sorted=False)
            out, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=x.shape[1])
        else:
            out, _ = self.lstm(self.normalizer(x))
        y, std = self._outputs(out, return_std)
        return (y, std) if return_std else y
