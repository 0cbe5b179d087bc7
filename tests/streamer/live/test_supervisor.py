"""``serve --state-file`` and ``serve --supervise`` (issue 16 case 1): a killed or aborted serve is
restarted, continues its streams from the state file and reports what it missed as one gap per
sensor; a configuration error is not restarted; SIGTERM stops supervisor and child. Real
processes and sockets on 127.0.0.1."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from streamer.cluster import checkpoint as C
from streamer.live.backends import make_backend
from streamer.live.service import ConfigError, ServiceConfig, StreamService
from streamer.wire import protocol as P
from tests.faults import (
    Collector,
    Publisher,
    free_port,
    killing,
    serving,
    stop_process,
    wave,
)
from tools.supervise import default_state_file, exit_text

CLI = [sys.executable, "-m", "tools.cli"]
SENSORS = 2


def _samples(sensor: str, seq: int, k: int, n: int = 1, epoch: int = 7) -> list[bytes]:
    blk = P.make_block(P.Kind.SAMPLES, wave(seq, n, k), epoch=epoch, seq=seq, t0_ns=seq * 10_000_000,
                       period_ns=10_000_000)
    return P.encode_message(P.Message(P.Kind.SAMPLES, sensor, blk))


def _continued(weights, state: dict, sensor: str, k: int, seq0: int, n: int) -> np.ndarray:
    """The causal model (torch backend: not the one serve runs) from ``sensor``'s restored
    ``(h, c)`` over the publisher's samples ``seq0 .. seq0+n-1``."""
    backend = make_backend("torch", weights)
    v = state["sensors"][sensor]
    x = wave(seq0, n, k)
    if backend.input_size == 3:
        x = np.concatenate([x, np.full((n, 1), v["period_ns"] * 1e-9, np.float32)], 1)
    y, _, _ = backend.run(x[None], v["h"][:, None].copy(), v["c"][:, None].copy())
    return np.asarray(y[0])


# ------------------------------------------------------------------ the state file, in process


def test_a_restored_service_continues_and_reports_the_missed_samples_as_one_gap(tiny_weights, tmp_path):
    path = str(tmp_path / "serve.state")
    with serving(tiny_weights, state_file=path, rejoin_s=0.0) as (svc, feed, col):
        for seq in range(40):
            for k in range(SENSORS):
                feed.send_multipart(_samples(f"r{k}", seq, k))
        assert col.wait(lambda: all(len(col.preds(f"r{k}")) == 40 for k in range(SENSORS)), 20)
    state = C.decode(Path(path).read_bytes())  # written at the clean stop
    assert {s: v["next_seq"] for s, v in state.state["sensors"].items()} == {"r0": 40, "r1": 40}
    # the same file, a new service: the feed went on while nothing was serving (seq 40..59 lost)
    with serving(tiny_weights, state_file=path, rejoin_s=0.0) as (svc, feed, col):
        assert svc.restored == SENSORS
        for seq in range(60, 80):
            for k in range(SENSORS):
                feed.send_multipart(_samples(f"r{k}", seq, k))
        assert col.wait(lambda: all(len(col.preds(f"r{k}")) == 20 for k in range(SENSORS)), 20)
        for k in range(SENSORS):
            gaps = [m.meta for _, m in col.events("gap", f"r{k}")]
            assert [(g["from_seq"], g["to_seq"], g["count"], g["action"]) for g in gaps] == [(40, 59, 20, "continue")]
            assert not col.events("new_sensor", f"r{k}")
            y = np.array([col.preds(f"r{k}")[s][1][0] for s in range(60, 80)])
            assert np.abs(y - _continued(tiny_weights, state.state, f"r{k}", k, 60, 20)).max() < 1e-5


def test_a_damaged_state_file_starts_fresh_and_is_kept_aside(tiny_weights, tmp_path):
    path = tmp_path / "serve.state"
    path.write_bytes(b"RSCK\x01\x00garbage")
    with serving(tiny_weights, state_file=str(path), rejoin_s=0.0) as (svc, feed, col):
        assert svc.restored == 0 and svc.stats.health["state_file_bad"] == 1
        assert (tmp_path / "serve.state.bad").read_bytes() == b"RSCK\x01\x00garbage"
        feed.send_multipart(_samples("f", 0, 0))
        assert col.wait(lambda: len(col.preds("f")) == 1, 20)
    assert C.decode(path.read_bytes()).state["sensors"]["f"]["next_seq"] == 1  # a good file again


def test_a_state_file_of_another_model_is_refused_under_state_strict(tiny_weights, tmp_path):
    path = tmp_path / "serve.state"
    svc = StreamService(ServiceConfig(state_file=str(path)), make_backend("onnx", tiny_weights))
    meta = {**svc._state_meta(), "hidden": 999, "wall_s": time.time()}
    path.write_bytes(C.encode(C.Checkpoint(0, svc.get_state(), meta)))
    strict = StreamService(ServiceConfig(feeds=("tcp://127.0.0.1:1",), pub="tcp://127.0.0.1:*", state_file=str(path),
                                         state_strict=True), make_backend("onnx", tiny_weights))
    with pytest.raises(ConfigError, match="another model"):
        strict.run()
    assert path.exists()  # left where it is: the operator decides


