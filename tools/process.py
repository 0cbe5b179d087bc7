"""Process set-up shared by the long-running sub-commands: logging, stop signals, torch threads."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable


def setup_logging(verbose: bool = False) -> None:
    """One log format for every command, on stderr (stdout stays for results)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def install_signal_stop(stop: Callable[[], None]) -> None:
    """SIGINT/SIGTERM/SIGHUP ask the loop to stop; it finishes its iteration, closes sockets and
    finishes its files cleanly (a closed terminal's SIGHUP used to kill ``record`` and leave an
    unfinished file). ``serve`` re-binds SIGHUP afterwards to re-read its CURVE allow-list."""
    import signal

    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), lambda *_: stop())


def limit_threads(n: int = 1) -> None:
    """Streaming processes use one torch thread: more threads wreck small work on 2 cores."""
    import torch

    torch.set_num_threads(n)
