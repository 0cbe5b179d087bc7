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
    unfinished file). A second signal (Ctrl-C pressed twice) does not cut the clean stop short:
    it is noted once on stderr and the stop goes on; SIGKILL is the way to abort. ``serve``
    re-binds SIGHUP afterwards to re-read its CURVE allow-list."""
    import signal

    received = [0]  # signals seen by this process's handler (a closure, not module state)

    def on_signal(signum: int, _frame: object) -> None:
        received[0] += 1
        if received[0] == 1:
            stop()
        elif received[0] == 2:
            print(f"{signal.Signals(signum).name} again: still stopping cleanly (sockets, files); "
                  "SIGKILL aborts", file=sys.stderr, flush=True)

    for name in STOP_SIGNALS:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), on_signal)


STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


def finish_quietly(code: int) -> None:
    """The command is done: a stop signal from now on must not turn its exit status into a kill.
    The interpreter's shutdown (module teardown, sockets' linger) can take a moment, and Python
    puts the default handlers back during it, so a late Ctrl-C used to end a clean run with
    status -2. SIGINT and SIGHUP are ignored from here; SIGTERM exits at once with ``code``."""
    import os
    import signal

    for name in ("SIGINT", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(code))


def limit_threads(n: int = 1) -> None:
    """Streaming processes use one torch thread: more threads wreck small work on 2 cores."""
    import torch

    torch.set_num_threads(n)
