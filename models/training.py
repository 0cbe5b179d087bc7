"""``fit``: train any radarstream regressor on in-memory arrays."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn


@dataclass
class History:
    """What happened during ``fit``; ``best_state`` is restored into the model at the end."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_mae: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = math.inf
    stopped_early: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "train_loss": self.train_loss, "val_loss": self.val_loss, "val_mae": self.val_mae,
            "best_epoch": self.best_epoch, "best_val_loss": self.best_val_loss,
            "stopped_early": self.stopped_early, "seconds": round(self.seconds, 2),
        }


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The estimate of any regressor: drops the recurrent state or attention weights it returns."""
    out = model(x)
    return out[0] if isinstance(out, tuple) else out


def gaussian_nll(mean, std, target, mask=None) -> torch.Tensor:
    """Mean Gaussian negative log-likelihood (without the constant) of ``target`` under
    N(mean, std²); the mean is detached: the NLL trains the standard deviation only, the mean is
    trained by the main loss (mean quality never traded for variance)."""
    r = (target - mean.detach()) / std
    per = torch.log(std) + 0.5 * r * r
    if mask is None:
        return per.mean()
    return (per * mask).sum() / mask.sum().clamp(min=1.0)


def _forward(model: nn.Module, x: torch.Tensor, state, with_std: bool):
    """(mean, std or None, new state or None) of any regressor."""
    if state is not None or getattr(model, "kind", "") == "causal":
        if with_std:
            y, std, st = model(x, state, return_std=True)
            return y, std, st
        y, st = model(x, state)
        return y, None, st
    if with_std:
        y, std = model(x, return_std=True)
        return y, std, None
    return predict(model, x), None, None


def _masked_loss(pred, target, mask, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    err = pred - target
    if kind == "mse":
        per = err**2
    elif kind == "l1":
        per = err.abs()
    elif kind == "huber":
        per = nn.functional.huber_loss(pred, target, reduction="none", delta=0.02)
    else:
        raise ValueError(f"unknown loss {kind!r}")
    if mask is None:
        return per.mean(), err.abs().mean()
    denom = mask.sum().clamp(min=1.0)
    return (per * mask).sum() / denom, (err.abs() * mask).sum() / denom


def fit(
    model: nn.Module,
    X: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    epochs: int = 20,
    batch_size: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    val_fraction: float = 0.1,
    patience: int = 5,
    clip_grad: float = 1.0,
    loss: str = "mse",
    weight_decay: float = 0.0,
    max_seconds: float | None = None,
    progress: bool = True,
    on_epoch: Callable[[int, float, float], None] | None = None,
    tbptt: int | None = None,
) -> History:
    """Train ``model`` on ``X [N, T, C]`` against ``y`` (``[N]`` pooled, ``[N, T]`` per step).

    ``mask [N, T]`` (per-step models) selects the samples that count (e.g. inside an encounter).
    A seeded split holds out ``val_fraction`` for validation; training stops after ``patience``
    epochs without improvement (or ``max_seconds``) and the best epoch's weights are restored.
    Gradients are clipped to ``clip_grad`` (LSTMs explode on long sequences otherwise).

    ``tbptt=K`` (stateful models only, such as ``CausalRegressor``): each row of ``X`` is one long
    stream; the rows are trained side by side in chunks of ``K`` steps with the recurrent state
    carried from chunk to chunk (truncated back-propagation through time). The model then learns
    in the regime the service runs it in: state carried indefinitely, never restarted per window.
    Validation rows are run whole, with the state carried the same way.

    Models with an uncertainty head (``model.uncertainty``) also train it: the loss adds the
    Gaussian NLL of the targets under the predicted standard deviation (:func:`gaussian_nll`);
    validation loss (early stopping) stays the main loss of the mean.
    """
    with_std = bool(getattr(model, "uncertainty", False))
    X = np.asarray(X, np.float32)
    y = np.asarray(y, np.float32)
    if X.ndim != 3:
        raise ValueError(f"X must be [N, T, C], got shape {X.shape}")
    if y.shape[0] != X.shape[0] or y.ndim not in (1, 2) or (y.ndim == 2 and y.shape != X.shape[:2]):
        raise ValueError(f"y must be [N] or [N, T] matching X {X.shape[:2]}, got {y.shape}")
    if mask is not None:
        mask = np.asarray(mask, np.float32)
        if mask.shape != X.shape[:2]:
            raise ValueError(f"mask must be [N, T] = {X.shape[:2]}, got {mask.shape}")
        if y.ndim != 2:
            raise ValueError("mask applies to per-step targets y [N, T]")
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or inf")
    y = np.nan_to_num(y, nan=0.0)  # masked-out targets may be NaN

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    n = X.shape[0]
    order = torch.randperm(n, generator=gen).numpy()
    n_val = int(round(n * val_fraction)) if n > 1 else 0
    val_idx, train_idx = order[:n_val], order[n_val:]
    tX, ty = torch.from_numpy(X), torch.from_numpy(y)
    tm = torch.from_numpy(mask) if mask is not None else None

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1), eta_min=lr * 0.05)
    hist = History()
    best_state = copy.deepcopy(model.state_dict())
    t_start = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=epochs, desc=f"fit {type(model).__name__}", unit="epoch")
    bad_epochs = 0

    def step(l: torch.Tensor) -> None:
        opt.zero_grad()
        l.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        opt.step()

    for epoch in range(epochs):
        model.train()
        total, count = 0.0, 0
        if tbptt:
            state = None
            rows = torch.from_numpy(train_idx)
            for s in range(0, X.shape[1], tbptt):
                sl = slice(s, s + tbptt)
                m = tm[rows, sl] if tm is not None else None
                pred, std, state = _forward(model, tX[rows, sl], state, with_std)
                state = (state[0].detach(), state[1].detach())
                l, _ = _masked_loss(pred, ty[rows, sl], m, loss)
                step(l + gaussian_nll(pred, std, ty[rows, sl], m) if std is not None else l)
                total += float(l.detach())
                count += 1
        else:
            perm = train_idx[torch.randperm(len(train_idx), generator=gen).numpy()]
            for s in range(0, len(perm), batch_size):
                idx = perm[s : s + batch_size]
                m = tm[idx] if tm is not None else None
                pred, std, _ = _forward(model, tX[idx], None, with_std) if with_std else (predict(model, tX[idx]), None, None)
                l, _ = _masked_loss(pred, ty[idx], m, loss)
                step(l + gaussian_nll(pred, std, ty[idx], m) if std is not None else l)
                total += float(l.detach()) * len(idx)
                count += len(idx)
        sched.step()
        hist.train_loss.append(total / max(count, 1))
        val_loss, val_mae = evaluate(model, tX[val_idx], ty[val_idx], tm[val_idx] if tm is not None else None, loss) if n_val else (hist.train_loss[-1], math.nan)
        hist.val_loss.append(val_loss)
        hist.val_mae.append(val_mae)
        if val_loss < hist.best_val_loss:
            hist.best_val_loss, hist.best_epoch, bad_epochs = val_loss, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
        if bar is not None:
            bar.set_postfix(train=f"{hist.train_loss[-1]:.4g}", val=f"{val_loss:.4g}", mae=f"{val_mae:.4g}")
            bar.update(1)
        if on_epoch is not None:
            on_epoch(epoch, hist.train_loss[-1], val_loss)
        if bad_epochs >= patience:
            hist.stopped_early = True
            break
        if max_seconds is not None and time.perf_counter() - t_start > max_seconds:
            hist.stopped_early = True
            break
    if bar is not None:
        bar.close()
    model.load_state_dict(best_state)
    model.eval()
    hist.seconds = time.perf_counter() - t_start
    return hist


@torch.no_grad()
def evaluate(model, X, y, mask=None, loss: str = "mse", batch_size: int = 256) -> tuple[float, float]:
    """(mean loss, MAE) of ``model`` on tensors, in batches, without gradients."""
    model.eval()
    tot_l = tot_a = tot_w = 0.0
    for s in range(0, X.shape[0], batch_size):
        m = mask[s : s + batch_size] if mask is not None else None
        pred = predict(model, X[s : s + batch_size])
        l, a = _masked_loss(pred, y[s : s + batch_size], m, loss)
        w = float(m.sum()) if m is not None else float(pred.numel())
        tot_l += float(l) * w
        tot_a += float(a) * w
        tot_w += w
    return tot_l / max(tot_w, 1e-9), tot_a / max(tot_w, 1e-9)
