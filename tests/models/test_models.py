import pickle

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from models import DminRegressorLSTM, fit
from models.export import export_bidir, export_causal, export_pooled
from models.gates import GateLevelLSTM
from models.regressors import BidirectionalRegressor, CausalRegressor
from models.weights import UnsafeWeightsError, WeightsError, load_into, read_state_dict, save_weights


def _raw(batch: int, t: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    amp = torch.rand(batch, t, 1, generator=g) * 20
    dist = torch.where(torch.rand(batch, t, 1, generator=g) < 0.5, -torch.ones(batch, t, 1), torch.rand(batch, t, 1, generator=g) * 1000)
    return torch.cat([amp, dist], -1)


def test_gate_level_step_equals_nn_lstm_over_long_sequences():
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 32, 2, batch_first=True)
    x = torch.randn(2, 2000, 3)
    ref, (hn, cn) = lstm(x)
    cell = GateLevelLSTM.from_lstm(lstm)
    trace, (h, c) = cell.run(x.numpy())
    # trace.h [T, layers, B, H]; the top layer is nn.LSTM's output
    assert np.abs(trace.h[:, -1].transpose(1, 0, 2) - ref.detach().numpy()).max() < 1e-5
    assert np.abs(h - hn.detach().numpy()).max() < 1e-5
    assert np.abs(c - cn.detach().numpy()).max() < 1e-5
    # gates are probabilities / tanh values and reproduce the seed's update c_t = f c + i ĉ
    assert 0 <= trace.f.min() and trace.f.max() <= 1 and -1 <= trace.g.min() and trace.g.max() <= 1
    c_prev = np.concatenate([np.zeros_like(trace.c[:1]), trace.c[:-1]])
    assert np.allclose(trace.c, trace.f * c_prev + trace.i * trace.g, atol=1e-12)
    assert np.allclose(trace.h, trace.o * np.tanh(trace.c), atol=1e-12)


def test_gate_level_refuses_bidirectional():
    with pytest.raises(ValueError):
        GateLevelLSTM.from_lstm(nn.LSTM(3, 8, bidirectional=True))


def test_causal_step_by_step_equals_full_sequence():
    torch.manual_seed(1)
    m = CausalRegressor(hidden_size=32).eval()
    x = _raw(3, 400)
    with torch.no_grad():
        full, (hf, cf) = m(x)
        state = None
        steps = []
        for t in range(x.shape[1]):
            y, state = m(x[:, t : t + 1], state)
            steps.append(y)
    assert (torch.cat(steps, 1) - full).abs().max() < 1e-5
    assert (state[0] - hf).abs().max() < 1e-5


def test_causal_output_does_not_depend_on_the_future():
    torch.manual_seed(2)
    m = CausalRegressor(hidden_size=16).eval()
    x = _raw(1, 100)
    x2 = x.clone()
    x2[:, 60:] = _raw(1, 40, seed=9)
    with torch.no_grad():
        a, b = m(x)[0], m(x2)[0]
    assert torch.equal(a[:, :60], b[:, :60])
    assert not torch.equal(a[:, 60:], b[:, 60:])


@pytest.mark.parametrize("pooling", ["mean", "last", "attention", "multihead"])
def test_dmin_regressor_lstm_poolings(pooling):
    torch.manual_seed(3)
    m = DminRegressorLSTM(pooling=pooling).eval()
    x = _raw(4, 50)
    out = m(x)
    y = out[0] if isinstance(out, tuple) else out
    assert y.shape == (4,)
    assert torch.all((y >= 0) & (y <= 1))
    if pooling == "attention":
        w = out[1]
        assert w.shape == (4, 50)
        assert torch.allclose(w.sum(1), torch.ones(4))
    elif pooling == "multihead":
        w = out[1]
        assert w.shape == (4, 4, 50, 50)
        # the hand-written attention equals nn.MultiheadAttention with the same weights
        o = m.lstm(m.normalizer(x))[0]
        ref, ref_w = m.attn(o, o, o, need_weights=True, average_attn_weights=False)
        mine, mine_w = m._self_attention(o)
        assert (ref - mine).abs().max() < 1e-5 and (ref_w - mine_w).abs().max() < 1e-6
    else:
        assert isinstance(out, torch.Tensor)


def test_dmin_regressor_rejects_unknown_pooling():
    with pytest.raises(ValueError, match="pooling"):
        DminRegressorLSTM(pooling="max")


