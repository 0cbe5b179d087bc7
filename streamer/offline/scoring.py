"""Offline scoring: run recorded or simulated samples through the same engine as ``serve``.

``score_messages`` feeds decoded samples blocks and explicit reset requests, in their recorded order, to a
:class:`~streamer.live.engine.StreamEngine` over the same backend the service uses (so gaps, epochs,
duplicates and restarts are handled exactly as live), then adds per sample the classical and
hybrid estimates (as ``serve`` computes them, see ``StreamService._hybrid``) and the bidirectional
re-score (windows cut by the same :class:`~streamer.live.rescore.WindowAssembler` as ``serve
--rescore``; each sample takes the estimate of the *last* window covering it).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from radarstream.errors import RadarstreamError
from streamer.live.engine import StreamPolicy
from streamer.live.rescore import RescoreConfig
from streamer.wire import protocol as P

BASE_COLUMNS = ("sensor", "epoch", "seq", "time_ns", "amplitude", "distance", "causal", "causal_m", "bidir",
                "classical", "hybrid", "causal_std", "classical_std", "hybrid_std")
TRUTH_COLUMNS = ("dmin_m", "in_encounter", "true_range_m")
ESTIMATES = ("causal", "bidir", "classical", "hybrid")


@dataclass
class _RunRows:
    """Per-sample outputs of one engine run (filled in place; bidir arrives later)."""

    sensor: str
    epoch: int
    seq: int
    time_ns: np.ndarray  # int64 [T]
    x: np.ndarray  # [T, 2]
    causal: np.ndarray  # float32 [T]
    classical: np.ndarray  # [T]
    hybrid: np.ndarray  # [T]
    truth: np.ndarray | None  # [T, 4]
    std: np.ndarray  # [T, 3]: causal, classical, hybrid standard deviations (normalised; NaN: unknown)
    bidir: np.ndarray  # float32 [T], NaN until a window covers the sample


@dataclass
class _Segment:
    """The runs of a sensor's current contiguous stretch (what the assembler is buffering)."""

    epoch: int
    end_seq: int
    runs: list[tuple[int, _RunRows]] = field(default_factory=list)  # (first seq, rows)


@dataclass
class ScoreResult:
    columns: dict[str, np.ndarray]
    """Column name -> array (one entry per sample); see :data:`BASE_COLUMNS`/:data:`TRUTH_COLUMNS`."""
    r_max_m: float
    has_truth: bool
    messages: int = 0
    rejected: int = 0
    counters: Counter = field(default_factory=Counter)  # engine counters (duplicate, gap, ...)
    resets: int = 0
    """Explicit reset requests (``event/<sensor>`` ``{"type": "reset"}``) fed to the engine."""

    @property
    def rows(self) -> int:
        return int(self.columns["seq"].shape[0])

    def summary(self) -> list[dict[str, Any]]:
        """Per sensor: samples, encounters and (with truth) MAE in metres over in-encounter samples."""
        cols = self.columns
        out = []
        sensors = cols["sensor"]
        for s in dict.fromkeys(sensors.tolist()):
            m = sensors == s
            row: dict[str, Any] = {"sensor": s, "samples": int(m.sum()), "encounters": None}
            if self.has_truth:
                inside = cols["in_encounter"][m] > 0.5
                inside_f = np.nan_to_num(cols["in_encounter"][m]) > 0.5
                row["encounters"] = int(np.count_nonzero(np.diff(np.concatenate([[0], inside_f.astype(np.int8)])) == 1))
                truth_m = cols["dmin_m"][m]
                for name in ESTIMATES:
                    est = cols[name][m].astype(np.float64) * self.r_max_m
                    ok = inside & np.isfinite(est) & np.isfinite(truth_m)
                    row[f"mae_{name}"] = float(np.mean(np.abs(est[ok] - truth_m[ok]))) if ok.any() else None
            out.append(row)
        return out


