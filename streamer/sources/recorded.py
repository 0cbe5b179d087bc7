"""An MCAP recording as a sample source: its recorded messages, in log-time order, unchanged."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from streamer.recording.format import RecordingError
from streamer.recording.reader import Recorded, Recording, iter_messages
from streamer.sources.base import Frames, SampleSource, SourceError, SourcePosition


class RecordedSource(SampleSource):
    """The ``kinds`` messages (default: samples, truth frame included) of a finished recording,
    ``batch`` at a time, optionally of some ``sensors`` only and between ``start_s`` and ``end_s``
    (seconds from the start of the recording, end exclusive). A torn or unreadable file is a
    :class:`SourceError` that says what to do; nothing is skipped silently."""

    def __init__(self, path: str | Path, *, kinds: Sequence[str] = ("samples",), batch: int = 256,
                 sensors: Sequence[str] | None = None, start_s: float | None = None, end_s: float | None = None):
        p = Path(path)
        if not p.exists():
            raise SourceError(f"{p}: no such file")
        if not p.is_file():
            raise SourceError(f"{p}: not a file")
        if batch < 1:
            raise SourceError("batch must be >= 1")
        self.path, self.kinds, self.batch = p, tuple(kinds), batch
        self.sensors = None if sensors is None else tuple(sensors)
        self.start_s, self.end_s = start_s, end_s
        try:
            rec = Recording(p)
            self.recorded_sensors = tuple(rec.sensors(self.kinds[0])) if len(self.kinds) == 1 else ()
            whole = start_s is None and end_s is None
            self._total = (sum(rec.message_counts.get(t, 0) for t in rec.topics(self.kinds, self.sensors)) or None
                           if whole else None)
        except RecordingError as exc:
            raise SourceError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - a garbage file can fail anywhere in the MCAP reader
            raise SourceError(f"{p}: not a readable recording ({type(exc).__name__}: {exc})") from None
        self._open()

    def _open(self) -> None:
        self._it: Iterator[Recorded] = iter_messages(self.path, kinds=self.kinds, sensors=self.sensors,
                                                     start=self.start_s, end=self.end_s)
        self._messages = 0
        self._last_ns: int | None = None
        self._done = False

    def total_messages(self) -> int | None:
        return self._total

    def next_batch(self) -> list[Frames] | None:
        if self._done:
            return None
        out: list[Frames] = []
        try:
            for rec in self._it:
                out.append(rec.frames)
                self._last_ns = rec.log_time_ns
                if len(out) >= self.batch:
                    break
            else:
                self._done = True
        except RecordingError as exc:
            raise SourceError(str(exc)) from None
        except SourceError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise SourceError(f"{self.path}: corrupt recording ({type(exc).__name__}: {exc})") from None
        self._messages += len(out)
        return out if out or not self._done else None

    def position(self) -> SourcePosition:
        return SourcePosition(self._messages, self._last_ns)

    def seek(self, position: SourcePosition) -> None:
        self._open()
        while self._messages < position.messages:
            keep, self.batch = self.batch, min(self.batch, position.messages - self._messages)
            try:
                if self.next_batch() is None:
                    raise SourceError(f"position {position.messages} is past the end of {self.path}")
            finally:
                self.batch = keep
