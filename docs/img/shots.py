"""Take the screenshots of docs/gui.md: the fleet view, an alert, an outage, a replay.

Run under a real X server (Xvfb, the xcb platform), from the repository root:

    Xvfb :99 -screen 0 1280x800x24 &
    DISPLAY=:99 QT_QPA_PLATFORM=xcb .venv/bin/python docs/img/shots.py [fleet alert outage replay]

Each scene runs the demo's pipeline (simulator + service with near-miss alerts at 100 m, shipped
weights) or a recording, opens the monitor at 1280×800 and saves ``docs/img/gui-<scene>.png``.
The simulator is set to closer passes than its default (Dmin up to 50 % of R_max instead of
90 %) so that a near pass comes within a minute.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent
SIZE = (1280, 800)


def wait(app, seconds: float, until=None) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        if until is not None and until():
            return True
        time.sleep(0.02)
    return until is None


def window(feed: str, service: str, *, view: str, replay=None, window_s: float = 60.0):
    from gui.stream import ReceiverConfig
    from gui.window import MainWindow, WindowConfig
    from gui.worker import WorkerConfig

    win = MainWindow(WindowConfig(window_s=window_s, start_view=view, title="radarstream monitor"),
                     WorkerConfig(receiver=ReceiverConfig(feeds=(feed,), services=(service,))),
                     replay=replay, autoplay=replay is not None)
    win.resize(*SIZE)
    win.show()
    return win


def save(app, win, name: str) -> None:
    win.force_redraw()
    win.refresh_status()
    app.processEvents()
    path = OUT / f"gui-{name}.png"
    win.grab().save(str(path))
    print(f"wrote {path}", flush=True)


def pipeline(sensors: int):
    from gui.pipeline import LocalPipeline, PipelineConfig
    from streamer.sim.simulator import RadarConfig

    pipe = LocalPipeline(PipelineConfig(sensors=sensors, rate_hz=20.0, seed=11, checkpoint_every=20,
                                        alert_dmin_m=100.0, radar=RadarConfig(dmin_range_norm=(0.02, 0.5))))
    pipe.start()
    return pipe


def live_scenes(app, scenes: set[str]) -> None:
    pipe = pipeline(12)
    try:
        win = window(pipe.feed_endpoint, pipe.service_endpoint, view="fleet")
        wait(app, 14.0)
        pipe.mute("radar-3")  # an outage of one sensor
        t_mute = time.monotonic()
        # wait for a near pass (the banner), at most 3 minutes
        wait(app, 180.0, lambda: bool(win.alerts_active) and time.monotonic() - t_mute > 12.0)
        if "fleet" in scenes:
            win.show_fleet()
            save(app, win, "fleet")
        if "alert" in scenes and win.alerts_active:
            sensor = next(iter(win.alerts_active))
            win.open_sensor(sensor)
            wait(app, 1.5)
            save(app, win, "alert")
        pipe.mute("radar-3", False)
        wait(app, 6.0)
        if "outage" in scenes:
            win.banner.clear()
            win.open_sensor("radar-3")
            wait(app, 2.0)
            save(app, win, "outage")
        win.close()
    finally:
        pipe.stop()


def replay_scene(app) -> None:
    from gui.replay import open_replay
    from streamer.recording.writer import simulate_to_file
    from streamer.sim.publisher import FeedConfig

    path = Path(tempfile.mkdtemp(prefix="radarstream-shots-")) / "sim.mcap"
    simulate_to_file(path, FeedConfig(sensors=3, duration_s=120.0, samples_per_message=1, seed=4))
    ctl = open_replay(path)
    from gui.pipeline import LocalService

    local = LocalService(ctl.endpoint, None)
    try:
        win = window(ctl.endpoint, local.endpoint, view="detail", replay=ctl)
        wait(app, 1.0)
        win.replay_bar.speed.setCurrentIndex(win.replay_bar.speed.findText("5×"))
        wait(app, 14.0)
        save(app, win, "replay")
        win.close()
    finally:
        ctl.close()
        local.stop()


def main(argv: list[str]) -> int:
    import torch

    from gui.app import ensure_app

    torch.set_num_threads(1)
    scenes = set(argv) or {"fleet", "alert", "outage", "replay"}
    app = ensure_app()
    if scenes & {"fleet", "alert", "outage"}:
        live_scenes(app, scenes)
    if "replay" in scenes:
        replay_scene(app)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(OUT.parents[1]))
    sys.exit(main(sys.argv[1:]))
