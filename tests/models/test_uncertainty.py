"""Calibrated uncertainty: coverage of nominal intervals, the std heads, their ONNX outputs."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from models.export import export_bidir, export_causal
from models.regressors import BidirectionalRegressor, CausalRegressor
from models.training import fit
from models.uncertainty import calibration_scale, interval_coverage, z_for_level


def test_coverage_on_a_synthetic_case_with_known_variance():
    rng = np.random.default_rng(0)
    n = 200_000
    mean = rng.uniform(0, 1, n)
    std = rng.uniform(0.01, 0.2, n)  # heteroscedastic, known
    truth = mean + std * rng.standard_normal(n)
    assert z_for_level(0.9) == pytest.approx(1.6448536, abs=1e-6)
    assert interval_coverage(truth, mean, std, 0.9) == pytest.approx(0.90, abs=0.005)
    assert interval_coverage(truth, mean, std, 0.5) == pytest.approx(0.50, abs=0.005)
    # over-confident by 2x: P(|z| < 1.645 / 2) = 0.589
    assert interval_coverage(truth, mean, std / 2, 0.9) == pytest.approx(0.589, abs=0.005)
    assert calibration_scale(truth, mean, std / 2, 0.9) == pytest.approx(2.0, rel=0.02)
    # missing estimates are ignored, not counted as misses
    mean_nan = mean.copy()
    mean_nan[::2] = np.nan
    assert interval_coverage(truth, mean_nan, std, 0.9) == pytest.approx(0.90, abs=0.007)


def test_per_step_models_predict_a_positive_std_and_export_it(tmp_path):
    torch.manual_seed(0)
    x = torch.rand(2, 30, 3) * 5
    x[..., 2] = 0.05
    causal = CausalRegressor(input_size=3, hidden_size=8, uncertainty=True).eval()
    y, std, (h, c) = causal(x, None, return_std=True)
    y_only, _ = causal(x)
    assert torch.equal(y, y_only) and std.shape == y.shape and (std > 0).all()
    sess = ort.InferenceSession(str(export_causal(causal, tmp_path / "c.onnx")))
    assert [o.name for o in sess.get_outputs()] == ["y", "y_std", "hn", "cn"]
    h0 = np.zeros((2, 2, 8), np.float32)
    oy, ostd, _, _ = sess.run(None, {"x": x.numpy(), "h0": h0, "c0": h0})
    assert np.abs(oy - y.detach().numpy()).max() < 1e-5 and np.abs(ostd - std.detach().numpy()).max() < 1e-5
    bidir = BidirectionalRegressor(input_size=3, hidden_size=8, uncertainty=True).eval()
    by, bstd = bidir(x, return_std=True)
    sess = ort.InferenceSession(str(export_bidir(bidir, tmp_path / "b.onnx")))
    assert [o.name for o in sess.get_outputs()] == ["y", "y_std"]
    oy, ostd = sess.run(None, {"x": x.numpy()})
    assert np.abs(ostd - bstd.detach().numpy()).max() < 1e-5
    # the window graph also takes [amplitude, distance] windows (nominal period of the profile)
    oy2, _ = sess.run(None, {"x": x[..., :2].numpy().copy()})
    assert np.abs(oy2 - oy).max() < 1e-5
    with pytest.raises(ValueError, match="uncertainty"):
        CausalRegressor(hidden_size=8)(x[..., :2], None, return_std=True)


def test_nll_training_learns_the_noise_level_and_leaves_the_mean_to_mse():
    """Targets with two known noise levels flagged by channel 0: the std head learns them."""
    rng = np.random.default_rng(0)
    n, t = 256, 16
    loud = rng.random(n) < 0.5
    X = np.zeros((n, t, 3), np.float32)
    X[:, :, 0] = np.where(loud, 30.0, 1.0)[:, None]
    X[:, :, 1] = -1.0
    X[:, :, 2] = 0.05
    sigma = np.where(loud, 0.02, 0.15)
    y = np.clip(0.5 + sigma[:, None] * rng.standard_normal((n, t)), 0, 1).astype(np.float32)
    torch.manual_seed(0)
    m = BidirectionalRegressor(input_size=3, hidden_size=8, head_hidden=8, uncertainty=True)
    fit(m, X, y, np.ones((n, t), np.float32), epochs=60, batch_size=32, lr=2e-2, progress=False, patience=60)
    with torch.no_grad():
        _, std = m(torch.from_numpy(X), return_std=True)
    s = std.numpy().mean(1)
    assert np.median(s[loud]) == pytest.approx(0.02, rel=0.5)
    assert np.median(s[~loud]) == pytest.approx(0.15, rel=0.3)
