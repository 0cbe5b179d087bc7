"""Near-miss alerts in the monitor: banner, alert list, fleet row colour; cleared by
near_miss_cleared. Offscreen, over real sockets."""

from __future__ import annotations

import time

import numpy as np
import pytest
import zmq

pytest.importorskip("pytestqt")

from PySide6 import QtCore  # noqa: E402

from gui.pipeline import LocalPipeline, PipelineConfig  # noqa: E402
from gui.stream import ReceiverConfig  # noqa: E402
from gui.window import MainWindow, WindowConfig  # noqa: E402
from gui.worker import WorkerConfig  # noqa: E402
from streamer.sim.simulator import RadarConfig  # noqa: E402
from streamer.wire import protocol as P  # noqa: E402

WAIT_MS = 30_000  # "eventually", on a loaded 2-core machine
BG = QtCore.Qt.ItemDataRole.BackgroundRole


def send_event(sock: zmq.Socket, sensor: str, type_: str, **fields) -> None:
    msg = P.make_event(sensor, type_, epoch=1, seq=0, t_ns=time.time_ns(), **fields)
    sock.send_multipart(P.encode_message(msg))


@pytest.fixture
def service_socket():
    """A PUB socket standing in for the service (the test publishes its events)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    yield sock, f"tcp://127.0.0.1:{port}"
    sock.close(0)
    ctx.term()


def test_near_miss_raises_banner_list_and_row_and_clears(qtbot, service_socket, tiny_weights):
    sock, endpoint = service_socket
    win = MainWindow(WindowConfig(start_view="fleet"),
                     WorkerConfig(receiver=ReceiverConfig(feeds=(), services=(endpoint,)), weights=tiny_weights))
    qtbot.addWidget(win)
    win.resize(1280, 800)
    win.show()
    assert not win.banner.isVisible() and not win.alert_list.sound.isChecked()  # sound off by default

    def probe() -> bool:  # slow joiner: until the monitor's subscription is live
        send_event(sock, "probe", "new_sensor")
        return win.event_counts.get(("probe", "new_sensor"), 0) > 0

    qtbot.waitUntil(probe, timeout=WAIT_MS)
    sample_t_ns = time.time_ns() - 2_000_000_000
    send_event(sock, "radar-7", "near_miss", dmin_m=66.0, std_m=12.5, probability=0.95, threshold_m=100.0,
               margin_m=34.0, confidence=0.9, sample_t_ns=sample_t_ns)
    qtbot.waitUntil(lambda: win.banner.isVisible(), timeout=WAIT_MS)
    text = win.banner.text.text()
    assert "NEAR MISS" in text and "radar-7" in text and "margin 34 m" in text
    assert time.strftime("%H:%M:%S", time.localtime(sample_t_ns / 1e9)) in text  # the sample's time
    lst = win.alert_list.tree
    assert lst.topLevelItemCount() == 1
    row = lst.topLevelItem(0)
    assert (row.text(1), row.text(2), row.text(3), row.text(4), row.text(5)) == (
        "radar-7", "near_miss", "34 m", "66 ± 12 m", "0.95")  # 12.5 rounds to even
    # the fleet row: alert colour, last alert with its margin
    win.refresh_fleet(force=True)
    fleet, model = win.fleet_state, win.fleet_model
    k = fleet.index["radar-7"]
    assert fleet.alerting[k] == 1
    assert model.data(model.cell("radar-7", "sensor"), BG) == model.alert_brush
    assert "margin 34 m" in model.data(model.cell("radar-7", "alert"))
    assert model.data(model.cell("radar-7", "alerts")) == "1"
    # the banner opens the sensor in the detail view
    win.banner.open_button.click()
    assert win.sensor == "radar-7" and win.tabs.currentWidget() is win.detail_page
    win.refresh_status()
    assert "NEAR MISS 34 m" in win.status_labels["health"].text()
    # cleared: the banner goes, the list keeps both rows, the row is no longer an alert
    send_event(sock, "radar-7", "near_miss_cleared", dmin_m=140.0, std_m=15.0, probability=0.3, threshold_m=100.0,
               sample_t_ns=sample_t_ns + 5_000_000_000)
    qtbot.waitUntil(lambda: not win.banner.isVisible(), timeout=WAIT_MS)
    assert lst.topLevelItemCount() == 2 and lst.topLevelItem(0).text(2) == "near_miss_cleared"
    assert win.alert_list.raised == 1 and win.alert_list.cleared == 1
    win.refresh_fleet(force=True)
    assert fleet.alerting[k] == 0 and model.data(model.cell("radar-7", "sensor"), BG) != model.alert_brush
    assert "cleared" in model.data(model.cell("radar-7", "alert"))
    # two sensors alerting: the banner stays until both cleared
    for s in ("radar-1", "radar-2"):
        send_event(sock, s, "near_miss", dmin_m=50.0, std_m=5.0, probability=0.99, threshold_m=100.0, margin_m=50.0)
    qtbot.waitUntil(lambda: len(win.alerts_active) == 2, timeout=WAIT_MS)
    assert "+1 more active" in win.banner.text.text()
    send_event(sock, "radar-2", "near_miss_cleared", dmin_m=150.0, threshold_m=100.0)
    qtbot.waitUntil(lambda: len(win.alerts_active) == 1, timeout=WAIT_MS)
    assert win.banner.isVisible() and "radar-1" in win.banner.text.text() and "more active" not in win.banner.text.text()
    win.close()


def test_simulated_near_passes_raise_alerts_from_the_service(qtbot, tiny_weights):
    """End to end: the service (alert distance above R_max, so every pass is "near") publishes
    near_miss on event/<sensor>; the monitor lists each with margin = threshold − Dmin and never
    two without a clear in between for one sensor."""
    cfg = PipelineConfig(sensors=2, rate_hz=20.0, seed=2, weights=tiny_weights, rescore_window=None,
                         alert_dmin_m=5000.0, radar=RadarConfig(gap_range_s=(0.5, 1.0)))
    with LocalPipeline(cfg) as pipe:
        win = MainWindow(WindowConfig(start_view="fleet"),
                         WorkerConfig(receiver=ReceiverConfig(feeds=(pipe.feed_endpoint,),
                                                              services=(pipe.service_endpoint,)), weights=tiny_weights))
        qtbot.addWidget(win)
        win.show()
        qtbot.waitUntil(lambda: win.alert_list.raised >= 1, timeout=60_000)
        assert win.banner.isVisible()
        item = win.alert_list.tree.topLevelItem(win.alert_list.tree.topLevelItemCount() - 1)  # the first one
        sensor = item.text(1)
        alert = win.fleet_state.last_alert.get(win.fleet_state.index[sensor])
        assert alert is not None and alert.threshold_m == 5000.0
        if alert.active:
            assert alert.margin_m == pytest.approx(alert.threshold_m - alert.dmin_m, abs=0.02)
            assert item.text(3) == f"{alert.margin_m:.0f} m"
        # per sensor, raised and cleared alternate (one alert per encounter)
        kinds: dict[str, list[str]] = {}
        for r in reversed(range(win.alert_list.tree.topLevelItemCount())):
            it = win.alert_list.tree.topLevelItem(r)
            kinds.setdefault(it.text(1), []).append(it.text(2))
        for seq in kinds.values():
            assert seq[0] == "near_miss"
            assert all(a != b for a, b in zip(seq, seq[1:]))
        win.close()