def is_reset_request(msg: P.Message) -> bool:
    """A publisher's explicit reset request (protocol §6: ``event/<sensor>`` ``{"type": "reset"}``).

    ``serve`` acts on every such event of its feed (``StreamService._drain_once``). A recording of
    ``serve`` also holds the service's own ``reset`` events on the same topic: those report a reset
    already done and always carry a ``reason`` (``explicit``, ...); applying them again would reset
    the sensor a second time, a drain later. So a reset event with a ``reason`` is not a request."""
    if msg.kind is not P.Kind.EVENT or msg.sensor == "_service":
        return False
    meta = msg.meta or {}
    return meta.get("type") == "reset" and "reason" not in meta


class ScoreError(RadarstreamError, RuntimeError):
    """A user-facing failure (bad input, missing dependency)."""


def score_messages(
    frames_iter: Iterable[Sequence[Any]],
    backend: Any,
    *,
    weights_dir: str | Path | None = None,
    bidir_backend: str = RescoreConfig.backend,
    window: int = RescoreConfig.window,
    hop: int = RescoreConfig.hop,
    max_gap: int = StreamPolicy.max_gap,
    drain: int = 512,
    progress: Callable[[int], None] | None = None,
) -> ScoreResult:
    """Score multipart messages (``[topic, samples block, truth block?]``, as on the wire) in order.

    ``backend`` is a causal :class:`~streamer.live.backends.base.StepBackend` (``make_backend``).
    Messages are fed to the engine in batches of ``drain`` (as the service drains its socket; the
    engine's output does not depend on the split). Messages that do not decode, or are not
    samples, are skipped (``rejected``)."""
    from models.classical import CPAFitConfig
    from models.hybrid import HybridBank
    from models.profile import RadarProfile
    from streamer.live.engine import StreamEngine, StreamPolicy, run_block
    from streamer.live.rescore import WindowAssembler

    if window < 2 or not 0 < hop <= window:
        raise ScoreError("need --window >= 2 and 0 < --hop <= --window")
    engine = StreamEngine(backend, StreamPolicy(max_gap=max_gap))
    r_max = float(backend.r_max_m)
    assembler = WindowAssembler(window, hop)
    profile = getattr(backend, "profile", None) or RadarProfile.legacy(r_max)
    hybrids = HybridBank(CPAFitConfig.for_profile(profile))  # as serve: the profile's R_max and range noise
    segments: dict[str, _Segment] = {}
    rows: list[_RunRows] = []
    pending: list[tuple[Any, list[tuple[np.ndarray, slice, slice]]]] = []  # windows to score, with targets
    scorer: list[Any] = []  # created on the first window (loading the bidir model costs)
    has_truth = False
    messages = rejected = resets = 0

    def classical(run) -> np.ndarray:  # as StreamService._hybrid: [T, 4] classical, σ, hybrid, σ
        return hybrids.update(run.sensor, run_block(run), reset_before=run.reset_before)

    def flush_windows() -> None:
        if not pending:
            return
        if not scorer:
            from streamer.live.rescore import BidirScorer

            scorer.append(BidirScorer(weights_dir, bidir_backend, profile=getattr(backend, "profile", None)))
        for k in range(0, len(pending), 32):
            part = pending[k : k + 32]
            y = scorer[0].score(np.stack([w.x for w, _ in part]), [w.period_ns for w, _ in part])
            for (_, targets), yw in zip(part, y):  # in emission order: the last window wins
                for dst, dsl, ssl in targets:
                    dst[dsl] = yw[ssl]
        pending.clear()

    def on_runs(runs) -> None:
        nonlocal has_truth
        for run in runs:
            t = run.y.shape[0]
            est = classical(run)
            c, h = est[:, 0], est[:, 2]
            y_std = np.full(t, np.nan) if run.y_std is None else run.y_std
            truth = None if run.truth is None else np.asarray(run.truth, np.float64)
            has_truth = has_truth or truth is not None
            rr = _RunRows(run.sensor, run.epoch, run.seq,
                          run.t0_ns + run.period_ns * np.arange(t, dtype=np.int64),
                          np.asarray(run.x, np.float32), np.asarray(run.y, np.float32),
                          np.asarray(c, np.float64), np.asarray(h, np.float64), truth,
                          np.stack([y_std, est[:, 1], est[:, 3]], axis=1), np.full(t, np.nan, np.float32))
            rows.append(rr)
            seg = segments.get(run.sensor)
            if seg is None or run.reset_before or seg.epoch != run.epoch or seg.end_seq != run.seq:
                seg = segments[run.sensor] = _Segment(run.epoch, run.seq)  # same rule as the assembler
            seg.runs.append((run.seq, rr))
            seg.end_seq = run.seq + t
            for w in assembler.add(run):
                lo, hi = w.seq, w.seq + w.x.shape[0]
                targets = []
                for first, r in seg.runs:
                    a, b = max(lo, first), min(hi, first + r.causal.shape[0])
                    if a < b:
                        targets.append((r.bidir, slice(a - first, b - first), slice(a - lo, b - lo)))
                pending.append((w, targets))
            if seg.runs:  # drop runs that no future window (starting at >= next start) can cover
                nxt = assembler._buf[run.sensor].next_window if run.sensor in assembler._buf else seg.end_seq
                seg.runs = [(f, r) for f, r in seg.runs if f + r.causal.shape[0] > nxt]
        if len(pending) >= 32:
            flush_windows()

    items: list[tuple] = []
    for frames in frames_iter:
        messages += 1
        msg = P.decode_message(frames)
        if isinstance(msg, P.DecodeError):
            rejected += 1
        elif msg.kind is P.Kind.SAMPLES:
            items.append((msg.sensor, msg.block, 0, msg.truth))
        elif msg.kind is P.Kind.EVENT:
            if is_reset_request(msg):  # as StreamService._drain_once: ordered with the samples around it
                items.append((msg.sensor, None, 0))
                resets += 1
        else:
            rejected += 1
        if len(items) >= drain:
            on_runs(engine.process(items)[0])
            items = []
        if progress is not None:
            progress(1)
    if items:
        on_runs(engine.process(items)[0])
    flush_windows()
    return ScoreResult(_columns(rows, r_max, has_truth), r_max, has_truth, messages, rejected,
                       Counter(engine.counters), resets)


