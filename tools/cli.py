"""The ``radarstream`` command line: discovery of the sub-commands, and ``main``.

Every sub-command lives in its own ``tools/cmd_<name>.py`` with a ``register(sub)`` that adds its
parser (argparse only) and a thin handler; adding a command is adding such a module. ``main`` is
the one place where errors become exit codes: a :class:`~radarstream.errors.RadarstreamError`
(or an OSError/ValueError from user input) is one ``error: …`` line on stderr and status 2, with
the traceback only under ``--debug``; a closed stdout pipe (``… | head``) ends quietly.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import traceback
from collections.abc import Callable, Sequence

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader went away

Register = Callable[[argparse._SubParsersAction], None]


def command_modules() -> tuple[str, ...]:
    """Names of the ``tools/cmd_*.py`` modules, sorted (the order of ``--help``)."""
    import tools

    return tuple(sorted(i.name for i in pkgutil.iter_modules(tools.__path__) if i.name.startswith("cmd_")))


class DefaultsShownFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the text already says it (issue 16.13:
    many options showed no default). Flags and options without a default are left alone."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or default in (None, False, argparse.SUPPRESS) or text == argparse.SUPPRESS
                or isinstance(action, argparse._StoreTrueAction) or "default" in text.lower()):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


class RadarstreamParser(argparse.ArgumentParser):
    """The parser class of every (sub-)command: defaults shown in ``--help``."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsShownFormatter)
        super().__init__(*args, **kwargs)


def build_parser(modules: Sequence[str] | None = None, *, description: str | None = None) -> argparse.ArgumentParser:
    """The parser of every discovered sub-command (or of ``modules`` only)."""
    p = RadarstreamParser(
        prog="radarstream",
        description=description or "Streaming radar processor: causal LSTM per sensor over ZeroMQ, re-scoring, "
                                   "record/replay, GUI.",
    )
    p.add_argument("--debug", action="store_true", help="show the traceback of an error (default: one line)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in (command_modules() if modules is None else modules):
        importlib.import_module(f"tools.{name}").register(sub)
    return p


def _quiet_broken_pipe() -> int:
    """The reader of stdout went away: point stdout at devnull so that the interpreter's final
    flush does not raise again (the Python docs' recipe for SIGPIPE), and exit without a word."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (captured in tests)
        pass
    return EXIT_BROKEN_PIPE


def run(argv: Sequence[str] | None = None, *, modules: Sequence[str] | None = None,
        description: str | None = None) -> int:
    """Parse ``argv``, run the handler, turn errors into exit codes (see the module docstring)."""

    words = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in words  # accepted anywhere, also after the sub-command
    args = build_parser(modules, description=description).parse_args([w for w in words if w != "--debug"])
    args.debug = debug
    return _run_handler(args)


def _run_handler(args: argparse.Namespace) -> int:
    from radarstream.errors import RadarstreamError

    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler of BrokenPipeError
        return code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except (RadarstreamError, OSError, ValueError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR


_MOVED = {"cmd_train": "tools.cmd_train", "cmd_export": "tools.cmd_export", "cmd_serve": "tools.cmd_serve",
          "cmd_simulate": "tools.cmd_simulate", "cmd_bench_quality": "tools.cmd_bench",
          "cmd_bench_stream": "tools.cmd_bench"}
"""Handlers that lived in this module before every command got its own (issue 12): still importable."""


def __getattr__(name: str):
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: Sequence[str] | None = None) -> int:
    """``radarstream …`` (the console script). Run as a process (``argv`` from the command line),
    a stop signal after the command is done no longer changes its exit status."""
    code = run(argv)
    if argv is None:
        from tools.process import finish_quietly

        finish_quietly(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
