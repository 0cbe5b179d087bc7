"""The hybrid estimator: the classical CPA fit where it is well-posed, the LSTM elsewhere.

Rule (documented, not learned). Online, per sample, the robust least-squares fit is used when it
succeeded and either

* its CPA lies behind us by at least ``margin_s`` and its vertex lies within the fit's own data
  (the vertex of ``R² = a t² + b t + c`` was observed: Dmin is interpolated), or
* its standard deviation is below the LSTM's (``compare_std``): on the approach and around the
  CPA a fit of a straight pass with a precise range channel is usually far better than the
  LSTM, and the two σ say when. The fit's σ is range noise only, so before its CPA it is widened
  by ``extrapolation_m_per_s`` per second still to go to the CPA (a target may turn before it).
  Not for a fit whose CPA lies more than ``trust_past_cpa_s`` behind without its vertex
  observed: that Dmin is extrapolated backwards (a fit restarted on a manoeuvring target's
  outgoing leg) and no noise figure sees that model error.

Otherwise the LSTM's estimate. The classical fit is the true model for straight passes and very
hard to beat there; it fails with few detections (faint passes), is ill-posed early in the
approach, and is wrong for manoeuvring targets, which is where the LSTM takes over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from models.classical import CPAFitConfig, CPAFitResult, StreamingCPAEstimator


@dataclass(frozen=True)
class HybridRule:
    margin_s: float = 0.5
    """The fit's CPA must be at least this far in the past (online)."""
    min_inliers: int = 8
    """Whole-encounter fits need this many agreeing detections."""
    max_chi2: float = math.inf
    """Online: the fit's residuals over the noise its amplitudes predict (``RecursiveCPAFit.chi2``,
    needs ``CPAFitConfig.snr_sigma_m``) must stay below this; above, the straight-pass model is
    wrong (a manoeuvre) and the LSTM is used although the fit is well-posed."""
    compare_std: bool = True
    """Online: also use the fit, before its CPA is confirmed, whenever its (widened) σ is below
    the LSTM's (the LSTM must predict a σ; without one only the CPA rule applies). Measured on
    held-out radars (docs/benchmarks.md, "Second round of the hybrid"): the online hybrid 1 s
    before the CPA goes from the LSTM's error towards the fit's."""
    extrapolation_m_per_s: float = 20.0
    """With ``compare_std``: metres of model error per second between the sample and the fit's
    CPA, added in quadrature to the fit's σ (chosen on tuning seeds for near-miss false alarms on
    manoeuvring passes: 1.4 /h against 1.3 /h for the CPA rule alone and 4.9 /h unwidened)."""
    trust_past_cpa_s: float = 3.0
    """With ``compare_std``: a fit whose CPA lies more than this many seconds behind the sample
    without having passed the CPA rule (its vertex not observed) is not trusted on its σ."""

    def classical_std(self, cpa: np.ndarray, r_max_m: float) -> np.ndarray:
        """The fit's σ (normalised) widened for the time still to go to its CPA."""
        ahead = cpa[:, 4]
        ahead = np.where(ahead > 0.0, ahead, 0.0)  # NaN (no fit) and the past: no widening
        widen = (self.extrapolation_m_per_s / r_max_m) * ahead
        return np.sqrt(cpa[:, 1] * cpa[:, 1] + widen * widen)

    def decide(self, cpa: np.ndarray, lstm_std: np.ndarray, r_max_m: float = 1000.0) -> tuple[np.ndarray, np.ndarray]:
        """Per sample: whether the online hybrid takes the classical fit, and the fit's σ it
        would carry (widened). ``cpa`` is :meth:`StreamingCPAEstimator.update`'s ``[T, 5]``
        (estimate, σ, CPA passed, chi2, time to CPA), ``lstm_std`` the LSTM's σ (NaN where it
        has none), both normalised."""
        est, passed, chi2, to_cpa = cpa[:, 0], cpa[:, 2] > 0.5, cpa[:, 3], cpa[:, 4]
        ok = np.isfinite(est) & ~(chi2 > self.max_chi2)  # NaN chi2: no test
        if not self.compare_std:
            return ok & passed, cpa[:, 1]
        std = self.classical_std(cpa, r_max_m)
        with np.errstate(invalid="ignore"):  # NaN σ or time: False
            sharper = (std < lstm_std) & (to_cpa > -self.trust_past_cpa_s)
        return ok & (passed | sharper), std

    def use_classical(self, cpa: np.ndarray, lstm_std: np.ndarray, r_max_m: float = 1000.0) -> np.ndarray:
        """:meth:`decide`'s first half."""
        return self.decide(cpa, lstm_std, r_max_m)[0]


