"""One CSV vocabulary for every CSV the product writes (``export-csv``, ``score``, the GUI's Export CSV).

Each quantity has one column name (its unit in the name: ``_m``, ``_db``, ``_s``, ``_ns``, ``_us``,
``_norm`` = fraction of R_max), one format and one rule for a missing value, declared once in
:data:`COLUMNS`; :class:`CsvTable` is the one writer, so the same quantity reads the same in every
file. docs/csv.md is the reader's version of this table.

Formats: integers as integers; floats as the shortest decimal that reads back to the same float32
(the precision of the wire and of the GUI's rings), seconds with 9 decimals (ns); a missing value
(NaN, no detection, no prediction yet) is an empty cell, never ``nan`` or ``-1``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Literal

import numpy as np

__all__ = ["COLUMNS", "Column", "CsvTable", "column", "format_column", "open_table", "write_table"]

Kind = Literal["str", "int", "float32", "flag", "seconds"]


@dataclass(frozen=True)
class Column:
    """One quantity of the vocabulary."""

    name: str
    kind: Kind
    meaning: str
    negative_is_missing: bool = False
    """The wire's sentinel (distance -1 = no detection) becomes an empty cell."""

    def missing(self, values: Sequence[Any] | np.ndarray) -> np.ndarray:
        """Which values are written as an empty cell (a null in Parquet)."""
        arr = np.asarray(values)
        if self.kind == "str" or arr.dtype.kind in "iuO":
            return np.zeros(arr.shape[0], bool)
        f = arr.astype(np.float64)
        return ~np.isfinite(f) | (f < 0) if self.negative_is_missing else ~np.isfinite(f)

    def format(self, values: Sequence[Any] | np.ndarray) -> list[str]:
        """The cells of ``values`` (one per row)."""
        if self.kind == "str":
            return [str(v) for v in values]
        arr = np.asarray(values)
        if self.kind == "int" and arr.dtype.kind in "iu":
            return [str(v) for v in arr.tolist()]
        f = arr.astype(np.float64)
        missing = self.missing(f)
        if self.kind == "int":
            return ["" if m else str(int(v)) for v, m in zip(f.tolist(), missing.tolist())]
        if self.kind == "flag":
            return ["" if m else ("1" if v > 0.5 else "0") for v, m in zip(f.tolist(), missing.tolist())]
        if self.kind == "seconds":
            return ["" if m else f"{v:.9f}" for v, m in zip(f.tolist(), missing.tolist())]
        f32 = f.astype(np.float32)
        return ["" if m else np.format_float_positional(v, unique=True, trim="-") for v, m in zip(f32, missing)]


def _columns(*cols: Column) -> Mapping[str, Column]:
    return MappingProxyType({c.name: c for c in cols})


COLUMNS: Mapping[str, Column] = _columns(
    Column("sensor", "str", "sensor id (the topic suffix)"),
    Column("epoch", "int", "publisher epoch: ns time of its first sample; (sensor, epoch, seq) is a sample's key"),
    Column("seq", "int", "sample sequence number within the epoch"),
    Column("time_ns", "int", "sample time, ns since the Unix epoch"),
    Column("time_s", "seconds", "sample time in seconds from the file's time origin (first line of a GUI export)"),
    Column("amplitude", "float32", "echo amplitude in units of the noise RMS (dimensionless)"),
    Column("distance_m", "float32", "detected distance; empty = no detection", negative_is_missing=True),
    Column("causal_norm", "float32", "causal (online) Dmin estimate as a fraction of R_max, as published on pred"),
    Column("causal_m", "float32", "causal (online) Dmin estimate"),
    Column("latency_us", "float32", "the service's receive → publish time of the sample's message"),
    Column("bidir_norm", "float32", "bidirectional re-score of the last window covering the sample, fraction of R_max"),
    Column("bidir_m", "float32", "bidirectional re-score of the sample"),
    Column("disagreement_m", "float32", "|causal − bidirectional| of the sample"),
    Column("classical_norm", "float32", "classical CPA fit estimate, fraction of R_max; empty until the fit has one"),
    Column("hybrid_norm", "float32", "hybrid (LSTM / classical) estimate, fraction of R_max"),
    Column("causal_std_norm", "float32", "standard deviation of causal_norm (the model's predicted uncertainty); empty when the model has none"),
    Column("classical_std_norm", "float32", "standard deviation of classical_norm (the fit's covariance); empty without a fit"),
    Column("hybrid_std_norm", "float32", "standard deviation of hybrid_norm; empty when unknown"),
    Column("true_dmin_norm", "float32", "true Dmin of the encounter, fraction of R_max; empty outside encounters"),
    Column("true_dmin_m", "float32", "true Dmin of the encounter; empty outside encounters"),
    Column("in_encounter", "flag", "1 inside a simulated encounter, 0 outside; empty = no truth recorded"),
    Column("true_range_m", "float32", "true range to the target; empty outside encounters"),
    Column("snr_db", "float32", "true signal-to-noise ratio of the echo; empty outside encounters"),
)
"""Every column any product CSV may hold, in the order they appear when several are present."""


def column(name: str) -> Column:
    """The declaration of ``name``; a name outside the vocabulary is a bug (KeyError)."""
    try:
        return COLUMNS[name]
    except KeyError:
        raise KeyError(f"{name!r} is not in the CSV vocabulary (streamer/recording/csv_schema.py)") from None


def format_column(name: str, values: Sequence[Any] | np.ndarray) -> list[str]:
    """Cells of column ``name`` (see :class:`Column`)."""
    return column(name).format(values)


class CsvTable:
    """A CSV file of vocabulary columns, written block by block (a block: name -> one array per column)."""

    def __init__(self, fh: IO[str], names: Sequence[str], *, comment: Sequence[str] | None = None):
        self.columns = tuple(column(n) for n in names)
        self.names = tuple(names)
        self._w = csv.writer(fh)
        if comment:
            self._w.writerow(comment)
        self._w.writerow(self.names)
        self.rows = 0

    def write(self, block: Mapping[str, Sequence[Any] | np.ndarray]) -> int:
        """Append the rows of ``block`` (every column of the table, equal lengths); returns them."""
        cells = [c.format(block[c.name]) for c in self.columns]
        n = len(cells[0]) if cells else 0
        if any(len(c) != n for c in cells):
            raise ValueError("columns of one block must have equal lengths")
        self._w.writerows(zip(*cells))
        self.rows += n
        return n


@contextmanager
def open_table(path: str | Path, names: Sequence[str], *, comment: Sequence[str] | None = None) -> Iterator[CsvTable]:
    """``with open_table(path, names) as t: t.write(block)`` — the file is closed (and flushed) after."""
    with open(path, "w", newline="") as fh:
        yield CsvTable(fh, names, comment=comment)


def write_table(path: str | Path, columns: Mapping[str, Sequence[Any] | np.ndarray], *,
                comment: Sequence[str] | None = None, names: Iterable[str] | None = None) -> int:
    """Write a whole table at once (``names``: the order, default that of ``columns``); returns rows."""
    with open_table(path, tuple(columns) if names is None else tuple(names), comment=comment) as t:
        return t.write(columns)

