"""`radarstream score`: offline per-sample scoring through the same engine as serve."""

from __future__ import annotations

import csv

import numpy as np

from streamer.live.backends import make_backend
from streamer.sim.publisher import FeedConfig, SimulatedFeed
from streamer.offline.scoring import BASE_COLUMNS, CSV_NAMES, TRUTH_COLUMNS, score_messages
from tests.streamkit import collect, preds_by_sensor, running_service
from tools.cli import main


def _read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_score_simulate_writes_csv(tiny_weights, tmp_path, capsys):
    out = tmp_path / "s.csv"
    rc = main(["score", "--simulate", "20", "--seed", "3", "--sensors", "2", "--weights", str(tiny_weights),
               "--out", str(out), "--quiet"])
    assert rc == 0
    rows = _read(out)
    assert list(rows[0]) == [CSV_NAMES[c] for c in (*BASE_COLUMNS, *TRUTH_COLUMNS)]
    assert len(rows) == 20 * 20 * 2
    assert {r["sensor"] for r in rows} == {"radar-0", "radar-1"}
    assert all(r["bidir_norm"] == "" for r in rows)  # 400 samples per sensor < one 512-sample window
    assert all(r["causal_norm"] != "" and r["hybrid_norm"] != "" for r in rows)
    assert "radar-0" in capsys.readouterr().out


def test_score_causal_equals_live_service(tiny_weights):
    feed = SimulatedFeed(FeedConfig(sensors=1, samples_per_message=10, seed=5, realtime=False))
    frames = [f for _ in range(30) for f in feed.next_messages()]  # 300 samples
    with running_service(tiny_weights, "onnx") as (_, sock, out):
        for f in frames:
            sock.send_multipart(f)
        msgs = collect(out, lambda m: len(preds_by_sensor(m).get("radar-0", {})) >= 300)
    live = preds_by_sensor(msgs)["radar-0"]
    assert len(live) == 300
    res = score_messages(frames, make_backend("onnx", tiny_weights), weights_dir=tiny_weights, window=64, hop=32)
    cols = res.columns
    assert res.rows == 300 and list(cols["seq"]) == list(range(300))
    np.testing.assert_allclose(cols["causal"], [live[s][0] for s in range(300)], atol=1e-6, rtol=0)
    np.testing.assert_allclose(cols["causal_m"], [live[s][1] for s in range(300)], atol=1e-3, rtol=0)
    np.testing.assert_allclose(cols["classical"], [live[s][3] for s in range(300)], atol=1e-6, rtol=0, equal_nan=True)
    np.testing.assert_allclose(cols["hybrid"], [live[s][4] for s in range(300)], atol=1e-6, rtol=0)
    # bidir: windows [32k, 32k+64) -> samples 0..287 covered; the last window covering wins
    assert np.isfinite(cols["bidir"][:288]).all() and np.isnan(cols["bidir"][288:]).all()


def test_score_recording(tiny_weights, tmp_path, capsys):
    from streamer.recording.writer import simulate_to_file

    rec = tmp_path / "r.mcap"
    simulate_to_file(rec, FeedConfig(sensors=2, samples_per_message=5, duration_s=10, seed=2, realtime=False))
    out = tmp_path / "r.csv"
    rc = main(["score", str(rec), "--weights", str(tiny_weights), "--out", str(out), "--window", "64",
               "--hop", "32", "--quiet"])
    assert rc == 0
    rows = _read(out)
    assert len(rows) == 10 * 20 * 2
    assert list(rows[0])[-3:] == [CSV_NAMES[c] for c in TRUTH_COLUMNS]
    assert all(r["in_encounter"] != "" for r in rows)
    by_sensor = {}
    for r in rows:
        by_sensor.setdefault(r["sensor"], []).append(int(r["seq"]))
    assert all(v == list(range(200)) for v in by_sensor.values())
    assert sum(r["bidir_norm"] != "" for r in rows) == 2 * 192
    assert "MAE causal" in capsys.readouterr().out


def test_score_bad_input(tiny_weights, tmp_path, capsys):
    garbage = tmp_path / "g.mcap"
    garbage.write_bytes(b"\x89MCAP0\r\n" + b"not really" * 50)
    for argv in (["score", str(garbage)], ["score", str(tmp_path / "missing.mcap")], ["score"],
                 ["score", str(garbage), "--simulate", "5"]):
        assert main([*argv, "--weights", str(tiny_weights), "--out", str(tmp_path / "o.csv")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "o.csv").exists()


def test_a_2000_m_profile_gives_classical_estimates_beyond_1000_m():
    """R_max comes from the profile everywhere: the classical fit of score (as of serve) is no
    longer capped at the 1000 m of the default radar."""
    from models.profile import RadarProfile
    from streamer.live.backends import make_backend
    from streamer.offline.scoring import score_messages
    from streamer.sim.publisher import FeedConfig
    from streamer.sim.simulator import RadarConfig
    from streamer.sources.simulated import SimulatedSource

    radar = RadarConfig(r_max_m=2000.0, dmin_range_norm=(0.55, 0.8), snr_at_rmax_db=12.0)
    source = SimulatedSource(FeedConfig(sensors=1, samples_per_message=20, duration_s=240.0, seed=3,
                                        realtime=False, radar=radar), epoch=0)
    result = score_messages(source, make_backend("onnx", profile=RadarProfile(r_max_m=2000.0)))
    cols = result.columns
    cls_m = cols["classical"] * 2000.0
    inside = cols["in_encounter"] > 0.5
    good = inside & np.isfinite(cls_m)
    assert good.sum() > 500
    assert np.nanmax(cls_m) > 1100.0
    assert np.nanmedian(np.abs(cls_m[good] - cols["dmin_m"][good])) < 50.0


def test_score_parquet_output_is_the_parquet_extra(tiny_weights, tmp_path, capsys):
    """``--out x.parquet`` (issue 16.13): with pyarrow (``pip install -e '.[parquet]'``) it writes
    the same table as the CSV; without it, one error line that names the project's extra, and no
    file. Either way the advertised option is honest."""
    import importlib.util

    out = tmp_path / "s.parquet"
    common = ["score", "--simulate", "5", "--seed", "3", "--weights", str(tiny_weights), "--quiet"]
    argv = [*common, "--out", str(out)]
    if importlib.util.find_spec("pyarrow") is None:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and ".[parquet]" in err
        assert not out.exists()
        return
    import pyarrow.parquet as pq

    assert main(argv) == 0
    csv = tmp_path / "s.csv"
    assert main([*common, "--out", str(csv)]) == 0
    table = pq.read_table(out)
    assert table.column_names == list(_read(csv)[0]) and table.num_rows == len(_read(csv))
