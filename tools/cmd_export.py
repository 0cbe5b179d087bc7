"""``radarstream export``: the models as ONNX (causal with explicit h/c; dynamic time axis)."""

from __future__ import annotations

import argparse

from radarstream.errors import RadarstreamError


def cmd_export(args: argparse.Namespace) -> int:
    from models.bundle import shipped_weights_dir
    from models.export import export_all

    src = args.weights or shipped_weights_dir()
    written = export_all(src, args.out)
    if not written:
        raise RadarstreamError(f"no weights found in {src}")
    for p in written:
        print(f"wrote {p}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("export", help="export models to ONNX (causal with explicit h/c; dynamic time axis)")
    e.add_argument("--weights", default=None, help="weights directory (default: the shipped weights)")
    e.add_argument("--out", default=None, help="output directory (default: next to the weights)")
    e.set_defaults(func=cmd_export)
