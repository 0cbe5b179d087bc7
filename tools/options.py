"""Option helpers shared by the sub-commands: defaults and help texts declared once, in the configs.

:func:`add_field_option` reads an option's default from a config dataclass field and its help
text from the attribute docstring under that field (``x: int = 1`` then ``\"\"\"what x is\"\"\"``),
so ``--max-gap`` and ``StreamPolicy.max_gap`` cannot drift apart. :func:`hidden_parser` adds an
old spelling of a command that still parses but is left out of ``--help``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
from typing import Any


def field_default(cls: type, name: str) -> Any:
    """The default of dataclass field ``cls.name`` (``default_factory`` called)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise TypeError(f"{cls.__name__}.{name} has no default")
    raise AttributeError(f"{cls.__name__} has no field {name!r}")


def field_doc(cls: type, name: str) -> str | None:
    """The attribute docstring of ``cls.name`` (or ``metadata["help"]``), whitespace collapsed."""
    for f in dataclasses.fields(cls):
        if f.name == name and "help" in f.metadata:
            return str(f.metadata["help"])
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):  # no source (frozen app): options still work, with their own help
        return None
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            return " ".join(after.value.value.replace("``", "").split())
    return None


def source_field(module: str, cls: str, name: str) -> tuple[Any, str | None]:
    """Default (a literal) and docstring of field ``cls.name`` read from ``module``'s source without
    importing it: for configs whose module would pull Qt into every command (``gui.window``)."""
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ImportError(f"no module {module}")
    with open(spec.origin, encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    body = next(n.body for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    for k, node in enumerate(body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
            after = body[k + 1] if k + 1 < len(body) else None
            doc = (" ".join(after.value.value.split()) if isinstance(after, ast.Expr)
                   and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str) else None)
            return ast.literal_eval(node.value), doc
    raise AttributeError(f"{cls} has no field {name!r}")


def add_field_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup, flag: str, cls: type, name: str,
                     *, help: str | None = None, **kwargs: Any) -> argparse.Action:  # noqa: A002 - argparse's word
    """``parser.add_argument(flag, ...)`` with the default of ``cls.name`` and, unless ``help`` is
    given, its docstring as the help text; "(default: …)" is appended either way. ``type`` is the
    default's type when not given (pass ``type=`` for fields whose default is None)."""
    default = kwargs.pop("default", field_default(cls, name))
    text = help if help is not None else field_doc(cls, name)
    if text is None:
        raise TypeError(f"{cls.__name__}.{name} has no docstring: pass help=")
    if "action" not in kwargs and "type" not in kwargs and default is not None and not isinstance(default, bool):
        kwargs["type"] = type(default)
    shown = "none" if default is None else f"{default:g}" if isinstance(default, float) else str(default)
    shown = kwargs.pop("default_text", shown)
    text = text.replace("%", "%%")
    if kwargs.get("action") not in ("store_true", "store_false"):
        text += f" (default: {shown})"
    return parser.add_argument(flag, default=default, help=text, **kwargs)


def hidden_parser(sub: argparse._SubParsersAction, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A sub-command that parses like any other but is not listed by ``--help`` (an old spelling)."""
    kwargs["help"] = argparse.SUPPRESS
    parser = sub.add_parser(name, **kwargs)
    # Python < 3.14 still lists a SUPPRESSed sub-command (as "==SUPPRESS=="): drop its listing entry
    sub._choices_actions[:] = [a for a in sub._choices_actions if a.dest != name]
    return parser


def positive(text: str) -> float:
    """argparse type: a number > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def rate_or_max(text: str) -> float | None:
    """argparse type: samples per second > 0, or ``max`` (None: as fast as possible)."""
    if text == "max":
        return None
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("rate must be > 0 or 'max'")
    return value


def add_curve_arguments(p: argparse.ArgumentParser) -> None:
    """``--curve-keys DIR`` and ``--curve-client NAME`` (serve, simulate, record, replay, gui)."""
    from streamer.wire.security import CurveConfig

    p.add_argument("--curve-keys", default=None, metavar="DIR",
                   help="CurveZMQ encryption + authentication with the keys of `radarstream keys DIR`: "
                        "binding sockets admit only the clients in DIR/authorized_clients (SIGHUP or "
                        "any change there reloads it), connecting sockets use the client key")
    add_field_option(p, "--curve-client", CurveConfig, "client", metavar="NAME",
                     help="client keypair (DIR/NAME.key_secret) used when connecting")


def curve_config(args: argparse.Namespace) -> Any:
    """``--curve-keys DIR`` (and ``--curve-client NAME``) as a CurveConfig, or None."""
    if getattr(args, "curve_keys", None) is None:
        return None
    from streamer.wire.security import CurveConfig

    return CurveConfig(keys_dir=args.curve_keys, client=args.curve_client)


def add_time_window(p: argparse.ArgumentParser) -> None:
    """``--start T``, ``--end T`` (seconds from the start of a recording) and ``--sensors ID,...``."""
    p.add_argument("--start", type=float, default=None, metavar="T",
                   help="start at T seconds from the beginning of the recording (receive time)")
    p.add_argument("--end", type=float, default=None, metavar="T",
                   help="stop before T seconds from the beginning of the recording")
    p.add_argument("--sensors", action="append", default=None, metavar="ID[,ID...]",
                   help="only these sensors (comma-separated; repeatable). Default: all")


def sensor_list(args: argparse.Namespace) -> list[str] | None:
    """``--sensors a,b --sensors c`` as ``["a", "b", "c"]`` (None: all sensors)."""
    if not args.sensors:
        return None
    return [w for chunk in args.sensors for w in (p.strip() for p in chunk.split(",")) if w]


def topic_kinds(text: str) -> tuple[str, ...]:
    """argparse type: ``samples,pred`` as recorded topic kinds."""
    from streamer.recording.format import parse_kinds

    try:
        return parse_kinds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