def test_fit_reduces_loss_on_a_small_problem():
    # target: the mean detected range of the sequence (learnable), pooled model
    rng = np.random.default_rng(0)
    X = np.stack([rng.uniform(0.5, 3, (40, 2)) for _ in range(96)]).astype(np.float32)
    X[:, :, 1] = rng.uniform(0, 1000, (96, 1))
    y = (X[:, 0, 1] / 1000).astype(np.float32)
    m = DminRegressorLSTM(hidden_size=16, num_layers=1, pooling="mean")
    hist = fit(m, X, y, epochs=15, batch_size=16, lr=1e-2, seed=0, progress=False, patience=15)
    assert hist.train_loss[-1] < 0.3 * hist.train_loss[0]
    assert hist.best_val_loss < 0.5 * hist.val_loss[0]


def test_fit_per_step_with_mask_and_validation_of_shapes():
    rng = np.random.default_rng(1)
    X = rng.uniform(0, 3, (32, 30, 2)).astype(np.float32)
    y = np.full((32, 30), np.nan, np.float32)
    mask = np.zeros((32, 30), np.float32)
    y[:, 10:] = 0.3
    mask[:, 10:] = 1
    m = CausalRegressor(hidden_size=8)
    hist = fit(m, X, y, mask, epochs=8, batch_size=8, lr=2e-2, progress=False, patience=8)
    assert hist.val_mae[hist.best_epoch] < 0.1
    with pytest.raises(ValueError):
        fit(m, X, y[:, :5], mask, epochs=1, progress=False)
    with pytest.raises(ValueError):
        fit(m, X[0], y, epochs=1, progress=False)


def test_onnx_causal_bidir_pooled_equal_torch(tmp_path):
    torch.manual_seed(4)
    x = _raw(3, 77)
    c = CausalRegressor(hidden_size=32).eval()
    export_causal(c, tmp_path / "c.onnx")
    s = ort.InferenceSession(str(tmp_path / "c.onnx"), providers=["CPUExecutionProvider"])
    h0 = np.random.default_rng(0).normal(size=(2, 3, 32)).astype(np.float32)
    c0 = np.random.default_rng(1).normal(size=(2, 3, 32)).astype(np.float32)
    y, hn, cn = s.run(None, {"x": x.numpy(), "h0": h0, "c0": c0})
    with torch.no_grad():
        yt, (ht, ct) = c(x, (torch.from_numpy(h0), torch.from_numpy(c0)))
    assert np.abs(y - yt.numpy()).max() < 1e-5 and np.abs(cn - ct.numpy()).max() < 1e-5
    b = BidirectionalRegressor(hidden_size=32).eval()
    export_bidir(b, tmp_path / "b.onnx")
    s = ort.InferenceSession(str(tmp_path / "b.onnx"), providers=["CPUExecutionProvider"])
    for t in (5, 300):  # dynamic window length
        xb = _raw(2, t, seed=t)
        with torch.no_grad():
            assert np.abs(s.run(None, {"x": xb.numpy()})[0] - b(xb).numpy()).max() < 1e-5
    for pooling in ("attention", "multihead"):
        p = DminRegressorLSTM(pooling=pooling).eval()
        export_pooled(p, tmp_path / f"p-{pooling}.onnx")
        s = ort.InferenceSession(str(tmp_path / f"p-{pooling}.onnx"), providers=["CPUExecutionProvider"])
        xp = _raw(2, 33, seed=5)
        with torch.no_grad():
            ref = p(xp)
        got = s.run(None, {"x": xp.numpy()})
        assert np.abs(got[0] - ref[0].numpy()).max() < 1e-5
        assert np.abs(got[1] - ref[1].numpy()).max() < 1e-5


def test_weights_round_trip_without_pickle(tmp_path):
    m = CausalRegressor(hidden_size=8)
    st, js = save_weights(m, tmp_path / "causal", {"config": m.config})
    assert st.read_bytes()[:8] != b"\x80\x04\x95"  # not a pickle
    m2 = load_into(CausalRegressor(hidden_size=8), st)
    for k, v in m.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k])
    with pytest.raises(WeightsError, match="does not match"):
        load_into(CausalRegressor(hidden_size=16), st)


