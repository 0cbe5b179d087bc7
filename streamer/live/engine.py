"""Per-sensor state and adaptive execution of the causal model (no sockets here).

The engine takes decoded ``samples`` blocks of many sensors, applies the stream policy
(duplicates, gaps, restarts, epochs; docs/reliability.md) and runs the backend as few times as
possible: the runs of all sensors that have the same number of new samples go through one batched
call (``B`` sensors × ``T`` samples), so 1,000 sensors with one new sample each cost one step of
batch 1,000, and a sensor with 64 new samples costs one sequence call. Because every call starts
from each sensor's own carried ``(h, c)``, the output equals one pass of the model over each
sensor's whole stream, however the stream was split into messages.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radarstream.online import Block
from streamer.live.backends.base import StepBackend


@dataclass(frozen=True)
class StreamPolicy:
    """What the engine does with an imperfect stream. Every action is counted and reported."""

    max_gap: int = 100
    """A gap of more than this many missing samples resets the sensor's state (the model's memory
    of a pass it lost the middle of is worse than a fresh start); smaller gaps carry the state on."""
    duplicate_window: int = 4096
    """A message whose samples all lie at most this far behind the expected sequence number is a
    duplicate (dropped). Further behind means the sensor restarted: state reset, message kept."""
    max_sensors: int = 65536
    """Samples of new sensors beyond this many are dropped (``sensor_limit``), never crash."""
    max_run: int = 65536
    """Longest run (one pred block): contiguous messages merged in one drain are cut at this many
    samples, so the service never publishes a block a compliant reader refuses (the protocol's
    limit is 65,536 rows)."""
    max_rows_per_call: int = 65536
    """Most rows (sensors × steps) one backend call takes: a group of long runs is split by
    sensors, so the model's working memory (the LSTM's per-step outputs of every layer: ~1 KiB
    a row at hidden size 64) stays bounded whatever a drain holds — 40 runs of 65,536 samples
    once made one 2.6 M-row call and a 4.7 GiB peak. Outputs do not depend on it
    (tests/streamer/live/test_engine_memory.py)."""

    def __post_init__(self) -> None:
        if self.max_gap < 0:
            raise ValueError(f"StreamPolicy.max_gap must be >= 0, got {self.max_gap}")
        for name in ("duplicate_window", "max_sensors", "max_run", "max_rows_per_call"):
            if getattr(self, name) < 1:
                raise ValueError(f"StreamPolicy.{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class Event:
    """Something the engine did to a sensor's stream; published on ``event/<sensor>``."""

    sensor: str
    type: str
    seq: int
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    """Predictions for consecutive samples of one sensor (one pred message)."""

    sensor: str
    epoch: int
    seq: int
    t0_ns: int
    period_ns: int
    x: np.ndarray  # [T, C] the input samples
    y: np.ndarray  # [T] the causal estimates (Dmin / R_max)
    recv_ns: np.ndarray  # [T] receive time of each sample's message (for latency)
    reset_before: bool  # the state was reset just before this run's first sample
    truth: np.ndarray | None = None  # [T, 4] ground truth when the source sent it (NaN rows: none)
    y_std: np.ndarray | None = None  # [T] the estimate's standard deviation, when the model predicts one


def run_block(run: Run) -> Block:
    """A run as an online-vocabulary block (radarstream.online): its samples, their times, the
    truth, and the causal estimate for the estimators that combine with it."""
    k = np.arange(run.y.shape[0], dtype=np.int64)
    estimate = run.y if run.y_std is None else np.stack([run.y, run.y_std], axis=1)
    seq = np.uint64(run.seq) + k.astype(np.uint64)  # u64 like the wire: the top half of the range is valid
    return Block(run.t0_ns + run.period_ns * k, run.x, run.truth, estimate, run.period_ns, seq)


@dataclass
class SensorState:
    """What the engine carries per sensor: a slot in the state pool and where the stream is."""

    slot: int
    epoch: int
    next_seq: int
    period_ns: int = 0
    samples: int = 0
    counters: Counter = field(default_factory=Counter)
    reset_pending: bool = False  # an explicit reset arrived; applies before the next sample


