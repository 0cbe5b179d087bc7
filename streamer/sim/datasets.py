"""Training and evaluation sets cut from simulated streams (arrays only; models/ trains on them)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamer.sim.simulator import Encounter, RadarConfig, StreamSimulator


@dataclass(frozen=True)
class WindowSet:
    """Per-step windows: X [N, T, 2], y [N, T] (Dmin/R_max, 0 outside encounters), mask [N, T]."""

    X: np.ndarray
    y: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class EncounterSet:
    """One window per encounter, centred near its CPA: X [N, T, 2], y [N], plus the truth records."""

    X: np.ndarray
    y: np.ndarray
    encounters: list[Encounter]
    offsets: np.ndarray  # index of each window's first sample in its stream


def stream_windows(n_windows: int, length: int, config: RadarConfig = RadarConfig(), seed: int = 0) -> WindowSet:
    """Consecutive windows of one long stream: windows start anywhere, even mid-encounter, which
    is what a model restarted on a live stream sees."""
    sim = StreamSimulator(config, seed)
    block = sim.read(n_windows * length)
    X = block.samples.reshape(n_windows, length, 2)
    dmin = np.nan_to_num(block.dmin_norm, nan=0.0).reshape(n_windows, length)
    mask = block.in_encounter.reshape(n_windows, length).astype(np.float32)
    return WindowSet(X, dmin.astype(np.float32), mask)


def encounter_windows(
    n_encounters: int, length: int, config: RadarConfig = RadarConfig(), seed: int = 0, jitter: float = 0.25
) -> EncounterSet:
    """``n_encounters`` windows of ``length`` samples, each holding one encounter's CPA, placed at
    a random position within ±jitter·length of the window centre."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    sim = StreamSimulator(config, seed)
    pad = length  # read enough context before/after each CPA
    chunks = []
    read_upto = 0
    while True:
        encs = [e for e in sim.encounters if e.cpa_index + pad <= read_upto]
        if len(encs) >= n_encounters:
            break
        chunks.append(sim.read(4096).samples)
        read_upto += 4096
    samples = np.concatenate(chunks)
    encs = encs[:n_encounters]
    X = np.empty((len(encs), length, 2), np.float32)
    offsets = np.empty(len(encs), np.int64)
    for k, e in enumerate(encs):
        shift = int(rng.uniform(-jitter, jitter) * length)
        start = int(np.clip(e.cpa_index - length // 2 + shift, 0, samples.shape[0] - length))
        X[k] = samples[start : start + length]
        offsets[k] = start
    y = np.array([e.dmin_norm for e in encs], np.float32)
    return EncounterSet(X, y, encs, offsets)
