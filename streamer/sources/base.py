"""The one interface of a sample source (bytewax's ``next_batch`` + snapshot/resume, for wire
messages).

A message is its multipart frames as on the wire: ``(topic, samples block[, truth block])``. So
a consumer processes a simulation, a recording and a live feed with the same code, and replaying
a recorded message gives the bytes that were received.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from radarstream.errors import RadarstreamError

Frames = Sequence[bytes]


class SourceError(RadarstreamError, ValueError):
    """A source that cannot be opened or read (missing file, torn recording, bad settings)."""


@dataclass(frozen=True)
class SourcePosition:
    """Where a source stands: messages delivered so far, and the time of the last one (ns, the
    source's own clock: simulated sample time, recording log time, receive time)."""

    messages: int = 0
    time_ns: int | None = None


class SampleSource(ABC):
    """``next_batch()`` returns the next messages: a list (empty when none is ready yet, for a
    live feed), or ``None`` once the source is exhausted. ``position()`` / ``seek(position)``
    snapshot and resume (a live feed cannot seek back: it raises :class:`SourceError`)."""

    @abstractmethod
    def next_batch(self) -> list[Frames] | None: ...

    @abstractmethod
    def position(self) -> SourcePosition: ...

    def seek(self, position: SourcePosition) -> None:
        raise SourceError(f"{type(self).__name__} cannot seek")

    def total_messages(self) -> int | None:
        """Messages the source will deliver in all, when known (progress bars)."""
        return None

    def close(self) -> None:
        """Release files and sockets (idempotent)."""

    def __iter__(self) -> Iterator[Frames]:
        """Every message, in order (a live feed blocks until it is closed)."""
        while (batch := self.next_batch()) is not None:
            yield from batch

    def __enter__(self) -> SampleSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
