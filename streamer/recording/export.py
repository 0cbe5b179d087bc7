"""``radarstream export-csv``: one row per recorded sample, joined with its prediction and truth.

Predictions are joined to samples on ``(sensor, epoch, seq)``, the key the protocol gives them
(protocol §6), never on time. Columns that the recording cannot fill are left out entirely (no
pred channel: no y columns; no truth frame: no truth columns); a row whose sample has no recorded
prediction gets empty y cells.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamer.wire import protocol as P
from streamer.recording.replay import Recording

__all__ = ["ExportResult", "export_csv", "BASE_COLUMNS", "PRED_COLUMNS", "TRUTH_COLUMNS"]

BASE_COLUMNS = ("sensor", "epoch", "seq", "time_ns", "amplitude", "distance_m")
PRED_COLUMNS = ("y_norm", "y_m")
TRUTH_COLUMNS = P.TRUTH_CHANNEL_NAMES


@dataclass(frozen=True)
class ExportResult:
    path: Path
    rows: int
    columns: tuple[str, ...]


class _PredTable:
    """Recorded predictions of one (sensor, epoch), searchable by seq (the last one recorded wins)."""

    def __init__(self, parts: list[tuple[np.ndarray, np.ndarray]]):
        seqs = np.concatenate([p[0] for p in parts])
        vals = np.concatenate([p[1] for p in parts])
        # keep the last occurrence of each seq: unique on the reversed arrays
        rev_seqs = seqs[::-1]
        uniq, idx = np.unique(rev_seqs, return_index=True)
        self.seqs = uniq
        self.vals = vals[::-1][idx]

    def lookup(self, seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos = np.searchsorted(self.seqs, seqs)
        pos = np.minimum(pos, len(self.seqs) - 1)
        found = self.seqs[pos] == seqs
        return found, self.vals[pos]


def _fmt(v: float) -> str:
    # 9 significant digits round-trip any float32 exactly
    return f"{v:.9g}"


def export_csv(
    path: str | Path,
    out: str | Path,
    *,
    start: float | None = None,
    end: float | None = None,
    sensors: Sequence[str] | None = None,
) -> ExportResult:
    """Write ``out``: the samples recorded in ``[start, end)`` seconds from the start of the
    recording (log time), for ``sensors`` (None: all), in recording order."""
    rec = Recording(path)
    sample_topics = rec.topics(("samples",), sensors)
    pred_topics = rec.topics(("pred",), sensors)
    start_ns, end_ns = rec.to_ns(start, rec.start_ns), rec.to_ns(end, rec.end_ns + 1)

    parts: dict[tuple[str, int], list[tuple[np.ndarray, np.ndarray]]] = {}
    for r in rec.iter_recorded(pred_topics):  # whole file: a pred may be logged after the window
        m = r.message
        if isinstance(m, P.DecodeError) or not m.block.count:
            continue
        parts.setdefault((m.sensor, m.block.epoch), []).append(
            (m.block.seqs, np.asarray(m.block.data[:, :2], np.float32)))
    preds = {k: _PredTable(v) for k, v in parts.items()}

    has_truth = any(len(r.frames) == 3 for r in rec.iter_recorded(sample_topics, start_ns, end_ns))
    columns = BASE_COLUMNS + (PRED_COLUMNS if pred_topics else ()) + (TRUTH_COLUMNS if has_truth else ())
    n_truth = len(TRUTH_COLUMNS)
    rows = 0
    out = Path(out)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rec.iter_recorded(sample_topics, start_ns, end_ns):
            m = r.message
            if isinstance(m, P.DecodeError):
                continue
            b = m.block
            seqs = b.seqs
            times = b.times_ns.tolist()
            x = b.data.tolist()
            cols: list[list[str]] = []
            if pred_topics:
                table = preds.get((m.sensor, b.epoch))
                if table is None:
                    cols.append([["", ""] for _ in range(b.count)])
                else:
                    found, vals = table.lookup(seqs)
                    cols.append([[_fmt(v0), _fmt(v1)] if ok else ["", ""]
                                 for ok, (v0, v1) in zip(found.tolist(), vals.tolist())])
            if has_truth:
                if m.truth is not None:
                    cols.append([[_fmt(v) for v in row] for row in m.truth.data.tolist()])
                else:
                    cols.append([[""] * n_truth for _ in range(b.count)])
            seq_list = seqs.tolist()
            batch = []
            for i in range(b.count):
                row = [m.sensor, b.epoch, seq_list[i], times[i], _fmt(x[i][0]), _fmt(x[i][1])]
                for c in cols:
                    row.extend(c[i])
                batch.append(row)
            w.writerows(batch)
            rows += b.count
    return ExportResult(out, rows, tuple(columns))
