"""radarstream evaluate and label files: the quality tables on a labelled recording (issue 14)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamer.offline.labels import LabelError, labelled_streams, read_labels
from streamer.recording.writer import simulate_to_file
from streamer.sim.publisher import FeedConfig

ROOT = Path(__file__).resolve().parents[2]
EPOCH = 1_764_600_000_000_000_000


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """The same simulated stream twice: with its truth channel, and without (to be labelled)."""
    d = tmp_path_factory.mktemp("evaluate")
    feed = FeedConfig(sensors=2, samples_per_message=20, duration_s=240.0, seed=11, realtime=False)
    simulate_to_file(d / "truth.mcap", feed, epoch=EPOCH)
    simulate_to_file(d / "bare.mcap", FeedConfig(**{**feed.__dict__, "truth": False}), epoch=EPOCH)
    return d


def labels_from_truth(rec: Path, out: Path) -> int:
    """A label file (seconds from the recording's start, CPA included) written from the truth."""
    streams = labelled_streams(rec, r_max_m=1000.0)
    t0 = min(int(s.time_ns[0]) for s in streams)
    rows = 0
    with out.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sensor", "start_s", "end_s", "dmin_m", "cpa_s"])
        for s in streams:
            for e in s.encounters:
                sec = lambda i: (int(s.time_ns[i]) - t0) / 1e9  # noqa: E731
                w.writerow([s.sensor, sec(e.start), sec(e.stop - 1), e.dmin_m, sec(e.cpa_index)])
                rows += 1
    return rows


def test_truth_and_an_equivalent_label_file_give_the_same_encounters(recordings, tmp_path):
    truth = labelled_streams(recordings / "truth.mcap", r_max_m=1000.0)
    n = labels_from_truth(recordings / "truth.mcap", tmp_path / "labels.csv")
    labelled = labelled_streams(recordings / "bare.mcap", tmp_path / "labels.csv", r_max_m=1000.0)
    assert n == sum(len(s.encounters) for s in truth) > 10
    for a, b in zip(truth, labelled):
        assert a.sensor == b.sensor and np.array_equal(a.samples, b.samples)
        assert [(e.start, e.stop, e.cpa_index) for e in a.encounters] == [(e.start, e.stop, e.cpa_index) for e in b.encounters]
        np.testing.assert_allclose([e.dmin_m for e in a.encounters], [e.dmin_m for e in b.encounters], rtol=1e-6)


def test_bad_label_rows_are_reported_by_line(recordings, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("sensor,start_s,end_s,dmin_m\n"
                   "radar-0,10,20,100\n"       # line 2: fine
                   "radar-0,15,25,100\n"       # line 3: overlaps line 2
                   "radar-0,30,29,100\n"       # line 4: ends before it starts
                   "radar-0,40,50,-3\n"        # line 5: negative Dmin
                   "radar-0,x,50,10\n"         # line 6: not a number
                   "radar-9,60,70,10\n")       # line 7: unknown sensor (checked against the recording)
    with pytest.raises(LabelError) as exc:
        read_labels(bad)
    msg = str(exc.value)
    for line in (3, 4, 5, 6):
        assert f"line {line}:" in msg
    assert "line 2:" not in msg
    outside = tmp_path / "outside.csv"
    outside.write_text("sensor,start_s,end_s,dmin_m\nradar-0,10,20,100\nradar-9,30,40,10\nradar-1,9000,9100,50\n")
    with pytest.raises(LabelError, match=r"line 3: sensor 'radar-9'.*line 4: the label lies outside"):
        labelled_streams(recordings / "bare.mcap", outside, r_max_m=1000.0)


def test_a_recording_without_truth_or_labels_is_refused(recordings):
    with pytest.raises(LabelError, match="no truth channel"):
        labelled_streams(recordings / "bare.mcap", r_max_m=1000.0)


def test_evaluate_command_prints_the_tables_and_writes_report_and_figure(recordings, tmp_path):
    n = labels_from_truth(recordings / "truth.mcap", tmp_path / "labels.csv")
    stem = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "tools.cli", "evaluate", str(recordings / "bare.mcap"),
                           "--labels", str(tmp_path / "labels.csv"), "--out", str(stem)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "causal LSTM @ CPA+1 s" in proc.stdout and "90 % interval coverage" in proc.stdout
    report = json.loads((tmp_path / "run.evaluation.json").read_text())
    assert 0 < report["encounters"] <= n
    assert report["mae_m"]["classical LS, whole encounter (prior mean if it fails)"] < report["mae_m"]["prior mean (baseline)"]
    assert (tmp_path / "run.evaluation.png").stat().st_size > 10_000
    bare = subprocess.run([sys.executable, "-m", "tools.cli", "evaluate", str(recordings / "bare.mcap")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bare.returncode == 2 and bare.stderr.startswith("error:") and "no truth channel" in bare.stderr
