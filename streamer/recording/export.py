"""``radarstream export-csv``: one row per recorded sample, joined with its prediction and truth.

Predictions are joined to samples on ``(sensor, epoch, seq)``, the key the protocol gives them
(protocol §6), never on time. Columns that the recording cannot fill are left out entirely (no
pred channel: no causal columns; no truth frame: no truth columns); a row whose sample has no
recorded prediction gets empty causal cells. Column names and formats are the product's one CSV
vocabulary (:mod:`streamer.recording.csv_schema`, docs/csv.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamer.recording.csv_schema import open_table
from streamer.recording.replay import Recording
from streamer.wire import protocol as P
from streamer.recording.integrity import Integrity

__all__ = ["ExportResult", "export_csv", "BASE_COLUMNS", "PRED_COLUMNS", "TRUTH_COLUMNS"]

BASE_COLUMNS = ("sensor", "epoch", "seq", "time_ns", "amplitude", "distance_m")
PRED_COLUMNS = ("causal_norm", "causal_m")
"""pred channels 0 and 1 (``y_norm``, ``y_m`` on the wire)."""
TRUTH_COLUMNS = ("true_dmin_norm", "in_encounter", "true_range_m", "snr_db")
"""The truth frame's channels, in protocol order (:data:`streamer.wire.protocol.TRUTH_CHANNEL_NAMES`)."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    rows: int
    columns: tuple[str, ...]
    integrity: Integrity | None = None
    """What the chunk CRC checks found (damaged chunks, messages recovered from them and lost)."""
    undecodable: int = 0
    """Recorded samples messages that did not decode (not exported; counted, never silent)."""


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
    rows = 0
    out = Path(out)
    undecodable = 0
    with open_table(out, columns) as table:
        for r in rec.iter_recorded(sample_topics, start_ns, end_ns):
            m = r.message
            if isinstance(m, P.DecodeError):
                undecodable += 1
                continue
            b = m.block
            data = np.asarray(b.data)
            block: dict[str, object] = {
                "sensor": [m.sensor] * b.count, "epoch": np.full(b.count, b.epoch, np.int64), "seq": b.seqs,
                "time_ns": b.times_ns, "amplitude": data[:, 0], "distance_m": data[:, 1],
            }
            if pred_topics:
                vals = np.full((b.count, 2), np.nan, np.float32)
                found_in = preds.get((m.sensor, b.epoch))
                if found_in is not None:
                    found, got = found_in.lookup(b.seqs)
                    vals[found] = got[found]
                block.update(zip(PRED_COLUMNS, vals.T))
            if has_truth:
                truth = (np.asarray(m.truth.data, np.float64) if m.truth is not None
                         else np.full((b.count, len(TRUTH_COLUMNS)), np.nan))
                block.update(zip(TRUTH_COLUMNS, truth.T))
            rows += table.write(block)
    return ExportResult(out, rows, tuple(columns), rec.integrity, undecodable)
