"""The data path, Qt-free, in the order a sample travels:

* ``wire``      — the ZeroMQ protocol (bytes), endpoints and CurveZMQ security;
* ``sim``       — the radar simulator (pure physics, explicit RNG), simulated feeds, training sets;
* ``sources``   — one ``SampleSource`` interface over a simulation, a recording and a live feed;
* ``live``      — the causal path: engine, stepping backends, the service, re-scoring, health, metrics;
* ``recording`` — MCAP writer, reader, scan/repair, export and replay;
* ``offline``   — whole-stream scoring through the same engine as ``serve``.

Module paths from before this layout (``streamer.protocol``, ``streamer.engine``,
``streamer.replay`` …) still import, as aliases of the modules that now hold them.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

_MOVED: dict[str, str] = {
    "streamer.protocol": "streamer.wire.protocol",
    "streamer.endpoints": "streamer.wire.endpoints",
    "streamer.security": "streamer.wire.security",
    "streamer.simulator": "streamer.sim.simulator",
    "streamer.publisher": "streamer.sim.publisher",
    "streamer.datasets": "streamer.sim.datasets",
    "streamer.engine": "streamer.live.engine",
    "streamer.backends": "streamer.live.backends",
    "streamer.service": "streamer.live.service",
    "streamer.rescore": "streamer.live.rescore",
    "streamer.health": "streamer.live.health",
    "streamer.metrics": "streamer.live.metrics",
    "streamer.recording_format": "streamer.recording.format",
    "streamer.recording_scan": "streamer.recording.scan",
    "streamer.recording_export": "streamer.recording.export",
    "streamer.replay": "streamer.recording.replay",
    "streamer.scoring": "streamer.offline.scoring",
}
"""Old module path -> new one (a read-only table: the layout of issue 12)."""


def _target(fullname: str) -> str | None:
    if fullname in _MOVED:
        return _MOVED[fullname]
    head, _, tail = fullname.rpartition(".")
    while head:
        if head in _MOVED:
            return f"{_MOVED[head]}.{fullname[len(head) + 1:]}"
        head, _, _ = head.rpartition(".")
    return None


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):  # noqa: ANN001 - importlib protocol
        return importlib.import_module(self.target)

    def exec_module(self, module) -> None:  # noqa: ANN001 - the target module is already executed
        return None


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Resolves an old ``streamer.X`` path to the module object at its new place (same object, so
    classes, isinstance checks and module state are shared)."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001 - importlib protocol
        new = _target(fullname) if fullname.startswith("streamer.") else None
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(new))


if not any(type(f).__name__ == "_MovedModuleFinder" for f in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())
