"""``radarstream keys DIR``: CurveZMQ certificates for ``--curve-keys DIR`` (streamer/security.py)."""

from __future__ import annotations

import argparse


def cmd_keys(args: argparse.Namespace) -> int:
    from streamer.wire.security import ALLOW_DIR, create_keys

    clients = args.client or ["client"]
    written = create_keys(args.dir, clients, force=args.force)  # SecurityError/OSError: one line in main
    for path in written:
        print(f"wrote {path}")
    if not written:
        print(f"kept the existing keys in {args.dir} (--force regenerates them)")
    print(f"server: give {args.dir}/server.key to every client; keep server.key_secret on the hosts that bind")
    print(f"clients: {', '.join(clients)}; admitted while their .key is in {args.dir}/{ALLOW_DIR}/ "
          f"(remove it to revoke: running servers reload within a second)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    k = sub.add_parser("keys", help="make CurveZMQ server/client certificates and the client allow-list")
    k.add_argument("dir", metavar="DIR", help="key directory (created mode 0700; secret keys are written 0600)")
    k.add_argument("--client", action="append", default=None, metavar="NAME",
                   help="client keypair to create and admit (repeatable; default: client)")
    k.add_argument("--force", action="store_true", help="regenerate keys that already exist")
    k.set_defaults(func=cmd_keys)
