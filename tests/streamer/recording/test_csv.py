"""One CSV vocabulary (streamer/recording/csv_schema.py): the three writers — ``export-csv``,
``score`` and the GUI's Export CSV — name and format the same quantity the same way.

The cross-writer test feeds the same samples (and the same causal estimates) to all three and
compares the cells of every column two files share, row by row, in the files they really write.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from streamer.recording.csv_schema import COLUMNS, column, format_column, write_table


def _read(path: Path, skip: int = 0) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as fh:
        lines = list(csv.reader(fh))[skip:]
    return lines[0], [dict(zip(lines[0], row)) for row in lines[1:]]


def test_every_name_carries_its_unit_and_one_declaration():
    unitless = {"sensor", "epoch", "seq", "amplitude", "in_encounter"}
    for name, col in COLUMNS.items():
        assert col.name == name and col.meaning
        assert name in unitless or name.endswith(("_m", "_db", "_s", "_ns", "_us", "_norm")), name
    with pytest.raises(KeyError, match="not in the CSV vocabulary"):
        column("y_m")


def test_one_format_and_one_missing_rule():
    assert format_column("distance_m", np.array([250.0, -1.0, np.nan], np.float32)) == ["250", "", ""]
    assert format_column("causal_m", np.array([0.1, 1e-7], np.float32)) == ["0.1", "0.0000001"]
    assert np.float32(format_column("amplitude", [np.float32(1 / 3)])[0]) == np.float32(1 / 3)  # round trip
    assert format_column("in_encounter", [1.0, 0.0, np.nan]) == ["1", "0", ""]
    assert format_column("seq", np.array([3, 4])) == ["3", "4"] and format_column("seq", [np.nan]) == [""]
    assert format_column("time_s", [1.5]) == ["1.500000000"]


def test_write_table_refuses_names_outside_the_vocabulary(tmp_path):
    with pytest.raises(KeyError):
        write_table(tmp_path / "x.csv", {"distance": np.zeros(2)})
    assert write_table(tmp_path / "y.csv", {"seq": np.arange(2), "distance_m": np.zeros(2)}) == 2


def test_the_three_writers_agree_on_every_shared_column(tiny_weights, tmp_path, qtbot):
    from gui.stream import Batch, PredChunk, ReceiverConfig, SamplesChunk
    from gui.window import MainWindow, WindowConfig
    from gui.worker import WorkerConfig
    from streamer.recording.export import export_csv
    from streamer.recording.writer import RecordingWriter
    from streamer.recording.replay import iter_messages
    from streamer.recording.writer import simulate_to_file
    from streamer.sim.publisher import FeedConfig
    from streamer.wire import protocol as P
    from tools.cli import main

    raw = tmp_path / "raw.mcap"
    simulate_to_file(raw, FeedConfig(sensors=1, samples_per_message=10, duration_s=40, seed=4, realtime=False),
                     epoch=1_700_000_000_000_000_000)
    # 1. score: causal estimates (+ samples and truth) per sample
    assert main(["score", str(raw), "--weights", str(tiny_weights), "--out", str(tmp_path / "score.csv"),
                 "--window", "64", "--hop", "32", "--quiet"]) == 0
    score_head, score = _read(tmp_path / "score.csv")
    by_seq = {int(r["seq"]): r for r in score}
    # 2. export-csv of the same samples with those estimates recorded as pred messages
    rec = tmp_path / "with_pred.mcap"
    msgs = [r.message for r in iter_messages(raw)]
    with RecordingWriter(rec) as w:
        for i, m in enumerate(msgs):
            w.write_message(m, 1_000 + i)
            b = m.block
            y = np.array([[float(by_seq[s]["causal_norm"]), float(by_seq[s]["causal_m"]), 7.0] for s in b.seqs.tolist()],
                         np.float32)
            w.write_message(P.Message(P.Kind.PRED, m.sensor, P.make_block(P.Kind.PRED, y, epoch=b.epoch, seq=b.seq,
                                                                         t0_ns=b.t0_ns, period_ns=b.period_ns)),
                            1_000 + i)
    export_csv(rec, tmp_path / "export.csv")
    export_head, export = _read(tmp_path / "export.csv")
    # 3. the GUI's export of the same samples and estimates
    win = MainWindow(WindowConfig(), WorkerConfig(receiver=ReceiverConfig(feeds=(), services=()), weights=tiny_weights),
                     start=False)
    qtbot.addWidget(win)
    for m in msgs:
        b, truth = m.block, np.asarray(m.truth.data, np.float64)
        x = np.asarray(b.data, np.float32)
        ch = SamplesChunk(b.times_ns, b.seqs, np.full(b.count, b.epoch, np.int64), x[:, 0], x[:, 1],
                          (truth[:, 0] * 1000.0).astype(np.float32), truth[:, 2].astype(np.float32),
                          truth[:, 3].astype(np.float32), b.period_ns)
        pred = PredChunk(b.times_ns, np.array([float(by_seq[s]["causal_m"]) for s in b.seqs.tolist()], np.float32),
                         np.full(b.count, 7.0, np.float32))
        win.handoff.try_acquire()
        win.ingest(Batch(1e9, {m.sensor: ch}, {m.sensor: pred}))
    win.sensor = msgs[0].sensor
    t_all = np.concatenate([m.block.times_ns for m in msgs])
    assert win.export_csv(tmp_path / "gui.csv", (int(t_all[0]), int(t_all[-1]))) == len(t_all)
    gui_head, gui = _read(tmp_path / "gui.csv", skip=1)  # first line: the "# sensor=..." comment

    files = {"score": (score_head, score), "export-csv": (export_head, export), "gui": (gui_head, gui)}
    for name, (head, _) in files.items():
        assert set(head) <= set(COLUMNS), (name, set(head) - set(COLUMNS))
    assert {"seq", "time_ns", "amplitude", "distance_m", "causal_m", "true_range_m"} <= \
        set(score_head) & set(export_head) & set(gui_head)
    assert "causal_norm" in set(score_head) & set(export_head)
    assert "true_dmin_m" in set(score_head) & set(gui_head) and "snr_db" in set(export_head) & set(gui_head)
    keyed = {name: {r["seq"]: r for r in rows} for name, (_, rows) in files.items()}
    assert len({len(k) for k in keyed.values()}) == 1 and len(keyed["gui"]) == len(t_all)
    names = list(files)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = sorted(set(files[a][0]) & set(files[b][0]))
            for seq, row in keyed[a].items():
                other = keyed[b][seq]
                assert {c: row[c] for c in shared} == {c: other[c] for c in shared}, (a, b, seq)
    assert any(r["distance_m"] == "" for r in gui) and any(r["true_range_m"] == "" for r in export)
