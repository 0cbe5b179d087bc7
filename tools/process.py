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
    """SIGINT/SIGTERM ask the loop to stop; it finishes its iteration and closes sockets cleanly."""
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop())


def limit_threads(n: int = 1) -> None:
    """Streaming processes use one torch thread: more threads wreck small work on 2 cores."""
    import torch

    torch.set_num_threads(n)
