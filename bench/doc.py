"""The one writer of docs/benchmarks.md: each benchmark's table between its own markers (so every
benchmark updates its section and leaves the others alone), the command that reproduces it, the
machine line, and weights named without a machine path."""

from __future__ import annotations

import platform
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DEFAULT_DOC = Path("docs/benchmarks.md")
HEADER = "# Benchmarks\n\nEvery table below is written by the command shown with it; rerun it to refresh.\n"


def machine_line() -> str:
    import os

    return (f"{platform.python_implementation()} {platform.python_version()}, {platform.machine()}, "
            f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def update_section(name: str, body: str, path: str | Path = DEFAULT_DOC) -> Path:
    path = Path(path)
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else HEADER
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        pre, rest = text.split(start, 1)
        _, post = rest.split(end, 1)
        text = pre + block + post
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


REPO_ROOT = Path(__file__).resolve().parents[1]
"""The checkout (bench/ sits at its top): weights paths in docs are written relative to it."""


def weights_label(path: str | Path | None) -> str:
    """How a section names the weights it used, without a machine path: "shipped weights", a path
    relative to the repository, or just the folder name for weights outside it."""
    from models.bundle import shipped_weights_dir

    shipped = "shipped weights (`models/weights`)"
    if path is None:
        return shipped
    p = Path(path).resolve()
    if p == shipped_weights_dir().resolve():
        return shipped
    try:
        return f"`{p.relative_to(REPO_ROOT)}`"
    except ValueError:
        return f"`{p.name}/` (outside the repository)"


def command_line(base: str, options: Iterable[tuple[str, Any, Any]]) -> str:
    """``base`` plus every ``(flag, value, default)`` whose value is not its default: the command
    that reproduces a section (a True boolean is a bare flag)."""
    parts = [base]
    for flag, value, default in options:
        if value == default or value is None or value is False:
            continue
        if value is True:
            parts.append(flag)
        elif isinstance(value, float):
            parts.append(f"{flag} {value:g}")
        else:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def write_section(name: str, body: str, path: str | Path = DEFAULT_DOC, *, write: bool = True) -> Path | None:
    """:func:`update_section` unless ``write`` is False (``--no-write``); says where it wrote."""
    if not write:
        return None
    out = update_section(name, body, path)
    print(f"wrote {out}")
    return out
