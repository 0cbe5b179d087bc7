"""Playing recordings back: a paced cursor for the GUI and the replay publisher (the indexed
reader is ``streamer.recording.reader``).

Replay sends the recorded wire frames unchanged (same epoch, same seq, truth included), so a
service fed by a replay computes exactly what it computed live. ``Replayer`` is the one playback
cursor for both the ``radarstream replay`` command and the GUI: a worker thread pulls due messages
with ``next_batch`` while any thread may ``play``, ``pause``, ``set_speed`` or ``seek``. Seeking
with an engine resumes each sensor's causal state from the nearest recorded checkpoint at or before
the seek point and runs the few samples after it, so the estimates after a seek are exactly those
of a replay from the start (docs/recording.md, "Checkpoints").
"""

from __future__ import annotations

import math
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamer.wire import protocol as P
from streamer.recording.format import KINDS, parse_kinds
from streamer.recording.reader import Recorded, Recording, iter_messages

__all__ = [
    "Recorded",
    "Recording",
    "iter_messages",
    "Checkpoint",
    "SeekResult",
    "Replayer",
    "ReplayStats",
    "publish_recording",
    "replay_socket",
    "close_and_flush",
    "PeerWatch",
    "DEFAULT_SNDHWM",
    "DEFAULT_STALL_TIMEOUT_S",
    "ReplayController",
    "open_controller",
    "parse_speed",
]

_MASK64 = (1 << 64) - 1
_EPOCH = struct.Struct("<Q")
_COUNT = struct.Struct("<I")


def parse_speed(text: str | float) -> float:
    """``"max"`` -> inf, else a positive factor (``1``, ``10``, ``0.5``)."""
    if isinstance(text, str) and text.strip().lower() == "max":
        return math.inf
    value = float(text)
    if not value > 0:
        raise ValueError("speed must be > 0 or 'max'")
    return value


def _bump_epoch(frames: tuple[bytes, ...], kind: str, k: int) -> tuple[bytes, ...]:
    """Frames with every block's epoch advanced by ``k``: a replay pass after the first (loop, seek
    back) must look like a restarted publisher, or receivers would drop it as duplicates."""
    if k == 0:
        return frames
    out = list(frames)
    for i in (1, 2) if kind == "samples" else (1,):
        if i < len(out) and len(out[i]) >= P.HEADER_SIZE:
            b = bytearray(out[i])
            (epoch,) = _EPOCH.unpack_from(b, 8)
            _EPOCH.pack_into(b, 8, (epoch + k) & _MASK64)
            out[i] = bytes(b)
    return tuple(out)




# --------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A recorded ``state/<sensor>``: the sensor's (h, c) before sample ``next_seq`` of ``epoch``."""

    sensor: str
    epoch: int
    next_seq: int
    log_time_ns: int
    h: np.ndarray
    c: np.ndarray

    @classmethod
    def from_recorded(cls, rec: Recorded) -> Checkpoint | None:
        msg = rec.message
        if isinstance(msg, P.DecodeError) or msg.kind is not P.Kind.STATE or not msg.meta:
            return None
        try:
            layers, hidden = int(msg.meta["layers"]), int(msg.meta["hidden"])
        except (KeyError, TypeError, ValueError):
            return None
        flat = np.asarray(msg.block.data, np.float32).reshape(-1)
        if flat.size != 2 * layers * hidden:
            return None
        n = layers * hidden
        return cls(msg.sensor, msg.block.epoch, msg.block.seq, rec.log_time_ns,
                   flat[:n].reshape(layers, hidden).copy(), flat[n:].reshape(layers, hidden).copy())

    def shifted(self, k: int) -> Checkpoint:
        """The same checkpoint in replay pass ``k`` (epoch advanced like the frames)."""
        if k == 0:
            return self
        return Checkpoint(self.sensor, (self.epoch + k) & _MASK64, self.next_seq, self.log_time_ns, self.h, self.c)

    def apply(self, engine: Any) -> None:
        """Resume ``engine`` (a StreamEngine) for this sensor from the checkpoint."""
        engine.set_state(self.sensor, self.h, self.c, self.epoch, self.next_seq)


@dataclass(frozen=True)
class SeekResult:
    """What ``Replayer.seek`` did, per sensor."""

    position_s: float
    checkpoints: dict[str, Checkpoint]
    """Checkpoint each sensor was resumed from."""
    warmup_samples: dict[str, int]
    """Samples run through the engine between the checkpoint and the seek point."""
    fresh: tuple[str, ...]
    """Sensors without a checkpoint before the seek point: they start from a zero state."""
    inexact: tuple[str, ...]
    """Sensors whose samples right after their checkpoint are missing from the recording."""


