"""The durable intake log on NATS JetStream: what the bridge appends and the shards replay.

One stream (default ``radarstream``) holds every partition, one subject each
(``<stream>.p.<partition, 3 digits>``), so the stream's sequence number is one total order of
everything appended: a shard reads its partitions' subjects through one consumer, in that order,
and its whole log position is one number. Each append carries ``Nats-Msg-Id`` = a digest of the
message's frames (framing.message_id), so the server keeps one copy of a message that several
bridges (or a retry) append within the stream's duplicate window. The partition count is written
into the stream's description and checked by every client. Checkpoints live in the object store
``<stream>_ckpt`` (any size; the newest version of a name is the one read).

nats-py is asyncio; :class:`IntakeLog` is a blocking facade with its own event loop, to be used
from one thread (the bridge's or the shard's loop).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from urllib.parse import urlparse

from radarstream.errors import RadarstreamError
from streamer.cluster import framing
from streamer.cluster.partitions import PARTITIONS, partition_of, topic_sensor

DEFAULT_URL = "nats://127.0.0.1:4222"
DEFAULT_STREAM = "radarstream"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class LogError(RadarstreamError):
    """The log cannot be reached or does not match (bad URL, no server, another partition count)."""


@dataclass(frozen=True)
class LogAddress:
    server: str
    """``nats://host:port``."""
    stream: str

    @property
    def subjects(self) -> str:
        return f"{self.stream}.p.*"

    def subject(self, partition: int) -> str:
        return f"{self.stream}.p.{partition:03d}"


def parse_log_url(url: str) -> LogAddress:
    """``nats://host[:port][/stream]`` (port 4222, stream ``radarstream`` by default)."""
    u = urlparse(url)
    if u.scheme not in ("nats", "tls") or not u.hostname:
        raise LogError(f"--log must look like nats://host:port[/stream], got {url!r}")
    try:
        port = u.port or 4222
    except ValueError as exc:
        raise LogError(f"bad port in --log {url!r}") from exc
    stream = u.path.strip("/") or DEFAULT_STREAM
    if not _NAME.match(stream):
        raise LogError(f"stream name {stream!r} in --log must be 1-64 of A-Z a-z 0-9 _ -")
    return LogAddress(f"{u.scheme}://{u.hostname}:{port}", stream)


@dataclass(frozen=True)
class Record:
    seq: int
    """The stream sequence number (the log position)."""
    frames: list[bytes]


