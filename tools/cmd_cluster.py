"""``radarstream cluster``: sensor shards on Ray over the intake log, one output endpoint
(streamer/cluster/driver.py, docs/cluster.md)."""

from __future__ import annotations

import argparse


def cmd_cluster(args: argparse.Namespace) -> int:
    from streamer.cluster.driver import ClusterConfig, ClusterDriver, ClusterError, require_extra
    from streamer.cluster.shard import ShardConfig
    from tools.process import install_signal_stop, setup_logging

    setup_logging(args.verbose)
    if args.shards < 1:
        raise ClusterError(f"--shards must be >= 1, got {args.shards}")
    if args.checkpoint_interval < 0:
        raise ClusterError(f"--checkpoint-interval must be >= 0 seconds, got {args.checkpoint_interval}")
    require_extra()
    shard = ShardConfig(shard=0, shards=args.shards, log_url=args.log, proxy="", partitions=args.partitions,
                        backend=args.backend, weights=args.weights, radar=args.radar, hybrid=not args.no_hybrid,
                        domain_check=not args.no_domain_check, alert_dmin_m=args.alert_dmin_m,
                        checkpoint_interval_s=args.checkpoint_interval, stats_interval_s=args.stats_interval,
                        run_tag=args.name)
    driver = ClusterDriver(ClusterConfig(shard=shard, address=args.address, pub=args.pub, inbound=args.inbound,
                                         start=args.start, shard_cpus=args.shard_cpus, node_ip=args.node_ip))
    install_signal_stop(driver.stop)
    driver.run()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from streamer.cluster.log import DEFAULT_URL
    from streamer.cluster.partitions import PARTITIONS

    p = sub.add_parser("cluster", help="serve the log's sensors with N shards on a Ray cluster (cluster extra)")
    p.add_argument("--address", default="local",
                   help="Ray: local (a Ray of its own on this machine), HOST:PORT of a running head, or ray://HOST:PORT")
    p.add_argument("--shards", type=int, default=2, help="shard actors (each owns partitions p with p mod N = k)")
    p.add_argument("--log", default=DEFAULT_URL, metavar="URL", help="the intake log: nats://host:port[/stream]")
    p.add_argument("--pub", default="tcp://127.0.0.1:5556", metavar="ENDPOINT",
                   help="where clients connect for every shard's pred/event messages (binds)")
    p.add_argument("--inbound", default=None, metavar="ENDPOINT",
                   help="where shards publish into the proxy (binds; default tcp://<this node's Ray IP>:<free port>)")
    p.add_argument("--node-ip", default=None, help="this machine's address in the Ray cluster (default: Ray's guess)")
    p.add_argument("--partitions", type=int, default=PARTITIONS, help=f"partition count of the log (default {PARTITIONS})")
    p.add_argument("--from", dest="start", choices=["start", "new"], default="start",
                   help="without checkpoints: replay the whole log (start) or begin at its end (new)")
    p.add_argument("--name", default="", help="prefix of the checkpoints' names (several clusters on one log)")
    p.add_argument("--backend", choices=["fused", "onnx", "torch"], default="fused",
                   help="inference backend (default fused: the one whose outputs do not depend on batching, "
                        "so replayed rows are identical; docs/cluster.md)")
    p.add_argument("--weights", default=None, metavar="DIR", help="weights directory (default: shipped)")
    p.add_argument("--radar", default=None, metavar="PROFILE.json", help="the radar's profile (as for serve)")
    p.add_argument("--alert-dmin-m", type=float, default=None, metavar="M", help="near-miss alerts (as for serve)")
    p.add_argument("--no-hybrid", action="store_true", help="no classical CPA fit (as for serve)")
    p.add_argument("--no-domain-check", action="store_true", help="no out_of_domain events (as for serve)")
    p.add_argument("--checkpoint-interval", type=float, default=0.5, metavar="S",
                   help="seconds between checkpoints, each taken before a batch (0: before every batch; default 0.5)")
    p.add_argument("--shard-cpus", type=float, default=1.0, help="Ray CPUs each shard reserves (default 1)")
    p.add_argument("--stats-interval", type=float, default=1.0, metavar="S", help="seconds between each shard's stats")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=cmd_cluster)
