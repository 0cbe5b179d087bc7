"""A simulation as a sample source: the messages ``radarstream simulate`` would publish."""

from __future__ import annotations

from streamer.sim.publisher import FeedConfig, SimulatedFeed
from streamer.sources.base import Frames, SampleSource, SourceError, SourcePosition


class SimulatedSource(SampleSource):
    """N simulated sensors, one message per sensor per batch, for ``config.duration_s`` simulated
    seconds (forever when None). Deterministic for a seed and an epoch, so ``seek`` replays the
    same stream up to the position (in O(position): the physics is re-run, never stored)."""

    def __init__(self, config: FeedConfig, *, epoch: int | None = None):
        if config.duration_s is not None and not config.duration_s > 0:
            raise SourceError("a simulation needs a duration > 0 seconds (or none: forever)")
        try:
            self._feed = SimulatedFeed(config, epoch=epoch)
        except ValueError as exc:
            raise SourceError(str(exc)) from None
        self.config = config
        self.epoch = self._feed.epoch
        self._steps = 0
        self._messages = 0

    @property
    def sensor_ids(self) -> list[str]:
        return list(self._feed.sensor_ids)

    @property
    def period_ns(self) -> int:
        return self._feed.period_ns

    def total_messages(self) -> int | None:
        steps = self._feed.total_messages()
        return None if steps is None else steps * self.config.sensors

    def next_batch(self) -> list[Frames] | None:
        steps = self._feed.total_messages()
        if steps is not None and self._steps >= steps:
            return None
        batch = self._feed.next_messages()
        self._steps += 1
        self._messages += len(batch)
        return batch

    def position(self) -> SourcePosition:
        t = self.epoch + (self._feed.seq - self.config.samples_per_message) * self.period_ns if self._steps else None
        return SourcePosition(self._messages, t)

    def seek(self, position: SourcePosition) -> None:
        if position.messages % self.config.sensors:
            raise SourceError("a simulated source seeks to whole batches (a multiple of its sensor count)")
        self._feed = SimulatedFeed(self.config, epoch=self.epoch)
        self._steps = self._messages = 0
        while self._messages < position.messages:
            if self.next_batch() is None:
                raise SourceError(f"position {position.messages} is past the end of the simulation")
