"""``radarstream bridge``: a ZeroMQ feed into the durable intake log (streamer/cluster/bridge.py)."""

from __future__ import annotations

import argparse


def cmd_bridge(args: argparse.Namespace) -> int:
    from streamer.cluster.bridge import Bridge, BridgeConfig
    from streamer.cluster.driver import require_extra
    from tools.process import install_signal_stop, setup_logging

    setup_logging(args.verbose)
    require_extra()
    bridge = Bridge(BridgeConfig(feeds=tuple(args.feed or ["tcp://127.0.0.1:5555"]), log_url=args.log,
                                 partitions=args.partitions))
    install_signal_stop(bridge.stop)
    bridge.run()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from streamer.cluster.log import DEFAULT_URL
    from streamer.cluster.partitions import PARTITIONS

    p = sub.add_parser("bridge", help="append a ZeroMQ feed's samples/event messages to the durable log (cluster extra)")
    p.add_argument("--feed", action="append", default=None, metavar="ENDPOINT",
                   help="feed to SUBscribe to (connects; prefix @ to bind); repeatable. Default tcp://127.0.0.1:5555")
    p.add_argument("--log", default=DEFAULT_URL, metavar="URL",
                   help=f"the log: nats://host:port[/stream] (NATS JetStream; default {DEFAULT_URL}/radarstream)")
    p.add_argument("--partitions", type=int, default=PARTITIONS,
                   help=f"partition count, fixed for the life of a log (default {PARTITIONS})")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=cmd_bridge)
