"""Ctrl-C pressed twice stops a command cleanly (issue 16.13): exit 0, the file finished.

Before, the second SIGINT could land while the interpreter was shutting down, after Python had put
the default handler back, and a clean run of ``simulate`` ended with status −2 (killed by SIGINT);
a second signal during a stop now only says the stop is still under way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamer.recording.reader import Recording
from tests.faults import free_port

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "tools.cli"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def _start(args: list[str], ready: str, stream: str) -> subprocess.Popen:
    proc = subprocess.Popen([*CLI, *args], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    pipe = proc.stdout if stream == "stdout" else proc.stderr
    deadline = time.monotonic() + 60
    for line in pipe:
        if ready in line:
            return proc
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise AssertionError(f"{args[0]} did not start: {proc.communicate()}")


def _interrupt_twice(proc: subprocess.Popen, gap_s: float) -> tuple[str, str]:
    proc.send_signal(signal.SIGINT)
    time.sleep(gap_s)
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=60)


@pytest.mark.parametrize("gap_s", [0.0, 0.03, 0.1])
def test_simulate_interrupted_twice_exits_0(gap_s):
    proc = _start(["simulate", "--pub", f"tcp://127.0.0.1:{free_port()}", "--duration", "60"], "simulating", "stdout")
    time.sleep(0.5)
    out, err = _interrupt_twice(proc, gap_s)
    assert proc.returncode == 0, (proc.returncode, err)
    assert "sent " in out and "Traceback" not in err


@pytest.mark.parametrize("gap_s", [0.0, 0.05])
def test_record_interrupted_twice_finishes_its_file(tmp_path, gap_s):
    pub = f"tcp://127.0.0.1:{free_port()}"
    sim = _start(["simulate", "--pub", pub, "--duration", "60", "--rate", "200"], "simulating", "stdout")
    path = tmp_path / "run.mcap"
    try:
        rec = _start(["record", "--feed", pub, "--out", str(path)], "recording", "stderr")
        time.sleep(1.5)
        out, err = _interrupt_twice(rec, gap_s)
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.communicate(timeout=60)
    assert rec.returncode == 0, (rec.returncode, err)
    assert "Traceback" not in err
    recording = Recording(path)  # indexed: summary and footer written
    assert sum(recording.message_counts.values()) > 0
