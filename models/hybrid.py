"""The hybrid estimator: the classical CPA fit where it is well-posed, the LSTM elsewhere.

Rule (documented, not learned): use the robust least-squares fit when it succeeded and its CPA
lies behind us by at least ``margin_s`` (the vertex of ``R² = a t² + b t + c`` was observed, so
Dmin is interpolated, not extrapolated from the approach); otherwise the LSTM's estimate. The
classical fit is the true model for straight passes with a precise range channel and very hard
to beat there; it fails with few detections (faint passes), is ill-posed before the CPA, and is
wrong for manoeuvring targets, which is exactly where the LSTM takes over.
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
        use = (cpa[:, 2] > 0.5) & np.isfinite(cpa[:, 0]) & ~(cpa[:, 3] > self.rule.max_chi2)  # NaN: no test
        return np.stack([cpa[:, 0], cpa[:, 1], np.where(use, cpa[:, 0], y), np.where(use, cpa[:, 1], y_std), cpa[:, 4]],
                        axis=1)

    def process(self, t_s: np.ndarray, distance: np.ndarray, y_lstm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        est, passed = self.classical.process(t_s, distance, cpa_margin_s=self.rule.margin_s)
        use = passed & np.isfinite(est)
        return est, np.where(use, est, y_lstm)


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
