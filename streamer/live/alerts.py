"""Near-miss alerts: the probability that a passing target comes closer than a threshold.

From the best estimate ``d`` (the hybrid) and its standard deviation ``σ`` the service computes,
at every sample, ``p = P(Dmin < M) = Φ((M − d) / σ)`` (a step at ``M`` when σ is unknown). An
encounter raises **one** ``near_miss`` when ``p`` first exceeds ``confidence``, and one
``near_miss_cleared`` when ``p`` falls below ``clear_confidence`` (hysteresis: an estimate
hovering at the threshold does not flap). The alert re-arms only when the encounter is over —
no detection for the classical fit's gap (its estimate goes NaN) — so a long pass alerts once.

In the online vocabulary (radarstream.online): ``NearMissDetector.update(block)`` reads
``block.estimate`` ``[T, 3]``: the estimate and its σ in metres, and an encounter flag (1 while
the classical fit follows a target, 0 once its detections stopped for the gap).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["AlertConfig", "NearMissDetector", "ALERT_OUTPUTS", "near_miss_probability"]

ALERT_OUTPUTS: tuple[str, ...] = ("probability", "alerting", "event")
"""``event``: +1 on the sample that raised ``near_miss``, −1 on the one that cleared it, else 0."""


@dataclass(frozen=True)
class AlertConfig:
    """``serve --alert-dmin-m M [--alert-confidence P]``."""

    dmin_m: float
    """Alert when the target is likely to pass closer than this (metres)."""
    confidence: float = 0.9
    """Raise ``near_miss`` once P(Dmin < dmin_m) exceeds this."""
    clear_confidence: float = 0.5
    """Send ``near_miss_cleared`` once the probability falls below this (< confidence)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.dmin_m) and self.dmin_m > 0):
            raise ValueError(f"alert distance must be a positive number of metres, got {self.dmin_m!r}")
        if not 0.0 < self.clear_confidence < self.confidence < 1.0:
            raise ValueError("need 0 < clear_confidence < confidence < 1 "
                             f"(got {self.clear_confidence}, {self.confidence})")


def near_miss_probability(d_m: np.ndarray, std_m: np.ndarray, threshold_m: float) -> np.ndarray:
    """P(Dmin < threshold) for Gaussian estimates; a step where σ is unknown (NaN or 0); NaN
    where the estimate itself is NaN."""
    from math import erf, sqrt

    d = np.asarray(d_m, np.float64)
    s = np.asarray(std_m, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (threshold_m - d) / s
    known = np.isfinite(z) & (s > 0)
    p = np.where(d < threshold_m, 1.0, 0.0)
    if known.any():
        erf_v = np.vectorize(erf, otypes=[np.float64])
        p[known] = 0.5 * (1.0 + erf_v(z[known] / sqrt(2.0)))
    p[~np.isfinite(d)] = np.nan
    return p


class NearMissDetector:
    """One stream's alert state machine (see the module docstring). ``update(block)`` needs
    ``block.estimate`` ``[T, 3]``: estimate in metres, its σ in metres, encounter flag."""

    def __init__(self, config: AlertConfig):
        self.config = config
        self.reset()

    def reset(self) -> None:
        self._alerting = False
        self._armed = True

    def get_state(self) -> dict[str, bool]:
        return {"alerting": self._alerting, "armed": self._armed}

    def set_state(self, state: dict[str, Any]) -> None:
        self._alerting, self._armed = bool(state["alerting"]), bool(state["armed"])

    def update(self, block: Any) -> np.ndarray:
        n = len(block)
        out = np.zeros((n, len(ALERT_OUTPUTS)))
        if n == 0:
            return out
        est = np.asarray(block.estimate, np.float64).reshape(n, -1)
        p = near_miss_probability(est[:, 0], est[:, 1], self.config.dmin_m)
        inside = est[:, 2] > 0.5
        out[:, 0] = p
        hi, lo = self.config.confidence, self.config.clear_confidence
        i = 0
        while i < n:  # jump from one transition to the next: Python work per transition, not per row
            if self._alerting:
                rest = np.flatnonzero(~(p[i:] >= lo))  # NaN (no estimate) clears too
                j = i + int(rest[0]) if rest.size else n
                out[i:j, 1] = 1.0
                if j < n:
                    out[j, 2] = -1.0
                    self._alerting = False
                    self._armed = not bool(inside[j])  # cleared because the encounter ended: re-arm
                i = j + 1 if j < n else n
            elif self._armed:
                fire = np.flatnonzero((p[i:] > hi) & inside[i:])
                if fire.size:
                    j = i + int(fire[0])
                    out[j, 1], out[j, 2] = 1.0, 1.0
                    self._alerting, self._armed = True, False
                    i = j + 1
                else:
                    i = n
            else:  # alerted and cleared in this encounter: wait for its end to re-arm
                gone = np.flatnonzero(~inside[i:])
                if gone.size:
                    self._armed = True
                    i = i + int(gone[0]) + 1
                else:
                    i = n
        return out
