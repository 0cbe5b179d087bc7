"""The driver of ``radarstream cluster``: Ray, N shard actors, the output proxy, failover reports.

It connects to Ray (``local``: a Ray instance of its own on this machine; ``host:port`` or
``ray://host:port``: an existing cluster), binds the proxy (shards' inbound XSUB on this node's
Ray address, clients' XPUB at ``--pub``), and starts one actor per shard with
``max_restarts=-1``: Ray restarts an actor whose process or node died, on any node with a free
CPU (``shard_cpus`` each), and the new actor resumes from its checkpoint. The driver polls every
shard and publishes ``shard_down`` (with the error) and ``shard_serving`` (with the seconds it
was down) on ``event/_service``, beside the shards' own ``shard_started`` / ``shard_recovered``
and per-shard ``stats``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field, replace

import zmq

from radarstream.errors import RadarstreamError
from streamer.cluster.shard import ShardConfig
from streamer.wire import protocol as P

log = logging.getLogger("radarstream.cluster")


class ClusterError(RadarstreamError):
    """A cluster setting or environment that cannot work (no Ray, bad --shards)."""


def require_extra():
    """Ray and nats-py, or a ClusterError that says how to install them."""
    try:
        import nats  # noqa: F401
        import ray
    except ImportError as exc:
        raise ClusterError(f"the cluster needs the 'cluster' extra ({exc.name} is missing): "
                           "pip install -e '.[cluster]'") from None
    return ray


@dataclass(frozen=True)
class ClusterConfig:
    shard: ShardConfig
    address: str = "local"
    pub: str = "tcp://127.0.0.1:5556"
    inbound: str | None = None
    """The proxy's XSUB endpoint (default: this node's Ray address, a free port)."""
    start: str = "start"
    """Without checkpoints: ``start`` replays everything the log holds, ``new`` starts at its end."""
    shard_cpus: float = 1.0
    node_ip: str | None = None
    poll_s: float = 0.5
    ray_init: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.shard.shards < 1 or self.shard.shards > self.shard.partitions:
            raise ClusterError(f"--shards must lie in 1..{self.shard.partitions}, got {self.shard.shards}")
        if self.start not in ("start", "new"):
            raise ClusterError(f"--from must be start or new, got {self.start!r}")


class ClusterDriver:
    def __init__(self, cfg: ClusterConfig):
        self.cfg = cfg
        self._stop = threading.Event()
        self.ready = threading.Event()
        self.actors: list = []
        self.proxy = None
        self.status: dict[int, dict] = {}

    def stop(self) -> None:
        self._stop.set()

    def _init_ray(self, ray) -> None:
        cfg = self.cfg
        kwargs = dict(log_to_driver=True, include_dashboard=False, configure_logging=False, **cfg.ray_init)
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if cfg.address == "local":
            kwargs.setdefault("num_cpus", max(int(cfg.shard.shards * cfg.shard_cpus + 0.999), 1))
            ray.init(**kwargs)
        else:
            if cfg.node_ip:
                kwargs["_node_ip_address"] = cfg.node_ip
            kwargs.pop("include_dashboard")
            try:
                ray.init(address=cfg.address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ClusterError(f"cannot join the Ray cluster at {cfg.address}: {exc}") from exc

    def run(self) -> None:
        ray = require_extra()
        from streamer.cluster.log import IntakeLog
        from streamer.cluster.proxy import OutputProxy
        from streamer.cluster.shard import actor_class

        cfg = self.cfg
        lg = IntakeLog(cfg.shard.log_url, partitions=cfg.shard.partitions)  # unreachable: LogError before Ray
        start_after = lg.last_seq() if cfg.start == "new" else 0
        lg.close()
        self._init_ray(ray)
        try:
            ip = cfg.node_ip or ray.util.get_node_ip_address()
            self.proxy = OutputProxy(cfg.inbound or f"tcp://{ip}:*", cfg.pub).start()
            events = zmq.Context.instance().socket(zmq.PUB)
            events.connect(self.proxy.inbound)
            base = replace(cfg.shard, proxy=self.proxy.inbound, start_after=start_after)
            cls = ray.remote(actor_class(ray))
            self.actors = [cls.options(max_restarts=-1, max_task_retries=-1, max_concurrency=2, num_cpus=cfg.shard_cpus,
                                       name=f"radarstream-shard-{k}-of-{base.shards}{base.run_tag}")
                           .remote(asdict(replace(base, shard=k))) for k in range(base.shards)]
            log.info("cluster: %d shard(s) on Ray, log %s, outputs on %s (shards publish into %s)",
                     base.shards, base.log_url, self.proxy.pub, self.proxy.inbound)
            self.ready.set()
            self._watch(ray, events)
        finally:
            for a in self.actors:
                try:
                    ray.get(a.stop.remote(), timeout=10)
                except Exception:  # noqa: BLE001 - already dead
                    pass
                ray.kill(a, no_restart=True)
            ray.shutdown()
            if self.proxy is not None:
                self.proxy.stop()

    def _watch(self, ray, events: zmq.Socket) -> None:
        down: dict[int, float] = {}
        seen: set[int] = set()  # shards that served once (before that, an actor is still starting)
        while not self._stop.is_set():
            refs = {k: a.status.remote() for k, a in enumerate(self.actors)}
            deadline = time.monotonic() + max(self.cfg.poll_s * 4, 2.0)
            for k, ref in refs.items():
                try:
                    st = ray.get(ref, timeout=max(deadline - time.monotonic(), 0.01))
                except Exception as exc:  # noqa: BLE001 - died, restarting, unreachable node
                    if k in seen and k not in down:
                        down[k] = time.monotonic()
                        self._event(events, "shard_down", shard=k, error=f"{type(exc).__name__}"[:200])
                    continue
                self.status[k] = st
                if st.get("serving"):
                    seen.add(k)
                if k in down and st.get("serving"):
                    self._event(events, "shard_serving", shard=k, down_s=round(time.monotonic() - down.pop(k), 3),
                                pid=st["pid"], node=st["node"], position=st["position"])
            self._stop.wait(self.cfg.poll_s)

    @staticmethod
    def _event(sock: zmq.Socket, type_: str, **fields) -> None:
        log.warning("%s %s", type_, fields)
        sock.send_multipart(P.encode_message(P.make_event("_service", type_, epoch=0, seq=0, t_ns=time.time_ns(), **fields)))