# ------------------------------------------------------------------ the supervisor, real processes


class Supervised:
    """``serve --supervise`` in a process, its stderr in a file, a Collector on its output."""

    def __init__(self, tmp: Path, weights, *extra: str, feed: str | None = None):
        import zmq

        self.log_path = tmp / "supervise.log"
        self.pub = f"tcp://127.0.0.1:{free_port()}"
        args = [*CLI, "serve", "--supervise", "--pub", self.pub, "--weights", str(weights), "--stats-interval", "0.25",
                "--feed", feed or f"tcp://127.0.0.1:{free_port()}", *extra]
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed by close()
        self.proc = subprocess.Popen(args, cwd=tmp, stdout=self._log, stderr=subprocess.STDOUT)
        self.ctx = zmq.Context()
        self.col = Collector(self.ctx, self.pub)

    def text(self) -> str:
        return self.log_path.read_text()

    def child_pids(self) -> list[int]:
        return [int(p) for p in re.findall(r"serve child pid (\d+) started", self.text())]

    def wait_child(self, n: int, timeout: float = 60) -> int:
        """The pid of the n-th child (1-based), once it has published a stats message."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.child_pids()) < n:
            assert self.proc.poll() is None, self.text()
            time.sleep(0.05)
        assert len(self.child_pids()) >= n, self.text()
        return self.child_pids()[n - 1]

    def close(self) -> None:
        for pid in self.child_pids():  # never an orphan, whatever failed
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        stop_process(self.proc)
        self.col.close()
        self.ctx.term()
        self._log.close()


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _gone(pid: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{pid}"):  # reaped by the supervisor
            return True
        time.sleep(0.01)
    return False


def _sensors_in(path: Path) -> int:
    try:
        return len(C.decode(path.read_bytes()).state["sensors"])
    except (OSError, C.CheckpointError):
        return -1


def _kill_and_check(sup: Supervised, weights, state_path: Path, n: int, sig: int) -> None:
    """Kill the n-th child with ``sig``; the (n+1)-th must announce itself, continue every sensor
    from the state file the dead one left, and report the missed stretch as exactly one gap."""
    pid = sup.wait_child(n)
    col = sup.col
    before = {k: max(col.preds(f"s{k}"), default=-1) for k in range(SENSORS)}
    assert col.wait(lambda: all(max(col.preds(f"s{k}"), default=-1) >= before[k] + 20 for k in range(SENSORS)), 30), \
        sup.text()  # predictions flowing from this child
    assert col.wait(lambda: _sensors_in(state_path) == SENSORS, 30), sup.text()  # and its state written
    mark = len(col.msgs)
    os.kill(pid, sig)
    assert _gone(pid), sup.text()
    state = C.decode(state_path.read_bytes()).state  # what the next child loads (it writes only later)
    restored = {s: v["next_seq"] for s, v in state["sensors"].items()}
    assert set(restored) == {f"s{k}" for k in range(SENSORS)}
    assert col.wait(lambda: any(m.kind is P.Kind.EVENT and m.meta["type"] == "restarted"
                                for _, m in col.msgs[mark:]), 60), sup.text()
    new = [m for _, m in col.msgs[mark:]]
    ev = next(m.meta for m in new if m.kind is P.Kind.EVENT and m.meta["type"] == "restarted")
    assert ev["restarts"] == n and ev["last_exit"] == exit_text(-sig) and ev["restored"] == SENSORS, ev
    assert ev["downtime_s"] > 0 and ev["state_age_s"] >= 0
    assert f"died: {signal.Signals(sig).name}" in sup.text()
    at = next(i for i, m in enumerate(new) if m.kind is P.Kind.EVENT and m.meta["type"] == "restarted")

    def after(sensor: str) -> list[P.Message]:
        return [m for _, m in sup.col.msgs[mark:][at:] if m.sensor == sensor]

    for k in range(SENSORS):
        s = f"s{k}"
        assert col.wait(lambda s=s: sum(m.block.count for m in after(s) if m.kind is P.Kind.PRED) >= 30, 30), sup.text()
        msgs = after(s)
        gaps = [m.meta for m in msgs if m.kind is P.Kind.EVENT and m.meta["type"] == "gap"]
        preds = [m for m in msgs if m.kind is P.Kind.PRED]
        first = preds[0].block.seq
        assert [(g["from_seq"], g["to_seq"], g["action"]) for g in gaps] == [(restored[s], first - 1, "continue")], gaps
        assert not [m for m in msgs if m.kind is P.Kind.EVENT and m.meta["type"] in ("new_sensor", "backwards")]
        rows = np.concatenate([m.block.data[:, 0] for m in preds])[:30]
        seqs = np.concatenate([m.block.seq + np.arange(m.block.count) for m in preds])[:30]
        assert (seqs == np.arange(first, first + 30)).all()  # the stream continues, nothing else lost
        assert np.abs(rows - _continued(weights, state, s, k, first, 30)).max() < 1e-5


def test_supervisor_restarts_a_killed_and_an_aborted_serve_which_continues_from_its_state(tiny_weights, tmp_path, figures):
    feed = f"tcp://127.0.0.1:{free_port()}"
    pub = Publisher(feed, "--sensors", str(SENSORS), "--rate", "100")
    state_path = tmp_path / "serve.state"
    sup = None
    with killing([pub]):
        try:
            sup = Supervised(tmp_path, tiny_weights, "--state-file", str(state_path), "--state-every", "0.2",
                             "--max-gap", "1000000", feed=feed)
            _kill_and_check(sup, tiny_weights, state_path, 1, signal.SIGKILL)
            _kill_and_check(sup, tiny_weights, state_path, 2, signal.SIGABRT)
            figures["16.1 supervisor"] = [m.meta["downtime_s"] for _, m in sup.col.events("restarted")]
            # and a clean stop of the whole: SIGTERM to the supervisor, forwarded
            child = sup.wait_child(3)
            sup.proc.send_signal(signal.SIGTERM)
            assert sup.proc.wait(30) == 0, sup.text()
            assert not _alive(child)
            assert "Traceback" not in sup.text()
        finally:
            if sup is not None:
                sup.close()


def test_a_configuration_error_under_supervise_exits_2_without_a_restart(tiny_weights, tmp_path):
    proc = subprocess.run([*CLI, "serve", "--supervise", "--rcvhwm", "-5", "--weights", str(tiny_weights),
                           "--pub", "tcp://127.0.0.1:*"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 2, proc.stderr
    assert len(re.findall(r"serve child pid \d+ started", proc.stderr)) == 1, proc.stderr
    assert "restart" not in proc.stderr.replace("not restarted", "")
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == \
        ["error: rcvhwm must be >= 0 (0 = no limit), got -5"], proc.stderr


def test_sigterm_to_the_supervisor_stops_the_child_cleanly_and_writes_the_default_state_file(tiny_weights, tmp_path):
    sup = Supervised(tmp_path, tiny_weights)
    try:
        child = sup.wait_child(1)
        assert sup.col.wait(lambda: bool(sup.col.events("stats")), 60), sup.text()
        assert _alive(child)
        sup.proc.send_signal(signal.SIGTERM)
        assert sup.proc.wait(30) == 0, sup.text()
        assert _gone(child, 5)  # stopped, and reaped by the supervisor: no orphan
        assert "supervisor ends" in sup.text() and "died" not in sup.text()
        assert (tmp_path / default_state_file(sup.pub)).exists()  # the clean stop's state, where --help says
    finally:
        sup.close()


# ------------------------------------------------------------------ the restart policy, with stand-in children

CHILD = r"""
import json, os, signal, sys
info = json.loads(os.environ["RADARSTREAM_SUPERVISED"])
with open(sys.argv[1], "a") as fh:
    fh.write(json.dumps(info) + "\n")
