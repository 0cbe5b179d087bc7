"""Every online estimator through the package's conformance suite (radarstream.checks).

Splitting a stream into blocks any way gives the same outputs; a state exported after any block
resumes exactly; reset() is a fresh start; get_state() is a snapshot.
"""

from __future__ import annotations

import numpy as np
import pytest

from models.classical import StreamingCPAEstimator
from models.hybrid import OnlineHybrid
from radarstream.checks import check_estimator, check_split_invariance
from radarstream.online import Block, OnlineEstimator
from streamer.live.metrics import EncounterScorer
from streamer.sim.simulator import RadarConfig, StreamSimulator

PERIOD_NS = 50_000_000


def stream(n: int, seed: int = 3, t0_ns: int = 1_764_600_000_000_000_000) -> Block:
    """A simulated stream with several encounters, a fake upstream estimate, wall-clock times."""
    blk = StreamSimulator(RadarConfig(), seed).read(n)
    rng = np.random.default_rng(seed)
    est = np.clip(blk.truth[:, 0] + rng.normal(0, 0.05, n), 0, 1).astype(np.float32)
    return Block.regular(blk.samples, t0_ns=t0_ns, period_ns=PERIOD_NS, truth=blk.truth, estimate=est,
                         seq=np.arange(n, dtype=np.int64))


def test_streaming_cpa_fit_conforms() -> None:
    done = check_estimator(lambda: StreamingCPAEstimator(), stream(4000), rtol=0, atol=0)
    assert "check_state_roundtrip" in done and "check_split_invariance" in done


def test_hybrid_conforms() -> None:
    check_estimator(lambda: OnlineHybrid(), stream(4000), rtol=0, atol=0)


def test_encounter_scorer_conforms_and_scores_every_closed_encounter() -> None:
    blk = stream(6000)
    check_estimator(lambda: EncounterScorer(1000.0), blk, rtol=0, atol=0)
    out = EncounterScorer(1000.0).update(blk)
    inside = blk.truth[:, 1] > 0.5
    closed = int(np.sum(inside[:-1] & ~inside[1:]))
    assert int(np.isfinite(out[:, 0]).sum()) == closed > 0


@pytest.mark.parametrize("backend_name", ["torch", "onnx", "fused", "auto"])
def test_causal_stepper_conforms(backend_name: str) -> None:
    from streamer.live.backends import make_backend
    from streamer.live.stepper import CausalStepper

    backend = make_backend(backend_name)
    check_estimator(lambda: CausalStepper(backend), stream(600), rtol=1e-5, atol=1e-5)


def test_gate_stepper_conforms_and_matches_the_causal_model() -> None:
    from models.bundle import load_model
    from streamer.live.backends import make_backend
    from streamer.live.stepper import GATE_OUTPUTS, CausalStepper, GateStepper

    model, _ = load_model("causal")
    blk = stream(400)
    check_estimator(lambda: GateStepper(model), blk, rtol=1e-5, atol=1e-5)
    # the h it shows is the state the service carries: after the whole block, equal to the backend's
    gates = GateStepper(model).update(blk)
    stepper = CausalStepper(make_backend("torch"))
    stepper.update(blk)
    h_last = gates[-1, GATE_OUTPUTS.index("h")]
    np.testing.assert_allclose(h_last, stepper.get_state()["h"][:, 0, :], atol=1e-4)


def test_clock_origin_does_not_change_the_classical_fit() -> None:
    """The same samples on another time base give identical estimates (integer-ns differences)."""
    a = StreamingCPAEstimator().update(stream(6000, t0_ns=0))
    b = StreamingCPAEstimator().update(stream(6000, t0_ns=1_764_600_000_123_456_789))
    np.testing.assert_array_equal(a, b)
    assert np.isfinite(a[:, 0]).sum() > 1000 and np.isfinite(a[:, 1]).sum() > 1000


def test_the_suite_catches_a_split_dependent_estimator() -> None:
    """A check that cannot fail is a defect: an estimator whose output depends on block size fails."""

    class BlockMean:
        def reset(self) -> None: ...
        def update(self, block: Block) -> np.ndarray:
            return np.full(len(block), float(block.x[:, 0].mean()) if len(block) else 0.0)
        def get_state(self): return None
        def set_state(self, state) -> None: ...

    assert isinstance(BlockMean(), OnlineEstimator)
    with pytest.raises(AssertionError, match="split"):
        check_split_invariance(lambda: BlockMean(), stream(200))
