"""Recordings: the MCAP layout (``format``), the crash-safe writer and recorder (``writer``), the
indexed reader (``reader``), scan and repair of torn files (``scan``), CSV export (``export``) and
paced replay with checkpoint seeking (``replay``). docs/recording.md.

Never changes a recorded frame: replay publishes the bytes it recorded.

``from streamer.recording import Recorder`` (the module this package replaced) keeps working.
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    writer = importlib.import_module("streamer.recording.writer")
    try:
        return getattr(writer, name)
    except AttributeError:
        raise AttributeError(f"module 'streamer.recording' has no attribute {name!r}") from None
