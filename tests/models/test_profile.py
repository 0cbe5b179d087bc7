"""RadarProfile: JSON round trip, one R_max for both backends, out-of-domain checks."""

import json

import numpy as np
import pytest
import torch

from models.bundle import build_model, load_model
from models.export import export_causal, onnx_profile
from models.profile import PROFILE_FILE, AmplitudeEnvelope, ProfileError, RadarProfile, StreamDomainChecker, check_stream
from models.weights import save_weights
from streamer.live.backends import make_backend
from streamer.live.engine import StreamEngine, StreamPolicy
from streamer.sim.simulator import RadarConfig, StreamSimulator
from streamer.wire import protocol as P


def test_profile_json_round_trip_and_clear_errors(tmp_path):
    p = RadarProfile(r_max_m=2000.0, rate_hz=10.0, rate_envelope_hz=(5.0, 50.0), noise_rms=3.5,
                     envelope=AmplitudeEnvelope((-0.5, 1.5), (0.0, 0.8)), name="x-band")
    path = p.to_json(tmp_path / "radar.json")
    assert RadarProfile.from_json(path) == p
    assert RadarProfile.from_json(tmp_path / "radar.json").envelope.median_log10 == (-0.5, 1.5)
    p.to_json(tmp_path / PROFILE_FILE)
    assert RadarProfile.from_json(tmp_path) == p  # a directory means its profile.json
    # a lone rate means "this rate only"
    assert RadarProfile.from_dict({"rate_hz": 10.0}).rate_envelope_hz == (10.0, 10.0)
    with pytest.raises(ProfileError, match="not found"):
        RadarProfile.from_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ProfileError, match="invalid JSON"):
        RadarProfile.from_json(tmp_path / "bad.json")
    with pytest.raises(ProfileError, match="unknown radar profile keys"):
        RadarProfile.from_dict({"r_max": 1000})
    with pytest.raises(ProfileError, match="r_max_m"):
        RadarProfile(r_max_m=-1.0)
    with pytest.raises(ProfileError, match="outside its own envelope"):
        RadarProfile(rate_hz=100.0, rate_envelope_hz=(5.0, 50.0))


def _weights(tmp_path, r_max_m: float, *, input_size: int = 3):
    torch.manual_seed(0)
    profile = RadarProfile(r_max_m=r_max_m, rate_envelope_hz=(5.0, 50.0))
    model = build_model("causal", {"input_size": input_size, "hidden_size": 16, "num_layers": 2,
                                   "profile": profile.to_dict(), "uncertainty": True})
    with torch.no_grad():  # untrained outputs sit near 0.5: lift them above 1000 m at R_max 2000 m
        model.head[2].bias.fill_(1.0)
    save_weights(model, tmp_path / "causal", {"kind": "causal", "config": model.config})
    export_causal(model, tmp_path / "causal.onnx")
    return model


def _x(n: int, r_max_m: float, rate_hz: float = 20.0) -> np.ndarray:
    x = StreamSimulator(RadarConfig(r_max_m=r_max_m, rate_hz=rate_hz), 3).read(n).samples
    return np.concatenate([x, np.full((n, 1), 1.0 / rate_hz, np.float32)], axis=1)


def test_r_max_2000_gives_the_same_metres_in_both_backends(tmp_path):
    _weights(tmp_path, 2000.0)
    assert onnx_profile(tmp_path / "causal.onnx")["r_max_m"] == 2000.0
    x = _x(800, 2000.0)[None]
    out = {}
    for name in ("torch", "onnx"):
        be = make_backend(name, tmp_path)
        assert be.r_max_m == 2000.0 and be.input_size == 3 and be.has_std
        h, c = be.zero_state(1)
        y, std, _, _ = be.run_full(x, h, c)
        out[name] = (y.copy() * be.r_max_m, std.copy() * be.r_max_m)
    (ya, sa), (yb, sb) = out["torch"], out["onnx"]
    assert 0.0 <= ya.min() and ya.max() <= 2000.0 and ya.max() > 1000.0  # metres up to 2000
    assert np.max(np.abs(ya - yb) / np.maximum(np.abs(ya), 1.0)) < 1e-4
    assert np.max(np.abs(sa - sb) / np.maximum(sa, 1e-3)) < 1e-4 and (sa > 0).all()


