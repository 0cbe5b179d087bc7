"""Delayed-label metrics: River's progressive validation with a delay, for a stateful model.

The causal estimate is published at every sample, but whether it was right is only known once
the encounter is over (its true Dmin and CPA come with the simulator's truth frame). So the
service keeps each sensor's current encounter (predictions and truth) and, when the encounter
ends, scores what it had published at the CPA, one second after it, and at the last sample.
The bidirectional re-score is scored when a window covering a finished encounter's CPA arrives.
"""

from __future__ import annotations

from dataclasses import dataclass

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


SCORE_OUTPUTS: tuple[str, ...] = ("err_cpa_m", "err_cpa+1s_m", "err_end_m", "cpa_seq", "dmin_norm")
"""Columns of :meth:`EncounterScorer.update`: NaN except on the sample that closed an encounter."""


class EncounterScorer:
    """One stream's delayed labels in the online vocabulary (radarstream.online).

    ``update(block)`` needs the truth (``block.truth`` [T, 4] with the simulator's
    ``TRUTH_CHANNELS``) and the causal estimate (``block.estimate`` [T]); it returns ``[T, 4]``
    :data:`SCORE_OUTPUTS`, NaN everywhere except the first sample after an encounter, which
    carries the absolute errors (metres) the estimate had at the CPA, CPA + 1 s and the
    encounter's last sample, the CPA's sequence number (for re-score matching) and the true Dmin."""

    def __init__(self, r_max_m: float):
        self.r_max_m = float(r_max_m)
        self.reset()

    def reset(self) -> None:
        """Drop the open encounter (the model restarted: it is not comparable)."""
        self._seq: list[np.ndarray] = []
        self._y: list[np.ndarray] = []
        self._rng: list[np.ndarray] = []
        self._dmin = float("nan")
        self._period_ns = 0

    def get_state(self) -> dict:
        return {"seq": [a.copy() for a in self._seq], "y": [a.copy() for a in self._y],
                "rng": [a.copy() for a in self._rng], "dmin": self._dmin, "period_ns": self._period_ns}

    def set_state(self, state: dict) -> None:
        self._seq = [np.array(a) for a in state["seq"]]
        self._y = [np.array(a) for a in state["y"]]
        self._rng = [np.array(a) for a in state["rng"]]
        self._dmin, self._period_ns = float(state["dmin"]), int(state["period_ns"])

    def update(self, block) -> np.ndarray:
        n = len(block)
        out = np.full((n, len(SCORE_OUTPUTS)), np.nan)
        if block.truth is None or n == 0:
            return out
        if block.estimate is None:
            raise ValueError("EncounterScorer.update needs the causal estimate in block.estimate")
        truth = np.asarray(block.truth)
        y = np.asarray(block.estimate).reshape(n, -1)[:, 0]
        seqs = np.asarray(block.seq) if block.seq is not None else np.arange(n, dtype=np.int64)
        if block.period_ns:
            self._period_ns = int(block.period_ns)
        inside = truth[:, 1] > 0.5
        edges = np.flatnonzero(np.diff(inside.astype(np.int8))) + 1
        bounds = [0, *edges.tolist(), n]
        for a, b in zip(bounds[:-1], bounds[1:]):
            if inside[a]:
                self._seq.append(seqs[a:b])
                self._y.append(y[a:b])
                self._rng.append(truth[a:b, 2])
                self._dmin = float(truth[a, 0])
            elif self._y:
                out[a] = self._close()
        return out

    def _close(self) -> np.ndarray:
        y, rng, seq = np.concatenate(self._y), np.concatenate(self._rng), np.concatenate(self._seq)
        dmin = self._dmin
        self.reset_encounter()
        if not np.isfinite(dmin) or y.size == 0 or not np.isfinite(rng).any():
            return np.full(len(SCORE_OUTPUTS), np.nan)
        cpa = int(np.nanargmin(rng))
        one_s = max(1, int(round(1e9 / self._period_ns))) if self._period_ns else 20
        idx = (cpa, min(cpa + one_s, y.size - 1), y.size - 1)
        return np.array([abs(float(y[i]) - dmin) * self.r_max_m for i in idx] + [float(seq[cpa]), dmin])

    def reset_encounter(self) -> None:
        self._seq, self._y, self._rng, self._dmin = [], [], [], float("nan")


class DelayedLabelMetrics:
    """Running MAE (metres) of the causal estimate at CPA, CPA + 1 s and encounter end, and of the
    bidirectional re-score at CPA, updated as each encounter's truth becomes known (one
    :class:`EncounterScorer` per sensor)."""

    def __init__(self, r_max_m: float, max_pending: int = 64):
        self.r_max_m = r_max_m
        self.causal = {p: RunningMAE() for p in POINTS}
        self.bidir = RunningMAE()
        self.encounters = 0
        self._scorers: dict[str, EncounterScorer] = {}
        self._pending: dict[str, list[tuple[int, float]]] = {}  # sensor -> [(cpa_seq, dmin)]
        self._max_pending = max_pending

    def observe(self, run) -> None:
        """A causal run (``engine.Run``) whose ``truth`` [T, 4] is known (NaN rows: unknown)."""
        if run.truth is None:
            return
        from streamer.live.engine import run_block

        scorer = self._scorers.get(run.sensor)
        if scorer is None:
            scorer = self._scorers[run.sensor] = EncounterScorer(self.r_max_m)
        elif run.reset_before:
            scorer.reset()
        out = scorer.update(run_block(run))
        for row in np.flatnonzero(np.isfinite(out[:, 0])).tolist():
            for point, err in zip(POINTS, out[row, :3].tolist()):
                self.causal[point].add(err)
            self.encounters += 1
            cpa_seq, dmin = int(out[row, 3]), float(out[row, 4])
            pend = self._pending.setdefault(run.sensor, [])
            pend.append((cpa_seq, dmin))
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