class _Canary:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_file_is_refused_and_runs_nothing(tmp_path):
    canary = tmp_path / "canary-created"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"w": _Canary(str(canary))}))
    with pytest.raises(UnsafeWeightsError, match="refused"):
        read_state_dict(evil)
    assert not canary.exists()
    # the same bytes disguised as safetensors are refused too
    disguised = tmp_path / "evil.safetensors"
    disguised.write_bytes(evil.read_bytes())
    with pytest.raises(WeightsError):
        read_state_dict(disguised)
    assert not canary.exists()


def test_shipped_weights_load():
    from models.bundle import load_bundle

    bundle = load_bundle(require_all=True)
    assert isinstance(bundle.causal, CausalRegressor)
    assert isinstance(bundle.pooled, DminRegressorLSTM)
    assert (bundle.weights_dir / "causal.onnx").is_file()
    assert bundle.meta["causal"]["validation"]["mae_m"] > 0


def test_seed_model_is_generic_unless_a_normaliser_is_asked_for():
    """Issue 13 item 5: ``DminRegressorLSTM(input_size=2)`` applies no radar normalisation; the
    config records the choice; ``normalizer="radar"`` (or the legacy ``normalize=True``) asks."""
    from models.bundle import build_model
    from models.normalization import InputNormalizer

    plain = DminRegressorLSTM(input_size=2)
    assert isinstance(plain.normalizer, nn.Identity) and plain.config["normalizer"] is None
    radar = DminRegressorLSTM(input_size=2, normalizer="radar")
    assert isinstance(radar.normalizer, InputNormalizer) and radar.config["normalizer"] == "radar"
    assert isinstance(DminRegressorLSTM(normalize=True).normalizer, InputNormalizer)
    # a config saved as today's round-trips; one saved before the key existed keeps the normaliser
    assert isinstance(build_model("pooled", plain.config).normalizer, nn.Identity)
    legacy = {k: v for k, v in plain.config.items() if k != "normalizer"} | {"normalize": True}
    assert isinstance(build_model("pooled", legacy).normalizer, InputNormalizer)
    with pytest.raises(ValueError, match="normalizer"):
        DminRegressorLSTM(normalizer="log")


def test_seed_model_learns_a_generic_two_channel_task_through_fit():
    """Generic data (no amplitudes, no ranges): y = sigmoid(2 · mean of channel 0). With the old
    silent radar normaliser (log10 of channel 0 clamped at 1e-3, channel 1 / 1000) this task is
    nearly unlearnable for negative inputs; without it the model fits it well."""
    rng = np.random.default_rng(0)
    X = rng.normal(0.0, 1.0, (480, 24, 2)).astype(np.float32)
    X[:, :, 0] += rng.normal(0.0, 0.6, (480, 1))  # per-sequence offset: the signal to find
    y = (1 / (1 + np.exp(-2 * X[:, :, 0].mean(1)))).astype(np.float32)
    constant_mse = float(np.var(y))
    torch.manual_seed(0)
    m = DminRegressorLSTM(input_size=2, hidden_size=16, num_layers=1, pooling="mean")
    hist = fit(m, X, y, epochs=30, batch_size=32, lr=1e-2, seed=0, progress=False, patience=30)
    assert hist.best_val_loss < 0.01 * constant_mse  # the radar normaliser reaches only ~0.05×


def test_the_first_waves_weights_keep_their_legacy_normalisation():
    """models/previous/default-radar (shipped until issue 13) predates profiles: its JSONs load
    with the normaliser they were trained with (log10 amplitude, range / 1000 m, detection flag;
    no period channel)."""
    from models.bundle import load_model, shipped_weights_dir
    from models.normalization import InputNormalizer

    previous = shipped_weights_dir().parent / "previous" / "default-radar"
    x = _raw(2, 64, seed=4)
    for kind in ("causal", "bidir", "pooled"):
        model, meta = load_model(kind, previous)
        assert isinstance(model.normalizer, InputNormalizer) and not model.normalizer.with_period
        assert model.profile.r_max_m == 1000.0 and model.profile.noise_rms == 1.0
        if "profile" in meta["config"]:
            continue  # weights trained after issue 13 carry their own profile
        det = (x[..., 1:] >= 0).float()  # the seed's formula, operation for operation
        ref = torch.cat([torch.log10(torch.clamp(x[..., :1], min=1e-3)), x[..., 1:] * torch.tensor(1.0 / 1000.0) * det, det], -1)
        assert torch.equal(model.normalizer(x), ref)
