"""Is this stream one the model knows? A per-sensor out-of-domain monitor.

A model is only trustworthy on radars like the ones it was trained on: its profile
(``models.profile.RadarProfile``) declares the dwell rates it accepts and the envelope of the
training streams' statistics (``profile.envelope``: the range of the median of
``log10(amplitude / noise_rms)`` and of the detection fraction). :class:`DomainMonitor` compares
a live stream with them, in the online vocabulary (radarstream.online), with statistics that do
not depend on how the stream is split into messages:

* the **rate**: each block's declared period against ``profile.rate_envelope_hz``;
* the **amplitude level**: an exponentially weighted median (time constant ``window`` samples)
  tested against the envelope's bounds without being computed: the median of
  ``log10(A / noise_rms)`` exceeds ``hi`` exactly when fewer than half of the samples lie below
  ``10**hi · noise_rms``, so the monitor keeps two exponential averages of "below the bound"
  indicators (a receiver gain or noise floor off by a few dB moves them at once);
* the **detection fraction**: an exponential average of the share of samples with a detection.

``update(block)`` returns ``[T, 4]`` = :data:`DOMAIN_OUTPUTS`; ``reason`` says why the last
sample was out of domain. The service turns transitions into ``out_of_domain`` /
``back_in_domain`` events (docs/reliability.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["DOMAIN_OUTPUTS", "DomainMonitor"]

DOMAIN_OUTPUTS: tuple[str, ...] = ("share_below_low", "share_below_high", "detection_fraction", "out_of_domain")
"""``share_below_low/high``: weighted share of samples below the envelope's low / high amplitude
bound (the weighted median is inside the envelope while the first is < 0.5 < the second)."""

_CHUNK = 512


def _ema(x: np.ndarray, y0: float, a: float) -> np.ndarray:
    """``y_t = y_{t-1} + a (x_t − y_{t-1})`` for every t, vectorised in chunks (closed form)."""
    out = np.empty(x.shape[0])
    b = 1.0 - a
    chunk = max(1, min(_CHUNK, int(18.0 / a)))  # b^chunk stays above ~1e-8: no overflow in 1 / decay
    for s in range(0, x.shape[0], chunk):
        xs = x[s : s + chunk]
        decay = b ** np.arange(1, xs.shape[0] + 1)  # b^(t+1) for t = 0..n-1
        # y_t = b^(t+1) y0 + a Σ_{j<=t} b^(t-j) x_j = decay_t (y0 + a Σ_{j<=t} x_j / decay_j)
        out[s : s + xs.shape[0]] = decay * (y0 + a * np.cumsum(xs / decay))
        y0 = float(out[s + xs.shape[0] - 1])
    return out


class DomainMonitor:
    """Out-of-domain monitor of one stream against a radar profile (see the module docstring).

    ``min_samples`` samples are needed before the statistics are judged (the rate is judged at
    once); the averages start from the values of in-domain noise, so a short stream is never
    flagged on its statistics alone."""

    def __init__(self, profile: Any, *, window: int = 2000, min_samples: int = 400):
        if window < 1 or min_samples < 0:
            raise ValueError("window must be >= 1 and min_samples >= 0")
        self.profile = profile
        self.window, self.min_samples = int(window), int(min_samples)
        self._a = 1.0 / self.window
        lo, hi = profile.envelope.median_log10
        self._bounds = (float(profile.noise_rms) * 10.0 ** lo, float(profile.noise_rms) * 10.0 ** hi)
        self._env_db = (20.0 * lo, 20.0 * hi)
        self._det_range = tuple(float(v) for v in profile.envelope.detection_fraction)
        self.reset()

    def reset(self) -> None:
        self._n = 0
        self._low, self._high, self._det = 0.0, 1.0, float(np.mean(self._det_range))  # start in domain
        self.reason: str | None = None

    def get_state(self) -> dict[str, Any]:
        return {"n": self._n, "low": self._low, "high": self._high, "det": self._det, "reason": self.reason}

    def set_state(self, state: dict[str, Any]) -> None:
        self._n, self._low, self._high = int(state["n"]), float(state["low"]), float(state["high"])
        self._det, self.reason = float(state["det"]), state["reason"]

    def update(self, block: Any) -> np.ndarray:
        n = len(block)
        out = np.zeros((n, len(DOMAIN_OUTPUTS)))
        if n == 0:
            return out
        x = np.asarray(block.x, np.float64)
        amp = x[:, 0]
        low = _ema((amp < self._bounds[0]).astype(np.float64), self._low, self._a)
        high = _ema((amp < self._bounds[1]).astype(np.float64), self._high, self._a)
        det = _ema((x[:, 1] >= 0).astype(np.float64), self._det, self._a)
        rate_reason = self.profile.rate_reason(block.period_ns) if block.period_ns else None
        judged = (self._n + np.arange(1, n + 1)) >= self.min_samples
        too_low, too_high = judged & (low > 0.5), judged & (high < 0.5)
        dlo, dhi = self._det_range
        bad_det = judged & ((det < dlo) | (det > dhi))
        out[:, 0], out[:, 1], out[:, 2] = low, high, det
        out[:, 3] = (too_low | too_high | bad_det | (rate_reason is not None)).astype(np.float64)
        self._n += n
        self._low, self._high, self._det = float(low[-1]), float(high[-1]), float(det[-1])
        self.reason = self.verdict(self._low, self._high, self._det, rate_reason, judged=bool(judged[-1]))
        return out

    def verdict(self, low: float, high: float, det: float, rate_reason: str | None, *, judged: bool = True) -> str | None:
        """Why a stream with these averages (and this rate verdict) is out of domain, or None."""
        if rate_reason is not None:
            return rate_reason
        if not judged:
            return None
        lo_db, hi_db = self._env_db
        dlo, dhi = self._det_range
        if high < 0.5:
            return (f"amplitude level above the training envelope: median of 20·log10(A / noise_rms) "
                    f"> {hi_db:+.1f} dB (receiver gain or noise floor higher than the profile says?)")
        if low > 0.5:
            return (f"amplitude level below the training envelope: median of 20·log10(A / noise_rms) "
                    f"< {lo_db:+.1f} dB (receiver gain or noise floor lower than the profile says?)")
        if not dlo <= det <= dhi:
            return f"detection fraction {det:.3g} outside the training envelope [{dlo:.3g}, {dhi:.3g}]"
        return None


class DomainBank:
    """:class:`DomainMonitor` for every sensor of a service, vectorised over a drain's runs.

    The service only needs each run's *last* verdict, so ``update`` computes the exponential
    averages at the end of every run in a few array operations over all runs at once (the same
    numbers :class:`DomainMonitor` gives on that run's last sample) and returns the sensors whose
    state changed: ``(sensor, seq, reason or None)``. A sensor goes out of domain at its first
    out-of-domain verdict and comes back only after ``hold`` samples of in-domain verdicts
    (hysteresis: a stream at the envelope's edge does not flap), so each excursion is one
    ``out_of_domain`` and one ``back_in_domain``."""

    def __init__(self, profile: Any, *, window: int = 2000, min_samples: int = 400, hold: int | None = None):
        self._proto = DomainMonitor(profile, window=window, min_samples=min_samples)
        self.hold = window // 2 if hold is None else int(hold)
        self._clean: dict[str, int] = {}  # out-of-domain sensors: in-domain samples since the last bad verdict
        self.profile = profile
        self._slot: dict[str, int] = {}
        self._free: list[int] = []  # slots of forgotten sensors
        self._state = np.zeros((64, 4))  # low, high, det, n
        self._out: dict[str, str] = {}  # sensors out of domain now -> reason
        self._fresh = (0.0, 1.0, float(np.mean(self._proto._det_range)), 0.0)  # as DomainMonitor.reset

    @property
    def out_of_domain(self) -> dict[str, str]:
        """Sensors out of domain now, with the reason."""
        return dict(self._out)

    def _slots(self, sensors: list[str]) -> np.ndarray:
        for s in sensors:
            if s not in self._slot:
                k = self._free.pop() if self._free else len(self._slot)
                if k >= self._state.shape[0]:
                    self._state = np.concatenate([self._state, np.zeros_like(self._state)])
                self._state[k] = self._fresh
                self._slot[s] = k
        return np.fromiter((self._slot[s] for s in sensors), np.int64, len(sensors))

    def forget(self, sensor: str) -> None:
        """Drop the sensor (evicted): its slot is reused."""
        k = self._slot.pop(sensor, None)
        if k is not None:
            self._free.append(k)
        self._out.pop(sensor, None)
        self._clean.pop(sensor, None)

    def reset(self, sensor: str) -> None:
        """Start the sensor's statistics over (its stream restarted)."""
        k = self._slot.get(sensor)
        if k is not None:
            self._state[k] = self._fresh
        self._out.pop(sensor, None)
        self._clean.pop(sensor, None)

    def update(self, runs: list[Any]) -> list[tuple[str, int, str | None]]:
        """Feed a drain's runs (``engine.Run``: sensor, seq, period_ns, x); return verdict changes."""
        if not runs:
            return []
        # a sensor with several runs in one drain (a reset or a time break between them): its
        # runs are applied in order, one round at a time, like the engine's
        rounds: list[list[Any]] = []
        seen: dict[str, int] = {}
        for r in runs:
            k = seen[r.sensor] = seen.get(r.sensor, -1) + 1
            if k == len(rounds):
                rounds.append([])
            rounds[k].append(r)
        changes: list[tuple[str, int, str | None]] = []
        for group in rounds:
            changes += self._round(group)
        return changes

    def _round(self, runs: list[Any]) -> list[tuple[str, int, str | None]]:
        p = self._proto
        slots = self._slots([r.sensor for r in runs])
        lengths = np.fromiter((r.x.shape[0] for r in runs), np.int64, len(runs))
        x = np.concatenate([np.asarray(r.x[:, :2], np.float64) for r in runs]) if len(runs) > 1 else np.asarray(runs[0].x[:, :2], np.float64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        b = 1.0 - p._a
        from_end = np.repeat(starts + lengths, lengths) - 1 - np.arange(x.shape[0])
        w = b ** from_end
        ind = np.stack([x[:, 0] < p._bounds[0], x[:, 0] < p._bounds[1], x[:, 1] >= 0], axis=1) * w[:, None]
        sums = np.add.reduceat(ind, starts, axis=0)
        st = self._state[slots]
        st[:, :3] = (b ** lengths)[:, None] * st[:, :3] + p._a * sums
        st[:, 3] += lengths
        self._state[slots] = st
        judged = st[:, 3] >= p.min_samples
        changes = []
        for r, low, high, det, ok in zip(runs, st[:, 0].tolist(), st[:, 1].tolist(), st[:, 2].tolist(), judged.tolist()):
            rate = self.profile.rate_reason(r.period_ns) if r.period_ns else None
            reason = p.verdict(low, high, det, rate, judged=ok)
            last_seq = int(r.seq) + r.x.shape[0] - 1
            if reason is not None:
                if r.sensor not in self._out:
                    changes.append((r.sensor, last_seq, reason))
                self._out[r.sensor], self._clean[r.sensor] = reason, 0
            elif r.sensor in self._out:
                self._clean[r.sensor] += r.x.shape[0]
                if self._clean[r.sensor] >= self.hold:
                    del self._out[r.sensor], self._clean[r.sensor]
                    changes.append((r.sensor, last_seq, None))
        return changes
