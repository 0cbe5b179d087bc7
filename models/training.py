"""``fit``: train any radarstream regressor on in-memory arrays."""

from __future__ import annotations

import copy
import inspect
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


def takes_lengths(model: nn.Module) -> bool:
    """Whether ``model.forward`` takes ``lengths=`` (right-padded rows: the bidirectional and
    pooled regressors run their LSTM packed and pool over the real steps only)."""
    try:
        return "lengths" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _len_kw(model: nn.Module, lengths) -> dict:
    return {"lengths": lengths} if lengths is not None and takes_lengths(model) else {}


def predict(model: nn.Module, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """The estimate of any regressor: drops the recurrent state or attention weights it returns.
    ``lengths`` (right-padded rows) is passed on to models that take it."""
    out = model(x, **_len_kw(model, lengths))
    return out[0] if isinstance(out, tuple) else out


def pad_sequences(X, y=None, mask=None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray]:
    """Variable-length rows -> right-padded arrays: ``X`` a list of ``[T_i, C]`` arrays, ``y`` a
    list of ``[T_i]`` per-step targets (or ``[N]`` one per row), ``mask`` a list of ``[T_i]`` (or
    None). Returns ``(X [N, T, C], y, mask [N, T], lengths [N])`` with ``T = max T_i``, zeros in
    the padding and the mask 0 there (per-step targets; ``mask`` is None for one target per row
    or when every row has the full length and no mask was given)."""
    rows = [np.asarray(x, np.float32) for x in X]
    if not rows or any(r.ndim != 2 for r in rows) or len({r.shape[1] for r in rows}) != 1:
        raise ValueError("variable-length X must be a non-empty list of [T_i, C] arrays with one C")
    lengths = np.array([r.shape[0] for r in rows], np.int64)
    if lengths.min() < 1:
        raise ValueError("every row needs at least one step")
    n, t = len(rows), int(lengths.max())
    Xp = np.zeros((n, t, rows[0].shape[1]), np.float32)
    for k, r in enumerate(rows):
        Xp[k, : r.shape[0]] = r
    valid = (np.arange(t)[None, :] < lengths[:, None]).astype(np.float32)
    per_step = y is not None and len(y) == n and np.ndim(y[0]) == 1
    yp = None
    if y is not None and per_step:
        yp = np.zeros((n, t), np.float32)
        for k, (v, L) in enumerate(zip(y, lengths)):
            v = np.asarray(v, np.float32)
            if v.shape != (L,):
                raise ValueError(f"y row {k} has shape {v.shape}, its X row {L} steps")
            yp[k, :L] = v
    elif y is not None:
        yp = np.asarray(y, np.float32).reshape(n)
    mp = None
    if mask is not None:
        mp = np.zeros((n, t), np.float32)
        for k, (m, L) in enumerate(zip(mask, lengths)):
            m = np.asarray(m, np.float32)
            if m.shape != (L,):
                raise ValueError(f"mask row {k} has shape {m.shape}, its X row {L} steps")
            mp[k, :L] = m
    elif per_step and lengths.min() < t:
        mp = valid
    return Xp, yp, mp, lengths


def gaussian_nll(mean, std, target, mask=None) -> torch.Tensor:
    """Mean Gaussian negative log-likelihood (without the constant) of ``target`` under
    N(mean, std²); the mean is detached: the NLL trains the standard deviation only, the mean is
    trained by the main loss (mean quality never traded for variance)."""
    r = (target - mean.detach()) / std
    per = torch.log(std) + 0.5 * r * r
    if mask is None:
        return per.mean()
    return (per * mask).sum() / mask.sum().clamp(min=1.0)


def _forward(model: nn.Module, x: torch.Tensor, state, with_std: bool, lengths=None):
    """(mean, std or None, new state or None) of any regressor."""
    if state is not None or getattr(model, "kind", "") == "causal":
        if with_std:
            y, std, st = model(x, state, return_std=True)
            return y, std, st
        y, st = model(x, state)
        return y, None, st
    if with_std:
        y, std = model(x, return_std=True, **_len_kw(model, lengths))
        return y, std, None
    return predict(model, x, lengths), None, None


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


def _as_arrays(X, y, mask, name: str = "X"):
    """``(X [N, T, C], y, mask, lengths or None)``: arrays as given, or variable-length lists
    padded (:func:`pad_sequences`); ``lengths`` is None when every row has the full length."""
    lengths = None
    if isinstance(X, (list, tuple)):
        X, y, mask, lengths = pad_sequences(X, y, mask)
        if lengths.min() == X.shape[1]:
            lengths = None
    X = np.asarray(X, np.float32)
    y = np.asarray(y, np.float32)
    if X.ndim != 3:
        raise ValueError(f"{name} must be [N, T, C], got shape {X.shape}")
    if y.shape[0] != X.shape[0] or y.ndim not in (1, 2) or (y.ndim == 2 and y.shape != X.shape[:2]):
        raise ValueError(f"y must be [N] or [N, T] matching {name} {X.shape[:2]}, got {y.shape}")
    if mask is not None:
        mask = np.asarray(mask, np.float32)
        if mask.shape != X.shape[:2]:
            raise ValueError(f"mask must be [N, T] = {X.shape[:2]}, got {mask.shape}")
        if y.ndim != 2:
            raise ValueError("mask applies to per-step targets y [N, T]")
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or inf")
    return X, np.nan_to_num(y, nan=0.0), mask, lengths  # masked-out targets may be NaN


def _rows(t: torch.Tensor | None, idx, length: int | None):
    """Rows ``idx`` of a [N, T, ...] tensor, cut to ``length`` steps (a batch's longest row)."""
    if t is None:
        return None
    r = t[idx]
    return r[:, :length] if length is not None and r.ndim >= 2 else r


def _length_batches(perm: np.ndarray, lengths: np.ndarray, batch_size: int, gen: torch.Generator) -> list:
    """Batches of rows of similar length: the shuffled rows sorted by length within pools of 8
    batches, cut into batches, the batches shuffled."""
    pool = 8 * batch_size
    batches = []
    for s in range(0, len(perm), pool):
        part = perm[s : s + pool]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[k : k + batch_size] for k in range(0, len(part), batch_size)]
    return [batches[k] for k in torch.randperm(len(batches), generator=gen).tolist()]