plan = sys.argv[2].split(",")  # what life n does: abort, segv, exit3, exit0, exit2
what = plan[min(info["restarts"], len(plan) - 1)]
if what in ("abort", "segv"):
    os.kill(os.getpid(), signal.SIGABRT if what == "abort" else signal.SIGSEGV)
sys.exit(int(what[4:]))
"""


@pytest.mark.parametrize("plan, code, lives", [
    ("abort,segv,exit3,exit0", 0, 4),   # restarted after signals and a crash status, ends with the clean stop
    ("abort,exit2", 2, 2),              # a configuration error in a restarted child: passed through, no loop
    ("abort", 1, 4),                    # a crash loop: 3 restarts allowed, then the supervisor gives up
])
def test_restart_policy(tmp_path, plan, code, lives):
    from tools.supervise import SuperviseConfig, Supervisor

    lives_log = tmp_path / "lives.jsonl"
    sup = Supervisor([sys.executable, "-c", CHILD, str(lives_log), plan],
                     SuperviseConfig(backoff_s=0.01, backoff_max_s=0.04, max_restarts=3, restart_window_s=60))
    assert sup.run() == code
    import json

    infos = [json.loads(line) for line in lives_log.read_text().splitlines()]
    assert len(infos) == lives and [i["restarts"] for i in infos] == list(range(lives))
    expected = {"abort": "SIGABRT", "segv": "SIGSEGV", "exit3": "exit 3"}
    steps = plan.split(",")
    for i in infos[1:]:
        assert i["last_exit"] == expected[steps[min(i["restarts"] - 1, len(steps) - 1)]]
        assert i["died_at"] <= time.time()
