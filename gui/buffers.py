"""Bounded, preallocated history the GUI draws from (numpy only, no Qt).

Every stream the window shows lives in a :class:`Ring`: a fixed number of rows allocated once, so
memory never grows with run time. The ring is *mirrored* (each row is written at ``i`` and at
``i + capacity``), which makes the latest ``n`` rows one contiguous slice: the redraw hands numpy
views to pyqtgraph instead of concatenating the wrapped halves 30 times a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

import numpy as np

SAMPLE_FIELDS: Mapping[str, type] = MappingProxyType({
    "t_ns": np.int64, "t": np.float64, "seq": np.int64, "amplitude": np.float32, "amplitude_db": np.float32,
    "distance_m": np.float32, "dmin_m": np.float32, "true_range_m": np.float32, "snr_db": np.float32,
})
"""One row per input sample; ``t`` is seconds since the window's time origin (ready to plot); the
truth columns are NaN when the source sends no truth frame."""

PRED_FIELDS: Mapping[str, type] = MappingProxyType(
    {"t_ns": np.int64, "t": np.float64, "y_m": np.float32, "latency_us": np.float32, "classical_m": np.float32,
     "hybrid_m": np.float32, "std_m": np.float32, "classical_std_m": np.float32, "hybrid_std_m": np.float32})
"""One row per prediction (``pred/<sensor>``): the causal estimate, its latency, the classical
and hybrid estimates and the σ of each, in metres (NaN where the service does not publish them)."""

RESCORE_FIELDS: Mapping[str, type] = MappingProxyType({"t_ns": np.int64, "t": np.float64, "bidir_m": np.float32,
                                                       "causal_m": np.float32, "disagreement_m": np.float32})
"""One row per re-scored sample (``rescore/<sensor>``); later windows replace earlier rows."""

GATE_NAMES: tuple[str, ...] = ("h", "c", "i", "f", "g", "o")
"""The six per-unit traces of one LSTM layer, in display order (g is the candidate ĉ)."""


class Ring:
    """Fixed-capacity, column-oriented ring buffer whose latest rows are always contiguous.

    ``fields`` maps a column name to its dtype; a column may have a per-row shape (``shapes``), for
    the state heatmaps (``[capacity, hidden]``). Rows are appended in time order; ``view()`` returns
    views (not copies) valid until the next ``append``.
    """

    def __init__(self, capacity: int, fields: Mapping[str, type], shapes: Mapping[str, tuple[int, ...]] | None = None):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = int(capacity)
        shapes = dict(shapes or {})
        self._cols = {name: np.zeros((2 * capacity, *shapes.get(name, ())), dtype) for name, dtype in fields.items()}
        self._head = 0  # next write position in [0, capacity)
        self._len = 0
        self.total = 0  # rows ever appended (monotonic; lets readers detect change)

    def __len__(self) -> int:
        return self._len

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self._cols)

    def clear(self) -> None:
        self._head = self._len = 0
        self.total += 1  # readers see a change

    def append(self, **columns: np.ndarray) -> None:
        """Append ``n`` rows; every column must be given with the same length. Keeps the newest
        ``capacity`` rows if more are given at once."""
        n = len(next(iter(columns.values())))
        if set(columns) != set(self._cols):
            raise KeyError(f"columns {sorted(columns)} != ring fields {sorted(self._cols)}")
        if n == 0:
            return
        cap = self.capacity
        skip = max(0, n - cap)
        m = n - skip
        for name, col in self._cols.items():
            src = np.asarray(columns[name])[skip:]
            if len(src) != m:
                raise ValueError(f"column {name!r} has {len(src) + skip} rows, expected {n}")
            first = min(m, cap - self._head)
            h = self._head
            col[h:h + first] = src[:first]
            col[h + cap:h + cap + first] = src[:first]
            rest = m - first
            if rest:
                col[0:rest] = src[first:]
                col[cap:cap + rest] = src[first:]
        self._head = (self._head + m) % cap
        self._len = min(cap, self._len + m)
        self.total += n

    def view(self, name: str, last: int | None = None) -> np.ndarray:
        """The newest ``last`` rows (default all) of column ``name``, oldest first, as a view."""
        n = self._len if last is None else min(int(last), self._len)
        end = self._head + self.capacity
        return self._cols[name][end - n:end]

    def truncate(self, keep: int) -> None:
        """Forget all but the oldest ``keep`` of the rows held (replacing a tail: re-scores)."""
        keep = max(0, min(int(keep), self._len))
        drop = self._len - keep
        self._head = (self._head - drop) % self.capacity
        self._len = keep
        self.total += 1

    def window(self, t0_ns: int, t1_ns: int, time_field: str = "t_ns") -> slice:
        """Index range of rows with ``t0_ns <= t <= t1_ns`` in ``view()`` (times ascending)."""
        t = self.view(time_field)
        return slice(int(np.searchsorted(t, t0_ns, "left")), int(np.searchsorted(t, t1_ns, "right")))

    def last(self, name: str, default=None):
        """Newest value of ``name`` (or ``default`` when empty)."""
        return self.view(name, 1)[0] if self._len else default


@dataclass(frozen=True)
class HistoryConfig:
    """Sizes of the per-sensor history; fixed at start so memory is bounded and known."""

    samples: int = 32768
    """Input samples (and predictions, re-scores) kept per sensor: 27 min at 20 Hz, 33 s at 1 kHz
    (``radarstream gui --history``). About 4.7 MB per sensor (6.5 MB once it has re-scores)."""
    state_columns: int = 4096
    """Columns of the state/gate heatmaps of the selected sensor (decimated to fit the window)."""
    max_sensors: int = 64
    """Sensors beyond this many are ignored (and counted), never allocated."""


class SensorHistory:
    """Everything the window keeps about one sensor: samples (+ truth), predictions, re-scores."""

    def __init__(self, sensor: str, config: HistoryConfig):
        self.sensor = sensor
        self.capacity = config.samples
        self.samples = Ring(config.samples, SAMPLE_FIELDS)
        self.preds = Ring(config.samples, PRED_FIELDS)
        self._rescores: Ring | None = None
        self.period_ns = 0

    @property
    def rescores(self) -> Ring:
        """Allocated (at full capacity) with the first re-score: many setups run without them."""
        if self._rescores is None:
            self._rescores = Ring(self.capacity, RESCORE_FIELDS)
        return self._rescores

    @property
    def has_rescores(self) -> bool:
        return self._rescores is not None and len(self._rescores) > 0

    def clear(self) -> None:
        for ring in (self.samples, self.preds, self._rescores):
            if ring is not None:
                ring.clear()

    def latest_t_ns(self) -> int | None:
        """Newest time of anything of this sensor (samples first: they lead predictions)."""
        times = [int(r.last("t_ns")) for r in (self.samples, self.preds) if len(r)]
        return max(times) if times else None


class StateHistory:
    """h, c and the gates of one layer of the selected sensor: ``[columns, hidden]`` per trace."""

    def __init__(self, columns: int, hidden: int):
        self.hidden = hidden
        self.ring = Ring(columns, {"t_ns": np.int64, "t": np.float64, **{g: np.float32 for g in GATE_NAMES}},
                         {g: (hidden,) for g in GATE_NAMES})

    def __len__(self) -> int:
        return len(self.ring)
