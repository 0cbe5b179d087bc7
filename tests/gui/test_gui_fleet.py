"""The fleet view: 1,000 sensors in a virtualised table, health states, outages drawn as gaps,
fixed colour scales. Offscreen; the outage runs over real sockets (simulator + service)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

import pyqtgraph as pg  # noqa: E402
from PySide6 import QtCore  # noqa: E402

from gui.fleet_model import COLUMN, SENSOR_ROLE, FleetModel  # noqa: E402
from gui.fleet_state import KIND_CAUSAL, KIND_HYBRID, FleetConfig, FleetState, Health  # noqa: E402
from gui.fleet_view import FleetView  # noqa: E402
from gui.pipeline import LocalPipeline, PipelineConfig  # noqa: E402
from gui.plots import StatePlots, theme_for, with_gaps  # noqa: E402
from gui.stream import EventRecord, ReceiverConfig  # noqa: E402
from gui.window import MainWindow, WindowConfig  # noqa: E402
from gui.worker import WorkerConfig  # noqa: E402

WAIT_MS = 30_000  # "eventually", on a loaded 2-core machine
BG = QtCore.Qt.ItemDataRole.BackgroundRole


def ev(sensor: str, type_: str, **meta) -> EventRecord:
    return EventRecord(sensor, type_, 1_700_000_000_000_000_000, 0, {"type": type_, **meta})


def fleet_of(n: int, now: float = 100.0) -> FleetState:
    st = FleetState()
    for k in range(n):
        name = f"radar-{k}"
        st.touch(name, now - 0.2, 1_000 * k)
        st.touch(name, now - 0.1, 1_000 * k + 50)
        st.set_estimate(name, float((k * 37) % 1000), 10.0 + k % 7, KIND_HYBRID if k % 2 else KIND_CAUSAL)
    return st


def test_fleet_model_with_1000_sensors_sorts_and_colours_rows(qtbot):
    st = fleet_of(1000)
    model = FleetModel(st)
    view = FleetView(model)
    qtbot.addWidget(view)
    view.resize(1200, 600)
    view.show()
    st.event(ev("radar-500", "near_miss", dmin_m=66.0, std_m=12.0, probability=0.95, threshold_m=100.0,
                margin_m=34.0, confidence=0.9), 100.0)
    view.refresh(100.0)
    assert model.rowCount() == 1000 and view.proxy.rowCount() == 1000
    # natural order by default: radar-2 before radar-10
    names = [view.sensor_at(r) for r in range(12)]
    assert names[:3] == ["radar-0", "radar-1", "radar-2"] and names[10] == "radar-10"
    # sort by the estimate, descending: the largest first
    view.table.sortByColumn(COLUMN["est"], QtCore.Qt.SortOrder.DescendingOrder)
    view.refresh(100.0)
    top = view.sensor_at(0)
    assert st.est_m[st.index[top]] == np.nanmax(st.est_m[:1000])
    ests = [st.est_m[st.index[view.sensor_at(r)]] for r in range(50)]
    assert ests == sorted(ests, reverse=True)
    # a new refresh with the same order does not re-sort
    n = view.resorts
    view.refresh(100.05)
    assert view.resorts == n
    # the alerting row is coloured as an alert, a live one as live
    k = st.index["radar-500"]
    assert model.data(model.cell("radar-500", "state"), BG) == model.alert_brush
    assert model.data(model.cell("radar-1", "state"), BG) == model.brushes[Health.LIVE]
    assert "margin 34 m" in model.data(model.cell("radar-500", "alert"))
    assert model.data(model.cell("radar-500", "sensor"), SENSOR_ROLE) == "radar-500"
    assert model.data(model.cell("radar-3", "est")) == f"{st.est_m[3]:.0f} m"
    assert model.data(model.cell("radar-3", "cpa")) == "–"  # not published by the service: never invented
    # the state column sorts alerting rows first
    view.table.sortByColumn(COLUMN["state"], QtCore.Qt.SortOrder.DescendingOrder)
    view.refresh(100.1)
    assert view.sensor_at(0) == "radar-500"


def test_silent_within_the_silence_interval_and_after_sensor_silent():
    st = FleetState(FleetConfig(silence_min_s=1.0))
    for t in (0.0, 0.05, 0.10, 0.15):  # arrivals every 50 ms: silent after max(1 s, 3 × 50 ms)
        st.touch("a", t, int(t * 1e9))
        st.touch("b", t, int(t * 1e9))
    st.refresh(0.9)
    assert st.health[st.index["a"]] == Health.LIVE and st.state_text(0) == "live"
    st.refresh(1.2)
    assert st.health[0] == Health.SILENT and st.state_text(0) == "silent for 1 s"
    assert st.age_text(0) == "1.1 s ago"
    # b gets more data; then the service says it went silent: silent at once, until data comes back
    st.touch("b", 1.2, 1_200_000_000)
    st.refresh(1.25)
    assert st.health[1] == Health.LIVE
    st.event(ev("b", "sensor_silent", silent_s=0.5, threshold_s=0.5), 1.3)
    st.refresh(1.3)
    assert st.health[1] == Health.SILENT
    st.event(ev("b", "sensor_back", silent_s=0.6), 1.4)
    st.refresh(1.4)
    assert st.health[1] == Health.LIVE
    # out of domain, restarted (for recent_s), malformed; most severe wins
    st.touch("a", 2.0, 2_000_000_000)
    st.event(ev("a", "epoch_change", old_epoch=1, new_epoch=2), 2.0)
    st.refresh(2.0)
    assert st.health[0] == Health.RESTARTED
    st.event(ev("a", "out_of_domain", reason="rate 10 Hz outside 19.6-20.4 Hz"), 2.1)
    st.touch("a", 2.1, 2_100_000_000)
    st.refresh(2.1)
    assert st.health[0] == Health.OUT_OF_DOMAIN and "rate 10 Hz" in st.state_text(0)
    st.event(ev("a", "back_in_domain"), 2.2)
    st.touch("a", 20.0, 20_000_000_000)
    st.refresh(20.0)
    assert st.health[0] == Health.LIVE  # the restart is old news
    st.event(ev("_service", "lag", backlog_s=0.6), 20.0)
    st.refresh(20.0)
    assert st.health[0] == Health.LAGGING


def test_with_gaps_breaks_curves_at_outages_only():
    t = np.array([0.0, 0.05, 0.10, 5.0, 5.05])
    y = np.arange(5.0)
    tg, (yg,) = with_gaps(t, (y,), 0.15)
    assert len(tg) == 6 and np.isnan(yg[3]) and 0.10 < tg[3] < 5.0
    same_t, (same_y,) = with_gaps(t[:3], (y[:3],), 0.15)
    assert same_t is t[:3].base or np.shares_memory(same_t, t)  # no gap: no copy


def spans_without_nan(x: np.ndarray, y: np.ndarray, a: float, b: float) -> bool:
    """Whether consecutive finite points of (x, y) are drawn across [a, b] (connect="finite")."""
    ok = np.isfinite(x) & np.isfinite(y)
    for k in range(len(x) - 1):
        if ok[k] and ok[k + 1] and x[k] <= a and x[k + 1] >= b:
            return True
    return False


def test_an_outage_turns_the_row_silent_and_leaves_a_gap(qtbot, tiny_weights):
    """A sensor of a live pipeline stops (its samples are lost), then comes back: its fleet row
    says silent meanwhile, and no curve of the detail view is drawn across the missing time."""
    cfg = PipelineConfig(sensors=2, rate_hz=20.0, seed=5, weights=tiny_weights, rescore_window=None)
    with LocalPipeline(cfg) as pipe:
        win = MainWindow(WindowConfig(window_s=30.0, start_view="fleet"),
                         WorkerConfig(receiver=ReceiverConfig(feeds=(pipe.feed_endpoint,),
                                                              services=(pipe.service_endpoint,)), weights=tiny_weights))
        qtbot.addWidget(win)
        win.resize(1280, 800)
        win.show()
        fleet = win.fleet_state
        qtbot.waitUntil(lambda: "radar-1" in fleet.index and len(win.histories.get("radar-1", ()) and
                                                                 win.histories["radar-1"].preds) > 10, timeout=WAIT_MS)
        win.select_sensor("radar-1")
        k = fleet.index["radar-1"]
        pipe.mute("radar-1")
        last_before = None

        def silent() -> bool:
            win.refresh_fleet(force=True)
            return fleet.health[k] == Health.SILENT

        qtbot.waitUntil(silent, timeout=WAIT_MS)
        # the row says so, in the silent colour; the other sensor stays live
        row = win.fleet_model.cell("radar-1", "state")
        assert win.fleet_model.data(row).startswith("silent")
        assert win.fleet_model.data(row, BG) == win.fleet_model.brushes[Health.SILENT]
        assert fleet.health[fleet.index["radar-0"]] == Health.LIVE
        hist = win.histories["radar-1"]
        last_before = float(hist.samples.view("t")[-1])
        qtbot.wait(1000)  # an outage of a few seconds in all (samples lost)
        pipe.mute("radar-1", False)
        qtbot.waitUntil(lambda: len(hist.preds) and float(hist.preds.view("t")[-1]) > last_before + 1.0
                        and float(hist.samples.view("t")[-1]) > last_before + 1.0, timeout=WAIT_MS)
        qtbot.waitUntil(lambda: (win.refresh_fleet(force=True), fleet.health[k] != Health.SILENT)[1], timeout=WAIT_MS)
        win.set_paused(True)
        win.force_redraw()
        t_s = hist.samples.view("t")
        after = float(t_s[np.searchsorted(t_s, last_before, "right")])
        assert after - last_before > 1.0  # the outage is in the data
        a, b = last_before - win.x_origin_s, after - win.x_origin_s  # plot coordinates
        sp = win.signal_plots
        for name in ("amplitude", "causal", "hybrid"):
            item = getattr(sp, name)
            x, y = np.asarray(item.xData, float), np.asarray(item.yData, float)
            if name == "hybrid" and not np.isfinite(y).any():
                continue
            assert len(x) and x[0] < a and x[-1] >= b - 1e-9, name  # both sides drawn
            inside = (x > a) & (x < b)
            assert inside.any() and np.isnan(y[inside]).all(), name  # a NaN between the two sides
            assert not spans_without_nan(x, y, a, b), name
        win.refresh_status()
        assert win.status_labels["health"].text().startswith("radar-1 · ")
        assert "silent" not in win.status_labels["health"].text()
        win.close()


def test_colour_scales_stay_fixed_across_frames(qtbot):
    view = pg.GraphicsLayoutWidget()
    qtbot.addWidget(view)
    plots = StatePlots(view, theme_for(view.palette()), pg.PlotItem())
    rng = np.random.default_rng(0)

    def traces(n: int, c_scale: float) -> dict[str, np.ndarray]:
        out = {g: rng.uniform(-1, 1, (n, 8)).astype(np.float32) for g in ("h", "g")}
        out.update({g: rng.uniform(0, 1, (n, 8)).astype(np.float32) for g in ("i", "f", "o")})
        out["c"] = rng.uniform(-c_scale, c_scale, (n, 8)).astype(np.float32)
        return out

    plots.set_images(-10.0, 0.0, traces(StatePlots.LOCK_AFTER, 3.0))  # locks c at a 1-2-5 value: ±5
    assert plots.c_locked == 5.0
    levels = {g: plots.levels(g) for g in ("h", "c", "i", "f", "g", "o")}
    for scale in (0.5, 40.0, 3.0):  # the data shrink and grow tenfold: the scales do not move
        tr = traces(400, scale)
        tr["c"][0, 0] = 5.0  # the top of the scale
        plots.set_images(-10.0, 0.0, tr)
        assert {g: plots.levels(g) for g in levels} == levels
        top = plots.images["c"].image[0, 0]  # [unit, time, rgb]
        assert np.array_equal(top, plots._luts[True][255])
    assert "±5" in plots.plots["c"].titleLabel.text
    plots.lock_c(20.0)  # the user's value
    assert plots.levels("c") == (-20.0, 20.0) and plots.levels("h") == (-1.0, 1.0) and plots.levels("i") == (0.0, 1.0)


def test_follow_newest_history_for_any_fleet_sensor_and_the_mode_label(qtbot, tiny_weights):
    from gui.buffers import HistoryConfig
    from gui.stream import Batch, PredChunk

    win = MainWindow(WindowConfig(history=HistoryConfig(samples=256, max_sensors=2)),
                     WorkerConfig(receiver=ReceiverConfig(feeds=(), services=()), weights=tiny_weights), start=False)
    qtbot.addWidget(win)
    t = np.arange(5, dtype=np.int64) * 50_000_000
    y = np.full(5, 300.0, np.float32)
    win.handoff.try_acquire()
    win.ingest(Batch(1e9, {}, {f"s{k}": PredChunk(t, y, y) for k in range(4)}))
    assert len(win.fleet_state) == 4 and set(win.histories) == {"s0", "s1"}  # the fleet has them all
    win.open_sensor("s3")  # beyond the histories kept: the least recently shown one makes room
    assert win.sensor == "s3" and "s3" in win.histories and len(win.histories) == 2 and "s0" in win.histories
    assert win.signal_plots.est.titleLabel.text.startswith("s3 · ")
    assert win.mode_text() == "LIVE"
    win._on_manual_range([True, False])  # the user zoomed the time axis
    assert not win.follow and not win.controls.follow_box.isChecked() and "not following" in win.mode_text()
    win.controls.follow_box.setChecked(True)
    assert win.follow and win.mode_text() == "LIVE"
    win.set_paused(True)
    assert win.mode_text().startswith("PAUSED")


def test_replay_is_labelled_replay_with_its_position(qtbot, tiny_weights):
    from tests.gui.test_gui import FakeReplay

    ctl = FakeReplay()
    ctl.position_s, ctl.playing = 4.25, True
    win = MainWindow(WindowConfig(), WorkerConfig(receiver=ReceiverConfig(feeds=(), services=()), weights=tiny_weights),
                     replay=ctl, start=False)
    qtbot.addWidget(win)
    win.refresh_status()
    text = win.mode_label.text()
    assert text.startswith("REPLAY playing") and "4.2 / 10.0 s" in text and "LIVE" not in text
    assert win.fleet_state.live_text == "replaying"


def test_time_to_cpa_column_counts_down_from_the_published_value():
    """The fleet's Time to CPA is pred channel 8 at the latest sample, aged since it arrived."""
    st = FleetState()
    st.touch("a", 100.0, 1)
    st.set_estimate("a", 80.0, 2.0, KIND_HYBRID, 12.0)
    st.touch("b", 100.0, 1)
    st.set_estimate("b", 300.0, 5.0, KIND_HYBRID, -4.0)
    st.touch("c", 100.0, 1)
    st.set_estimate("c", 300.0, 5.0, KIND_HYBRID)
    model = FleetModel(st)
    model.refresh(103.0)  # 3 s after the samples arrived
    np.testing.assert_allclose(st.time_to_cpa(), [9.0, -7.0, np.nan])
    assert [model.cell(s, "cpa").data() for s in ("a", "b", "c")] == ["in 9 s", "7 s ago", "–"]
