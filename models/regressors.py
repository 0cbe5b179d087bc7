"""Per-step regressors: the causal model the service steps, and its bidirectional twin."""

from __future__ import annotations

import torch
from torch import nn

from models.normalization import InputNormalizer

LSTMState = tuple[torch.Tensor, torch.Tensor]


def _head(width: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, 1), nn.Sigmoid())


class CausalRegressor(nn.Module):
    """Unidirectional LSTM + per-step MLP head: ``y_t = f(x_1..x_t) ∈ [0, 1]`` (Dmin / R_max).

    ``forward`` takes and returns the recurrent state explicitly so that a stream can be processed
    in pieces of any size: stepping one sample at a time equals one call over the whole stream.
    """

    kind = "causal"

    def __init__(
        self,
        input_size: int = 2,
        hidden_size: int = 64,
        num_layers: int = 2,
        head_hidden: int = 32,
        r_max_m: float = 1000.0,
    ):
        super().__init__()
        self.config = dict(
            input_size=input_size, hidden_size=hidden_size, num_layers=num_layers,
            head_hidden=head_hidden, r_max_m=r_max_m,
        )
        self.normalizer = InputNormalizer(r_max_m)
        self.lstm = nn.LSTM(InputNormalizer.FEATURES, hidden_size, num_layers, batch_first=True)
        self.head = _head(hidden_size, head_hidden)

    def zero_state(self, batch: int = 1) -> LSTMState:
        shape = (self.lstm.num_layers, batch, self.lstm.hidden_size)
        return torch.zeros(shape), torch.zeros(shape)

    def forward(self, x: torch.Tensor, state: LSTMState | None = None) -> tuple[torch.Tensor, LSTMState]:
        """x [B, T, 2] raw samples -> (y [B, T], (h, c) each [layers, B, hidden])."""
        out, new_state = self.lstm(self.normalizer(x), state)
        return self.head(out).squeeze(-1), new_state


class BidirectionalRegressor(nn.Module):
    """Bidirectional LSTM + per-step head: re-scores a completed window using its future too."""

    kind = "bidir"

    def __init__(
        self,
        input_size: int = 2,
        hidden_size: int = 64,
        num_layers: int = 2,
        head_hidden: int = 32,
        r_max_m: float = 1000.0,
    ):
        super().__init__()
        self.config = dict(
            input_size=input_size, hidden_size=hidden_size, num_layers=num_layers,
            head_hidden=head_hidden, r_max_m=r_max_m,
        )
        self.normalizer = InputNormalizer(r_max_m)
        self.lstm = nn.LSTM(InputNormalizer.FEATURES, hidden_size, num_layers, batch_first=True, bidirectional=True)
        self.head = _head(2 * hidden_size, head_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, 2] -> y [B, T]."""
        out, _ = self.lstm(self.normalizer(x))
        return self.head(out).squeeze(-1)
