"""Start the monitor: QApplication, main window, optional replay, screenshot-and-quit."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from gui.replay import ReplayController
from gui.window import WindowConfig
from gui.worker import WorkerConfig


@dataclass(frozen=True)
class GuiOptions:
    window: WindowConfig = field(default_factory=WindowConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    screenshot: Path | None = None
    """Save a PNG of the window after ``quit_after_s`` seconds, then quit."""
    quit_after_s: float | None = None
    size: tuple[int, int] = (1600, 1000)
    sensor: str | None = None
    """Sensor to select first (default: the first one seen)."""
    autoplay: bool = True
    """With a replay: start playing once the monitor is listening."""


def has_display() -> tuple[bool, str]:
    """Whether a window can be shown, and why not: needed before creating a QApplication, which
    aborts the process when no platform plugin can start."""
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform.startswith(("offscreen", "minimal", "vnc")):
        return True, f"QT_QPA_PLATFORM={platform}"
    if sys.platform in ("win32", "darwin"):
        return True, sys.platform
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return True, "display"
    return False, "no display (DISPLAY and WAYLAND_DISPLAY unset, QT_QPA_PLATFORM not offscreen)"


def ensure_app():
    """The process's QApplication (created once; tests already have one)."""
    from PySide6 import QtWidgets

    app = QtWidgets.QApplication.instance()
    if app is None:
        app = QtWidgets.QApplication([sys.argv[0] if sys.argv else "radarstream"])
        app.setApplicationName("radarstream")
        app.setApplicationDisplayName("radarstream monitor")
    return app


def save_screenshot(widget, path: str | Path) -> Path:
    """Render ``widget`` (works offscreen) to a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not widget.grab().save(str(path)):
        raise OSError(f"could not write {path}")
    return path


def run_gui(options: GuiOptions, *, replay: ReplayController | None = None) -> int:
    """Run the window until closed (or ``quit_after_s``, or Ctrl-C); returns the exit code.

    Runs a local QEventLoop rather than ``app.exec()``: quitting the application object would
    leave a pre-existing QApplication (tests, an embedding program) unable to run event loops.
    """
    import signal
    import threading

    from PySide6 import QtCore

    from gui.window import MainWindow

    app = ensure_app()
    win = MainWindow(options.window, options.worker, replay=replay, autoplay=options.autoplay)
    win.resize(*options.size)
    if options.sensor:
        win.select_sensor(options.sensor)
    loop = QtCore.QEventLoop()
    win.closed.connect(loop.quit)
    quit_after = options.quit_after_s
    if options.screenshot is not None and quit_after is None:
        quit_after = 5.0
    result = {"code": 0}

    def finish() -> None:
        if options.screenshot is not None:
            win.force_redraw()
            win.refresh_status()
            try:
                print(f"wrote {save_screenshot(win, options.screenshot)}", flush=True)
            except OSError as exc:
                print(f"error: {exc}", file=sys.stderr)
                result["code"] = 1
        win.close()

    if quit_after is not None:
        QtCore.QTimer.singleShot(int(quit_after * 1000), finish)
    previous = None
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C closes the window cleanly (the redraw timer runs Python often enough to see it)
        previous = signal.signal(signal.SIGINT, lambda *_: QtCore.QTimer.singleShot(0, win.close))
    win.show()
    try:
        loop.exec()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        win.shutdown()
    return result["code"]
