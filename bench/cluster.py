"""``radarstream bench cluster``: shards on Ray against one ``serve`` (docs/cluster.md).

Every part is a real process: nats-server (the cluster extra's binary), ``radarstream bridge``,
``radarstream cluster --address local`` (a Ray of its own), ``radarstream serve --backend fused``
for the reference, and a publisher subprocess (``python -m bench.cluster publish``) that stamps
each message with the wall clock when it sends it. Measured:

* **capacity** with 1 and 2 shards: the same backlog (sensors × seconds at 20 Hz, appended to a
  fresh log before the cluster starts) served as fast as the shards can; samples/s and the
  scaling ratio;
* **latency** live at 20 Hz: publish → prediction received by a client of the proxy, p50 / p99,
  for ``serve`` and for the cluster (2 shards); the added latency is the difference;
* **bridge crash**: one bridge SIGKILLed and restarted (samples missing from the log = its loss
  window), and one of two bridges on the same feed SIGKILLed (must lose none);
* **failover**: the worker of shard 0 SIGKILLed mid-run: seconds from the kill to the first new
  prediction of one of its sensors, samples lost (log keys without a prediction: must be 0),
  duplicate rows published (the replay after the checkpoint), and whether every duplicate is
  identical.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONWARNINGS": "ignore",
       "RAY_AUTH_MODE": "disabled"}  # a throw-away local cluster (Ray would otherwise write ~/.ray/auth_token)


@dataclass(frozen=True)
class ClusterBenchConfig:
    sensors: int = 200
    """Sensors at 20 Hz (one sample per message) in the live runs."""
    duration_s: float = 20.0
    """Seconds of each live run."""
    backlog_s: float = 30.0
    """Seconds of 20 Hz data per sensor in the capacity backlog."""
    checkpoint_interval_s: float = 0.5


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(tmp: Path, name: str, args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=open(tmp / f"{name}.log", "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def messages(sensors: int, n: int, seed: int = 0, epoch: int = 1):
    """``n`` 20-Hz samples of each simulated sensor: yields per tick the (topic, x [1, 2]) pairs."""
    from streamer.sim.simulator import RadarConfig, StreamSimulator, sensor_seeds

    sims = [StreamSimulator(RadarConfig(), s) for s in sensor_seeds(seed, sensors)]
    data = [sim.read(n).samples for sim in sims]
    for k in range(n):
        yield [(f"radar-{j}", data[j][k:k + 1]) for j in range(sensors)]


def publish_main(argv: list[str]) -> None:
    """The publisher subprocess: binds an XPUB, waits for ``--subscribers`` subscriptions, then sends
    every sensor's sample each 50 ms, stamped with the wall clock at send time."""
    import zmq

    from streamer.wire import protocol as P

    ap = argparse.ArgumentParser()
    ap.add_argument("endpoint")
    ap.add_argument("--sensors", type=int, default=100)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--subscribers", type=int, default=1)
    a = ap.parse_args(argv)
    sock = zmq.Context().socket(zmq.XPUB)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.bind(a.endpoint)
    seen = 0
    while seen < a.subscribers:
        if sock.recv()[:1] == b"\x01":
            seen += 1
    epoch, period, n = time.time_ns(), 50_000_000, int(a.duration * 20)
    print("subscribed", epoch, flush=True)
    start = time.perf_counter()
    for seq, tick in enumerate(messages(a.sensors, n)):
        delay = start + seq * 0.05 - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        for sensor, x in tick:
            blk = P.Block(P.Kind.SAMPLES, epoch, seq, time.time_ns(), period, x)
            sock.send_multipart([P.topic(P.Kind.SAMPLES, sensor), P.encode_block(blk)])
        while sock.poll(0):
            sock.recv()
    print("sent", n, flush=True)
    sock.close(linger=5000)