def _columns(rows: list[_RunRows], r_max: float, has_truth: bool) -> dict[str, np.ndarray]:
    # group by sensor (first appearance order), keeping each sensor's processing order
    order: dict[str, list[_RunRows]] = {}
    for r in rows:
        order.setdefault(r.sensor, []).append(r)
    runs = [r for rs in order.values() for r in rs]

    def cat(get, dtype) -> np.ndarray:
        return np.concatenate([get(r) for r in runs]).astype(dtype) if runs else np.empty(0, dtype)

    cols: dict[str, np.ndarray] = {
        "sensor": cat(lambda r: np.full(r.causal.shape[0], r.sensor, object), object),
        "epoch": cat(lambda r: np.full(r.causal.shape[0], r.epoch, np.uint64), np.uint64),
        "seq": cat(lambda r: r.seq + np.arange(r.causal.shape[0], dtype=np.int64), np.int64),
        "time_ns": cat(lambda r: r.time_ns, np.int64),
        "amplitude": cat(lambda r: r.x[:, 0], np.float32),
        "distance": cat(lambda r: r.x[:, 1], np.float32),
        "causal": cat(lambda r: r.causal, np.float32),
        "causal_m": cat(lambda r: r.causal * np.float32(r_max), np.float32),  # as serve publishes it
        "bidir": cat(lambda r: r.bidir, np.float32),
        "classical": cat(lambda r: r.classical, np.float64),
        "hybrid": cat(lambda r: r.hybrid, np.float64),
        "causal_std": cat(lambda r: r.std[:, 0], np.float32),
        "classical_std": cat(lambda r: r.std[:, 1], np.float32),
        "hybrid_std": cat(lambda r: r.std[:, 2], np.float32),
    }
    if has_truth:
        def tr(r, k):
            return r.truth[:, k] if r.truth is not None else np.full(r.causal.shape[0], np.nan)

        cols["dmin_m"] = cat(lambda r: tr(r, 0) * r_max, np.float64)
        cols["in_encounter"] = cat(lambda r: tr(r, 1), np.float64)
        cols["true_range_m"] = cat(lambda r: tr(r, 2), np.float64)
    return cols