@dataclass
class _Pending:
    sensor: str
    epoch: int
    seq: int
    t0_ns: int
    period_ns: int
    parts: list[np.ndarray]
    recv: list[int]  # receive time of each part's message
    reset_before: bool
    count: int = 0
    truth: list[np.ndarray | None] = field(default_factory=list)
    src: tuple[np.ndarray, int] | None = None  # (records, row): a one-part run read from an array drain



def model_input(x: np.ndarray, period_ns: list[int], input_size: int) -> np.ndarray:
    """The backend's input: raw ``[amplitude, distance]`` samples ``x [B, T, 2]``, plus a third
    channel ``period_s`` (each run's sample period, seconds) for models that take it. Stateless:
    a run's input depends only on its own samples and period, so any split gives the same."""
    if input_size != 3:
        return x
    period = np.asarray(period_ns, np.float64).astype(np.float32) * np.float32(1e-9)
    col = np.broadcast_to(period[:, None, None], (x.shape[0], x.shape[1], 1))
    return np.concatenate([x, col.astype(np.float32)], axis=2)


def raw_channels(model) -> int:
    """Raw input channels a torch model's normaliser takes: 3 when it reads the sample period
    (``model_input`` appends it), else 2 (``[amplitude, distance]``)."""
    return 3 if getattr(getattr(model, "normalizer", None), "with_period", False) else 2


class StatePool:
    """``(h, c)`` of every sensor in two arrays ``[layers, capacity, hidden]`` (grows by doubling)."""

    def __init__(self, num_layers: int, hidden_size: int, capacity: int = 64):
        self.h = np.zeros((num_layers, capacity, hidden_size), np.float32)
        self.c = np.zeros_like(self.h)
        self._free: list[int] = list(range(capacity - 1, -1, -1))

    def allocate(self) -> int:
        if not self._free:
            old = self.h.shape[1]
            grow = lambda a: np.concatenate([a, np.zeros_like(a)], axis=1)  # noqa: E731
            self.h, self.c = grow(self.h), grow(self.c)
            self._free = list(range(2 * old - 1, old - 1, -1))
        slot = self._free.pop()
        self.reset(slot)
        return slot

    def release(self, slot: int) -> None:
        self.reset(slot)
        self._free.append(slot)

    def reset(self, slot: int) -> None:
        self.h[:, slot] = 0.0
        self.c[:, slot] = 0.0