def fit(
    model: nn.Module,
    X,
    y,
    mask=None,
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
    validation: tuple | None = None,
) -> History:
    """Train ``model`` on ``X [N, T, C]`` against ``y`` (``[N]`` pooled, ``[N, T]`` per step).

    ``mask [N, T]`` (per-step models) selects the samples that count (e.g. inside an encounter).
    A seeded split holds out ``val_fraction`` for validation; training stops after ``patience``
    epochs without improvement (or ``max_seconds``) and the best epoch's weights are restored.
    Gradients are clipped to ``clip_grad`` (LSTMs explode on long sequences otherwise).

    **Variable-length rows.** ``X`` may be a list of ``[T_i, C]`` arrays, with ``y`` a list of
    ``[T_i]`` per-step targets (or one target per row, ``[N]``) and ``mask`` a list of ``[T_i]``
    or None: they are right-padded inside (:func:`pad_sequences`) and the padding never counts.
    Per-step losses are exact: the padded steps are masked out, a causal model's outputs at the
    real steps cannot see the padding after them, and models whose ``forward`` takes
    ``lengths=`` (``BidirectionalRegressor``, ``DminRegressorLSTM``) get each row's length (packed
    LSTM, pooling over the real steps only). Batches group rows of similar length (shuffled
    pools of 8 batches, sorted by length) and are cut to their longest row.

    ``validation=(X_val, y_val[, mask_val])`` (arrays or lists, as ``X``) replaces the seeded
    split: every row of ``X`` trains, these rows validate (e.g. a split by encounter made by
    the caller).

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
    X, y, mask, lengths = _as_arrays(X, y, mask)

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    n = X.shape[0]
    tX, ty = torch.from_numpy(X), torch.from_numpy(y)
    tm = torch.from_numpy(mask) if mask is not None else None
    tl = torch.from_numpy(lengths) if lengths is not None else None
    if validation is not None:
        vX, vy, vm, vl = _as_arrays(validation[0], validation[1], validation[2] if len(validation) > 2 else None,
                                    "validation X")
        if vX.shape[2] != X.shape[2] or vy.ndim != y.ndim:
            raise ValueError(f"validation rows {vX.shape} / targets {vy.shape} do not match X {X.shape} / y {y.shape}")
        train_idx, n_val = np.arange(n), vX.shape[0]
        val = (torch.from_numpy(vX), torch.from_numpy(vy), torch.from_numpy(vm) if vm is not None else None,
               torch.from_numpy(vl) if vl is not None else None)
    else:
        order = torch.randperm(n, generator=gen).numpy()
        n_val = int(round(n * val_fraction)) if n > 1 else 0
        val_idx, train_idx = order[:n_val], order[n_val:]
        val = (tX[val_idx], ty[val_idx], tm[val_idx] if tm is not None else None, tl[val_idx] if tl is not None else None)

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
            batches = [perm[s : s + batch_size] for s in range(0, len(perm), batch_size)]
            if tl is not None:  # variable length: batches of similar lengths (less padding), in random order
                batches = _length_batches(perm, lengths, batch_size, gen)
            for idx in batches:
                bl = tl[idx] if tl is not None else None
                cut = int(bl.max()) if bl is not None else None
                m = _rows(tm, idx, cut)
                xb, yb = _rows(tX, idx, cut), _rows(ty, idx, cut) if y.ndim == 2 else ty[idx]
                pred, std, _ = _forward(model, xb, None, with_std, bl) if with_std else (predict(model, xb, bl), None, None)
                l, _ = _masked_loss(pred, yb, m, loss)
                step(l + gaussian_nll(pred, std, yb, m) if std is not None else l)
                total += float(l.detach()) * len(idx)
                count += len(idx)
        sched.step()
        hist.train_loss.append(total / max(count, 1))
        val_loss, val_mae = evaluate(model, val[0], val[1], val[2], loss, lengths=val[3]) if n_val else (hist.train_loss[-1], math.nan)
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
def evaluate(model, X, y, mask=None, loss: str = "mse", batch_size: int = 256, *, lengths=None) -> tuple[float, float]:
    """(mean loss, MAE) of ``model`` on tensors, in batches, without gradients. ``lengths``
    (right-padded rows; the mask must be 0 on the padding of per-step targets) is passed on to
    models that take it, and each batch is cut to its longest row."""
    model.eval()
    tot_l = tot_a = tot_w = 0.0
    for s in range(0, X.shape[0], batch_size):
        sl = slice(s, s + batch_size)
        bl = lengths[sl] if lengths is not None else None
        cut = int(bl.max()) if bl is not None else None
        m = mask[sl][:, :cut] if mask is not None else None
        yb = y[sl][:, :cut] if y.ndim == 2 else y[sl]
        pred = predict(model, X[sl][:, :cut], bl)
        l, a = _masked_loss(pred, yb, m, loss)
        w = float(m.sum()) if m is not None else float(pred.numel())
        tot_l += float(l) * w
        tot_a += float(a) * w
        tot_w += w
    return tot_l / max(tot_w, 1e-9), tot_a / max(tot_w, 1e-9)
