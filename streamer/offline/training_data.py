"""Labelled recordings -> training rows for ``models.fit``, split by encounter (arrays only).

A recording's sensors become labelled streams (``streamer.offline.labels``: the truth channel or
a label file). Each stream's labelled encounters are cut into *groups* of consecutive encounters;
the groups, never single samples, are split between training and validation (seeded), so no
sample of a validation encounter is ever trained on. From the groups come the rows ``fit``
takes, one variable-length array each:

* ``causal``: the contiguous stretches of groups of one split (from the end of the previous
  group of the other split, at most ``LEAD_S`` of lead-in, to the end of their last encounter),
  cut into rows of ``SIM_ROW`` samples: the state is carried through the gaps and encounters as
  the service carries it; targets Dmin / R_max on the in-encounter samples (mask).
* ``bidir`` / ``pooled``: one row per encounter, a window of up to ``window`` samples with the
  CPA near the centre (±25 %, seeded), cut to its group's bounds; per-step targets on the
  in-encounter samples (bidir) or the encounter's Dmin / R_max (pooled).

:func:`simulated_rows` makes the same rows from the simulator, rendered in the user's radar
profile (R_max, amplitudes in its noise-RMS units), to mix into fine-tuning. No torch, no
sockets: ``models/`` trains on what this returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from radarstream.errors import RadarstreamError
from streamer.offline.labels import LabelledStream, labelled_streams
from streamer.sim.simulator import Encounter, RadarConfig, StreamSimulator

__all__ = ["MIN_ENCOUNTERS", "SIM_ROW", "Group", "RecordingSet", "Rows", "TrainingDataError", "load_recordings",
           "rows_for", "simulated_rows"]

MIN_ENCOUNTERS = 4
"""Fewest labelled encounters a training set can be split from (one validates, three train)."""
LEAD_S = 60.0
"""Longest lead-in (seconds of stream before a group's first encounter) a causal row carries."""
SIM_ROW = 2048
"""Samples of a simulated causal row (one stream, state carried through its encounters)."""


class TrainingDataError(RadarstreamError, ValueError):
    """Recordings that cannot be trained on (missing, unlabelled, too few encounters to split)."""


@dataclass(frozen=True)
class Group:
    """Consecutive labelled encounters of one stream, and the sample range ``[lo, hi)`` they own."""

    stream: int
    lo: int
    hi: int
    encounters: tuple[Encounter, ...]


@dataclass
class Rows:
    """Variable-length rows for ``fit``: ``X`` [T_i, C] arrays, ``y`` per-step [T_i] arrays (or
    one value per row for pooled), ``mask`` per-step [T_i] arrays (None for pooled)."""

    X: list[np.ndarray] = field(default_factory=list)
    y: list = field(default_factory=list)
    mask: list[np.ndarray] | None = field(default_factory=list)
    encounters: int = 0

    def extend(self, other: "Rows") -> "Rows":
        self.X += other.X
        self.y += list(other.y)
        if self.mask is not None and other.mask is not None:
            self.mask += other.mask
        self.encounters += other.encounters
        return self

    def targets(self):
        return np.asarray(self.y, np.float32) if self.mask is None else self.y


@dataclass
class RecordingSet:
    """The labelled streams of some recordings and their split by encounter."""

    streams: list[LabelledStream]
    sources: list[str]
    """The recording each stream came from."""
    train: list[Group]
    val: list[Group]

    def encounters(self, groups: Sequence[Group]) -> int:
        return sum(len(g.encounters) for g in groups)

    def validation_encounters(self) -> list[tuple[LabelledStream, list[Encounter]]]:
        """Per stream with validation encounters: the stream and those encounters."""
        out = []
        for k, s in enumerate(self.streams):
            encs = [e for g in self.val if g.stream == k for e in g.encounters]
            if encs:
                out.append((s, sorted(encs, key=lambda e: e.start)))
        return out

    @property
    def rate_hz(self) -> float:
        return float(np.median([s.rate_hz for s in self.streams]))


def load_recordings(recordings: Sequence[str | Path], labels: Sequence[str | Path] = (), *, r_max_m: float,
                    noise_rms: float = 1.0, val_fraction: float = 0.2, group: int = 4, seed: int = 1) -> RecordingSet:
    """The labelled streams of ``recordings`` (``labels``: none — every recording has a truth
    channel —, one per recording, in order), split by encounter. Raises
    :class:`TrainingDataError` (or ``LabelError``) before anything is trained."""
    recordings = [Path(p) for p in recordings]
    if not recordings:
        raise TrainingDataError("--from needs at least one recording")
    for p in recordings:
        if not p.is_file():
            raise TrainingDataError(f"--from {p}: no such recording")
    if labels and len(labels) != len(recordings):
        raise TrainingDataError(f"--labels: give one label file per --from recording, in order ({len(labels)} "
                                f"label file(s) for {len(recordings)} recording(s))")
    if not 0.0 < val_fraction < 1.0:
        raise TrainingDataError(f"the validation fraction must lie in (0, 1), got {val_fraction}")
    streams, sources = [], []
    for k, p in enumerate(recordings):
        for s in labelled_streams(p, labels[k] if labels else None, r_max_m=r_max_m, noise_rms=noise_rms):
            if s.encounters:
                streams.append(s)
                sources.append(str(p))
    total = sum(len(s.encounters) for s in streams)
    if total < MIN_ENCOUNTERS:
        raise TrainingDataError(f"too few labelled encounters to split by encounter: {total} in "
                                f"{', '.join(map(str, recordings))}; need at least {MIN_ENCOUNTERS} "
                                "(one for validation, the rest for training): record longer or label more")
    size = max(1, min(group, total // 5))
    groups = [g for k, s in enumerate(streams) for g in _groups(k, s, size)]
    order = np.random.default_rng(np.random.SeedSequence([seed, 14])).permutation(len(groups))
    n_val = min(len(groups) - 1, max(1, int(round(val_fraction * len(groups)))))
    val = sorted((groups[i] for i in order[:n_val]), key=lambda g: (g.stream, g.lo))
    train = sorted((groups[i] for i in order[n_val:]), key=lambda g: (g.stream, g.lo))
    return RecordingSet(streams, sources, train, val)


def _groups(k: int, s: LabelledStream, size: int, lead: int | None = None) -> list[Group]:
    encs = sorted(s.encounters, key=lambda e: e.start)
    lead = int(round(LEAD_S * s.rate_hz)) if lead is None else lead
    out, prev = [], 0
    for a in range(0, len(encs), size):
        part = tuple(encs[a : a + size])
        out.append(Group(k, max(prev, part[0].start - lead), part[-1].stop, part))
        prev = part[-1].stop
    return out


def _channels(x: np.ndarray, period_s: float, channels: int) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if channels == 3:
        return np.concatenate([x, np.full((x.shape[0], 1), period_s, np.float32)], axis=1)
    return x


def _weights(e: Encounter, a: int, n: int, period_s: float, early: float) -> tuple[slice, np.ndarray]:
    """Where encounter ``e`` lies in a row starting at sample ``a`` of ``n``, and the weight of
    each of its samples: 1 from one second before the CPA on, ``early`` before (the approach,
    where Dmin cannot be known yet and whose errors would otherwise dominate the loss)."""
    lo, hi = max(e.start, a), min(e.stop, a + n)
    w = np.ones(max(hi - lo, 0), np.float32)
    w[: max(0, min(hi, e.cpa_index - int(round(1.0 / period_s))) - lo)] = early
    return slice(lo - a, hi - a), w


def _cut(kind: str, samples: np.ndarray, period_s: float, g: Group, *, channels: int, window: int,
         rng: np.random.Generator, early: float = 1.0) -> Rows:
    """The rows of one group (see the module docstring)."""
    rows = Rows(mask=None if kind == "pooled" else [])
    if kind == "causal":
        y, m = np.zeros(g.hi - g.lo, np.float32), np.zeros(g.hi - g.lo, np.float32)
        for e in g.encounters:
            sl, w = _weights(e, g.lo, g.hi - g.lo, period_s, early)
            y[sl], m[sl] = e.dmin_norm, w
        n = sum(g.lo <= e.cpa_index < g.hi for e in g.encounters)
        return Rows([_channels(samples[g.lo : g.hi], period_s, channels)], [y], [m], n)
    for e in g.encounters:
        shift = int(rng.uniform(-0.25, 0.25) * window)
        a = max(g.lo, e.cpa_index - window // 2 + shift)
        b = min(g.hi, a + window)
        a = max(g.lo, b - window)
        rows.X.append(_channels(samples[a:b], period_s, channels))
        rows.encounters += 1
        if kind == "pooled":
            rows.y.append(float(e.dmin_norm))
            continue
        y, m = np.zeros(b - a, np.float32), np.zeros(b - a, np.float32)
        for o in g.encounters:
            sl, w = _weights(o, a, b - a, period_s, early)
            if w.size:
                y[sl], m[sl] = o.dmin_norm, w
        rows.y.append(y)
        rows.mask.append(m)
    return rows


def rows_for(kind: str, data: RecordingSet, groups: Sequence[Group], *, channels: int = 2, window: int = 512,
             seed: int = 1, early: float = 1.0, row: int | None = SIM_ROW) -> Rows:
    """``fit`` rows of ``kind`` from ``groups`` of ``data`` (variable length)."""
    if kind not in ("causal", "bidir", "pooled"):
        raise ValueError(f"unknown model kind {kind!r}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 15]))
    out = Rows(mask=None if kind == "pooled" else [])
    if kind == "causal":
        groups = [piece for g in _stretches(groups) for piece in (_pieces(g, row) if row else [g])]
    for g in groups:
        s = data.streams[g.stream]
        out.extend(_cut(kind, s.samples, s.period_ns / 1e9, g, channels=channels, window=window, rng=rng, early=early))
    return out


def _stretches(groups: Sequence[Group]) -> list[Group]:
    """Adjacent groups of one stream merged: the causal model trains on the longest contiguous
    stretches of its split, its state carried through them as the service carries it."""
    out: list[Group] = []
    for g in sorted(groups, key=lambda g: (g.stream, g.lo)):
        if out and out[-1].stream == g.stream and out[-1].hi == g.lo:
            out[-1] = Group(g.stream, out[-1].lo, g.hi, out[-1].encounters + g.encounters)
        else:
            out.append(g)
    return out


def _pieces(g: Group, n: int) -> list[Group]:
    """A stretch cut into rows of at most ``n`` samples (as long as the simulated rows, so that
    every batch mixes both); an encounter cut by a boundary keeps its samples on both sides."""
    out = []
    for lo in range(g.lo, g.hi, n):
        hi = min(g.hi, lo + n)
        encs = tuple(e for e in g.encounters if e.start < hi and e.stop > lo)
        if encs:
            out.append(Group(g.stream, lo, hi, encs))
    return out


def _sim_stream(cfg: RadarConfig, seed, n_encounters: int) -> tuple[np.ndarray, list[Encounter]]:
    sim = StreamSimulator(cfg, seed)
    parts: list[np.ndarray] = []
    read = 0
    while len([e for e in sim.encounters if e.stop <= read]) < n_encounters:
        parts.append(sim.read(8192).samples)
        read += parts[-1].shape[0]
    return np.concatenate(parts), [e for e in sim.encounters if e.stop <= read][:n_encounters]


def simulated_rows(kind: str, n_encounters: int, *, physics: str, r_max_m: float, noise_rms: float = 1.0,
                   rate_hz: float = 20.0, channels: int = 2, group: int = 4, window: int = 512, seed: int = 1,
                   early: float = 1.0, n_samples: int = 0, row: int = SIM_ROW) -> Rows:
    """About ``n_encounters`` encounters of simulated rows, cut as :func:`rows_for` cuts a
    recording: ``physics="default"`` the documented default radar at ``rate_hz``,
    ``"randomised"`` the domain-randomised radars (``streamer.sim.randomised``; the period
    channel carries each radar's own rate). Rendered in the user's units: ranges × ``r_max_m``
    / the simulator's R_max, amplitudes × ``noise_rms``, so that after a model's normalisation
    they are exactly the data it was trained on (what fine-tuning must not forget). Causal rows
    are streams of ``SIM_ROW`` samples, a new radar each (randomised), until ``n_samples``
    samples (``n_encounters`` is ignored for them)."""
    from streamer.sim.randomised import RandomisedRadar, draw_radar

    out = Rows(mask=None if kind == "pooled" else [])
    rng = np.random.default_rng(np.random.SeedSequence([seed, 16]))
    if physics not in ("default", "randomised"):
        raise ValueError(f"unknown simulator physics {physics!r} (default | randomised)")
    k = 0
    more = (lambda: sum(x.shape[0] for x in out.X) < n_samples) if kind == "causal" else (lambda: out.encounters < n_encounters)
    while more() and k <= 50 * max(n_encounters, n_samples // row + 1):
        ss = np.random.SeedSequence([seed, 17, k])
        cfg = draw_radar(np.random.default_rng(ss.spawn(1)[0]), RandomisedRadar()) if physics == "randomised" \
            else RadarConfig(rate_hz=rate_hz)
        if kind == "causal":  # one stream per row (SIM_ROW samples), the encounters inside it
            sim = StreamSimulator(cfg, ss)
            samples = sim.read(row).samples
            encs = [e for e in sim.encounters if e.stop <= row]
        else:
            samples, encs = _sim_stream(cfg, ss, group if physics == "randomised" else min(n_encounters - out.encounters, 64) + group)
        samples = samples.copy()
        samples[:, 0] *= np.float32(noise_rms)
        det = samples[:, 1] >= 0
        samples[det, 1] *= np.float32(r_max_m / cfg.r_max_m)
        s = LabelledStream("sim", samples, np.zeros(0, np.int64), int(round(1e9 / cfg.rate_hz)), encs)
        groups = [Group(0, 0, row, tuple(encs))] if kind == "causal" else \
            _groups(0, s, group, int(round(10.0 * cfg.rate_hz)))
        for g in groups:
            if not more():
                break
            out.extend(_cut(kind, samples, 1.0 / cfg.rate_hz, g, channels=channels, window=window, rng=rng, early=early))
        k += 1
    if kind != "causal" and out.encounters > n_encounters:  # one row per encounter: exactly n
        out = Rows(out.X[:n_encounters], out.y[:n_encounters], None if out.mask is None else out.mask[:n_encounters],
                   n_encounters)
    return out
