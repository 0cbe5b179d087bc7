"""The one root of every domain error, so that the command line catches them in one place.

Each package keeps its own error class (``RecordingError``, ``WeightsError``, ``SecurityError``,
``ScoreError`` …) and its existing built-in base (``RuntimeError``, ``ValueError``), so code that
catches those keeps working; the classes add :class:`RadarstreamError` as a second base.
"""

from __future__ import annotations


class RadarstreamError(Exception):
    """A failure the user can act on: its message says what went wrong and what to do.

    ``radarstream``'s ``main`` prints it as one ``error: …`` line and exits with status 2 (a
    traceback only with ``--debug``); anything else is a bug and keeps its traceback.
    """


class UsageError(RadarstreamError, ValueError):
    """A command-line combination that cannot work (e.g. ``--out`` without ``--duration``)."""
