"""Delayed-label metrics: River's progressive validation with a delay, for a stateful model.

The causal estimate is published at every sample, but whether it was right is only known once
the encounter is over (its true Dmin and CPA come with the simulator's truth frame). So the
service keeps each sensor's current encounter (predictions and truth) and, when the encounter
ends, scores what it had published at the CPA, one second after it, and at the last sample.
The bidirectional re-score is scored when a window covering a finished encounter's CPA arrives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

POINTS = ("cpa", "cpa+1s", "end")


@dataclass
class RunningMAE:
    total: float = 0.0
    count: int = 0

    def add(self, err: float) -> None:
        self.total += err
        self.count += 1

    @property
    def value(self) -> float | None:
        return self.total / self.count if self.count else None


@dataclass
class _Encounter:
    seq: list[np.ndarray] = field(default_factory=list)
    y: list[np.ndarray] = field(default_factory=list)
    rng: list[np.ndarray] = field(default_factory=list)
    dmin: float = float("nan")


class DelayedLabelMetrics:
    """Running MAE (metres) of the causal estimate at CPA, CPA + 1 s and encounter end, and of the
    bidirectional re-score at CPA, updated as each encounter's truth becomes known."""

    def __init__(self, r_max_m: float, max_pending: int = 64):
        self.r_max_m = r_max_m
        self.causal = {p: RunningMAE() for p in POINTS}
        self.bidir = RunningMAE()
        self.encounters = 0
        self._open: dict[str, _Encounter] = {}
        self._pending: dict[str, list[tuple[int, float]]] = {}  # sensor -> [(cpa_seq, dmin)]
        self._max_pending = max_pending

    def observe(self, run) -> None:
        """A causal run (``engine.Run``) whose ``truth`` [T, 4] is known (NaN rows: unknown)."""
        truth = run.truth
        if truth is None:
            return
        if run.reset_before:
            self._open.pop(run.sensor, None)  # the model restarted: that encounter is not comparable
        inside = truth[:, 1] > 0.5
        seqs = run.seq + np.arange(run.y.shape[0])
        # split the run where the in-encounter flag changes
        edges = np.flatnonzero(np.diff(inside.astype(np.int8))) + 1
        bounds = [0, *edges.tolist(), inside.shape[0]]
        for a, b in zip(bounds[:-1], bounds[1:]):
            if inside[a]:
                enc = self._open.setdefault(run.sensor, _Encounter())
                enc.seq.append(seqs[a:b])
                enc.y.append(run.y[a:b])
                enc.rng.append(truth[a:b, 2])
                enc.dmin = float(truth[a, 0])
            else:
                enc = self._open.pop(run.sensor, None)
                if enc is not None:
                    self._close(run.sensor, enc, run.period_ns)

    def _close(self, sensor: str, enc: _Encounter, period_ns: int) -> None:
        y = np.concatenate(enc.y)
        rng = np.concatenate(enc.rng)
        seq = np.concatenate(enc.seq)
        if not np.isfinite(enc.dmin) or y.size == 0:
            return
        cpa = int(np.nanargmin(rng))
        one_s = max(1, int(round(1e9 / period_ns))) if period_ns else 20
        for point, idx in zip(POINTS, (cpa, min(cpa + one_s, y.size - 1), y.size - 1)):
            self.causal[point].add(abs(float(y[idx]) - enc.dmin) * self.r_max_m)
        self.encounters += 1
        pend = self._pending.setdefault(sensor, [])
        pend.append((int(seq[cpa]), enc.dmin))
        del pend[: -self._max_pending]

    def observe_rescore(self, sensor: str, seq0: int, y_bidir: np.ndarray) -> None:
        pend = self._pending.get(sensor)
        if not pend:
            return
        keep = []
        for cpa_seq, dmin in pend:
            k = cpa_seq - seq0
            if 0 <= k < y_bidir.shape[0]:
                self.bidir.add(abs(float(y_bidir[k]) - dmin) * self.r_max_m)
            elif cpa_seq >= seq0:
                keep.append((cpa_seq, dmin))  # a later window may still cover it
        self._pending[sensor] = keep

    def snapshot(self) -> dict:
        r = lambda v: None if v is None else round(v, 2)  # noqa: E731
        return {
            "encounters": self.encounters,
            "causal_mae_m": {p: r(m.value) for p, m in self.causal.items()},
            "bidir_mae_m": {"cpa": r(self.bidir.value), "n": self.bidir.count},
        }