class IntakeLog:
    """A connection to the log: ``append`` (bridge), ``reader`` (shards), checkpoints."""

    def __init__(self, url: str = DEFAULT_URL, *, partitions: int = PARTITIONS, connect_timeout_s: float = 3.0,
                 create: bool = True, max_age_s: float = 24 * 3600.0, duplicate_window_s: float = 120.0):
        self.address = parse_log_url(url)
        self.partitions = int(partitions)
        self._loop = asyncio.new_event_loop()
        self._subjects = [self.address.subject(p) for p in range(self.partitions)]
        self._nc = self._js = self._obs = None
        try:
            self._run(self._connect(connect_timeout_s, create, max_age_s, duplicate_window_s))
        except BaseException:
            self.close()
            raise

    def _run(self, coro):
        return self._loop.run_until_complete(coro)

    async def _connect(self, timeout: float, create: bool, max_age_s: float, dup_s: float) -> None:
        import nats
        from nats.js import api
        from nats.js.errors import NotFoundError

        async def _quiet(_exc):  # reconnection is retried and reported by the callers' errors
            return None

        host, port = self.address.server.rsplit("://", 1)[1].rsplit(":", 1)
        try:  # nats-py retries a first connection forever when reconnection is on: probe first
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
            writer.close()
        except (OSError, asyncio.TimeoutError) as exc:
            raise LogError(f"cannot reach the log at {self.address.server}: {exc or type(exc).__name__} "
                           "(is nats-server -js running there?)") from None
        try:
            self._nc = await nats.connect(self.address.server, connect_timeout=timeout, max_reconnect_attempts=-1,
                                          reconnect_time_wait=0.2, allow_reconnect=True, error_cb=_quiet)
        except Exception as exc:  # noqa: BLE001 - nats raises several kinds for "not there"
            raise LogError(f"cannot reach the log at {self.address.server}: {type(exc).__name__} {exc}".strip()) from exc
        self._js = self._nc.jetstream(timeout=10.0)
        desc = f"radarstream intake log; partitions={self.partitions}"
        try:
            info = await self._js.stream_info(self.address.stream)
        except NotFoundError:
            if not create:
                raise LogError(f"the log has no stream {self.address.stream!r} (start a bridge first)") from None
            cfg = api.StreamConfig(name=self.address.stream, subjects=[self.address.subjects], description=desc,
                                   storage=api.StorageType.FILE, max_age=max_age_s, duplicate_window=dup_s)
            try:
                info = await self._js.add_stream(cfg)
            except Exception:  # noqa: BLE001 - another client created it first
                info = await self._js.stream_info(self.address.stream)
        except Exception as exc:  # noqa: BLE001
            raise LogError(f"the server at {self.address.server} has no JetStream ({exc}); start nats-server -js") from exc
        got = info.config.description or ""
        if got.startswith("radarstream intake log") and got != desc:
            raise LogError(f"stream {self.address.stream!r} was made with {got.split('; ')[-1]}, "
                           f"not partitions={self.partitions}")
        bucket = f"{self.address.stream}_ckpt"
        try:
            self._obs = await self._js.object_store(bucket)
        except Exception:  # noqa: BLE001 - BucketNotFoundError
            try:
                self._obs = await self._js.create_object_store(bucket, storage=api.StorageType.FILE)
            except Exception:  # noqa: BLE001 - created meanwhile by another shard
                self._obs = await self._js.object_store(bucket)

    # ------------------------------------------------------------ bridge side

    def partition(self, frames: list) -> int:
        sensor = topic_sensor(bytes(frames[0])) if frames else None
        return partition_of(sensor or "", self.partitions)

    def append(self, messages: list[list], timeout_s: float = 10.0) -> tuple[int, int]:
        """Append messages (lists of frames) in order, each under its partition, and wait until
        the server has stored every one. Returns ``(stored, duplicates)``; raises on failure
        (the caller may append the same messages again: the ids make that harmless)."""
        return self._run(self._append(messages, timeout_s))

    async def _append(self, messages: list[list], timeout_s: float) -> tuple[int, int]:
        futures = []
        for frames in messages:
            hdr = {"Nats-Msg-Id": framing.message_id(frames)}
            futures.append(await self._js.publish_async(self._subjects[self.partition(frames)], framing.pack(frames),
                                                        headers=hdr, wait_stall=timeout_s))
        acks = await asyncio.wait_for(asyncio.gather(*futures), timeout_s)
        dup = sum(1 for a in acks if a.duplicate)
        return len(acks) - dup, dup

    def last_seq(self) -> int:
        return int(self._run(self._js.stream_info(self.address.stream)).state.last_seq)

    # ------------------------------------------------------------ shard side

    def reader(self, partitions: list[int], after: int = 0) -> "LogReader":
        """Records of ``partitions`` with stream sequence > ``after``, in log order."""
        return LogReader(self, partitions, after)

    def put_checkpoint(self, name: str, data: bytes) -> None:
        self._run(self._obs.put(name, data))

    def get_checkpoint(self, name: str) -> bytes | None:
        from nats.js.errors import NotFoundError, ObjectNotFoundError

        try:
            return self._run(self._obs.get(name)).data
        except (NotFoundError, ObjectNotFoundError):
            return None

    def close(self) -> None:
        if self._nc is not None:
            try:
                self._run(self._nc.close())
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
            self._nc = None
        if not self._loop.is_closed():
            self._loop.close()


class LogReader:
    """One ephemeral, unacknowledged pull consumer over a shard's partition subjects."""

    def __init__(self, log: IntakeLog, partitions: list[int], after: int):
        self.log = log
        self.position = int(after)
        self._subjects = [log.address.subject(p) for p in partitions]
        self._sub = None
        self.more_s = 0.005
        """How long a fetch waits for more records once it has one (added latency, bounded)."""

    async def _open(self):
        from nats.js import api

        cfg = api.ConsumerConfig(filter_subjects=self._subjects, ack_policy=api.AckPolicy.NONE,
                                 deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.position + 1,
                                 inactive_threshold=30.0, mem_storage=True)
        self._sub = await self.log._js.pull_subscribe("", stream=self.log.address.stream, config=cfg,
                                                      pending_msgs_limit=-1, pending_bytes_limit=-1)

    def fetch(self, max_records: int, timeout_s: float) -> list[Record]:
        """Up to ``max_records`` records after the position (fewer, or none after ``timeout_s``)."""
        return self.log._run(self._fetch(max_records, timeout_s))

    async def _fetch(self, n: int, timeout_s: float) -> list[Record]:
        import nats.errors

        if self._sub is None:
            await self._open()
        # one message first (returns as soon as one arrives), then whatever else is there within a
        # few ms: a fetch of n alone lingers until n arrive or it times out (latency = its timeout)
        try:
            msgs = await self._sub.fetch(1, timeout=timeout_s)
        except (nats.errors.TimeoutError, asyncio.TimeoutError):
            return []
        if n > 1:
            try:
                msgs += await self._sub.fetch(n - 1, timeout=self.more_s)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                pass
        out = []
        for m in msgs:
            seq = m.metadata.sequence.stream
            if seq <= self.position:  # a redelivery after a reconnect: already handed out
                continue
            self.position = seq
            out.append(Record(seq, framing.unpack(m.data)))
        return out