# --------------------------------------------------------------------------- paced cursor


@dataclass(frozen=True)
class ReplayStats:
    messages: int
    """Messages handed to the socket (sent)."""
    samples: int
    seconds: float
    passes: int
    cpu_s: float = 0.0
    """CPU time of the publishing thread."""
    not_sent: int = 0
    """Selected messages never handed to the socket because the subscribers stopped taking them
    for ``stall_timeout_s`` (the replay then stops); without ``loop``, counted to the end."""
    stalled: bool = False
    """The replay stopped because no message could be sent for ``stall_timeout_s``."""
    blocked_s: float = 0.0
    """Time spent waiting for a subscriber to take messages (back-pressure)."""
    disconnects: int = 0
    """Subscriber disconnections seen while sending (``peers``): each lost what was queued for it."""


class Replayer:
    """A paced playback cursor over a recording (thread-safe controls, one consumer thread).

    ``next_batch`` returns the messages that are due by now at the current speed (up to
    ``max_messages``), waiting at most ``wait_s`` for the next one; ``[]`` when nothing is due
    (paused, or waiting), ``None`` at the end. Pacing follows the recorder's receive times
    (``clock="log"``) or the samples' own timestamps (``clock="sample"``), divided by the speed.
    ``start_s``/``end_s``/``seek`` positions are seconds from the start of the recording (log time).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        kinds: Sequence[str] | str = ("samples",),
        sensors: Sequence[str] | None = None,
        speed: float | str = 1.0,
        clock: str = "log",
        start_s: float | None = None,
        end_s: float | None = None,
        loop: bool = False,
        now: Callable[[], float] = time.monotonic,
    ):
        if clock not in ("log", "sample"):
            raise ValueError("clock must be 'log' or 'sample'")
        self.recording = Recording(path)
        rec = self.recording
        self.kinds = parse_kinds(kinds)
        self.sensors = tuple(sensors) if sensors else None
        self.topics = rec.topics(self.kinds, self.sensors)
        self.clock = clock
        self.loop = loop
        self._now = now
        self._start_ns = max(rec.start_ns, rec.to_ns(start_s, rec.start_ns))
        self._end_ns = rec.to_ns(end_s, rec.end_ns + 1)
        if self._end_ns <= self._start_ns:
            raise ValueError(f"start {start_s} s / end {end_s} s select nothing in a recording of "
                             f"{rec.duration_s:.3f} s (times are seconds from its start)")
        self._cond = threading.Condition()
        self._speed = parse_speed(speed)
        self._paused = False
        self._pass = 0
        self._delivered_in_pass = 0
        self._anchor: tuple[float, int] | None = None
        self._last_clock: int | None = None
        self._position_ns = self._start_ns
        self._checkpoint_index: dict[str, list[Checkpoint]] | None = None
        self._iter: Iterator[Recorded] = iter(())
        self._pending: Recorded | None = None
        self._at_end = False
        self._open(self._start_ns)

    # ------------------------------------------------------------ state

    @property
    def duration_s(self) -> float:
        return self.recording.duration_s

    @property
    def position_s(self) -> float:
        """Log time of the last delivered message (or the seek point), from the recording start."""
        return (self._position_ns - self.recording.start_ns) / 1e9

    @property
    def speed(self) -> float:
        return self._speed

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def passes(self) -> int:
        return self._pass + 1

    @property
    def at_end(self) -> bool:
        """True once ``next_batch`` returned None (until the next ``seek``)."""
        return self._at_end

    # ------------------------------------------------------------ controls (any thread)

    def play(self) -> None:
        with self._cond:
            if self._paused:
                self._paused = False
                self._reanchor()
                self._cond.notify_all()

    def pause(self) -> None:
        with self._cond:
            self._paused = True
            self._cond.notify_all()

    def set_speed(self, speed: float | str) -> None:
        with self._cond:
            self._speed = parse_speed(speed)
            self._reanchor()
            self._cond.notify_all()

    def seek(self, t_s: float, engine: Any = None) -> SeekResult:
        """Move the cursor to ``t_s`` seconds from the start of the recording.

        With ``engine`` (a StreamEngine), each selected sensor is resumed from its latest checkpoint
        at or before ``t_s`` and the recorded samples between that checkpoint and ``t_s`` are run
        through the engine (outputs discarded), so the estimates from ``t_s`` on equal those of a
        replay from the start. Sensors without such a checkpoint are forgotten (zero state).
        Seeking after messages were delivered starts a new pass (epochs advance by one), so a
        service fed by the replay sees a restart instead of dropping the samples as duplicates.
        """
        with self._cond:
            t_ns = min(max(self.recording.to_ns(t_s, self._start_ns), self._start_ns), self._end_ns)
            if self._delivered_in_pass:
                self._pass += 1
                self._delivered_in_pass = 0
            result = self._warm(engine, t_ns) if engine is not None else SeekResult(
                (t_ns - self.recording.start_ns) / 1e9, {}, {}, (), ())
            self._open(t_ns)
            self._cond.notify_all()
            return result

    # ------------------------------------------------------------ consumer

    def next_batch(self, max_messages: int = 4096, wait_s: float = 0.1) -> list[Recorded] | None:
        """The messages due now (in log-time order); [] if none is due within ``wait_s``; None at
        the end of the recording (never with ``loop``, unless the selection is empty)."""
        out: list[Recorded] = []
        deadline = time.monotonic() + wait_s
        with self._cond:
            while len(out) < max_messages:
                if self._paused:
                    remaining = deadline - time.monotonic()
                    if out or remaining <= 0:
                        break
                    self._cond.wait(remaining)
                    continue
                rec = self._peek()
                if rec is None:
                    if self.loop and self._delivered_in_pass:
                        self._pass += 1
                        self._delivered_in_pass = 0
                        self._open(self._start_ns)
                        continue
                    if out:
                        return out
                    self._at_end = True
                    return None
                due = self._due(rec)
                if due != -math.inf:  # at max speed, no clock reads
                    now = self._now()
                    if due > now:
                        remaining = min(due - now, deadline - time.monotonic())
                        if out or remaining <= 0:
                            break
                        self._cond.wait(remaining)
                        continue
                out.append(self._take(rec))
        return out

    def __iter__(self) -> Iterator[Recorded]:
        """Every remaining message, paced (a simple consumer: ``for rec in replayer``)."""
        while (batch := self.next_batch()) is not None:
            yield from batch

    # ------------------------------------------------------------ internals (lock held)

    def _open(self, from_ns: int) -> None:
        self._iter = self.recording.iter_recorded(self.topics, from_ns, self._end_ns)
        self._pending = None
        self._position_ns = from_ns
        self._anchor = None
        self._last_clock = None
        self._at_end = False

    def _peek(self) -> Recorded | None:
        if self._pending is None:
            self._pending = next(self._iter, None)
        return self._pending

    def _take(self, rec: Recorded) -> Recorded:
        self._pending = None
        self._position_ns = rec.log_time_ns
        self._last_clock = self._clock(rec)
        self._delivered_in_pass += 1
        if self._pass:
            rec = Recorded(rec.log_time_ns, rec.publish_time_ns, rec.topic, rec.kind, rec.sensor,
                           _bump_epoch(rec.frames, rec.kind, self._pass))
        return rec

    def _clock(self, rec: Recorded) -> int:
        return rec.log_time_ns if self.clock == "log" else rec.publish_time_ns

    def _due(self, rec: Recorded) -> float:
        if math.isinf(self._speed):
            return -math.inf
        if self._anchor is None:
            self._anchor = (self._now(), self._clock(rec))
        wall, clock = self._anchor
        return wall + (self._clock(rec) - clock) / 1e9 / self._speed

    def _reanchor(self) -> None:
        self._anchor = None if self._last_clock is None else (self._now(), self._last_clock)

    def _checkpoints(self) -> dict[str, list[Checkpoint]]:
        if self._checkpoint_index is None:
            index: dict[str, list[Checkpoint]] = {}
            topics = self.recording.topics(("state",), self.sensors)
            for rec in self.recording.iter_recorded(topics):
                cp = Checkpoint.from_recorded(rec)
                if cp is not None:
                    index.setdefault(cp.sensor, []).append(cp)
            self._checkpoint_index = index
        return self._checkpoint_index

    def _warm(self, engine: Any, t_ns: int) -> SeekResult:
        rec = self.recording
        sensors = list(self.sensors) if self.sensors else rec.sensors("samples")
        index = self._checkpoints()
        use: dict[str, Checkpoint] = {}
        fresh: list[str] = []
        for s in sensors:
            before = [cp for cp in index.get(s, []) if cp.log_time_ns <= t_ns]
            if before:
                use[s] = before[-1].shifted(self._pass)
            else:
                fresh.append(s)
        for s in fresh:
            engine.forget(s)
        warm: dict[str, int] = {s: 0 for s in use}
        inexact: list[str] = []
        if use:
            topics = rec.topics(("samples",), list(use))
            lookback = 2_000_000_000
            while True:
                lo = max(rec.start_ns, min(cp.log_time_ns for cp in use.values()) - lookback)
                items, late = self._collect_warmup(topics, use, lo, t_ns)
                if not late or lo <= rec.start_ns:
                    inexact = sorted(late)
                    break
                lookback *= 4  # a sample after a checkpoint came long before it: look further back
            for cp in use.values():
                cp.apply(engine)
            for k in range(0, len(items), 1024):
                engine.process(items[k : k + 1024])
            for s, blk, _ in items:
                warm[s] += blk.count
        return SeekResult((t_ns - rec.start_ns) / 1e9, use, warm, tuple(fresh), tuple(inexact))

    def _collect_warmup(self, topics: list[str], use: dict[str, Checkpoint], lo: int,
                        t_ns: int) -> tuple[list[tuple[str, P.Block, int]], set[str]]:
        """Samples of each sensor from its checkpoint up to ``t_ns`` (the part before the
        checkpoint skipped); ``late``: sensors whose first such sample is past the checkpoint."""
        items: list[tuple[str, P.Block, int]] = []
        started: set[str] = set()
        late: set[str] = set()
        for raw in self.recording.iter_recorded(topics, lo, t_ns):
            r = Recorded(raw.log_time_ns, raw.publish_time_ns, raw.topic, raw.kind, raw.sensor,
                         _bump_epoch(raw.frames, raw.kind, self._pass))
            msg = r.message
            if isinstance(msg, P.DecodeError):
                continue
            cp = use[msg.sensor]
            blk = msg.block
            if msg.sensor not in started:
                if blk.epoch != cp.epoch or blk.seq + blk.count <= cp.next_seq:
                    continue  # before the checkpoint
                if blk.seq > cp.next_seq:
                    late.add(msg.sensor)
                started.add(msg.sensor)
            items.append((msg.sensor, blk, 0))
        return items, late


DEFAULT_SNDHWM = 10_000
"""Messages queued per subscriber before the replay waits (back-pressure, see :func:`replay_socket`)."""
DEFAULT_STALL_TIMEOUT_S = 30.0
"""A replay whose subscribers take nothing for this long stops and reports what it did not send."""
_SEND_POLL_MS = 100


def replay_socket(context: Any, endpoint: str, *, sndhwm: int = DEFAULT_SNDHWM, curve: Any = None) -> tuple[Any, str]:
    """The replay's XPUB socket, lossless: ``(socket, attached endpoint)``.

    A plain PUB drops whatever does not fit in a subscriber's queue, silently: at ``--speed max``
    that was half of a large replay into ``serve``. With ``ZMQ_XPUB_NODROP`` a send that would
    overflow a subscriber's ``SNDHWM`` queue waits instead (the subscriber's own receive queue and
    TCP window propagate its pace back to here), so the replay goes as fast as the slowest
    subscriber takes messages and loses none. The send timeout only lets :func:`publish_recording`
    look at its stop flag and its stall clock while it waits. ``curve``: a
    :class:`streamer.wire.security.Curve` (owned by the caller) that secures the socket, as a CURVE
    client when it connects (``>``), as a server when it binds."""
    import zmq

    from streamer.recording.format import attach

    if sndhwm < 1:
        raise ValueError("sndhwm must be >= 1 (0 would queue without bound)")
    sock = context.socket(zmq.XPUB)  # a PUB that also sees subscriptions: we can wait for a subscriber
    sock.setsockopt(zmq.SNDHWM, sndhwm)
    sock.setsockopt(zmq.XPUB_NODROP, 1)
    sock.setsockopt(zmq.SNDTIMEO, _SEND_POLL_MS)
    try:
        if curve is not None:
            from streamer.wire.security import socket_role

            curve.secure(sock, socket_role([endpoint], "bind"))
        endpoint = attach(sock, endpoint, "bind")
    except BaseException:
        sock.close(0)
        raise
    return sock, endpoint


class PeerWatch:
    """Connections and disconnections of the replay socket's subscribers (a ZeroMQ socket monitor).

    A subscriber that disconnects while messages are queued for it loses them: ZeroMQ drops its
    queue with the connection and says nothing to the sender. ``publish_recording`` counts these
    disconnections, so the replay can say that (and when) messages were lost.

    With ``reconnect`` (the endpoints the socket connects to, ``--pub '>…'``) the same monitor
    drives a :class:`streamer.wire.security.RefusalWatch` (``refusal_watch``): a refused handshake (a
    CURVE server that does not admit this key yet) is reported through ``alarm(line, level)`` and
    reconnected with back-off, since libzmq gives up on it."""

    def __init__(self, sock: Any, *, reconnect: list[str] | None = None, alarm: Any = None):
        import zmq

        self._sock = sock
        self.refusal_watch = None
        events = zmq.EVENT_ACCEPTED | zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED
        if reconnect:
            from streamer.wire.security import HANDSHAKE_EVENTS, RefusalWatch

            self.refusal_watch = RefusalWatch(sock, reconnect, what="replay --pub", monitor=False, alarm=alarm)
            events |= HANDSHAKE_EVENTS
        self._mon = sock.get_monitor_socket(events)
        self.connects = 0
        self.disconnects = 0

    def poll(self) -> int:
        """Read the pending events; returns the disconnections counted so far."""
        import zmq
        from zmq.utils.monitor import recv_monitor_message

        if self._mon is None:
            return self.disconnects
        while self._mon.poll(0):
            try:
                ev = recv_monitor_message(self._mon, zmq.NOBLOCK)
            except zmq.Again:
                break
            event = ev["event"]
            endpoint = ev["endpoint"]
            endpoint = endpoint.decode("utf-8", "replace") if isinstance(endpoint, bytes) else str(endpoint)
            if event == zmq.EVENT_DISCONNECTED:
                if self.refusal_watch is None or endpoint not in self.refusal_watch.refused_now:
                    self.disconnects += 1  # (a refused connection never carried a message)
            elif event == zmq.EVENT_ACCEPTED or event == zmq.EVENT_CONNECTED and self.refusal_watch is None:
                self.connects += 1
            elif self.refusal_watch is not None:
                if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:  # a connection that got in (not one refused)
                    self.connects += 1
                self.refusal_watch.handle(event, endpoint, int(ev["value"]))
        if self.refusal_watch is not None:
            self.refusal_watch.tick()
        return self.disconnects

    def close(self) -> None:
        if self._mon is not None:
            self.poll()
            self._sock.disable_monitor()
            self._mon.close(0)
            self._mon = None


def publish_recording(
    replayer: Replayer,
    sock: Any,
    stop: threading.Event | None = None,
    *,
    batch: int = 4096,
    on_batch: Callable[[list[Recorded]], None] | None = None,
    stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S,
    peers: PeerWatch | None = None,
) -> ReplayStats:
    """Send the replayer's messages on a PUB/XPUB socket until the end (or ``stop``).

    On a :func:`replay_socket` (``XPUB_NODROP``, a send timeout) a full subscriber queue makes the
    send wait: the replay follows the subscribers' pace instead of dropping. If nothing can be sent
    for ``stall_timeout_s`` the replay stops; ``not_sent`` then counts the selected messages it
    did not send (to the end of the pass). A socket without a send timeout blocks (or, a lossy PUB,
    drops) as configured. With ``peers``, ``disconnects`` counts the subscribers' disconnections
    while sending (each one lost what was queued for it)."""
    import zmq

    stop = stop or threading.Event()
    messages = samples = 0
    blocked = 0.0
    stalled = False
    t0 = time.perf_counter()
    cpu0 = time.thread_time()
    send = sock.send_multipart
    leftover: list[Recorded] = []
    while not stop.is_set() and not stalled:
        out = replayer.next_batch(batch, wait_s=0.1)
        if out is None:
            break
        sent_here = 0
        for i, rec in enumerate(out):
            frames = rec.frames
            try:
                send(frames)
            except zmq.Again:  # a subscriber's queue is full: wait for it (never drop)
                waited = time.monotonic()
                ok = False
                while not stop.is_set() and time.monotonic() - waited < stall_timeout_s:
                    try:
                        send(frames)  # waits up to the socket's send timeout
                        ok = True
                        break
                    except zmq.Again:
                        pass
                blocked += time.monotonic() - waited
                if not ok:
                    stalled = not stop.is_set()
                    leftover = out[i:]
                    break
            sent_here += 1
            if len(frames[1]) >= P.HEADER_SIZE:
                samples += _COUNT.unpack_from(frames[1], 40)[0]
        messages += sent_here
        if on_batch is not None and sent_here:
            on_batch(out[:sent_here])
        if peers is not None:
            peers.poll()
    not_sent = 0
    if stalled:
        not_sent = len(leftover)
        if not replayer.loop:  # count the rest of the selection: what the receiver never got
            replayer.set_speed("max")
            while (rest := replayer.next_batch(1 << 16, wait_s=0.0)) is not None:
                not_sent += len(rest)
    disconnects = peers.poll() if peers is not None else 0
    return ReplayStats(messages, samples, time.perf_counter() - t0, replayer.passes, time.thread_time() - cpu0,
                       not_sent, stalled, blocked, disconnects)


def close_and_flush(sock: Any, context: Any, linger_s: float) -> bool:
    """Close ``sock`` with a linger of ``linger_s`` and terminate ``context``, which is what makes
    ZeroMQ send what is still queued before the process exits (a process that only closes its
    socket and exits loses the queue). True when everything queued was written to the transport
    before the linger ran out; False when the linger expired and ZeroMQ discarded the rest."""
    linger_ms = max(0, int(linger_s * 1000))
    sock.close(linger=linger_ms)
    t0 = time.monotonic()
    context.term()  # returns as soon as every socket's queue is flushed, or at the linger's end
    return linger_ms > 0 and time.monotonic() - t0 < linger_ms / 1000 * 0.999


class ReplayController:
    """A :class:`Replayer` publishing on its own socket from its own thread: what the GUI's replay
    bar drives (``play``/``pause``/``set_speed``/``seek``), and what a monitor subscribes to like a
    live feed. Publishes every recorded kind by default (samples and the recorded service outputs).
    """

    def __init__(
        self,
        path: str | Path,
        pub: str = "tcp://127.0.0.1:*",
        *,
        kinds: Sequence[str] | str = KINDS,
        sensors: Sequence[str] | None = None,
        speed: float | str | None = 1.0,
        playing: bool = False,
        loop: bool = False,
        sndhwm: int = 100_000,
        context: Any = None,
    ):
        import zmq

        from streamer.recording.format import attach

        self.replayer = Replayer(path, kinds=kinds, sensors=sensors, speed="max" if speed is None else speed,
                                 loop=loop)
        if not playing:
            self.replayer.pause()
        ctx = context or zmq.Context.instance()
        self._sock = ctx.socket(zmq.XPUB)  # a PUB that also reports subscriptions (``subscriptions``)
        self._sock.setsockopt(zmq.SNDHWM, sndhwm)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._endpoint = attach(self._sock, pub, "bind")
        self._stop = threading.Event()
        self.sent = 0
        self.subscriptions = 0
        """Topic subscriptions currently held by subscribers (a monitor attached: > 0)."""
        self._thread = threading.Thread(target=self._run, name="radarstream-replay", daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return self._endpoint

    @property
    def duration_s(self) -> float:
        return self.replayer.duration_s

    @property
    def position_s(self) -> float:
        return self.replayer.position_s

    @property
    def playing(self) -> bool:
        return not self.replayer.paused and not self.replayer.at_end

    def play(self) -> None:
        self.replayer.play()

    def pause(self) -> None:
        self.replayer.pause()

    def set_speed(self, speed: float | None) -> None:
        """A factor, or None for as fast as possible."""
        self.replayer.set_speed("max" if speed is None else speed)

    def seek(self, position_s: float) -> None:
        self.replayer.seek(position_s)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self._sock.close(0)

    def _run(self) -> None:
        import zmq

        sock = self._sock
        send = sock.send_multipart
        while not self._stop.is_set():
            while sock.poll(0):  # subscription messages: 1 = subscribe, 0 = unsubscribe
                msg = sock.recv(zmq.NOBLOCK)
                if msg:
                    self.subscriptions += 1 if msg[0] == 1 else -1
            batch = self.replayer.next_batch(1024, wait_s=0.05)
            if batch is None:  # at the end: wait for a seek (or close)
                self._stop.wait(0.05)
                continue
            for rec in batch:
                send(rec.frames)
            self.sent += len(batch)


def open_controller(path: str | Path, *, pub: str = "tcp://127.0.0.1:*") -> ReplayController:
    """The GUI's entry point: a paused controller publishing the whole recording on ``pub``."""
    return ReplayController(path, pub)
