"""Calibration of predicted standard deviations: interval coverage and a post-hoc scale.

A model's Gaussian ``(mean, std)`` gives the nominal ``level`` interval ``mean ± z·std`` with
``z = Φ⁻¹((1 + level) / 2)`` (1.645 at 90 %). Coverage is the share of truths inside it: a
calibrated model covers ``level`` of them.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np


def z_for_level(level: float = 0.9) -> float:
    """Half-width of the central ``level`` interval of a standard normal (1.645 for 0.9)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    return NormalDist().inv_cdf(0.5 + level / 2)


def interval_coverage(truth: np.ndarray, mean: np.ndarray, std: np.ndarray, level: float = 0.9) -> float:
    """Share of finite ``truth`` inside ``mean ± z(level)·std`` (NaN estimates are ignored;
    NaN if nothing is left)."""
    truth, mean, std = (np.asarray(a, np.float64) for a in (truth, mean, std))
    ok = np.isfinite(truth) & np.isfinite(mean) & np.isfinite(std)
    if not ok.any():
        return float("nan")
    return float(np.mean(np.abs(truth[ok] - mean[ok]) <= z_for_level(level) * std[ok]))


def calibration_scale(truth: np.ndarray, mean: np.ndarray, std: np.ndarray, level: float = 0.9) -> float:
    """The factor on ``std`` that makes the ``level`` interval cover exactly ``level`` of these
    truths (the ``level`` quantile of ``|truth − mean| / std`` over ``z(level)``)."""
    truth, mean, std = (np.asarray(a, np.float64) for a in (truth, mean, std))
    ok = np.isfinite(truth) & np.isfinite(mean) & np.isfinite(std) & (std > 0)
    if not ok.any():
        raise ValueError("no finite (truth, mean, std) triple to calibrate on")
    return float(np.quantile(np.abs(truth[ok] - mean[ok]) / std[ok], level) / z_for_level(level))