def test_editing_the_profile_cannot_make_the_backends_disagree(tmp_path):
    """The issue's failure: R_max edited after export. The ONNX graph records the profile it was
    baked with; a stale graph is re-exported, so both backends use the edited R_max."""
    _weights(tmp_path, 1000.0)
    meta = json.loads((tmp_path / "causal.json").read_text())
    meta["config"]["profile"]["r_max_m"] = 2000.0
    meta["config"]["r_max_m"] = 2000.0
    (tmp_path / "causal.json").write_text(json.dumps(meta))
    x = _x(400, 2000.0)[None]
    ys = []
    for name in ("torch", "onnx"):
        be = make_backend(name, tmp_path)
        assert be.r_max_m == 2000.0
        h, c = be.zero_state(1)
        ys.append(be.run(x, h, c)[0].copy())
    assert np.abs(ys[0] - ys[1]).max() < 1e-5
    # a declared profile (serve --radar) overrides the weights' one, the same way in both
    declared = RadarProfile(r_max_m=1500.0, rate_envelope_hz=(5.0, 50.0))
    for name in ("torch", "onnx"):
        assert make_backend(name, tmp_path, profile=declared).r_max_m == 1500.0
    # an r_max_m that disagrees with the profile is an error, not a silent choice
    meta["config"]["r_max_m"] = 1000.0
    (tmp_path / "causal.json").write_text(json.dumps(meta))
    with pytest.raises(Exception, match="disagrees"):
        load_model("causal", tmp_path)


def test_engine_appends_the_period_for_three_channel_models(tmp_path):
    """The engine feeds ``period_s`` from each block's period_ns; any split equals one call."""
    model = _weights(tmp_path, 1000.0)
    be = make_backend("onnx", tmp_path)
    raw = _x(300, 1000.0, rate_hz=10.0)
    with torch.no_grad():
        ref = model(torch.from_numpy(raw[None]))[0][0].numpy()
    engine = StreamEngine(be, StreamPolicy())
    got = np.full(300, np.nan)
    period = 100_000_000  # 10 Hz
    for a, b in ((0, 1), (1, 77), (77, 78), (78, 300)):
        runs, _ = engine.process([("s", P.Block(P.Kind.SAMPLES, 1, a, a * period, period, raw[a:b, :2]), 0)])
        for r in runs:
            got[r.seq : r.seq + r.y.shape[0]] = r.y
            assert r.x.shape[1] == 2  # runs keep the raw wire samples
    assert np.abs(got - ref).max() < 1e-5


def test_out_of_domain_for_a_10_hz_stream_against_a_20_hz_only_profile():
    only20 = RadarProfile(rate_hz=20.0)  # envelope (20, 20)
    assert check_stream(only20, 100_000_000) is not None and "10 Hz" in check_stream(only20, 100_000_000)
    assert check_stream(only20, 50_000_000) is None
    assert check_stream(only20, 50_000_100) is None  # period rounding / jitter within tolerance
    wide = RadarProfile(rate_envelope_hz=(5.0, 50.0))
    assert check_stream(wide, 100_000_000) is None and check_stream(wide, 10_000_000) is not None


def test_stream_checker_flags_amplitudes_outside_the_training_envelope():
    profile = RadarProfile(rate_envelope_hz=(5.0, 50.0), envelope=AmplitudeEnvelope((-0.6, 0.6), (0.0, 0.9)))
    x = StreamSimulator(RadarConfig(), 1).read(4000).samples
    ok = StreamDomainChecker(profile)
    assert all(ok.update(50_000_000, x[a : a + 64]) is None for a in range(0, 4000, 64))
    assert check_stream(profile, 50_000_000, x) is None
    loud = StreamDomainChecker(profile)  # amplitudes in units 100x the profile's noise RMS
    reasons = [loud.update(50_000_000, x[a : a + 64] * np.array([100.0, 1.0], np.float32)) for a in range(0, 4000, 64)]
    assert reasons[0] is None  # not before min_samples
    assert reasons[-1] is not None and "amplitude" in reasons[-1]
    # state can be checkpointed and restored
    moved = StreamDomainChecker(profile)
    moved.set_state(loud.get_state())
    assert moved.update(50_000_000) == loud.update(50_000_000)
    loud.reset()
    assert loud.update(50_000_000) is None


def test_the_shipped_randomised_weights_conform():
    """models/weights (the randomised models since issue 13): 3-channel models with a 5–50 Hz
    profile and std outputs; their ONNX graphs were exported with that profile and equal torch."""
    from models.bundle import load_bundle, shipped_weights_dir

    w = shipped_weights_dir()
    bundle = load_bundle(w, require_all=True)
    assert bundle.profile.rate_envelope_hz == (5.0, 50.0) and bundle.pooled.pooling == "attention"
    assert check_stream(bundle.profile, 100_000_000) is None  # 10 Hz is inside its envelope
    assert onnx_profile(w / "causal.onnx") == bundle.profile.to_dict()
    x = _x(300, 1000.0, rate_hz=10.0)[None]
    outs = []
    for name in ("torch", "onnx"):
        be = make_backend(name, w)
        h, c = be.zero_state(1)
        y, std, _, _ = be.run_full(x, h, c)
        outs.append((y.copy(), std.copy()))
    assert np.abs(outs[0][0] - outs[1][0]).max() < 1e-5 and np.abs(outs[0][1] - outs[1][1]).max() < 1e-5
