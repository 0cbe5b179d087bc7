"""Real processes for the cluster tests: nats-server, Ray nodes on loopback addresses, the bridge
and the cluster driver (the CLI), a collector on the proxy, and the single-process reference.

Every process is started with its own session and stopped by its PID (its process group for a Ray
node: raylet, workers and agents die with it); ``ray start --block`` cleans its node up on SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import zmq

from streamer.wire import protocol as P
from tests.faults import ROOT, free_port, stop_process

BIN = Path(sys.executable).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONWARNINGS": "ignore",
       "RAY_AUTH_MODE": "disabled",  # a local ray.init() leaves ~/.ray/auth_token; the test cluster uses none
       "RAY_DEDUP_LOGS": "0"}


def nats_binary() -> str | None:
    exe = BIN / "nats-server"
    return str(exe) if exe.exists() else shutil.which("nats-server")


def start_nats(tmp: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    store = tmp / "nats"
    store.mkdir(exist_ok=True)
    proc = subprocess.Popen([nats_binary(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)],
                            stdout=open(tmp / "nats.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 20
    while "Server is ready" not in (tmp / "nats.log").read_text():
        assert proc.poll() is None and time.monotonic() < deadline, (tmp / "nats.log").read_text()
        time.sleep(0.05)
    return proc, f"nats://127.0.0.1:{port}"


WORKER_PORTS = 40


def _node_ports(head_port: int | None) -> list[int]:
    """Four agent ports, the first worker port and a client-server port, none of them inside the
    worker range [w, w + WORKER_PORTS] (Ray refuses a configuration whose ports overlap: a
    random free port fell into that range once in a CI-sized run) nor equal to the head's port."""
    while True:
        ports = [free_port() for _ in range(6)]
        w = ports[4]
        others = [*ports[:4], ports[5], *([head_port] if head_port else [])]
        if len(set(ports)) == 6 and not any(w <= q <= w + WORKER_PORTS for q in others):
            return ports


class RayNode:
    """``ray start --block`` on one loopback address (a node of its own), in its own session."""

    def __init__(self, tmp: Path, ip: str, *, head_port: int | None = None, head: str | None = None, cpus: int = 0):
        ports = _node_ports(head_port)
        self.ip, self.log = ip, tmp / f"ray-{ip}.log"
        args = [str(BIN / "ray"), "start", "--block", f"--node-ip-address={ip}", f"--num-cpus={cpus}",
                f"--temp-dir={tmp / 'ray'}", "--disable-usage-stats", f"--dashboard-agent-listen-port={ports[0]}",
                f"--dashboard-agent-grpc-port={ports[1]}", f"--runtime-env-agent-port={ports[2]}",
                f"--metrics-export-port={ports[3]}", f"--min-worker-port={ports[4]}", f"--max-worker-port={ports[4] + WORKER_PORTS}"]
        if head is None:
            self.address = f"{ip}:{head_port}"
            args += ["--head", f"--port={head_port}", "--include-dashboard=false",
                     f"--ray-client-server-port={ports[5]}"]
        else:
            self.address = head
            args += [f"--address={head}"]
        self.proc = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=open(self.log, "w"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 90
        while "Ray runtime started" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(self.log.read_text()[-3000:])
            time.sleep(0.1)

    def kill(self) -> None:
        """The whole node at once: SIGKILL to its process group (raylet, workers, agents)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # ray start --block stops its node's processes on SIGTERM
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        try:  # anything of the node left behind (workers in the group)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.wait(10)


def cli(tmp: Path, name: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tools.cli", *args], cwd=ROOT, env=ENV,
                            stdout=open(tmp / f"{name}.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)


class Output:
    """Every message the proxy publishes, raw, in arrival order (decoded when the test looks)."""

    def __init__(self, endpoint: str):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(endpoint)
        self.raw: list[list[bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.sock.poll(50):
                while True:
                    try:
                        self.raw.append(self.sock.recv_multipart(zmq.NOBLOCK))
                    except zmq.Again:
                        break

    def events(self, type_: str) -> list[dict]:
        out = []
        for frames in list(self.raw):
            if frames[0] == b"event/_service":
                m = P.decode_message(frames)
                if m.meta.get("type") == type_:
                    out.append(m.meta)
        return out

    def rows(self) -> dict[tuple[str, int, int], list[np.ndarray]]:
        """(sensor, epoch, seq) -> every pred row published for it (latency channel zeroed)."""
        out: dict = {}
        for frames in list(self.raw):
            if frames[0].startswith(b"pred/"):
                m = P.decode_message(frames)
                for k in range(m.block.count):
                    row = m.block.data[k].copy()
                    row[2] = 0.0
                    out.setdefault((m.sensor, m.block.epoch, m.block.seq + k), []).append(row)
        return out

    def wait(self, cond, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            time.sleep(0.1)
        return cond()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close(0)
        self.ctx.term()


def log_records(url: str) -> list[list[bytes]]:
    """Everything the log holds, in log order (all partitions)."""
    from streamer.cluster.log import IntakeLog

    lg = IntakeLog(url)
    try:
        reader = lg.reader(list(range(lg.partitions)), 0)
        out = []
        while True:
            recs = reader.fetch(4096, 0.5)
            if not recs:
                return out
            out += [r.frames for r in recs]
    finally:
        lg.close()


class _Sink:
    def __init__(self):
        self.frames: list[list[bytes]] = []
        self._cur: list[bytes] = []

    def send(self, f, flags=0, copy=True):
        self._cur.append(bytes(f))
        if not flags & zmq.SNDMORE:
            self.frames.append(self._cur)
            self._cur = []

    def send_multipart(self, frames, copy=True):
        self.frames.append([bytes(f) for f in frames])


def reference_rows(records: list[list[bytes]], backend: str = "fused") -> dict[tuple[str, int, int], np.ndarray]:
    """What one ``serve`` (the same service, one process) publishes for these messages, one drain
    per message: (sensor, epoch, seq) -> row, latency zeroed."""
    from streamer.cluster.shard import ShardConfig, make_service

    svc = make_service(ShardConfig(shard=0, shards=1, log_url="", proxy="", backend=backend))
    sink = _Sink()
    for frames in records:
        svc.handle([frames], [time.perf_counter_ns()], sink)
    out = {}
    for frames in sink.frames:
        if frames[0].startswith(b"pred/"):
            m = P.decode_message(frames)
            for k in range(m.block.count):
                row = m.block.data[k].copy()
                row[2] = 0.0
                out[(m.sensor, m.block.epoch, m.block.seq + k)] = row
    return out


def stop_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        stop_process(p, timeout=20)