class Client:
    """A SUB on an output endpoint: (wall ns at receipt, frames) of everything."""

    def __init__(self, endpoint: str):
        import zmq

        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(endpoint)
        self.got: list[tuple[int, list[bytes]]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        import zmq

        while not self._stop.is_set():
            if self.sock.poll(50):
                while True:
                    try:
                        frames = self.sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self.got.append((time.time_ns(), frames))

    def events(self, type_: str) -> list[dict]:
        from streamer.wire import protocol as P

        return [m.meta for _, f in list(self.got) if f[0] == b"event/_service"
                for m in [P.decode_message(f)] if m.meta.get("type") == type_]

    def preds(self) -> list[tuple[int, str, int, int, np.ndarray]]:
        """(received wall ns, sensor, epoch, first seq, data) of every pred message."""
        from streamer.wire import protocol as P

        out = []
        for t, f in list(self.got):
            if f[0].startswith(b"pred/"):
                m = P.decode_message(f)
                out.append((t, m.sensor, m.block.epoch, m.block.seq, m.block.t0_ns, m.block.data))
        return out

    def wait(self, cond, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not cond():
            time.sleep(0.1)
        return cond()

    def close(self) -> None:
        self._stop.set()
        self._t.join(5)
        self.sock.close(0)
        self.ctx.term()


def _first(preds):
    """Each (sensor, seq) once, as first received (a replayed row is not a new prediction)."""
    seen, out = set(), []
    for p in preds:
        if (p[1], p[3]) not in seen:
            seen.add((p[1], p[3]))
            out.append(p)
    return out


def _latency_ms(preds) -> tuple[float, float]:
    lat = np.array([(t - t0) * 1e-6 for t, _, _, _, t0, _ in preds])
    return float(np.percentile(lat, 50)), float(np.percentile(lat, 99))


def _capacity(preds, shards: int, total: int, ok: bool) -> dict:
    """Samples/s of the shards together: each shard's samples over the time from its first to its
    last prediction, summed (the shards start a second or two apart: a common window would
    measure that skew). On a machine with a core per shard, the shards run side by side."""
    from streamer.cluster.partitions import shard_of

    by: dict[int, list] = {}
    for t, s, _, _, _, d in _first(preds):
        by.setdefault(shard_of(s, shards), []).append((t, d.shape[0]))
    rates = [sum(c for _, c in v) / max((v[-1][0] - v[0][0]) * 1e-9, 1e-9) for v in by.values()]
    return {"samples": total, "served": sum(c for v in by.values() for _, c in v),
            "per_shard": [round(r) for r in rates], "samples_per_s": sum(rates) if ok else float("nan")}


def _cluster(tmp: Path, name: str, url: str, shards: int, out: str, cfg: ClusterBenchConfig) -> subprocess.Popen:
    return _spawn(tmp, name, [sys.executable, "-m", "tools.cli", "cluster", "--address", "local", "--shards",
                              str(shards), "--log", url, "--pub", out, "--checkpoint-interval",
                              str(cfg.checkpoint_interval_s), "--name", name])


def run(cfg: ClusterBenchConfig, progress=print) -> dict:
    from streamer.cluster.log import IntakeLog
    from streamer.wire import protocol as P

    res: dict = {"config": cfg}
    with tempfile.TemporaryDirectory(prefix="rs-bench-cluster-") as td:
        tmp = Path(td)
        nats_port = _port()
        store = tmp / "nats"
        nats = _spawn(tmp, "nats", [str(BIN / "nats-server"), "-js", "-a", "127.0.0.1", "-p", str(nats_port),
                                    "-sd", str(store)])
        base = f"nats://127.0.0.1:{nats_port}"
        procs: list[subprocess.Popen] = []
        try:
            time.sleep(1.0)
            # capacity: the same backlog through 1 and 2 shards
            n = int(cfg.backlog_s * 20)
            for shards in (1, 2):
                url = f"{base}/cap{shards}"
                lg = IntakeLog(url)
                batch = []
                for seq, tick in enumerate(messages(cfg.sensors, n)):
                    for sensor, x in tick:
                        blk = P.Block(P.Kind.SAMPLES, 1, seq, seq * 50_000_000, 50_000_000, x)
                        batch.append([P.topic(P.Kind.SAMPLES, sensor), P.encode_block(blk)])
                    if len(batch) >= 4096:
                        lg.append(batch)
                        batch = []
                if batch:
                    lg.append(batch)
                lg.close()
                out = f"tcp://127.0.0.1:{_port()}"
                client = Client(out)
                proc = _cluster(tmp, f"cap{shards}", url, shards, out, cfg)
                procs.append(proc)
                total = cfg.sensors * n
                count = lambda: sum(d.shape[0] for *_, d in client.preds())  # noqa: E731
                ok = client.wait(lambda: count() >= total, 600)
                res[f"capacity_{shards}"] = _capacity(client.preds(), shards, total, ok)
                progress(f"capacity with {shards} shard(s): {res[f'capacity_{shards}']}")
                _stop(proc)
                client.close()
            res["scaling"] = res["capacity_2"]["samples_per_s"] / res["capacity_1"]["samples_per_s"]
            res["bridge"] = _bridge_loss(tmp, base, cfg)
            progress(f"bridge crash: {res['bridge']}")
            # latency: serve, then the cluster (2 shards, with a worker killed midway)
            for mode in ("serve", "cluster"):
                feed, out = f"tcp://127.0.0.1:{_port()}", f"tcp://127.0.0.1:{_port()}"
                client = Client(out)
                url = f"{base}/live"
                if mode == "serve":
                    svc = _spawn(tmp, "serve", [sys.executable, "-m", "tools.cli", "serve", "--backend", "fused",
                                                "--feed", feed, "--pub", out])
                    procs.append(svc)
                    client.wait(lambda: bool(client.events("stats")), 120)
                else:
                    procs.append(_cluster(tmp, "live", url, 2, out, cfg))
                    client.wait(lambda: len(client.events("shard_started")) >= 2, 300)
                    procs.append(_spawn(tmp, "bridge", [sys.executable, "-m", "tools.cli", "bridge", "--feed", feed,
                                                        "--log", url]))
                pub = subprocess.Popen([sys.executable, "-m", "bench.cluster", "publish", feed, "--sensors",
                                        str(cfg.sensors), "--duration", str(cfg.duration_s)], cwd=ROOT, env=ENV,
                                       stdout=subprocess.PIPE, text=True, start_new_session=True)
                procs.append(pub)
                assert pub.stdout.readline().startswith("subscribed")
                kill_ns = None
                if mode == "cluster":
                    time.sleep(cfg.duration_s / 2)
                    pid = next(e["pid"] for e in client.events("shard_started") if e["shard"] == 0)
                    kill_ns = time.time_ns()
                    os.kill(pid, signal.SIGKILL)
                assert pub.stdout.readline().startswith("sent")
                want = cfg.sensors * int(cfg.duration_s * 20)
                client.wait(lambda: len({(s, q + k) for _, s, _, q, _, d in client.preds() for k in range(d.shape[0])})
                            >= want, 120)
                time.sleep(1.0)
                preds = client.preds()
                steady = [p for p in preds if kill_ns is None or p[4] < kill_ns]  # the failover apart
                p50, p99 = _latency_ms(_first(steady))
                r = {"p50_ms": p50, "p99_ms": p99}
                if mode == "cluster":
                    r.update(_failover(preds, kill_ns, url, client))
                res[mode] = r
                progress(f"{mode}: {r}")
                for proc in procs[-3:][::-1]:
                    _stop(proc)
                client.close()
        finally:
            for proc in procs[::-1]:
                _stop(proc)
            _stop(nats)
    return res


def _log_keys(url: str) -> set[tuple[str, int]]:
    """(sensor, seq) of every sample the log holds."""
    from streamer.cluster.log import IntakeLog
    from streamer.wire import protocol as P

    lg = IntakeLog(url)
    reader = lg.reader(list(range(lg.partitions)), 0)
    keys = set()
    while recs := reader.fetch(4096, 0.5):
        for r in recs:
            m = P.decode_message(r.frames)
            if isinstance(m, P.Message) and m.kind is P.Kind.SAMPLES:
                keys.update((m.sensor, m.block.seq + k) for k in range(m.block.count))
    lg.close()
    return keys


def _bridge_loss(tmp: Path, base: str, cfg: ClusterBenchConfig) -> dict:
    """A bridge SIGKILLed halfway through a live run and restarted at once (1 bridge), or
    killed beside a second bridge on the same feed (2 bridges): samples missing from the log."""
    out = {}
    for bridges in (1, 2):
        url, feed = f"{base}/bridge{bridges}", f"tcp://127.0.0.1:{_port()}"
        cmd = [sys.executable, "-m", "tools.cli", "bridge", "--feed", feed, "--log", url]
        procs = [_spawn(tmp, f"bridge{bridges}-{k}", cmd) for k in range(bridges)]
        pub = subprocess.Popen([sys.executable, "-m", "bench.cluster", "publish", feed, "--sensors", str(cfg.sensors),
                                "--duration", str(cfg.duration_s), "--subscribers", str(bridges)], cwd=ROOT, env=ENV,
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
        try:
            assert pub.stdout.readline().startswith("subscribed")
            time.sleep(cfg.duration_s / 2)
            procs[0].kill()
            procs[0].wait()
            if bridges == 1:
                procs.append(_spawn(tmp, "bridge1-again", cmd))
            assert pub.stdout.readline().startswith("sent")
            time.sleep(2.0)
        finally:
            for proc in [pub, *procs]:
                _stop(proc)
        lost = cfg.sensors * int(cfg.duration_s * 20) - len(_log_keys(url))
        out[bridges] = {"lost": lost, "window_s": lost / (cfg.sensors * 20.0)}
    return out


def _failover(preds, kill_ns: int, url: str, client: Client) -> dict:
    from streamer.cluster.log import IntakeLog
    from streamer.cluster.partitions import shard_of
    from streamer.wire import protocol as P

    rows: dict[tuple[str, int], list[np.ndarray]] = {}
    first_seen: dict[tuple[str, int], int] = {}
    for t, s, _, q, _, d in preds:
        for k in range(d.shape[0]):
            row = d[k].copy()
            row[2] = 0.0
            rows.setdefault((s, q + k), []).append(row)
            first_seen.setdefault((s, q + k), t)
    after = [t for (s, _), t in first_seen.items() if shard_of(s, 2) == 0 and t > kill_ns]
    keys = _log_keys(url)
    dups = sum(len(v) - 1 for v in rows.values())
    identical = all(all(np.array_equal(x.view(np.uint32), v[0].view(np.uint32)) for x in v) for v in rows.values())
    serving = [e for e in client.events("shard_serving") if e["shard"] == 0]
    return {"served_again_s": (min(after) - kill_ns) * 1e-9 if after else float("nan"), "lost": len(keys - set(rows)),
            "log_samples": len(keys), "duplicates": dups, "duplicates_identical": identical,
            "reported_down_s": serving[-1]["down_s"] if serving else None}


def markdown(res: dict, command: str, machine: str) -> str:
    cfg, c1, c2, sv, cl = res["config"], res["capacity_1"], res["capacity_2"], res["serve"], res["cluster"]
    br = res["bridge"]
    return "\n".join([
        "## Cluster: shards on Ray over the JetStream log (issue 18)", "",
        f"Command: `{command}` ({machine}). Real processes: nats-server, `radarstream bridge`, `radarstream cluster "
        f"--address local` (fused backend, checkpoint every {cfg.checkpoint_interval_s:g} s), `serve --backend fused`; "
        "docs/cluster.md.", "",
        "| figure | 1 shard | 2 shards |", "|---|---|---|",
        f"| capacity: backlog of {cfg.sensors} sensors × {cfg.backlog_s:g} s at 20 Hz, samples/s | "
        f"{c1['samples_per_s']:,.0f} | {c2['samples_per_s']:,.0f} (×{res['scaling']:.2f}) |", "",
        f"Live, {cfg.sensors} sensors at 20 Hz for {cfg.duration_s:g} s (publish → client, wall clock):", "",
        "| | p50 ms | p99 ms |", "|---|---|---|",
        f"| `serve` (one process) | {sv['p50_ms']:.1f} | {sv['p99_ms']:.1f} |",
        f"| cluster, 2 shards (bridge → log → shard → proxy) | {cl['p50_ms']:.1f} | {cl['p99_ms']:.1f} |",
        f"| added by the cluster | {cl['p50_ms'] - sv['p50_ms']:+.1f} | {cl['p99_ms'] - sv['p99_ms']:+.1f} |", "",
        f"Failover (shard 0's worker SIGKILLed at {cfg.duration_s / 2:g} s): its partitions served again after "
        f"**{cl['served_again_s']:.2f} s** (driver's report: {cl['reported_down_s']} s down); samples lost "
        f"**{cl['lost']}** of {cl['log_samples']:,}; duplicate rows published {cl['duplicates']:,} "
        f"({'all identical' if cl['duplicates_identical'] else 'NOT all identical'}).", "",
        f"Bridge crash (SIGKILL halfway, same live load): one bridge, restarted at once: **{br[1]['lost']:,}** samples "
        f"lost (a window of {br[1]['window_s']:.2f} s of the feed); two bridges on the feed, one killed: "
        f"**{br[2]['lost']:,}** lost.",
    ])


def add_arguments(p: argparse.ArgumentParser, prog: str) -> None:
    """Flags and handler of ``radarstream bench cluster`` (wired in tools/cmd_bench.py)."""
    d = ClusterBenchConfig()
    p.add_argument("--sensors", type=int, default=d.sensors, help=f"sensors at 20 Hz (default {d.sensors})")
    p.add_argument("--duration", type=float, default=d.duration_s, help=f"seconds per live run (default {d.duration_s:g})")
    p.add_argument("--backlog", type=float, default=d.backlog_s,
                   help=f"seconds of data per sensor in the capacity backlog (default {d.backlog_s:g})")
    p.add_argument("--doc", default="docs/benchmarks.md", help="markdown file to update (section 'cluster')")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.set_defaults(func=_cmd, bench_prog=prog)


def _cmd(args: argparse.Namespace) -> int:
    from bench.doc import command_line, machine_line, write_section
    from streamer.cluster.driver import require_extra

    require_extra()
    d = ClusterBenchConfig()
    cfg = ClusterBenchConfig(sensors=args.sensors, duration_s=args.duration, backlog_s=args.backlog)
    res = run(cfg, progress=lambda m: print(m, flush=True))
    body = markdown(res, command_line(args.bench_prog, [("--sensors", cfg.sensors, d.sensors),
                                                        ("--duration", cfg.duration_s, d.duration_s),
                                                        ("--backlog", cfg.backlog_s, d.backlog_s)]), machine_line())
    print(body)
    write_section("cluster", body, args.doc, write=not args.no_write)
    return 0 if res["cluster"]["lost"] == 0 else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["publish"]:
        publish_main(sys.argv[2:])
