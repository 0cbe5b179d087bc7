"""The conformance suite every online estimator runs through (river's ``check_estimator`` idea).

Shipped in the package, not only in tests/, so that a user's own estimator can be checked the same
way: ``check_estimator(lambda: MyEstimator(...), block)``. Each check raises ``AssertionError``
with what differed; ``check_estimator`` runs them all and returns their names.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from radarstream.online import Block, OnlineEstimator

__all__ = [
    "check_estimator",
    "check_vocabulary",
    "check_split_invariance",
    "check_state_roundtrip",
    "check_reset",
    "check_state_is_a_snapshot",
    "random_splits",
]

Factory = Callable[[], OnlineEstimator]


def random_splits(n: int, rng: np.random.Generator, *, max_piece: int | None = None) -> list[int]:
    """Cut points ``0 < c1 < … < n`` of a random split of ``n`` samples into pieces (singletons,
    long runs and everything between, so both the per-sample and the batched paths are hit)."""
    cuts, pos = [], 0
    top = max_piece or max(2, n // 3)
    while pos < n:
        pos = min(n, pos + int(rng.choice([1, 1, 2, 3, int(rng.integers(1, top + 1))])))
        cuts.append(pos)
    return cuts


def _run(est: OnlineEstimator, block: Block, cuts: Sequence[int]) -> np.ndarray:
    outs, start = [], 0
    for stop in cuts:
        out = np.asarray(est.update(block.slice(start, stop)))
        if out.shape[:1] != (stop - start,):
            raise AssertionError(f"update() returned {out.shape[0] if out.ndim else 'a scalar'} rows "
                                 f"for a block of {stop - start} samples")
        outs.append(out.copy())
        start = stop
    return np.concatenate(outs) if outs else np.empty(0)


def _same(a: np.ndarray, b: np.ndarray, what: str, rtol: float, atol: float) -> None:
    if a.shape != b.shape:
        raise AssertionError(f"{what}: shapes {a.shape} vs {b.shape}")
    if a.dtype.kind in "fc":
        nan_a, nan_b = np.isnan(a), np.isnan(b)
        if not np.array_equal(nan_a, nan_b):
            first = int(np.flatnonzero((nan_a != nan_b).reshape(-1))[0])
            raise AssertionError(f"{what}: NaN pattern differs (first at flat index {first})")
        ok = np.isclose(np.where(nan_a, 0, a), np.where(nan_b, 0, b), rtol=rtol, atol=atol)
    else:
        ok = a == b
    if not np.all(ok):
        bad = np.flatnonzero(~np.asarray(ok).reshape(-1))
        raise AssertionError(f"{what}: {bad.size} values differ, first at flat index {int(bad[0])}: "
                             f"{a.reshape(-1)[bad[0]]!r} vs {b.reshape(-1)[bad[0]]!r}")


def check_vocabulary(make: Factory, block: Block) -> None:
    """The object has the four methods and ``update`` returns one row per sample."""
    est = make()
    for name in ("reset", "update", "get_state", "set_state"):
        if not callable(getattr(est, name, None)):
            raise AssertionError(f"{type(est).__name__} has no {name}()")
    empty = np.asarray(est.update(block.slice(0, 0)))
    if empty.shape[:1] != (0,):
        raise AssertionError(f"update() of an empty block returned shape {empty.shape}")
    _run(est, block, [len(block)])


def check_split_invariance(make: Factory, block: Block, *, seed: int = 0, trials: int = 4,
                           rtol: float = 1e-6, atol: float = 1e-6) -> None:
    """Splitting the stream into blocks any way gives the same outputs as one block."""
    whole = _run(make(), block, [len(block)])
    rng = np.random.default_rng(seed)
    for k in range(trials):
        cuts = list(range(1, len(block) + 1)) if k == 0 else random_splits(len(block), rng)
        _same(whole, _run(make(), block, cuts), f"split #{k} ({len(cuts)} blocks)", rtol, atol)


def check_state_roundtrip(make: Factory, block: Block, *, seed: int = 1, trials: int = 3,
                          rtol: float = 1e-6, atol: float = 1e-6) -> None:
    """A state exported after any block and imported into a fresh object resumes exactly."""
    rng = np.random.default_rng(seed)
    n = len(block)
    whole = _run(make(), block, [n])
    for _ in range(trials):
        cut = int(rng.integers(1, max(n, 2)))
        first = make()
        _run(first, block, [cut])
        resumed = make()
        resumed.set_state(first.get_state())
        rest = _run(resumed, block.slice(cut, n), [n - cut])
        _same(whole[cut:], rest, f"resumed after sample {cut}", rtol, atol)


def check_reset(make: Factory, block: Block, *, rtol: float = 1e-6, atol: float = 1e-6) -> None:
    """After ``reset()`` an object behaves exactly like a new one."""
    n = len(block)
    fresh = _run(make(), block, [n])
    used = make()
    _run(used, block, [max(1, n // 2)])
    used.reset()
    _same(fresh, _run(used, block, [n]), "after reset()", rtol, atol)


def check_state_is_a_snapshot(make: Factory, block: Block, *, rtol: float = 1e-6, atol: float = 1e-6) -> None:
    """``get_state()`` shares nothing mutable: running on after exporting it does not change it."""
    n = len(block)
    cut = max(1, n // 3)
    est = make()
    _run(est, block, [cut])
    state = est.get_state()
    kept = copy.deepcopy(state)
    _run(est, block.slice(cut, n), [n - cut])
    a, b = make(), make()
    a.set_state(state)
    b.set_state(kept)
    _same(_run(a, block.slice(cut, n), [n - cut]), _run(b, block.slice(cut, n), [n - cut]),
          "state exported, then the object ran on", rtol, atol)


CHECKS: tuple[Callable[..., None], ...] = (
    check_vocabulary, check_split_invariance, check_state_roundtrip, check_reset, check_state_is_a_snapshot,
)


def check_estimator(make: Factory, block: Block, *, rtol: float = 1e-6, atol: float = 1e-6,
                    checks: Iterable[Callable[..., None]] = CHECKS) -> list[str]:
    """Run every conformance check on objects made by ``make`` over ``block`` (a stream long
    enough to exercise the object: several encounters for a CPA fit). Returns the checks run."""
    done = []
    for check in checks:
        kwargs = {} if check is check_vocabulary else {"rtol": rtol, "atol": atol}
        try:
            check(make, block, **kwargs)
        except AssertionError as exc:
            raise AssertionError(f"{check.__name__} failed for {type(make()).__name__}: {exc}") from None
        done.append(check.__name__)
    return done
