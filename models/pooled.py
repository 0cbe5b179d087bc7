"""The seed's ``DminRegressorLSTM``: one Dmin per sequence, with the seed's pooling variants."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from models.normalization import radar_normalizer
from models.regressors import resolve_profile

Pooling = Literal["mean", "last", "attention", "multihead"]
POOLINGS: tuple[str, ...] = ("mean", "last", "attention", "multihead")


class DminRegressorLSTM(nn.Module):
    """LSTM (bi- or unidirectional) -> pooling over time -> MLP -> sigmoid: one value in [0, 1].

    Pooling (from the seed): ``mean`` (neutral, uses every step), ``last`` (final output),
    ``attention`` (one learned score per step, softmax, weighted sum: interpretable) and
    ``multihead`` (``nn.MultiheadAttention`` self-attention, then mean over time).
    ``forward`` returns ``y [B]``, or ``(y [B], weights)`` for the attention poolings:
    ``[B, T]`` for ``attention``, ``[B, heads, T, T]`` for ``multihead``.

    Normalisation is explicit: ``normalizer=None`` (the default) feeds the inputs to the LSTM as
    they are, so the model is a generic sequence regressor; ``normalizer="radar"`` applies the
    radar normaliser of ``models.normalization`` (2 raw channels ``[amplitude, distance]``, or 3
    with ``period_s``) with the numbers of ``profile`` (or ``r_max_m``). ``normalize=True`` is the
    legacy spelling of ``normalizer="radar"`` (weights made before the argument existed).
    """

    kind = "pooled"

    def __init__(
        self,
        input_size: int = 2,
        hidden_size: int = 64,
        num_layers: int = 2,
        bidirectional: bool = True,
        pooling: Pooling = "mean",
        *,
        num_heads: int = 4,
        r_max_m: float | None = None,
        normalize: bool | None = None,
        normalizer: Literal["radar"] | None = None,
        profile=None,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if normalizer not in (None, "radar"):
            raise ValueError(f"normalizer must be None or 'radar', got {normalizer!r}")
        if normalize and normalizer is None:
            normalizer = "radar"
        self.profile = resolve_profile(r_max_m, profile)
        self.config = dict(
            input_size=input_size, hidden_size=hidden_size, num_layers=num_layers,
            bidirectional=bidirectional, pooling=pooling, num_heads=num_heads, r_max_m=self.profile.r_max_m,
            normalizer=normalizer,
        )
        if profile is not None:
            self.config["profile"] = self.profile.to_dict()
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.pooling = pooling
        # raw radar samples are normalised as for the per-step models only when asked to
        self.normalizer = radar_normalizer(self.profile, input_size) if normalizer == "radar" else nn.Identity()
        features = self.normalizer.features if normalizer == "radar" else input_size
        self.lstm = nn.LSTM(features, hidden_size, num_layers, batch_first=True, bidirectional=bidirectional)
        width = hidden_size * (2 if bidirectional else 1)
        if pooling == "attention":
            self.attn = nn.Linear(width, 1)
        elif pooling == "multihead":
            if width % num_heads:
                raise ValueError(f"LSTM output width {width} is not divisible by num_heads={num_heads}")
            self.attn = nn.MultiheadAttention(width, num_heads, batch_first=True)
        self.regressor = nn.Sequential(nn.Linear(width, 64), nn.ReLU(), nn.Linear(64, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None):
        """``x [B, T, C]`` -> ``y [B]`` (and the attention weights). ``lengths [B]`` (optional):
        the real length of each right-padded row; the LSTM then runs packed (the backward
        direction starts at each row's own end) and every pooling ignores the padded steps
        (their attention weights are 0). Without ``lengths`` every step counts, as before."""
        if lengths is not None:
            return self._forward_padded(x, lengths)
        out, _ = self.lstm(self.normalizer(x))  # [B, T, width]
        weights = None
        if self.pooling == "mean":
            context = out.mean(dim=1)
        elif self.pooling == "last":
            context = out[:, -1, :]
        elif self.pooling == "attention":
            weights = torch.softmax(self.attn(out).squeeze(-1), dim=1)  # [B, T]
            context = torch.sum(weights.unsqueeze(-1) * out, dim=1)
        else:
            attended, weights = self._self_attention(out)
            context = attended.mean(dim=1)
        y = self.regressor(context).squeeze(-1)
        return y if weights is None else (y, weights)

    def _forward_padded(self, x: torch.Tensor, lengths: torch.Tensor):
        """``forward`` over right-padded rows: packed LSTM, masked pooling."""
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        t = x.shape[1]
        n = torch.as_tensor(lengths).to(torch.int64).cpu().clamp(1, t)
        packed = pack_padded_sequence(self.normalizer(x), n, batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=t)  # pads are 0
        valid = torch.arange(t)[None, :] < n[:, None]  # [B, T]
        weights = None
        if self.pooling == "mean":
            context = out.sum(dim=1) / n[:, None].to(out.dtype)
        elif self.pooling == "last":
            context = out[torch.arange(out.shape[0]), n - 1]
        elif self.pooling == "attention":
            scores = self.attn(out).squeeze(-1).masked_fill(~valid, float("-inf"))
            weights = torch.softmax(scores, dim=1)
            context = torch.sum(weights.unsqueeze(-1) * out, dim=1)
        else:
            attended, weights = self._self_attention(out, valid)
            context = (attended * valid.unsqueeze(-1)).sum(dim=1) / n[:, None].to(out.dtype)
        y = self.regressor(context).squeeze(-1)
        return y if weights is None else (y, weights)

    def _self_attention(self, out: torch.Tensor, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``self.attn(out, out, out)`` written out with the module's own weights.

        Same numbers as ``nn.MultiheadAttention`` (tested), but with reshapes that keep the time
        axis dynamic in the ONNX graph (the module's fused path bakes the traced length in).
        """
        mha = self.attn
        heads = mha.num_heads
        b, t, width = out.shape
        d = width // heads
        qkv = nn.functional.linear(out, mha.in_proj_weight, mha.in_proj_bias)
        q, k, v = qkv.chunk(3, dim=-1)
        split = lambda z: z.reshape(b, t, heads, d).transpose(1, 2)  # noqa: E731  [B, h, T, d]
        q, k, v = split(q), split(k), split(v)
        scores = q @ k.transpose(-2, -1) / (d**0.5)
        if valid is not None:
            scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # [B, h, T, T]
        attended = (weights @ v).transpose(1, 2).reshape(b, t, width)
        return mha.out_proj(attended), weights