# ------------------------------------------------------------------ sources


def simulated_frames(seconds: float, seed: int, sensors: int, samples_per_message: int = 1,
                     epoch: int | None = None) -> tuple[Iterable[list[bytes]], int]:
    """The messages ``radarstream simulate --duration SECONDS`` would publish, and their count
    (a :class:`~streamer.sources.simulated.SimulatedSource`)."""
    from streamer.sim.publisher import FeedConfig
    from streamer.sources.simulated import SimulatedSource

    if seconds <= 0 or sensors < 1 or samples_per_message < 1:
        raise ScoreError("--simulate needs SECONDS > 0, --sensors >= 1 and --samples-per-message >= 1")
    source = SimulatedSource(FeedConfig(sensors=sensors, samples_per_message=samples_per_message,
                                        duration_s=seconds, seed=seed, realtime=False), epoch=epoch)
    return iter(source), source.total_messages() or 0


def recorded_frames(path: str | Path) -> tuple[Iterable[tuple[bytes, ...]], int | None]:
    """The samples and event messages of a recording in log-time order, truth frame included when
    recorded (a :class:`~streamer.sources.recorded.RecordedSource`). The events carry the
    publishers' explicit reset requests, which ``score_messages`` applies where ``serve`` did."""
    from streamer.sources.recorded import RecordedSource

    source = RecordedSource(path, kinds=("samples", "event"))
    return iter(source), source.total_messages()


# ------------------------------------------------------------------ output


CSV_NAMES = {
    "sensor": "sensor", "epoch": "epoch", "seq": "seq", "time_ns": "time_ns", "amplitude": "amplitude", "distance": "distance_m",
    "causal": "causal_norm", "causal_m": "causal_m", "bidir": "bidir_norm", "classical": "classical_norm",
    "hybrid": "hybrid_norm", "causal_std": "causal_std_norm", "classical_std": "classical_std_norm",
    "hybrid_std": "hybrid_std_norm", "dmin_m": "true_dmin_m", "in_encounter": "in_encounter", "true_range_m": "true_range_m",
}
""":attr:`ScoreResult.columns` key -> column of the product's CSV vocabulary (docs/csv.md), for the
CSV and Parquet files ``radarstream score`` writes."""


def output_columns(result: ScoreResult) -> dict[str, np.ndarray]:
    """The result's columns under their CSV-vocabulary names, in file order."""
    return {CSV_NAMES[k]: v for k, v in result.columns.items()}


def write_csv(result: ScoreResult, path: str | Path) -> Path:
    from streamer.recording.csv_schema import write_table

    path = Path(path)
    write_table(path, output_columns(result))
    return path


def write_parquet(result: ScoreResult, path: str | Path) -> Path:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ScoreError("writing Parquet needs pyarrow (pip install pyarrow), or use --out FILE.csv") from None
    from streamer.recording.csv_schema import column

    arrays = {}
    for n, v in output_columns(result).items():
        if n == "sensor":
            arrays[n] = pa.array(v.tolist(), pa.string())
        elif v.dtype.kind == "f":
            arrays[n] = pa.array(v, mask=column(n).missing(v))  # empty (null) where no value, as in the CSV
        else:
            arrays[n] = pa.array(v)
    pq.write_table(pa.table(arrays), str(path))
    return Path(path)


def summary_table(result: ScoreResult) -> str:
    rows = result.summary()
    head = ["sensor", "samples", "encounters"]
    if result.has_truth:
        head += [f"MAE {e} (m)" for e in ESTIMATES]
    lines = []
    for r in rows:
        cells = [r["sensor"], str(r["samples"]), "-" if r["encounters"] is None else str(r["encounters"])]
        if result.has_truth:
            cells += ["-" if r[f"mae_{e}"] is None else f"{r[f'mae_{e}']:.1f}" for e in ESTIMATES]
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) if lines else len(h) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    out = [fmt(head), fmt(["-" * w for w in widths])] + [fmt(c) for c in lines]
    return "\n".join(out)
