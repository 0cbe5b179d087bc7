"""One shard: the partitions it owns, read from the intake log, through the same drain as ``serve``.

A :class:`Shard` builds the same backend and ``StreamService`` as ``radarstream serve`` and calls
the service's own drain (``StreamService.handle``) on each batch of log records, so decoding,
the stream policy, batching, the hybrid, events and the ``pred`` encoding are serve's, byte for
byte. It never opens the service's sockets: its output is an XPUB socket connected to the
cluster's proxy (streamer/cluster/proxy.py).

Checkpoint before the batch: before a batch is processed, the shard snapshots its service's state
together with the log position of the last record already processed, and it *writes* the
previous snapshot (one interval older) to the log's object store. So a checkpoint on the server
never covers a record whose outputs were not sent one batch earlier (and have had the time of a
whole batch to leave the process): a shard that dies at any point resumes from its checkpoint,
replays the records after it and republishes their outputs, identical (the backend, ``fused``,
is invariant to how a stream is split and batched; docs/cluster.md) — never misses one.

:class:`ShardActor` (``actor_class``) hosts a shard in a Ray actor restarted on failure.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass, replace

import zmq

from streamer.cluster import checkpoint as C
from streamer.cluster.partitions import PARTITIONS, shard_partitions
from streamer.wire import protocol as P

log = logging.getLogger("radarstream.cluster.shard")


@dataclass(frozen=True)
class ShardConfig:
    shard: int
    shards: int
    log_url: str
    proxy: str
    """The proxy's XSUB endpoint (the shard connects)."""
    partitions: int = PARTITIONS
    start_after: int = 0
    """Log position to start from when the shard has no checkpoint (the cluster resolves
    ``--from new`` to the log's last sequence number once, at launch)."""
    backend: str = "fused"
    weights: str | None = None
    radar: str | None = None
    hybrid: bool = True
    domain_check: bool = True
    alert_dmin_m: float | None = None
    max_drain: int = 4096
    poll_s: float = 0.05
    checkpoint_interval_s: float = 0.0
    """Seconds between checkpoints (each taken before a batch); 0: before every batch."""
    stats_interval_s: float = 1.0
    run_tag: str = ""
    """Names the checkpoints (``<run_tag>shard-<k>-of-<N>``): one cluster's, not another's."""

    @property
    def checkpoint_name(self) -> str:
        return f"{self.run_tag}shard-{self.shard}-of-{self.shards}"


def make_service(cfg: ShardConfig):
    """The backend and ``StreamService`` that ``serve`` would build for these options."""
    from streamer.live.alerts import AlertConfig
    from streamer.live.backends import make_backend
    from streamer.live.service import ServiceConfig, StreamService

    backend = make_backend(cfg.backend, cfg.weights, threads=1, profile=cfg.radar)
    scfg = ServiceConfig(feeds=("inproc://unused",), pub="inproc://unused", hybrid=cfg.hybrid,
                         domain_check=cfg.domain_check, max_drain=cfg.max_drain, stats_interval_s=cfg.stats_interval_s,
                         alert=AlertConfig(cfg.alert_dmin_m) if cfg.alert_dmin_m is not None else None, gc_freeze=False)
    return StreamService(scfg, backend, weights_dir=cfg.weights)


