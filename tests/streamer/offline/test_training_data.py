"""Recordings -> training rows, split by encounter (real MCAP files from the stand-in radar)."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.offline.labels import LabelError
from streamer.offline.standin import STANDIN, write_standin
from streamer.offline.training_data import TrainingDataError, load_recordings, rows_for, simulated_rows


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    d = tmp_path_factory.mktemp("rec")
    _, n = write_standin(d / "run.mcap", d / "labels.csv", duration_s=900.0, seed=5, sensors=2)
    return d, n


def _load(recording, **kw):
    d, _ = recording
    return load_recordings([d / "run.mcap"], [d / "labels.csv"], r_max_m=STANDIN.r_max_m, **kw)


def test_split_is_by_encounter(recording):
    data = _load(recording)
    _, n_labels = recording
    assert len(data.streams) == 2
    assert data.encounters(data.train) + data.encounters(data.val) == n_labels
    assert data.encounters(data.val) >= 1 and data.encounters(data.train) >= 3
    for a in data.train:  # no training sample range touches a validation encounter
        for b in data.val:
            if a.stream == b.stream:
                assert a.hi <= b.lo or b.hi <= a.lo
    for kind in ("causal", "bidir", "pooled"):  # every row lies inside its own split's groups
        rows = rows_for(kind, data, data.val, channels=3)
        assert rows.encounters == data.encounters(data.val)
        assert all(x.shape[1] == 3 and np.allclose(x[:, 2], 0.1) for x in rows.X)  # period channel: 10 Hz


def test_rows_carry_targets_on_the_encounters_only(recording):
    data = _load(recording)
    causal = rows_for("causal", data, data.train)
    # causal rows: the contiguous stretches of training groups (state carried), in rows of SIM_ROW
    from streamer.offline.training_data import SIM_ROW

    assert causal.encounters == data.encounters(data.train) and max(x.shape[0] for x in causal.X) <= SIM_ROW
    assert sum(x.shape[0] for x in causal.X) <= sum(g.hi - g.lo for g in data.train)
    encs = [e for g in data.train for e in g.encounters]
    assert sum(float(m.sum()) for m in causal.mask) == sum(e.stop - e.start for e in encs)
    for y, m in zip(causal.y, causal.mask):
        assert set(np.unique(y[m > 0])) <= {np.float32(e.dmin_norm) for e in encs}
        assert (y[m == 0] == 0).all()
    pooled = rows_for("pooled", data, data.train, window=256)
    assert pooled.mask is None and max(x.shape[0] for x in pooled.X) <= 256
    assert np.allclose(pooled.targets(), [e.dmin_norm for g in data.train for e in g.encounters])
    weighted = rows_for("bidir", data, data.train, early=0.25)
    assert {0.0, 0.25, 1.0} == set(np.unique(np.concatenate(weighted.mask)).tolist())


def test_too_few_encounters_and_bad_arguments(tmp_path, recording):
    write_standin(tmp_path / "short.mcap", tmp_path / "short.csv", duration_s=90.0, seed=4)
    with pytest.raises(TrainingDataError, match="too few labelled encounters"):
        load_recordings([tmp_path / "short.mcap"], [tmp_path / "short.csv"], r_max_m=2000.0)
    with pytest.raises(TrainingDataError, match="no such recording"):
        load_recordings([tmp_path / "missing.mcap"], [], r_max_m=2000.0)
    d, _ = recording
    with pytest.raises(TrainingDataError, match="one label file per"):
        load_recordings([d / "run.mcap", d / "run.mcap"], [d / "labels.csv"], r_max_m=2000.0)
    with pytest.raises(LabelError, match="no truth channel"):
        load_recordings([d / "run.mcap"], [], r_max_m=2000.0)


@pytest.mark.parametrize("physics", ["default", "randomised"])
def test_simulated_rows_in_the_users_units(physics):
    a = simulated_rows("bidir", 6, physics=physics, r_max_m=1000.0, channels=3, seed=3)
    b = simulated_rows("bidir", 6, physics=physics, r_max_m=2000.0, noise_rms=4.0, channels=3, seed=3)
    assert a.encounters == b.encounters == 6
    for xa, xb in zip(a.X, b.X):  # same passes: ranges scale with R_max, amplitudes with the noise RMS
        det = xa[:, 1] >= 0
        assert np.allclose(xb[det, 1], 2 * xa[det, 1]) and (xb[~det, 1] == -1).all()
        assert np.allclose(xb[:, 0], 4 * xa[:, 0])
    assert [np.asarray(y).tolist() for y in a.y] == [np.asarray(y).tolist() for y in b.y]  # Dmin / R_max unchanged


def test_simulated_causal_rows_are_streams_by_samples():
    from streamer.offline.training_data import SIM_ROW

    rows = simulated_rows("causal", 0, physics="randomised", r_max_m=1000.0, channels=3, n_samples=3 * SIM_ROW, seed=2)
    assert len(rows.X) == 3 and all(x.shape == (SIM_ROW, 3) for x in rows.X)
    assert len({float(x[0, 2]) for x in rows.X}) == 3  # a new radar (rate) per row
    assert rows.encounters >= 3 and all(m.sum() > 0 for m in rows.mask)
