"""``radarstream bench NAME``: one command for every benchmark; old spellings hidden but working."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tools.cli import build_parser, main

BENCHMARKS = ("stream", "quality", "record", "gui", "explain", "cluster")
HIDDEN = ("bench-record", "bench-gui", "bench-explain", "simulate-file")


def _sub(parser):
    return next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")


def test_bench_help_lists_every_benchmark():
    out = subprocess.run([sys.executable, "-m", "tools.cli", "bench", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for name in BENCHMARKS:
        assert f"    {name} " in out, out
    bench = _sub(build_parser()).choices["bench"]
    assert tuple(_sub(bench).choices) == BENCHMARKS
    import bench.doc  # noqa: F401 - every benchmark module sits in bench/, one per benchmark
    import importlib

    for name in BENCHMARKS:
        importlib.import_module(f"bench.{name}")


def test_old_spellings_parse_but_are_hidden_from_help():
    out = subprocess.run([sys.executable, "-m", "tools.cli", "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "SUPPRESS" not in out
    for name in HIDDEN:
        assert name not in out
    parser = build_parser()
    for name in HIDDEN:
        assert name in _sub(parser).choices
    assert parser.parse_args(["bench-record", "--no-write"]).func is parser.parse_args(["bench", "record"]).func
    assert parser.parse_args(["bench-gui"]).func is parser.parse_args(["bench", "gui"]).func
    assert parser.parse_args(["bench-explain"]).func is parser.parse_args(["bench", "explain"]).func
    assert parser.parse_args(["simulate-file", "--out", "x"]).func is parser.parse_args(["simulate"]).func


@pytest.mark.parametrize("argv", [["bench-record", "--help"], ["bench-gui", "--help"], ["bench-explain", "--help"],
                                  ["simulate-file", "--help"], *[["bench", n, "--help"] for n in BENCHMARKS]])
def test_every_spelling_has_help(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0 and "usage:" in capsys.readouterr().out


def test_alias_and_command_share_defaults():
    """The alias is the same parser set-up, so its flags and defaults cannot drift."""
    parser = build_parser()
    a = vars(parser.parse_args(["bench-record"]))
    b = vars(parser.parse_args(["bench", "record"]))
    assert {k: v for k, v in a.items() if k not in ("command", "bench", "bench_prog")} == \
           {k: v for k, v in b.items() if k not in ("command", "bench", "bench_prog")}


def test_simulate_out_and_simulate_file_write_the_same_bytes(tmp_path):
    common = ["--sensors", "2", "--duration", "3", "--samples-per-message", "4", "--seed", "9",
              "--epoch", "1700000000000000000"]
    assert main(["simulate", "--out", str(tmp_path / "a.mcap"), *common]) == 0
    assert main(["simulate-file", "--out", str(tmp_path / "b.mcap"), *common]) == 0
    from streamer.recording.replay import iter_messages

    assert [r.frames for r in iter_messages(tmp_path / "a.mcap")] == [r.frames for r in iter_messages(tmp_path / "b.mcap")]


def test_defaults_come_from_the_config_fields():
    from bench.gui import BenchConfig
    from bench.record import RecordBenchConfig
    from streamer.live.engine import StreamPolicy
    from streamer.live.health import HealthConfig
    from streamer.live.rescore import RescoreConfig
    from streamer.recording.writer import RecorderConfig

    p = build_parser()
    serve = p.parse_args(["serve"])
    assert serve.max_gap == StreamPolicy().max_gap
    assert (serve.window, serve.hop, serve.threshold_m) == (RescoreConfig().window, RescoreConfig().hop,
                                                            RescoreConfig().threshold_m)
    h = HealthConfig()
    assert (serve.lag_threshold, serve.max_sensor_rate, serve.heartbeat_ivl) == (h.lag_threshold_s, h.max_sensor_rate,
                                                                                  h.heartbeat_ivl_ms)
    score = p.parse_args(["score", "--out", "x.csv", "--simulate", "1"])
    assert (score.window, score.hop, score.max_gap) == (RescoreConfig().window, RescoreConfig().hop,
                                                        StreamPolicy().max_gap)
    rec = p.parse_args(["record", "--feed", "x", "--out", "y"])
    r = RecorderConfig()
    assert (rec.flush_interval, rec.chunk_size, rec.compression, rec.rcvhwm, rec.kinds) == \
           (r.flush_interval_s, r.chunk_size, r.compression, r.rcvhwm, r.kinds)
    br = p.parse_args(["bench", "record"])
    assert (br.duration, br.sensors, br.paced) == (RecordBenchConfig().duration_s, RecordBenchConfig().sensors,
                                                   RecordBenchConfig().paced_sps)
    bg = p.parse_args(["bench", "gui"])
    assert (bg.sensors, bg.rate, bg.frames) == (BenchConfig().sensors, BenchConfig().rate_hz, BenchConfig().frames)
    from gui.window import WindowConfig

    g = p.parse_args(["gui"])
    assert (g.window, g.threshold) == (WindowConfig().window_s, WindowConfig().threshold_m)
    help_text = _sub(p).choices["serve"].format_help()
    assert "missing samples resets" in help_text  # StreamPolicy.max_gap's docstring


def test_benchmark_docs_name_weights_without_a_machine_path(tmp_path):
    from bench.doc import REPO_ROOT, weights_label

    assert weights_label(None).startswith("shipped weights")
    assert str(tmp_path) not in weights_label(tmp_path)
    assert weights_label(REPO_ROOT / "models" / "weights").startswith("shipped weights")
    assert weights_label(REPO_ROOT / "build" / "w") == "`build/w`"
    text = (REPO_ROOT / "docs" / "benchmarks.md").read_text()
    assert str(REPO_ROOT) not in text and "/models/weights`" not in text


def test_tools_modules_stay_thin():
    from pathlib import Path

    import tools

    for path in Path(tools.__path__[0]).glob("*.py"):
        assert len(path.read_text().splitlines()) <= 250, path.name


def test_no_package_imports_the_command_line():
    """tools/ sits on top: bench/, gui/, streamer/, models/ and radarstream/ never import it."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for pkg in ("bench", "gui", "streamer", "models", "radarstream"):
        for path in (root / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                assert not any(n == "tools" or n.startswith("tools.") for n in names), path


def test_handlers_that_moved_still_import_from_their_old_modules():
    import tools.cli
    import tools.cmd_bench
    import tools.cmd_gui
    import tools.cmd_record
    import tools.cmd_simulate

    assert tools.cli.cmd_bench_stream is tools.cmd_bench.cmd_bench_stream
    assert tools.cmd_record.cmd_simulate_file is tools.cmd_simulate.cmd_simulate
    assert tools.cmd_record.cmd_bench_record is tools.cmd_bench.cmd_bench_record
    assert tools.cmd_gui.cmd_bench_gui is tools.cmd_bench.cmd_bench_gui
    import argparse

    p = argparse.ArgumentParser()
    tools.cmd_record.add_bench_record_arguments(p)
    assert p.parse_args([]).func is tools.cmd_bench.cmd_bench_record