def hybrid_whole(fit: CPAFitResult, t_first: float, t_last: float, lstm_norm: float,
                 rule: HybridRule = HybridRule()) -> tuple[float, str]:
    """Offline, one encounter: ``(estimate, "classical" | "lstm")``."""
    if fit.ok and fit.n_inliers >= rule.min_inliers and t_first <= fit.t_cpa <= t_last:
        return float(fit.dmin_norm), "classical"
    return float(lstm_norm), "lstm"


HYBRID_OUTPUTS: tuple[str, ...] = ("classical", "classical_std", "hybrid", "hybrid_std", "time_to_cpa_s")
"""Columns of :meth:`OnlineHybrid.update`'s output (normalised Dmin and standard deviations)."""


class OnlineHybrid:
    """Per-sample hybrid over a continuous stream: a :class:`StreamingCPAEstimator` beside the
    causal LSTM.

    Online vocabulary (radarstream.online): ``update(block)`` with the LSTM's estimate in
    ``block.estimate`` (``[T]``, or ``[T, 2]`` with its σ) returns ``[T, 4]`` =
    :data:`HYBRID_OUTPUTS` (the last: seconds from each sample to the classical fit's CPA, NaN
    without a fit). ``process`` is the older float-seconds spelling."""

    def __init__(self, config: CPAFitConfig = CPAFitConfig(), rule: HybridRule = HybridRule(), gap_s: float = 2.0):
        self.rule = rule
        self.r_max_m = float(config.r_max)
        self.classical = StreamingCPAEstimator(config, gap_s=gap_s, cpa_margin_s=rule.margin_s)

    def reset(self) -> None:
        self.classical.reset()

    def get_state(self) -> dict:
        return self.classical.get_state()

    def set_state(self, state: dict) -> None:
        self.classical.set_state(state)

    def update(self, block) -> np.ndarray:
        if block.estimate is None:
            raise ValueError("OnlineHybrid.update needs the LSTM estimate in block.estimate")
        lstm = np.asarray(block.estimate, np.float64)
        y, y_std = (lstm[:, 0], lstm[:, 1]) if lstm.ndim == 2 else (lstm, np.full(lstm.shape[0], np.nan))
        cpa = self.classical.update(block)
        use, std = self.rule.decide(cpa, y_std, self.r_max_m)
        return np.stack([cpa[:, 0], cpa[:, 1], np.where(use, cpa[:, 0], y), np.where(use, std, y_std), cpa[:, 4]],
                        axis=1)

    def process(self, t_s: np.ndarray, distance: np.ndarray, y_lstm: np.ndarray,
                y_std: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Float seconds: ``(classical, hybrid)`` per sample (the same rule as :meth:`update`)."""
        cpa = self.classical.process_full(t_s, distance)
        std = np.full(cpa.shape[0], np.nan) if y_std is None else np.asarray(y_std, np.float64)
        use = self.rule.use_classical(cpa, std, self.r_max_m)
        return cpa[:, 0], np.where(use, cpa[:, 0], y_lstm)


class HybridBank:
    """One :class:`OnlineHybrid` per sensor, as ``serve`` and ``score`` run it: created on a
    sensor's first run, reset when the engine reset the sensor's state, and started over when a
    bad sensor clock goes backwards without a reset."""

    def __init__(self, config: CPAFitConfig = CPAFitConfig(), rule: HybridRule = HybridRule(), gap_s: float = 2.0):
        self._make = lambda: OnlineHybrid(config, rule, gap_s)  # noqa: E731
        self._by_sensor: dict[str, OnlineHybrid] = {}

    def update(self, sensor: str, block, *, reset_before: bool = False) -> np.ndarray:
        """``[T, 5]`` :data:`HYBRID_OUTPUTS` for ``block`` of ``sensor``."""
        hyb = self._by_sensor.get(sensor)
        if hyb is None:
            hyb = self._by_sensor[sensor] = self._make()
        elif reset_before:
            hyb.reset()
        try:
            return hyb.update(block)
        except ValueError:  # times went backwards without a reset: start over
            hyb.reset()
            return hyb.update(block)

    def forget(self, sensor: str) -> None:
        self._by_sensor.pop(sensor, None)

    def __len__(self) -> int:
        return len(self._by_sensor)
