"""The hybrid estimator: the classical CPA fit where it is well-posed, the LSTM elsewhere.

Rule (documented, not learned): use the robust least-squares fit when it succeeded and its CPA
lies behind us by at least ``margin_s`` (the vertex of ``R² = a t² + b t + c`` was observed, so
Dmin is interpolated, not extrapolated from the approach); otherwise the LSTM's estimate. The
classical fit is the true model for straight passes with a precise range channel and very hard
to beat there; it fails with few detections (faint passes), is ill-posed before the CPA, and is
wrong for manoeuvring targets, which is exactly where the LSTM takes over.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.classical import CPAFitConfig, CPAFitResult, StreamingCPAEstimator


@dataclass(frozen=True)
class HybridRule:
    margin_s: float = 0.5
    """The fit's CPA must be at least this far in the past (online)."""
    min_inliers: int = 8
    """Whole-encounter fits need this many agreeing detections."""


def hybrid_whole(fit: CPAFitResult, t_first: float, t_last: float, lstm_norm: float,
                 rule: HybridRule = HybridRule()) -> tuple[float, str]:
    """Offline, one encounter: ``(estimate, "classical" | "lstm")``."""
    if fit.ok and fit.n_inliers >= rule.min_inliers and t_first <= fit.t_cpa <= t_last:
        return float(fit.dmin_norm), "classical"
    return float(lstm_norm), "lstm"


class OnlineHybrid:
    """Per-sample hybrid over a continuous stream: a :class:`StreamingCPAEstimator` beside the
    causal LSTM. ``process`` returns the classical and hybrid estimates for each sample."""

    def __init__(self, config: CPAFitConfig = CPAFitConfig(), rule: HybridRule = HybridRule(), gap_s: float = 2.0):
        self.rule = rule
        self.classical = StreamingCPAEstimator(config, gap_s=gap_s)

    def reset(self) -> None:
        self.classical.reset()

    def process(self, t_s: np.ndarray, distance: np.ndarray, y_lstm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        est, passed = self.classical.process(t_s, distance, cpa_margin_s=self.rule.margin_s)
        use = passed & np.isfinite(est)
        return est, np.where(use, est, y_lstm)
