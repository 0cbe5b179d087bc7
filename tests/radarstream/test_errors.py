"""One error root (radarstream.errors.RadarstreamError), caught once in the CLI's main."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from radarstream import RadarstreamError

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _domain_errors() -> list[type]:
    from gui.replay import ReplayUnavailable
    from models.profile import ProfileError
    from models.weights import UnsafeModelError, UnsafeWeightsError, WeightsError
    from streamer.sources.base import SourceError
    from streamer.offline.explain_windows import ExplainError
    from streamer.offline.scoring import ScoreError
    from streamer.recording.format import RecordingError
    from streamer.wire.security import SecurityError

    return [RecordingError, SecurityError, ScoreError, WeightsError, UnsafeWeightsError, UnsafeModelError,
            ReplayUnavailable, ProfileError, SourceError, ExplainError]


def test_every_domain_error_has_the_root_and_keeps_its_old_base():
    errors = _domain_errors()
    assert all(issubclass(e, RadarstreamError) for e in errors)
    kept = {e: ValueError for e in errors if e.__name__ in ("ProfileError", "SourceError")}
    for e in errors[1:]:  # each kept the built-in base it had, so `except RuntimeError` etc. still catch it
        assert issubclass(e, kept.get(e, RuntimeError)), e
    from tools.cmd_explain import ExplainError

    assert ExplainError is errors[-1]  # the old import path


def _cli(*args: str, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], capture_output=True, text=True, env=ENV,
                          cwd=ROOT, timeout=120)


def test_a_bad_recording_path_is_one_line_and_exit_2(tmp_path):
    res = _cli("recording", "info", str(tmp_path / "missing.mcap"))
    assert res.returncode == 2
    assert res.stderr.startswith("error: ") and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "missing.mcap" in res.stderr and "Traceback" not in res.stderr


def test_debug_shows_the_traceback(tmp_path):
    res = _cli("--debug", "recording", "info", str(tmp_path / "missing.mcap"))
    assert res.returncode == 2
    assert "Traceback" in res.stderr and "RecordingError" in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("error: ")
    after = _cli("recording", "info", str(tmp_path / "missing.mcap"), "--debug")  # also after the sub-command
    assert after.returncode == 2 and "Traceback" in after.stderr


def test_errors_from_every_family_take_the_same_road(tmp_path, capsys):
    from tools.cli import main

    cases = [
        (["export", "--weights", str(tmp_path)], "no weights"),  # RadarstreamError
        (["simulate", "--out", str(tmp_path / "x.mcap")], "--out needs --duration"),  # UsageError
        (["score", "--out", str(tmp_path / "x.txt"), "--simulate", "1"], "--out must end in"),  # ScoreError
        (["replay", str(tmp_path / "none.mcap")], "none.mcap"),  # RecordingError
        (["keys", "/proc/forbidden/keys"], "error: "),  # OSError
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and needle in err and "Traceback" not in err, (argv, err)


def test_a_bug_is_not_hidden(monkeypatch):
    """Anything outside the domain errors (and OSError/ValueError) keeps its traceback."""
    import tools.cmd_export as cmd

    def boom(args):
        raise KeyError("a bug")

    monkeypatch.setattr(cmd, "cmd_export", boom)
    from tools.cli import main

    with pytest.raises(KeyError):
        main(["export"])


def test_broken_pipe_exits_quietly(tmp_path):
    from streamer.recording.writer import simulate_to_file
    from streamer.sim.publisher import FeedConfig

    rec = tmp_path / "r.mcap"
    # output far beyond a pipe's buffer (64 KiB), so the writer is still writing when head exits
    simulate_to_file(rec, FeedConfig(sensors=1500, duration_s=0.1, seed=1, realtime=False))
    cli = subprocess.Popen([sys.executable, "-m", "tools.cli", "recording", "info", str(rec)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=ENV, cwd=ROOT)
    head = subprocess.run(["head", "-1"], stdin=cli.stdout, capture_output=True, timeout=120)
    cli.stdout.close()  # only head holds the read end now: when it exits, the pipe is broken
    err = cli.stderr.read().decode()
    cli.wait(timeout=120)
    assert head.stdout.decode().startswith("file: ")
    assert cli.returncode == 141, (cli.returncode, err)  # 128 + SIGPIPE: the pipe did break
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
