"""Stepping backends: the causal model behind one interface, explicit state in, state out.

One implementation per file; ``tests/streamer/live/test_backends.py`` runs one conformance suite over all of them.
"""

from streamer.live.backends.base import BACKENDS, StepBackend, make_backend

__all__ = ["BACKENDS", "StepBackend", "make_backend"]
