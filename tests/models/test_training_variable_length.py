"""``fit`` on variable-length rows: padding and masks inside, exact per-step and pooled losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import fit
from models.bundle import build_model, load_model, shipped_weights_dir
from models.pooled import POOLINGS, DminRegressorLSTM
from models.training import evaluate, pad_sequences

RNG = np.random.default_rng(7)


def _rows(lengths, channels=2):
    out = []
    for n in lengths:
        x = np.stack([RNG.rayleigh(1.0, n) * 3, np.where(RNG.random(n) < 0.5, -1.0, RNG.random(n) * 900)], 1)
        if channels == 3:
            x = np.concatenate([x, np.full((n, 1), 0.05)], 1)
        out.append(x.astype(np.float32))
    return out


def _out(o):
    return o[0] if isinstance(o, tuple) else o


def test_pad_sequences_shapes_and_mask():
    X = _rows([5, 9, 3])
    y = [np.full(len(x), 0.1 * k, np.float32) for k, x in enumerate(X)]
    Xp, yp, mp, lengths = pad_sequences(X, y)
    assert Xp.shape == (3, 9, 2) and yp.shape == (3, 9) and lengths.tolist() == [5, 9, 3]
    assert mp.sum(1).tolist() == [5, 9, 3] and (Xp[2, 3:] == 0).all()
    m = [np.r_[np.zeros(2), np.ones(len(x) - 2)].astype(np.float32) for x in X]
    assert pad_sequences(X, y, m)[2].sum() == sum(len(x) - 2 for x in X)
    _, yq, mq, _ = pad_sequences(X, [0.1, 0.2, 0.3])
    assert yq.shape == (3,) and mq is None
    with pytest.raises(ValueError):
        pad_sequences(X, [np.zeros(4)] * 3)


@pytest.mark.parametrize("kind", ["causal", "bidir"])
def test_per_step_loss_with_padding_equals_unpadded(kind):
    torch.manual_seed(0)
    model = build_model(kind, {"hidden_size": 8, "num_layers": 1}).eval()
    X = _rows([40, 17, 29])
    y = [np.full(len(x), 0.3, np.float32) for x in X]
    Xp, yp, mp, lengths = pad_sequences(X, y)
    padded = evaluate(model, torch.from_numpy(Xp), torch.from_numpy(yp), torch.from_numpy(mp), lengths=torch.from_numpy(lengths))
    errs = []
    with torch.no_grad():
        for x, t in zip(X, y):
            errs.append((_out(model(torch.from_numpy(x)[None]))[0].numpy() - t) ** 2)
    assert padded[0] == pytest.approx(float(np.concatenate(errs).mean()), rel=1e-5)
    # and the padding changes nothing: a different pad value gives the same loss
    Xq = Xp.copy()
    Xq[1, 17:] = 55.0
    again = evaluate(model, torch.from_numpy(Xq), torch.from_numpy(yp), torch.from_numpy(mp), lengths=torch.from_numpy(lengths))
    assert again[0] == pytest.approx(padded[0], rel=1e-6)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_masked_pooling_ignores_padding(pooling):
    torch.manual_seed(1)
    model = DminRegressorLSTM(2, 8, 1, pooling=pooling, normalizer="radar").eval()
    X = _rows([30, 12])
    Xp, _, _, lengths = pad_sequences(X, [0.2, 0.4])
    Xp[1, 12:] = 99.0  # garbage in the padding
    with torch.no_grad():
        out = model(torch.from_numpy(Xp), lengths=torch.from_numpy(lengths))
        alone = _out(model(torch.from_numpy(X[1])[None]))[0]
    assert float(_out(out)[1]) == pytest.approx(float(alone), abs=1e-6)
    if pooling == "attention":
        assert float(out[1][1, 12:].abs().max()) == 0.0  # padded steps get no attention


@pytest.mark.parametrize("weights", [shipped_weights_dir(), shipped_weights_dir().parent / "previous" / "default-radar"])
def test_shipped_models_unchanged_for_full_length_rows(weights):
    """Without ``lengths`` the forward pass is the old one; full-length ``lengths`` agree with it."""
    for kind in ("bidir", "pooled"):
        model, _ = load_model(kind, weights)
        c = int(model.config["input_size"])
        x = torch.from_numpy(np.stack(_rows([64, 64], c)))
        with torch.no_grad():
            a, b = _out(model(x)), _out(model(x, lengths=torch.tensor([64, 64])))
        assert torch.allclose(a, b, atol=1e-6), kind


@pytest.mark.parametrize("kind", ["causal", "bidir", "pooled"])
def test_fit_trains_on_lists_of_arrays(kind):
    torch.manual_seed(2)
    cfg = {"hidden_size": 8, "num_layers": 1}
    if kind == "pooled":
        cfg.update(pooling="attention", normalizer="radar")
    model = build_model(kind, cfg)
    X = _rows(RNG.integers(20, 60, 24))
    # the target is learnable from the inputs: the mean detected range / R_max
    truth = [float(np.mean(np.where(x[:, 1] >= 0, x[:, 1], 0)) / 1000) for x in X]
    y = truth if kind == "pooled" else [np.full(len(x), t, np.float32) for x, t in zip(X, truth)]
    val = (X[:6], y[:6]) if kind == "pooled" else (X[:6], y[:6], None)
    hist = fit(model, X[6:], y[6:], epochs=6, batch_size=6, lr=1e-2, progress=False, validation=val, patience=10)
    assert len(hist.val_loss) == 6 and min(hist.val_loss) < hist.val_loss[0]


def test_the_documented_example_runs():
    """docs/training.md, "Variable-length sequences": the example runs as written."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "training.md").read_text()
    code = re.findall(r"## Variable-length sequences.*?```python\n(.*?)```", doc, re.S)
    assert code, "the section or its example is missing"
    exec(compile(code[0], "docs/training.md", "exec"), {})
