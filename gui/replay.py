"""Replay controls: the bar in the window, and the adapter to ``streamer.recording.replay`` when it exists.

The window only needs the small :class:`ReplayController` protocol below; the replay engine
(record/replay of MCAP files, another part of the product) publishes the recording on a ZeroMQ
endpoint that the monitor's worker subscribes to like any live feed.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Protocol, runtime_checkable

from PySide6 import QtCore, QtWidgets

from radarstream.errors import RadarstreamError

SPEEDS: tuple[tuple[str, float | None], ...] = (
    ("0.25×", 0.25), ("0.5×", 0.5), ("1×", 1.0), ("2×", 2.0), ("5×", 5.0), ("10×", 10.0), ("max", None),
)
"""Speed choices; None replays as fast as the pipeline takes it."""


class ReplayUnavailable(RadarstreamError, RuntimeError):
    """This build cannot replay (``streamer.recording.replay`` missing or without a controller)."""


@runtime_checkable
class ReplayController(Protocol):
    """What the replay bar drives. Positions are seconds from the start of the recording."""

    @property
    def duration_s(self) -> float: ...

    @property
    def position_s(self) -> float: ...

    @property
    def playing(self) -> bool: ...

    @property
    def endpoint(self) -> str:
        """Where the replay publishes (``samples/``, and recorded ``pred/``/``event/`` if any)."""
        ...

    def play(self) -> None: ...

    def pause(self) -> None: ...

    def set_speed(self, speed: float | None) -> None: ...

    def seek(self, position_s: float) -> None: ...

    def close(self) -> None: ...


def replay_available() -> bool:
    """True when this build ships ``streamer.recording.replay``."""
    try:
        return importlib.util.find_spec("streamer.recording.replay") is not None
    except (ImportError, ValueError):
        return False


def open_replay(path: str | Path, *, pub: str = "tcp://127.0.0.1:*") -> ReplayController:
    """A controller for the recording at ``path``, publishing on ``pub`` (paused at the start).

    Uses ``streamer.recording.replay.open_controller(path, pub=...)``; raises :class:`ReplayUnavailable`
    with the reason when this build cannot replay.
    """
    if not replay_available():
        raise ReplayUnavailable("this build has no streamer.recording.replay: MCAP replay is not installed yet")
    mod = importlib.import_module("streamer.recording.replay")
    factory = getattr(mod, "open_controller", None)
    if factory is None:
        raise ReplayUnavailable("streamer.recording.replay has no open_controller(path, pub=...) for the GUI "
                                "(see docs/gui.md, 'Replay')")
    ctl = factory(Path(path), pub=pub)
    if not isinstance(ctl, ReplayController):
        raise ReplayUnavailable(f"streamer.recording.replay.open_controller returned {type(ctl).__name__}, "
                                "which lacks the ReplayController methods")
    return ctl


class ReplayBar(QtWidgets.QToolBar):
    """Play/pause, speed and a seek slider for a :class:`ReplayController`.

    Emits ``seeked`` after a seek so that the window clears its history (time went backwards).
    """

    seeked = QtCore.Signal(float)
    SLIDER_STEPS = 1000

    def __init__(self, controller: ReplayController, parent: QtWidgets.QWidget | None = None):
        super().__init__("Replay", parent)
        self.setObjectName("replay-bar")
        self.controller = controller
        self.play_button = QtWidgets.QToolButton(self)
        self.play_button.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.play_button.setCheckable(True)
        self.play_button.setToolTip("Play or pause the recording (Space)")
        self.play_button.toggled.connect(self._on_play)
        self.addWidget(QtWidgets.QLabel(" Replay  ", self))
        self.addWidget(self.play_button)
        self.speed = QtWidgets.QComboBox(self)
        self.speed.setToolTip("Replay speed (max: as fast as the pipeline takes it)")
        for text, value in SPEEDS:
            self.speed.addItem(text, value)
        self.speed.setCurrentIndex(2)
        self.speed.currentIndexChanged.connect(self._on_speed)
        self.addWidget(QtWidgets.QLabel("  speed ", self))
        self.addWidget(self.speed)
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal, self)
        self.slider.setRange(0, self.SLIDER_STEPS)
        self.slider.setToolTip("Seek in the recording")
        self.slider.sliderReleased.connect(self._on_seek)
        self.addWidget(QtWidgets.QLabel("  ", self))
        self.addWidget(self.slider)
        self.position = QtWidgets.QLabel(self)
        self.position.setMinimumWidth(130)
        self.addWidget(self.position)
        self._timer = QtCore.QTimer(self)
        self._timer.timeout.connect(self.refresh)
        self._timer.start(250)
        self.refresh()

    def _on_play(self, checked: bool) -> None:
        (self.controller.play if checked else self.controller.pause)()
        self.refresh()

    def play(self) -> None:
        """Start playing (as the button does)."""
        if not self.play_button.isChecked():
            self.play_button.setChecked(True)

    def _on_speed(self, index: int) -> None:
        self.controller.set_speed(self.speed.itemData(index))

    def _on_seek(self) -> None:
        self.seek(self.slider.value() / self.SLIDER_STEPS * self.controller.duration_s)

    def seek(self, position_s: float) -> None:
        self.controller.seek(position_s)
        self.seeked.emit(position_s)
        self.refresh()

    def refresh(self) -> None:
        ctl = self.controller
        playing = bool(ctl.playing)
        if self.play_button.isChecked() != playing:
            self.play_button.blockSignals(True)
            self.play_button.setChecked(playing)
            self.play_button.blockSignals(False)
        self.play_button.setText("Pause" if playing else "Play")
        icon = QtWidgets.QStyle.StandardPixmap.SP_MediaPause if playing else QtWidgets.QStyle.StandardPixmap.SP_MediaPlay
        self.play_button.setIcon(self.style().standardIcon(icon))
        dur = max(float(ctl.duration_s), 1e-9)
        pos = float(ctl.position_s)
        if not self.slider.isSliderDown():
            self.slider.blockSignals(True)
            self.slider.setValue(int(round(min(max(pos / dur, 0.0), 1.0) * self.SLIDER_STEPS)))
            self.slider.blockSignals(False)
        self.position.setText(f"  {pos:7.1f} / {dur:.1f} s")
