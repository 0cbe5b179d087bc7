"""``radarstream serve --supervise``: run ``serve`` as a child process and restart it when it dies.

The supervisor loads no model: it starts ``python -m tools.cli`` with the same command line (the
child sees ``RADARSTREAM_SUPERVISED`` and serves instead of supervising), waits for it, and:

* a child killed by a signal (SIGABRT from a libzmq assertion, SIGKILL, SIGSEGV …) or ending
  with a nonzero status other than 2 is restarted after a back-off (``backoff_s`` doubling up to
  ``backoff_max_s``; back to ``backoff_s`` once a child has been up ``stable_s``), at most
  ``max_restarts`` times within ``restart_window_s`` (then the supervisor gives up, exit 1: a
  crash loop needs a person);
* status 2 is a configuration error: passed through at once, never restarted (it would loop);
* status 0 (the child stopped cleanly) ends the supervisor with 0;
* SIGTERM / SIGINT to the supervisor are forwarded and it then ends with the child's status,
  whatever it is; SIGHUP is forwarded (``serve`` re-reads its CURVE allow-list).

The child continues from the state file (``--state-file``, default
:func:`default_state_file`) and a restarted child publishes one ``restarted`` event on
``event/_service`` (``restarts``, ``last_exit``, ``restored``, ``state_age_s``, ``downtime_s``),
from what the supervisor passes in ``RADARSTREAM_SUPERVISED`` (JSON). On Linux the child gets
SIGTERM if the supervisor itself dies (``PR_SET_PDEATHSIG``): no orphan keeps the ports.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass

from radarstream.errors import RadarstreamError

log = logging.getLogger("radarstream.supervise")

ENV = "RADARSTREAM_SUPERVISED"
"""Environment variable of a supervised child: JSON ``{"restarts", "last_exit", "died_at"}``."""

EXIT_CONFIG = 2
EXIT_GAVE_UP = 1
STOP_TIMEOUT_S = 30.0
"""After a forwarded SIGTERM/SIGINT, how long the child may take to stop before SIGKILL."""


@dataclass(frozen=True)
class SuperviseConfig:
    backoff_s: float = 0.5
    """First wait before restarting a serve that died; doubles at each death of a short-lived child."""
    backoff_max_s: float = 30.0
    """Longest wait between two restarts."""
    stable_s: float = 60.0
    """A child up this long has recovered: the next death waits backoff_s again."""
    max_restarts: int = 10
    """Give up (exit 1) after this many restarts within --restart-window seconds (a crash loop)."""
    restart_window_s: float = 600.0
    """The window of --max-restarts, in seconds."""

    def __post_init__(self) -> None:
        if not 0 < self.backoff_s <= self.backoff_max_s:
            raise SuperviseError(f"back-off must satisfy 0 < {self.backoff_s} <= {self.backoff_max_s}")
        if self.max_restarts < 1 or not self.restart_window_s > 0:
            raise SuperviseError("--max-restarts must be >= 1 and --restart-window > 0")


class SuperviseError(RadarstreamError, ValueError):
    """A supervisor setting that cannot work."""


def default_state_file(pub: str) -> str:
    """``radarstream-serve-<pub endpoint>.state`` in the working directory: one file per output
    endpoint, so two services started from the same directory do not share one."""
    return f"radarstream-serve-{re.sub(r'[^A-Za-z0-9.-]+', '_', pub).strip('_')}.state"


def supervised_info() -> dict | None:
    """In a supervised child: what the supervisor passed (None when not supervised)."""
    text = os.environ.get(ENV)
    if not text:
        return None
    try:
        info = json.loads(text)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def exit_text(code: int) -> str:
    """``SIGKILL`` for a child killed by a signal, ``exit 3`` for a status."""
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit {code}"


def _die_with_parent() -> None:  # preexec_fn of the child (Linux): SIGTERM when the supervisor dies
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Supervisor:
    """Starts and restarts ``argv`` (the serve child); :meth:`run` returns the exit status."""

    def __init__(self, argv: list[str], cfg: SuperviseConfig = SuperviseConfig()):
        self.argv = argv
        self.cfg = cfg
        self.child: subprocess.Popen | None = None
        self.stopping: int | None = None  # the signal that asked us to stop
        self.restarts = 0

    def _signal(self, signum: int, _frame) -> None:
        if signum != getattr(signal, "SIGHUP", None):
            self.stopping = signum
        child = self.child
        if child is not None and child.poll() is None:
            try:
                child.send_signal(signum)
            except OSError:
                pass

    def _start(self, info: dict) -> subprocess.Popen:
        env = {**os.environ, ENV: json.dumps(info)}
        pre = _die_with_parent if sys.platform == "linux" else None
        child = subprocess.Popen(self.argv, env=env, preexec_fn=pre)  # noqa: PLW1509 - the supervisor has no threads
        log.info("serve child pid %d started%s", child.pid,
                 f" (restart {info['restarts']} after {info['last_exit']})" if info.get("restarts") else "")
        return child

    def _wait(self, child: subprocess.Popen) -> int:
        """Wait for the child; once asked to stop, SIGKILL it after STOP_TIMEOUT_S."""
        deadline = None
        while True:
            if self.stopping is not None and deadline is None:
                deadline = time.monotonic() + STOP_TIMEOUT_S
            try:
                return child.wait(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("serve child pid %d did not stop within %.0f s: SIGKILL", child.pid, STOP_TIMEOUT_S)
                child.kill()
                return child.wait()

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while self.stopping is None and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))

    def run(self) -> int:
        names = [n for n in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, n)]
        before = {n: signal.signal(getattr(signal, n), self._signal) for n in names}
        try:
            return self._run()
        finally:
            for n, handler in before.items():
                signal.signal(getattr(signal, n), handler)

    def _run(self) -> int:
        cfg = self.cfg
        backoff = cfg.backoff_s
        recent: deque[float] = deque()
        info: dict = {"restarts": 0}
        while True:
            started = time.monotonic()
            self.child = self._start(info)
            if self.stopping is not None:  # a signal between the fork and the assignment
                self._signal(self.stopping, None)
            code = self._wait(self.child)
            died_at, up_s = time.time(), time.monotonic() - started
            cause, pid = exit_text(code), self.child.pid
            self.child = None
            if self.stopping is not None:
                log.info("serve child stopped (%s) after %s: supervisor ends", cause,
                         signal.Signals(self.stopping).name)
                return code if code >= 0 else 128 - code
            if code == 0:
                log.info("serve child stopped cleanly: supervisor ends")
                return 0
            if code == EXIT_CONFIG:
                log.error("serve child ended with status 2 (configuration error): not restarted")
                return EXIT_CONFIG
            now = time.monotonic()
            while recent and now - recent[0] > cfg.restart_window_s:
                recent.popleft()
            if len(recent) >= cfg.max_restarts:
                log.error("serve died %d times within %.0f s (last: %s): giving up", len(recent) + 1,
                          cfg.restart_window_s, cause)
                return EXIT_GAVE_UP
            if up_s >= cfg.stable_s:
                backoff = cfg.backoff_s
            self.restarts += 1
            log.warning("serve child pid %d died: %s after %.1f s up; restart %d in %.1f s", pid, cause, up_s,
                        self.restarts, backoff)
            self._sleep(backoff)
            if self.stopping is not None:
                log.info("stop requested during the back-off: supervisor ends")
                return 0
            recent.append(time.monotonic())
            backoff = min(backoff * 2, cfg.backoff_max_s)
            info = {"restarts": self.restarts, "last_exit": cause, "died_at": died_at}


def child_argv(words: list[str], state_file: str | None) -> list[str]:
    """The child's command line: this one (``--supervise`` is ignored in a supervised child) and
    the state file when none was given."""
    argv = [sys.executable, "-m", "tools.cli", *words]
    if state_file is not None:
        argv += ["--state-file", state_file]
    return argv
