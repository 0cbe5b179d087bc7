"""The interpretable model Captum's Lime and KernelShap fit: weighted ridge, solved in closed form.

Captum's defaults for these (``SkLearnLasso``, ``SkLearnLinearRegression``) need scikit-learn,
which radarstream does not otherwise depend on, and its SGD alternatives are approximate and
slow. Both methods only need a weighted least-squares fit over at most a few hundred binary
samples, which ``torch.linalg`` solves exactly and deterministically. This is the surrogate fit
only: sampling, weighting and the attribution itself stay Captum's.
"""

from __future__ import annotations

from typing import Any

import torch
from captum._utils.models.linear_model import LinearModel
from torch.utils.data import DataLoader


def _fit_weighted_ridge(
    model: LinearModel, dataloader: DataLoader, construct_kwargs: dict[str, Any], alpha: float = 0.0, **_: Any
) -> dict[str, float]:
    xs, ys, ws = [], [], []
    for batch in dataloader:
        x, y = batch[0], batch[1]
        w = batch[2] if len(batch) > 2 else torch.ones(x.shape[0])
        xs.append(x.double().reshape(x.shape[0], -1))
        ys.append(y.double().reshape(x.shape[0], -1))
        ws.append(w.double().reshape(-1))
    x, y, w = torch.cat(xs), torch.cat(ys), torch.cat(ws)
    n, m = x.shape
    # centre with the weighted means so the intercept is not penalised
    wn = w / w.sum()
    x_mean, y_mean = wn @ x, wn @ y
    sw = w.sqrt()[:, None]
    xc, yc = (x - x_mean) * sw, (y - y_mean) * sw
    gram = xc.T @ xc + alpha * w.sum() * torch.eye(m, dtype=x.dtype)
    # lstsq (not solve): the gram matrix is singular when some feature is never switched
    coef = torch.linalg.lstsq(gram, xc.T @ yc, driver="gelsd").solution  # [m, out]
    bias = y_mean - x_mean @ coef
    model._construct_model_params(
        weight_values=coef.T.float().contiguous(), bias_value=bias.float().reshape(-1), **construct_kwargs
    )
    resid = (yc - xc @ coef).pow(2).sum() / max(n, 1)
    return {"train_loss": float(resid), "train_iter": 1}


class WeightedRidge(LinearModel):
    """``LinearModel`` trained by weighted ridge regression (``alpha`` = 0: plain weighted least
    squares, which is what Kernel SHAP's Shapley kernel asks for)."""

    def __init__(self, alpha: float = 0.0) -> None:
        super().__init__(train_fn=_fit_weighted_ridge)
        self.alpha = float(alpha)

    def fit(self, train_data: DataLoader, **kwargs: Any) -> dict[str, float]:
        return super().fit(train_data, alpha=self.alpha, **kwargs)
