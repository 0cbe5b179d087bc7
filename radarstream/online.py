"""One vocabulary for every online object (river's ``learn_one``/``predict_one`` idea, for streams).

Everything in the product that consumes a sample stream causally and carries state from one
message to the next speaks it: the causal LSTM stepper, the streaming classical CPA fit, the
hybrid, the out-of-domain checker, the GUI's gate stepper and the delayed-label scorer.

* ``reset()`` — forget the stream (a restarted sensor, a new epoch);
* ``update(block) -> np.ndarray`` — consume the next consecutive samples, return one output row
  per sample (shape ``[T, ...]``);
* ``get_state()`` / ``set_state(state)`` — export the whole carried state (a snapshot that shares
  nothing mutable with the object) and resume from it exactly.

The contract, checked for every implementation by :func:`radarstream.checks.check_estimator`:
splitting a stream into blocks any way gives the same outputs, and a state exported after any
block and imported into a fresh object resumes exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Block", "OnlineEstimator"]


@dataclass(frozen=True)
class Block:
    """Consecutive samples of one stream, as they arrive (one message, or part of one).

    Times are integer nanoseconds, the wire's own clock: an estimator that needs seconds takes
    differences in integers first, so its output cannot depend on where the clock's origin is.
    """

    t_ns: np.ndarray
    """int64 [T]: time of each sample."""
    x: np.ndarray
    """float32 [T, C]: the raw samples, ``[amplitude, distance]`` (distance -1 = no detection)."""
    truth: np.ndarray | None = None
    """float32 [T, K] ground truth when the source has it (simulator ``TRUTH_CHANNELS``)."""
    estimate: np.ndarray | None = None
    """float [T] or [T, 2]: an upstream per-sample estimate (normalised Dmin, and its standard
    deviation when known) for estimators that combine with one (the hybrid, the scorer)."""
    period_ns: int | None = None
    """The nominal sample period the source declared (a wire block's ``period_ns``); None when
    unknown, then estimators that need it take it from the differences of ``t_ns``."""
    seq: np.ndarray | None = None
    """uint64 [T]: the samples' sequence numbers when the source numbers them (the wire does)."""

    def __post_init__(self) -> None:
        t = np.asarray(self.t_ns)
        if t.ndim != 1 or self.x.ndim != 2 or self.x.shape[0] != t.shape[0]:
            raise ValueError(f"Block needs t_ns [T] and x [T, C], got {t.shape} and {self.x.shape}")
        for name in ("truth", "estimate", "seq"):
            v = getattr(self, name)
            if v is not None and v.shape[0] != t.shape[0]:
                raise ValueError(f"Block.{name} has {v.shape[0]} rows for {t.shape[0]} samples")

    def __len__(self) -> int:
        return int(self.t_ns.shape[0])

    def slice(self, start: int, stop: int) -> Block:
        """Samples ``start:stop`` as a block of their own."""
        cut = lambda a: None if a is None else a[start:stop]  # noqa: E731
        return Block(self.t_ns[start:stop], self.x[start:stop], cut(self.truth), cut(self.estimate), self.period_ns,
                     cut(self.seq))

    @classmethod
    def regular(cls, x: np.ndarray, *, t0_ns: int = 0, period_ns: int = 50_000_000, **kw: Any) -> Block:
        """A block of evenly spaced samples (what one wire message describes)."""
        n = np.asarray(x).shape[0]
        t = np.int64(t0_ns) + np.int64(period_ns) * np.arange(n, dtype=np.int64)
        return cls(t, np.asarray(x, np.float32), period_ns=int(period_ns), **kw)


@runtime_checkable
class OnlineEstimator(Protocol):
    """The online vocabulary (see the module docstring)."""

    def reset(self) -> None: ...

    def update(self, block: Block) -> np.ndarray: ...

    def get_state(self) -> Any: ...

    def set_state(self, state: Any) -> None: ...