class StreamEngine:
    """Per-sensor state + batched execution over a :class:`StepBackend`."""

    def __init__(self, backend: StepBackend, policy: StreamPolicy = StreamPolicy()):
        self.backend = backend
        self.policy = policy
        self.pool = StatePool(backend.num_layers, backend.hidden_size)
        self.sensors: dict[str, SensorState] = {}
        self.counters: Counter = Counter()  # global counters by reason
        self.calls: Counter = Counter()  # backend calls by (batch, time) shape, for the benchmark
        self.fast_samples = 0  # samples admitted by process_drain's array checks (tests, benchmark)

    # ------------------------------------------------------------ state control

    def reset(self, sensor: str, reason: str = "explicit") -> Event | None:
        """Zero a sensor's state (``event`` type ``reset``); None if the sensor is unknown."""
        st = self.sensors.get(sensor)
        if st is None:
            return None
        self.pool.reset(st.slot)
        self._count(st, f"reset_{reason}")
        return Event(sensor, "reset", st.next_seq, {"reason": reason})

    def forget(self, sensor: str) -> None:
        """Drop a sensor entirely (its slot is reused)."""
        st = self.sensors.pop(sensor, None)
        if st is not None:
            self.pool.release(st.slot)

    def get_state(self, sensor: str) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Copies of ``(h, c)`` [layers, hidden], the epoch and the next expected sequence number:
        all a sensor's state is, so it can be checkpointed or moved to another worker."""
        st = self.sensors[sensor]
        return self.pool.h[:, st.slot].copy(), self.pool.c[:, st.slot].copy(), st.epoch, st.next_seq

    def set_state(self, sensor: str, h: np.ndarray, c: np.ndarray, epoch: int, next_seq: int) -> None:
        """Resume a sensor from a checkpoint (e.g. replay seeking from a recorded state)."""
        st = self.sensors.get(sensor)
        if st is None:
            st = self.sensors[sensor] = SensorState(self.pool.allocate(), epoch, next_seq)
        st.epoch, st.next_seq = epoch, next_seq
        self.pool.h[:, st.slot] = h
        self.pool.c[:, st.slot] = c

    def _count(self, st: SensorState | None, reason: str, n: int = 1) -> None:
        self.counters[reason] += n
        if st is not None:
            st.counters[reason] += n

    # ------------------------------------------------------------ processing

    def process(
        self, items: list[tuple[str, Any, int]]
    ) -> tuple[list[Run], list[Event]]:
        """Run the model on a drained batch of ``(sensor, samples Block, recv_ns)`` in arrival
        order; a ``None`` block is an explicit reset request, ordered with the samples around it.
        Returns the prediction runs and the stream events, both in a deterministic order."""
        events: list[Event] = []
        pending: dict[str, list[_Pending]] = {}
        for item in items:
            sensor, block, recv_ns = item[0], item[1], item[2]
            if block is None:
                self._request_reset(sensor, events)
            else:
                truth = item[3] if len(item) > 3 else None
                self._admit(sensor, block, recv_ns, pending, events, truth)
        runs = self._execute(pending)
        for st in self.sensors.values():  # resets that no later sample consumed
            if st.reset_pending:
                self.pool.reset(st.slot)
                st.reset_pending = False
        return runs, events

    def process_drain(self, batch, slow: list[tuple[int, tuple]], *, slow_sensors: set[str] = frozenset()
                      ) -> tuple[list[Run], list[Event]]:
        """:meth:`process` over one drain given as arrays: ``batch`` (a
        :class:`streamer.wire.protocol.SampleBatch`: plain samples messages) and ``slow``
        (``(position in the drain, item)`` pairs, items as :meth:`process` takes them).

        The common case, a known sensor whose messages all continue its sequence (same epoch,
        no reset pending, contiguous seqs and times, one period, at most ``max_run`` samples), is
        admitted per sensor with array checks; every other message of ``batch`` (and every
        message of a sensor in ``slow_sensors`` or with any ``slow`` item) goes through the same
        per-message policy as :meth:`process`, in arrival order. Runs, events and counters are
        those :meth:`process` gives for the same messages in the same order (tests/streamer/live/test_drain.py)."""
        n = len(batch)
        if n and not slow and not slow_sensors:
            runs = self._uniform(batch)
            if runs is not None:
                return runs, []
        fast_pending: list[tuple[int, _Pending]] = []
        if n:
            forced = set(slow_sensors)
            forced.update(item[0] for _, item in slow)
            ok_msg = self._fast_admit(batch, forced, fast_pending)
            if not ok_msg.all():
                slow = slow + [(int(batch.index[k]), (batch.sensor[k], batch.block(k), int(batch.recv_ns[k])))
                               for k in np.flatnonzero(~ok_msg).tolist()]
                slow.sort(key=lambda e: e[0])
        events: list[Event] = []
        pending: dict[str, list[_Pending]] = {}
        created: list[tuple[int, str]] = []
        for pos, item in slow:
            sensor, block = item[0], item[1]
            if block is None:
                self._request_reset(sensor, events)
                continue
            new = sensor not in pending
            self._admit(sensor, block, item[2], pending, events, item[3] if len(item) > 3 else None)
            if new and sensor in pending:
                created.append((pos, sensor))
        if fast_pending and not created:  # fast_pending is in first-arrival order already
            pending = {p.sensor: [p] for _, p in fast_pending}
        elif fast_pending:
            order = sorted([(pos, sensor, None) for pos, sensor in created]
                           + [(pos, p.sensor, p) for pos, p in fast_pending], key=lambda e: e[0])
            merged: dict[str, list[_Pending]] = {}
            for _, sensor, p in order:
                merged[sensor] = pending[sensor] if p is None else [p]
            pending = merged
        runs = self._execute(pending)
        if any(item[1] is None for _, item in slow):  # only a reset request in this drain leaves one pending
            for st in self.sensors.values():  # resets that no later sample consumed
                if st.reset_pending:
                    self.pool.reset(st.slot)
                    st.reset_pending = False
        return runs, events

    def _uniform(self, batch) -> list[Run] | None:
        """The commonest drain, run without per-message objects: every message from a different
        known sensor, each continuing its sequence, all of one length (one frame size). Exactly
        what :meth:`_fast_admit` + :meth:`_execute` give for it (one round, one group, the rows in
        arrival order); None when the drain is anything else."""
        n = len(batch)
        if len(batch.groups) != 1:
            return None
        names = batch.sensor
        get = self.sensors.get
        sts = [get(s) for s in names]
        if any(st is None or st.reset_pending for st in sts) or len(set(names)) != n:
            return None
        t = int(batch.count[0])
        if t > self.policy.max_run:
            return None
        epoch = np.fromiter((st.epoch for st in sts), np.uint64, n)
        nxt = np.fromiter((min(st.next_seq, (1 << 64) - 1) for st in sts), np.uint64, n)
        if not (np.array_equal(epoch, batch.epoch) and np.array_equal(nxt, batch.seq)):
            return None
        rec = batch.groups[0]
        slots = np.fromiter((st.slot for st in sts), np.int64, n)
        x = rec["data"][batch.where[:, 1]]  # [n, t, C]: the values np.stack of the parts gives
        seq_l, t0_l, per_l = batch.seq.tolist(), batch.t0_ns.tolist(), batch.period_ns.tolist()
        y, y_std = self._step(x, per_l, slots)
        recv = batch.recv_ns
        recv_rows = recv[:, None] if t == 1 else np.repeat(recv[:, None], t, axis=1)
        runs = []
        for k, st in enumerate(sts):
            runs.append(Run(names[k], st.epoch, seq_l[k], t0_l[k], per_l[k], x[k], y[k], recv_rows[k], False, None,
                            None if y_std is None else y_std[k]))
            st.next_seq = seq_l[k] + t
            st.period_ns = per_l[k]
            st.samples += t
            st.counters["samples"] += t
        self.counters["samples"] += n * t
        self.fast_samples += n * t
        return runs

    def _fast_admit(self, batch, forced: set[str], out: list[tuple[int, "_Pending"]]) -> np.ndarray:
        """Admit the in-order sensors of ``batch``; returns the mask of the messages admitted."""
        n = len(batch)
        ids: dict[str, int] = {}
        sid = np.fromiter((ids.setdefault(s, len(ids)) for s in batch.sensor), np.int64, n)
        names = list(ids)
        sensors = self.sensors
        sts = [sensors.get(s) for s in names]
        known = np.fromiter((st is not None and not st.reset_pending and s not in forced
                             for s, st in zip(names, sts)), bool, len(names))
        if not known.any():
            return np.zeros(n, bool)
        exp_epoch = np.array([st.epoch if k else 0 for st, k in zip(sts, known.tolist())], np.uint64)
        exp_seq = np.array([min(st.next_seq, (1 << 64) - 1) if k else 0 for st, k in zip(sts, known.tolist())], np.uint64)
        order = np.argsort(sid, kind="stable")  # each sensor's messages together, in arrival order
        s_sid = sid[order]
        seq, count, period = batch.seq[order], batch.count[order], batch.period_ns[order]
        t0 = batch.t0_ns[order].view(np.uint64)
        first = np.ones(n, bool)
        first[1:] = s_sid[1:] != s_sid[:-1]
        good = known[s_sid] & (batch.epoch[order] == exp_epoch[s_sid])
        prev_end = np.empty(n, np.uint64)
        prev_end[1:] = seq[:-1] + count[:-1].astype(np.uint64)
        prev_t = np.empty(n, np.uint64)
        prev_t[1:] = t0[:-1] + count[:-1].astype(np.uint64) * period[:-1]  # modular: exact equality test
        prev_p = np.empty(n, np.uint64)
        prev_p[1:] = period[:-1]
        good &= np.where(first, seq == exp_seq[s_sid], (seq == prev_end) & (t0 == prev_t) & (period == prev_p))
        starts = np.flatnonzero(first)
        total = np.add.reduceat(count, starts)
        sensor_ok = np.logical_and.reduceat(good, starts) & (total <= self.policy.max_run)
        ok_sorted = np.repeat(sensor_ok, np.diff(np.append(starts, n)))
        ok = np.empty(n, bool)
        ok[order] = ok_sorted
        if not sensor_ok.any():
            return ok
        ends = np.append(starts[1:], n).tolist()
        starts_l, order_l, sid_l, total_l = starts.tolist(), order.tolist(), s_sid.tolist(), total.tolist()
        idx, recv = batch.index.tolist(), batch.recv_ns.tolist()
        seq_l, t0_l, per_l = batch.seq.tolist(), batch.t0_ns.tolist(), batch.period_ns.tolist()
        w_grp, w_row, groups = batch.where[:, 0].tolist(), batch.where[:, 1].tolist(), batch.groups
        counters = self.counters
        admitted = 0
        for g in np.flatnonzero(sensor_ok).tolist():
            a, b = starts_l[g], ends[g]
            k0 = order_l[a]
            u = sid_l[a]
            name, st = names[u], sts[u]
            m = total_l[g]
            if b - a == 1:
                rec, row = groups[w_grp[k0]], w_row[k0]
                pend = _Pending(name, st.epoch, seq_l[k0], t0_l[k0], per_l[k0], [rec["data"][row]], [recv[k0]], False,
                                m, [None], (rec, row))
            else:
                ks = order_l[a:b]
                pend = _Pending(name, st.epoch, seq_l[k0], t0_l[k0], per_l[k0], [batch.data(k) for k in ks],
                                [recv[k] for k in ks], False, m, [None] * (b - a))
            out.append((idx[k0], pend))
            st.next_seq = seq_l[k0] + m
            st.period_ns = per_l[k0]
            st.samples += m
            st.counters["samples"] += m
            admitted += m
        counters["samples"] += admitted
        self.fast_samples += admitted
        return ok

    def _request_reset(self, sensor: str, events: list[Event]) -> None:
        st = self.sensors.get(sensor)
        if st is None:
            self._count(None, "reset_unknown_sensor")
            return
        st.reset_pending = True
        self._count(st, "reset_explicit")
        events.append(Event(sensor, "reset", st.next_seq, {"reason": "explicit"}))

    def _admit(self, sensor, block, recv_ns, pending, events, truth=None) -> None:
        pol = self.policy
        count = block.count
        st = self.sensors.get(sensor)
        reset_before = False
        if st is None:
            if len(self.sensors) >= pol.max_sensors:
                self._count(None, "sensor_limit", count)
                events.append(Event(sensor, "dropped", block.seq, {"reason": "sensor_limit", "count": count}))
                return
            st = self.sensors[sensor] = SensorState(self.pool.allocate(), block.epoch, block.seq, block.period_ns)
            self._count(st, "new_sensor")
            events.append(Event(sensor, "new_sensor", block.seq, {"sensor_epoch": block.epoch}))
            reset_before = True
        elif block.epoch != st.epoch:
            events.append(Event(sensor, "epoch_change", block.seq, {"old_epoch": st.epoch, "new_epoch": block.epoch, "action": "reset"}))
            self._count(st, "epoch_change")
            st.epoch, st.next_seq = block.epoch, block.seq
            reset_before = True
        if st.reset_pending:
            reset_before, st.reset_pending = True, False
        seq, data, offset = block.seq, block.data, 0
        if seq < st.next_seq:
            behind = st.next_seq - seq
            if seq + count <= st.next_seq and behind <= pol.duplicate_window:
                self._count(st, "duplicate", count)
                events.append(Event(sensor, "duplicate", seq, {"count": count, "action": "drop"}))
                return
            if seq + count > st.next_seq and behind <= pol.duplicate_window:
                offset = st.next_seq - seq  # overlap: keep only the new tail
                self._count(st, "duplicate", offset)
                events.append(Event(sensor, "duplicate", seq, {"count": offset, "action": "drop_overlap"}))
            else:
                self._count(st, "backwards")
                events.append(Event(sensor, "backwards", seq, {"expected": st.next_seq, "action": "reset"}))
                st.next_seq = seq
                reset_before = True
        elif seq > st.next_seq:
            missing = seq - st.next_seq
            action = "reset" if missing > pol.max_gap else "continue"
            self._count(st, "gap")
            self._count(st, "gap_samples", missing)
            events.append(Event(sensor, "gap", st.next_seq, {"from_seq": st.next_seq, "to_seq": seq - 1, "count": missing, "action": action}))
            if action == "reset":
                reset_before = True
        first = seq + offset
        n = count - offset
        st.next_seq = first + n
        st.period_ns = block.period_ns
        st.samples += n
        self._count(st, "samples", n)
        runs = pending.setdefault(sensor, [])
        last = runs[-1] if runs else None
        t0 = block.t0_ns + offset * block.period_ns
        part = data[offset:]
        tpart = truth.data[offset:] if truth is not None else None
        continues = (last is not None and last.seq + last.count == first and last.period_ns == block.period_ns
                     and last.t0_ns + last.count * last.period_ns == t0 and last.count + n <= pol.max_run)
        if continues and not reset_before:  # a run's rows carry t0 + k * period: times must continue too
            last.parts.append(part)
            last.recv.append(recv_ns)
            last.truth.append(tpart)
            last.count += n
        else:  # a reset or a time break starts a new run: a sensor's runs execute in order, one per round
            runs.append(_Pending(sensor, st.epoch, first, t0, block.period_ns, [part], [recv_ns], reset_before, n, [tpart]))

    def _execute(self, pending: dict[str, list[_Pending]]) -> list[Run]:
        runs: list[Run] = []
        rounds = max((len(v) for v in pending.values()), default=0)
        for r in range(rounds):
            by_len: dict[int, list[_Pending]] = {}
            for sensor_runs in pending.values():
                if r < len(sensor_runs):
                    p = sensor_runs[r]
                    by_len.setdefault(p.count, []).append(p)
            for t, group in by_len.items():
                runs.extend(self._run_group(t, group))
        return runs

    def _step(self, x: np.ndarray, periods: list[int], slots: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Run the backend over ``x`` [n, t, C] from the sensors' pooled state and store the new
        state: ``(y, y_std)``, arrays of their own (the backend reuses its buffers). Calls hold at
        most ``policy.max_rows_per_call`` rows (sensors are split, never time)."""
        n, t = x.shape[0], x.shape[1]
        per_call = max(1, self.policy.max_rows_per_call // max(t, 1))
        ys, stds = [], []
        for a in range(0, n, per_call):
            b = min(a + per_call, n)
            sl = slots[a:b]
            y, y_std, hn, cn = self.backend.run_full(model_input(x[a:b], periods[a:b], self.backend.input_size),
                                                     self.pool.h[:, sl], self.pool.c[:, sl])
            self.pool.h[:, sl] = hn
            self.pool.c[:, sl] = cn
            self.calls[(b - a, t)] += 1
            ys.append(y.copy())
            stds.append(None if y_std is None else y_std.copy())
        if len(ys) == 1:
            return ys[0], stds[0]
        return np.concatenate(ys), (None if stds[0] is None else np.concatenate(stds))

    def _run_group(self, t: int, group: list[_Pending]) -> list[Run]:
        slots = np.fromiter((self.sensors[p.sensor].slot for p in group), np.int64, len(group))
        for p in group:  # resets decided while admitting apply here, after the sensor's earlier runs
            if p.reset_before:
                self.pool.reset(self.sensors[p.sensor].slot)
        src = group[0].src
        if len(group) == 1:
            p = group[0]
            x = (p.parts[0] if len(p.parts) == 1 else np.concatenate(p.parts))[None]
        elif src is not None and all(p.src is not None and p.src[0] is src[0] for p in group):
            x = src[0]["data"][[p.src[1] for p in group]]  # one gather: the same values np.stack gives
        else:
            x = np.stack([p.parts[0] if len(p.parts) == 1 else np.concatenate(p.parts) for p in group])
        y, y_std = self._step(x, [p.period_ns for p in group], slots)
        out = []
        recv1 = np.fromiter((p.recv[0] for p in group), np.int64, len(group)) if t == 1 else None
        for k, p in enumerate(group):
            if recv1 is not None:
                recv = recv1[k : k + 1]
            elif len(p.recv) == 1:
                recv = np.full(p.count, p.recv[0], np.int64)
            else:
                recv = np.repeat(np.array(p.recv, np.int64), [q.shape[0] for q in p.parts])
            truth = None
            if any(t is not None for t in p.truth):
                truth = np.concatenate([
                    t if t is not None else np.full((q.shape[0], 4), np.nan, np.float32)
                    for t, q in zip(p.truth, p.parts)
                ])
            out.append(Run(p.sensor, p.epoch, p.seq, p.t0_ns, p.period_ns, x[k], y[k], recv, p.reset_before, truth,
                           None if y_std is None else y_std[k]))
        return out
