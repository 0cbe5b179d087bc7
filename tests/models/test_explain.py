"""Attribution layer (models.attribution) and the ``explain`` / ``bench explain`` commands.

Properties: the causal model's attribution to samples after the explained step is exactly zero
(the bidirectional model's is not); IG is complete (sum = f(x) - f(baseline), delta small);
occlusion of the CPA region moves a model trained here (seconds, on simulated data) far more than
occlusion of noise; LIME/SHAP repeat exactly under a seed. Windows are short to keep this fast.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from models.attribution import (
    ATTRIBUTION_METHODS,
    NOISE_ONLY,
    AttentionWeights,
    Attribution,
    GateActivations,
    StateTrace,
    WindowIntegratedGradients,
    WindowKernelShap,
    WindowLime,
    WindowOcclusion,
    available_methods,
    explain_window,
)
from bench.explain import time_methods
from models.bundle import load_model
from models.normalization import InputNormalizer
from models.pooled import DminRegressorLSTM
from models.regressors import CausalRegressor
from streamer.sim.simulator import RadarConfig, simulate_stream

W = 96  # window length for the property tests
STEP = 50
FAST = {"ig": {"n_steps": 16}, "lime": {"n_samples": 60}, "shap": {"n_samples": 60},
        "occlusion": {"window": 8}, "ablation": {"segment": 8}}


@pytest.fixture(scope="module")
def window() -> np.ndarray:
    """A simulated window holding part of an encounter (detections on both sides of STEP)."""
    block, encs = simulate_stream(2000, RadarConfig(), seed=4)
    e = encs[0]
    start = e.cpa_index - W // 2
    return block.samples[start : start + W].copy()


@pytest.fixture(scope="module")
def tiny(tiny_weights):
    return {k: load_model(k, tiny_weights)[0] for k in ("causal", "bidir", "pooled")}


# ---------------------------------------------------------------- causal: no attribution to the future


@pytest.mark.parametrize("method", ATTRIBUTION_METHODS)
def test_causal_attribution_after_step_is_exactly_zero(tiny, window, method):
    res = explain_window("causal", tiny["causal"], window, method, STEP, **FAST.get(method, {}))
    a = np.asarray(res.attributions)
    # occlusion windows straddling t spread their effect over up to window-1 later samples
    first_free = STEP + 1 + (FAST["occlusion"]["window"] - 1 if method == "occlusion" else 0)
    assert a.shape == (W, 2)
    assert np.all(a[first_free:] == 0.0), f"{method}: causal model attributed to samples after t"
    assert np.abs(a[: STEP + 1]).max() > 0


@pytest.mark.parametrize("method", ["saliency", "ig", "ablation", "shap"])
def test_bidirectional_attribution_reaches_the_future(tiny, window, method):
    res = explain_window("bidir", tiny["bidir"], window, method, STEP, **FAST.get(method, {}))
    assert np.abs(np.asarray(res.attributions)[STEP + 1 :]).max() > 0


# ---------------------------------------------------------------- a model that really uses the CPA


FAST_RADAR = RadarConfig(rate_hz=5.0, speed_range_mps=(100.0, 150.0), snr_at_rmax_db=10.0, clutter_prob=0.0,
                         gap_range_s=(4.0, 12.0))
"""Short encounters (5 Hz, fast passes) so that a tiny model learns something in seconds."""


@pytest.fixture(scope="module")
def trained_causal() -> CausalRegressor:
    """A 1×16 causal LSTM trained for ~30 small epochs on simulated streams; checked to have learned."""
    from models.training import fit
    from streamer.sim.datasets import stream_windows

    data = stream_windows(96, 256, FAST_RADAR, seed=3)
    torch.manual_seed(0)
    model = CausalRegressor(hidden_size=16, num_layers=1)
    fit(model, data.X, data.y, data.mask, epochs=30, batch_size=16, lr=1e-2, seed=0, progress=False, patience=100)
    test = stream_windows(24, 256, FAST_RADAR, seed=99)
    with torch.no_grad():
        y, _ = model(torch.from_numpy(test.X))
    m = test.mask > 0
    mae = np.abs(y.numpy() - test.y)[m].mean()
    const = np.abs(test.y[m] - test.y[m].mean()).mean()
    assert mae < 0.7 * const, f"the test model did not learn (MAE {mae:.3f} vs constant {const:.3f})"
    return model


def _cpa_vs_noise_occlusion(model, width: int = 16) -> tuple[float, float]:
    """Mean |change of the end-of-pass estimate| when a window over the CPA, or over noise only
    before the pass, is replaced by noise, over clean encounters."""
    clean = dataclasses.replace(FAST_RADAR, gap_range_s=(8.0, 12.0), pfa=1e-7, swerling=0)
    block, encs = simulate_stream(4000, clean, seed=11)
    cpa_d, noise_d = [], []
    for e in [e for e in encs if e.start > 3 * width][:5]:
        # align the occlusion grid so that one window is centred on the CPA
        start = e.cpa_index - width // 2 - ((e.cpa_index - width // 2 - (e.start - 3 * width)) // width) * width
        x = block.samples[start : e.stop]
        res = WindowOcclusion(model, "causal", window=width, stride=width).explain(x, e.stop - 1 - start)
        a = np.asarray(res.attributions[:, 0], np.float64) * res.r_max_m
        cpa_d.append(abs(a[e.cpa_index - start]))
        noise_d.append(np.abs(a[: e.start - start]).max())
    return float(np.mean(cpa_d)), float(np.mean(noise_d))


def test_occluding_the_cpa_moves_the_estimate_more_than_occluding_noise(trained_causal):
    cpa, noise = _cpa_vs_noise_occlusion(trained_causal)
    assert cpa > 20.0, f"occluding the CPA moved the estimate by only {cpa:.1f} m"
    assert cpa > 5 * noise, f"CPA occlusion {cpa:.1f} m vs noise-only occlusion {noise:.1f} m"
    # the same check fails for an untrained model: it does not depend on the CPA
    torch.manual_seed(0)
    untrained_cpa, _ = _cpa_vs_noise_occlusion(CausalRegressor(hidden_size=16, num_layers=1).eval())
    assert untrained_cpa < 20.0


# ---------------------------------------------------------------- completeness, efficiency


def test_integrated_gradients_is_complete(trained_causal):
    block, encs = simulate_stream(3000, FAST_RADAR, seed=5)
    e = encs[1]
    x = block.samples[e.start - 20 : e.stop]
    step = e.stop - 1 - (e.start - 20)
    coarse = WindowIntegratedGradients(trained_causal, n_steps=8).explain(x, step)
    fine = WindowIntegratedGradients(trained_causal, n_steps=512).explain(x, step)
    diff = fine.estimate - fine.baseline_estimate
    assert abs(diff) * fine.r_max_m > 5.0  # a real difference to account for
    assert fine.total == pytest.approx(float(np.asarray(fine.attributions, np.float64).sum()))
    assert fine.delta == pytest.approx(fine.total - diff, abs=1e-5)  # delta is the completeness error
    assert abs(fine.delta) < 0.01 * abs(diff) < abs(coarse.delta)
    # the feature-space split folds onto the raw channels without loss
    fa = np.asarray(fine.feature_attributions, np.float64)
    assert np.allclose(fa[:, 0], fine.attributions[:, 0], atol=1e-7)
    assert np.allclose(fa[:, 1] + fa[:, 2], fine.attributions[:, 1], atol=1e-6)
    # asking for a tolerance refines the steps until it is met
    adaptive = WindowIntegratedGradients(trained_causal, n_steps=8, tolerance=0.01, max_steps=1024).explain(x, step)
    assert adaptive.params["n_steps"] > 8 and abs(adaptive.delta) <= 0.01 * abs(diff)


def test_kernel_shap_values_sum_to_the_estimate_change(trained_causal, window):
    res = WindowKernelShap(trained_causal, segment=8, n_samples=120).explain(window, STEP)
    assert res.total == pytest.approx(res.estimate - res.baseline_estimate, abs=1e-4)


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize("cls", [WindowLime, WindowKernelShap])
def test_sampled_methods_repeat_exactly_under_a_seed(tiny, window, cls):
    model = tiny["bidir"]
    before = torch.random.get_rng_state()
    a = cls(model, segment=8, n_samples=60, seed=3).explain(window, STEP)
    b = cls(model, segment=8, n_samples=60, seed=3).explain(window, STEP)
    c = cls(model, segment=8, n_samples=60, seed=4).explain(window, STEP)
    assert torch.equal(before, torch.random.get_rng_state()), "the caller's RNG was disturbed"
    assert np.array_equal(a.attributions, b.attributions)
    assert not np.array_equal(a.attributions, c.attributions)


# ---------------------------------------------------------------- internal views


def test_state_and_gate_traces_match_the_model(tiny, window):
    for kind in ("causal", "bidir", "pooled"):
        model = tiny[kind]
        st = explain_window(kind, model, window, "state", STEP)
        gt = explain_window(kind, model, window, "gates", STEP)
        assert isinstance(st, StateTrace) and isinstance(gt, GateActivations)
        with torch.no_grad():
            out, _ = model.lstm(model.normalizer(torch.from_numpy(window)[None]))
        layers, dirs, hidden = model.lstm.num_layers, st.directions, model.lstm.hidden_size
        assert st.h.shape == (layers, W, dirs * hidden) == gt.f.shape
        assert np.abs(st.h[-1] - out[0].numpy()).max() < 1e-5  # top layer = nn.LSTM's output
        assert 0 <= gt.f.min() and gt.f.max() <= 1 and -1 <= gt.g.min() and gt.g.max() <= 1


def test_attention_weights_of_attention_pooled_models(window):
    torch.manual_seed(0)
    for pooling in ("attention", "multihead"):
        model = DminRegressorLSTM(hidden_size=8, pooling=pooling, num_heads=2).eval()
        res = explain_window("pooled", model, window, "attention")
        assert isinstance(res, AttentionWeights) and res.step is None
        assert res.weights.shape == (W,) and res.weights.sum() == pytest.approx(1.0, abs=1e-5)
        with torch.no_grad():
            y, w = model(torch.from_numpy(window)[None])
        assert res.estimate == pytest.approx(float(y[0]))
        if pooling == "multihead":
            assert res.per_head.shape == (2, W) and res.matrix.shape == (2, W, W)
        else:
            assert np.allclose(res.weights, w[0].numpy(), atol=1e-6)
        assert "attention" in available_methods(model)


def test_attention_is_refused_where_there_is_none(tiny, window):
    assert "attention" not in available_methods(tiny["causal"])
    with pytest.raises(ValueError, match="attention"):
        explain_window("pooled", tiny["pooled"], window, "attention")


# ---------------------------------------------------------------- the API a GUI thread calls


def test_explain_window_results_are_frozen_and_leave_the_model_alone(tiny, window):
    model = tiny["causal"]
    params = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    res = explain_window(None, model, window, "ig", STEP, n_steps=8, progress=lambda d, t: seen.append((d, t)))
    assert isinstance(res, Attribution) and res.target == "causal" and res.step == STEP
    assert res.baseline_name == "noise" and list(res.baseline) == [NOISE_ONLY.amplitude, NOISE_ONLY.distance]
    assert res.seconds > 0 and res.delta is not None and seen and seen[-1][0] == seen[-1][1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.step = 3  # type: ignore[misc]
    with pytest.raises(ValueError):
        res.attributions[0, 0] = 1.0
    assert isinstance(model.normalizer, InputNormalizer)
    assert all(torch.equal(params[k], v) for k, v in model.state_dict().items())
    json.dumps(res.summary())


def test_pooled_target_has_one_estimate_and_no_step(tiny, window):
    res = explain_window("pooled", tiny["pooled"], window, "saliency", 10)
    assert res.step is None
    with torch.no_grad():
        assert res.estimate == pytest.approx(float(tiny["pooled"](torch.from_numpy(window)[None])[0]), abs=1e-6)


def test_wrong_kind_and_bad_step_are_clear_errors(tiny, window):
    with pytest.raises(ValueError, match="causal"):
        explain_window("bidir", tiny["causal"], window, "saliency")
    with pytest.raises(ValueError, match="outside"):
        explain_window("causal", tiny["causal"], window, "saliency", W + 5)
    with pytest.raises(ValueError, match="unknown method"):
        explain_window("causal", tiny["causal"], window, "deeplift")


def test_time_methods_covers_every_method_and_target(tiny, window):
    costs = time_methods(tiny, window[:48], opts=FAST, repeats=1)
    got = {(c.method, c.target) for c in costs}
    for kind in tiny:
        for m in available_methods(tiny[kind]):
            assert (m, kind) in got
    assert all(c.seconds > 0 and c.window == 48 for c in costs)


# ---------------------------------------------------------------- command line


def _run(argv: list[str]) -> int:
    from tools.cli import main

    return main(argv)


def test_explain_command_writes_figure_json_and_npz(tiny_weights, tmp_path):
    out = tmp_path / "out"
    rc = _run(["explain", "--simulate", "--seed", "2", "--method", "saliency", "--target", "bidir", "--window", "128",
               "--weights", str(tiny_weights), "--out", str(out), "--quiet"])
    assert rc == 0
    png, js, npz = (out / f"bidir-saliency.{ext}" for ext in ("png", "json", "npz"))
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads(js.read_text())
    assert meta["method"] == "saliency" and meta["target"] == "bidir" and meta["source"]["seed"] == 2
    assert meta["truth_m"] is not None and meta["step"] == meta["source"]["encounter_record"]["cpa_index"] - meta["source"]["window_start"]
    with np.load(npz) as z:
        assert z["attributions"].shape == (128, 2) and z["x"].shape == (128, 2)


def test_explain_command_internal_views(tiny_weights, tmp_path):
    rc = _run(["explain", "--simulate", "--method", "state", "--target", "causal", "--window", "64",
               "--weights", str(tiny_weights), "--out", str(tmp_path), "--quiet"])
    assert rc == 0 and (tmp_path / "causal-state.png").exists()
    assert _run(["explain", "--simulate", "--method", "attention", "--target", "pooled", "--window", "64",
                 "--weights", str(tiny_weights), "--out", str(tmp_path), "--quiet"]) == 2


def test_explain_command_says_clearly_when_weights_are_missing(tmp_path, monkeypatch, capsys):
    import models.bundle

    monkeypatch.setattr(models.bundle, "shipped_weights_dir", lambda: tmp_path / "empty")
    assert _run(["explain", "--simulate", "--out", str(tmp_path)]) == 2
    assert "shipped weights are missing" in capsys.readouterr().err
    assert _run(["explain", "--simulate", "--weights", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 2
    assert "cannot load the causal model" in capsys.readouterr().err


def test_explain_command_reads_a_recording(tiny_weights, tmp_path, capsys):
    from streamer.sim.publisher import FeedConfig
    from streamer.recording.writer import simulate_to_file

    rec = tmp_path / "rec.mcap"
    simulate_to_file(rec, FeedConfig(sensors=2, duration_s=20, seed=5, samples_per_message=16, realtime=False))
    out = tmp_path / "out"
    assert _run(["explain", "--input", str(rec), "--method", "ig", "--weights", str(tiny_weights), "--out", str(out)]) == 2
    assert "choose a sensor with --sensor" in capsys.readouterr().err
    rc = _run(["explain", "--input", str(rec), "--sensor", "radar-1", "--start", "2", "--window", "96", "--method", "ig",
               "--weights", str(tiny_weights), "--out", str(out), "--quiet"])
    assert rc == 0
    meta = json.loads((out / "causal-ig.json").read_text())
    assert meta["source"]["sensor"] == "radar-1" and meta["source"]["window"] == 96
    with np.load(out / "causal-ig.npz") as z:
        assert z["x"].shape == (96, 2) and "truth_true_range_m" in z  # simulated feeds record their truth
    assert _run(["explain", "--input", str(tmp_path / "missing.mcap"), "--sensor", "s0", "--weights", str(tiny_weights),
                 "--out", str(out)]) == 2
    assert "missing.mcap" in capsys.readouterr().err


def test_bench_explain_writes_its_section(tmp_path):
    doc = tmp_path / "benchmarks.md"
    rc = _run(["bench-explain", "--untrained", "--hidden", "8", "--window", "48", "--repeats", "1", "--ig-steps", "8",
               "--samples", "40", "--doc", str(doc), "--quiet"])
    assert rc == 0
    text = doc.read_text()
    assert "<!-- explain:start -->" in text and "radarstream bench-explain --window 48 --untrained" in text
    for title in ("Saliency", "Integrated gradients", "Occlusion", "Kernel SHAP", "Attention weights", "LSTM gates"):
        assert f"| {title} |" in text


def test_every_flag_has_help():
    from tools.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in ("explain", "bench-explain"):
        for action in sub.choices[name]._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.option_strings} has no help"


def test_bench_explain_canonical_spelling_writes_its_own_command(tmp_path):
    doc = tmp_path / "benchmarks.md"
    rc = _run(["bench", "explain", "--untrained", "--hidden", "8", "--window", "48", "--repeats", "1", "--ig-steps", "8",
               "--samples", "40", "--doc", str(doc), "--quiet", "--no-write"])
    assert rc == 0 and not doc.exists()
    rc = _run(["bench", "explain", "--untrained", "--hidden", "8", "--window", "48", "--repeats", "1", "--ig-steps", "8",
               "--samples", "40", "--doc", str(doc), "--quiet"])
    assert rc == 0 and "radarstream bench explain --window 48 --untrained" in doc.read_text()


def test_moved_names_still_import():
    import bench.explain
    import models.attribution
    import models.attribution.plotting
    import streamer.offline.explain_windows
    import tools.cmd_explain

    assert models.attribution.time_methods is bench.explain.time_methods
    assert models.attribution.MethodCost is bench.explain.MethodCost
    assert tools.cmd_explain.simulated_window is streamer.offline.explain_windows.simulated_window
    assert tools.cmd_explain.WindowSource is streamer.offline.explain_windows.WindowSource
    assert tools.cmd_explain.plot_explanation is models.attribution.plotting.plot_explanation


def test_figures_and_the_gui_overlay_share_one_colour_mapping(qapp):
    from PySide6 import QtGui

    from gui.explain_panel import NEGATIVE, POSITIVE, heat_rgba
    from gui.plots import theme_for
    from models.attribution.plotting import attribution_cmap
    from radarstream import palette

    assert (POSITIVE, NEGATIVE) == (palette.RAISES, palette.LOWERS)
    signed = attribution_cmap(signed=True)
    assert tuple(round(v * 255) for v in signed(1.0)[:3]) == palette.RAISES
    assert tuple(round(v * 255) for v in signed(0.0)[:3]) == palette.LOWERS
    assert tuple(round(v * 255) for v in attribution_cmap(signed=False)(1.0)[:3]) == palette.RAISES
    rgba = heat_rgba(np.array([1.0, -1.0]), 1.0, signed=True)
    assert tuple(rgba[0, 0, :3]) == palette.RAISES and tuple(rgba[1, 0, :3]) == palette.LOWERS
    for dark in (False, True):  # the overlay is never the disagreement shading's colour
        pal = QtGui.QPalette()
        pal.setColor(QtGui.QPalette.ColorRole.Base, QtGui.QColor("#202124" if dark else "#ffffff"))
        shading = theme_for(pal).bands[:3]
        assert sum(abs(a - b) for a, b in zip(shading, palette.RAISES)) > 120, (dark, shading)
