"""Writes benchmark tables into docs/benchmarks.md, each between its own markers, so that every
benchmark updates its section and leaves the others alone."""

from __future__ import annotations

import platform
import time
from pathlib import Path

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