class Shard:
    """Log records of the shard's partitions → the service's drain → XPUB to the proxy."""

    def __init__(self, cfg: ShardConfig, *, restarts: int = 0, context: zmq.Context | None = None):
        from streamer.cluster.log import IntakeLog

        self.cfg = cfg
        self.restarts = restarts
        self.owned = shard_partitions(cfg.shard, cfg.shards, cfg.partitions)
        self.service = make_service(cfg)
        self.log = IntakeLog(cfg.log_url, partitions=cfg.partitions)
        self.position = cfg.start_after
        self.restored: C.Checkpoint | None = None
        data = self.log.get_checkpoint(cfg.checkpoint_name)
        if data is not None:
            self.restored = C.decode(data)
            self.service.set_state(self.restored.state)
            self.position = self.restored.position
        self.ctx = context or zmq.Context()
        self.pub = self.ctx.socket(zmq.XPUB)
        self.pub.setsockopt(zmq.SNDHWM, 0)
        self.pub.setsockopt(zmq.LINGER, 2000)
        self.pub.connect(cfg.proxy)
        self._stop = threading.Event()
        self.batches = self.records = self.checkpoints = 0
        self.checkpoint_ms: list[float] = []
        self.started = time.monotonic()
        self.serving_since: float | None = None
        self.error: str | None = None

    def stop(self) -> None:
        self._stop.set()

    def _wait_for_proxy(self, timeout_s: float = 30.0) -> bool:
        """Until the proxy's subscription arrives (the connection is up): what is sent before
        would be dropped by PUB/SUB."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._stop.is_set():
            if self.pub.poll(100):
                self.pub.recv()
                return True
        return False

    def _event(self, type_: str, **fields) -> None:
        msg = P.make_event("_service", type_, epoch=0, seq=self.position, t_ns=time.time_ns(), shard=self.cfg.shard,
                           shards=self.cfg.shards, pid=os.getpid(), node=_node_ip(), **fields)
        self.pub.send_multipart(P.encode_message(msg))

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001 - reported, then the actor dies and Ray restarts it
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("shard %d failed", self.cfg.shard)
            os._exit(3)
        finally:
            self.pub.close()

    def _run(self) -> None:
        cfg = self.cfg
        if not self._wait_for_proxy():
            raise RuntimeError(f"no subscription from the proxy at {cfg.proxy} within 30 s")
        r = self.restored
        if r is not None or self.restarts:
            self._event("shard_recovered", restarts=self.restarts, checkpoint_position=self.position,
                        checkpoint_age_s=round(time.time() - r.meta["wall_s"], 3) if r is not None else None,
                        replay_from=self.position + 1, sensors=len(self.service.engine.sensors))
        else:
            self._event("shard_started", partitions=len(self.owned), replay_from=self.position + 1)
        reader = self.log.reader(self.owned, self.position)
        self.serving_since = time.monotonic()
        svc = self.service
        pending: bytes | None = None
        next_ckpt = 0.0
        next_stats = time.monotonic() + cfg.stats_interval_s
        meta = {"shard": cfg.shard, "shards": cfg.shards, "partitions": cfg.partitions}
        while not self._stop.is_set():
            recs = reader.fetch(cfg.max_drain, cfg.poll_s)
            now = time.monotonic()
            while self.pub.poll(0):  # subscriptions forwarded by the proxy
                self.pub.recv()
            if recs:
                if now >= next_ckpt:  # before the batch: state and position of what is already sent
                    t = time.perf_counter()
                    snap = C.encode(C.Checkpoint(self.position, svc.get_state(), {**meta, "wall_s": time.time()}))
                    if pending is not None:
                        self.log.put_checkpoint(cfg.checkpoint_name, pending)
                        self.checkpoints += 1
                    pending, next_ckpt = snap, now + cfg.checkpoint_interval_s
                    self.checkpoint_ms.append((time.perf_counter() - t) * 1e3)
                recv = time.perf_counter_ns()
                svc.handle([x.frames for x in recs], [recv] * len(recs), self.pub)
                self.position = recs[-1].seq
                self.batches += 1
                self.records += len(recs)
            if now >= next_stats:
                next_stats = now + cfg.stats_interval_s
                self._stats(now)

    def _stats(self, now: float) -> None:
        svc = self.service
        body = svc.snapshot(now)
        s = svc.stats
        s.last_emit, s.last_samples, s.last_messages = now, s.samples, s.messages
        s.latencies_us.clear()
        s.sample_age_ms.clear()
        ck = sorted(self.checkpoint_ms)
        self.checkpoint_ms.clear()
        body.pop("type")
        self._event("stats", **body, position=self.position, batches=self.batches, records=self.records,
                    checkpoints=self.checkpoints, restarts=self.restarts, partitions=len(self.owned),
                    checkpoint_ms={"p50": round(ck[len(ck) // 2], 3) if ck else None,
                                   "max": round(ck[-1], 3) if ck else None})

    def status(self) -> dict:
        return {"shard": self.cfg.shard, "pid": os.getpid(), "node": _node_ip(), "position": self.position,
                "records": self.records, "batches": self.batches, "restarts": self.restarts,
                "serving": self.serving_since is not None, "error": self.error}


def _node_ip() -> str:
    try:
        import ray

        if ray.is_initialized():
            return ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - outside Ray
        pass
    return socket.gethostname()


def actor_class(ray):
    """The Ray actor class hosting one :class:`Shard` (restarted by Ray on failure)."""

    class ShardActor:
        def __init__(self, cfg: dict):
            os.environ.setdefault("OMP_NUM_THREADS", "1")
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
            ctx = ray.get_runtime_context()
            restarts = 1 if ctx.was_current_actor_reconstructed else 0
            self.shard = Shard(ShardConfig(**cfg), restarts=restarts)
            self.thread = threading.Thread(target=self.shard.run, name=f"shard-{cfg['shard']}", daemon=True)
            self.thread.start()

        def status(self) -> dict:
            return self.shard.status()

        def stop(self) -> bool:
            self.shard.stop()
            self.thread.join(10)
            return not self.thread.is_alive()

    return ShardActor


def shard_configs(base: ShardConfig) -> list[dict]:
    return [asdict(replace(base, shard=k)) for k in range(base.shards)]
