"""Bad settings and endpoints end in one ``error:`` line and exit 2, never a traceback (issue 16
case 13). Real CLI processes."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "tools.cli"]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args, says", [
    (["serve", "--pub", "foo"], "cannot bind 'foo'"),
    (["serve", "--feed", "tcp://nohost:x", "--pub", "tcp://127.0.0.1:*"], "cannot connect 'tcp://nohost:x'"),
    (["serve", "--rcvhwm", "-5"], "rcvhwm must be >= 0"),
    (["serve", "--max-samples", "0"], "max samples per message must lie in 1..65536"),
    (["serve", "--stats-interval", "0"], "stats interval must be > 0"),
    (["serve", "--lag-threshold", "0"], "must be > 0"),
    (["serve", "--no-hybrid", "--alert-dmin-m", "50"], "near-miss alerts need the hybrid"),
    (["serve", "--alert-dmin-m", "-1"], "positive number of metres"),
    (["serve", "--radar", "missing-profile.json"], "radar profile not found"),
    (["simulate", "--pub", "foo", "--duration", "1"], "cannot bind 'foo'"),
    (["record", "--feed", "foo", "--out", "x.mcap"], "cannot connect 'foo'"),
    (["serve", "--pub", "tcp://nohost:5555"], "cannot bind 'tcp://nohost:5555'"),
    (["serve", "--weights", "no-such-weights-dir", "--pub", "tcp://127.0.0.1:*"], "not found"),
])
def test_bad_settings_give_one_error_line_and_exit_2(args, says, tmp_path):
    args = [a if a != "x.mcap" else str(tmp_path / "x.mcap") for a in args]
    proc = run(*args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    err = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and says in err[0], proc.stderr


def test_a_port_in_use_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = run("serve", "--pub", f"tcp://127.0.0.1:{port}", "--feed", "tcp://127.0.0.1:1")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "address already in use" in proc.stderr


@pytest.mark.parametrize("command", ["simulate", "record"])
def test_a_busy_endpoint_is_a_clear_error_for_simulate_and_record(command, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        endpoint = f"tcp://127.0.0.1:{s.getsockname()[1]}"
        args = (["simulate", "--pub", endpoint, "--duration", "1"] if command == "simulate"
                else ["record", "--feed", "@" + endpoint, "--out", str(tmp_path / "x.mcap")])
        proc = run(*args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    err = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "address already in use" in err[0], proc.stderr


def _weights(tmp_path: Path, damage: str) -> Path:
    import shutil

    src = ROOT / "models" / "weights"
    out = tmp_path / damage
    out.mkdir()
    if damage != "empty":
        for f in src.glob("causal.*"):
            shutil.copy(f, out / f.name)
    if damage == "onnx":
        (out / "causal.onnx").write_bytes(b"garbage")
    elif damage == "safetensors":
        data = (out / "causal.safetensors").read_bytes()
        (out / "causal.safetensors").write_bytes(data[:1000])
    elif damage == "json":
        (out / "causal.json").write_text("{bad")
    return out


@pytest.mark.parametrize("damage, says", [("empty", "not found"), ("onnx", "not a valid ONNX file"),
                                          ("safetensors", "not a valid safetensors file"), ("json", "invalid JSON")])
def test_missing_or_damaged_weights_are_a_clear_error(tmp_path, damage, says):
    proc = run("serve", "--weights", str(_weights(tmp_path, damage)), "--pub", "tcp://127.0.0.1:*")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert says in proc.stderr
