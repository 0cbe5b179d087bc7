"""The monitor's stream-status grid (with the selected sensor's health in colour) and event log. Layout only: the window fills in the text."""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

STATUS_ROWS: tuple[tuple[str, str, str], ...] = (
    ("health", "Health", "The selected sensor's state: live · silent (no sample for the silence interval, or the "
                         "service's sensor_silent) · out of domain · restarted · malformed input · lagging (service "
                         "backlog); coloured as in the fleet view"),
    ("last_sample", "Last sample", "Time since the monitor received the selected sensor's last sample or prediction"),
    ("input", "Input", "Samples per second the monitor receives (all sensors), and the sensors seen"),
    ("sensor_rate", "Selected", "Rate of the selected sensor over the last seconds, and its nominal rate"),
    ("latency", "Latency p50/p99/max", "Service latency (receive -> publish of the prediction), from the service's stats"),
    ("service", "Service", "The service's own throughput, sensors and inference backend"),
    ("gaps", "Gaps", "Sequence gaps the service saw (missing samples); then the selected sensor's"),
    ("resets", "Resets", "State resets at the service (explicit, epoch change, seq going back); then the selected sensor's"),
    ("malformed", "Malformed", "Messages rejected by the decoder at the service, at the monitor; then the selected sensor's"),
    ("duplicates", "Duplicates", "Duplicate samples dropped by the service; then the selected sensor's"),
    ("drops", "Dropped samples", "Samples the monitor dropped because it fell behind (bounded hand-off) · samples lost "
                                 "before reaching it (ZeroMQ high-water mark) · batches waiting for the GUI thread"),
    ("gui", "Redraw", "Median time to update the plots from the ring buffers, and frames drawn per second"),
    ("rescore", "Re-score", "Latest bidirectional re-score: sensor, samples, |causal - bidir|; the stage's counters"),
)
"""(key, label, tooltip) of every status row, in display order."""


class StatusPanel(QtWidgets.QGroupBox):
    """A grid of ``label: value`` rows (``labels[key]`` is the value label), five rows a column."""

    def __init__(self, parent: QtWidgets.QWidget, rows: tuple[tuple[str, str, str], ...] = STATUS_ROWS, per_col: int = 5):
        super().__init__("Stream status", parent)
        grid = QtWidgets.QGridLayout(self)
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(2)
        grid.setContentsMargins(8, 4, 8, 4)
        self.labels: dict[str, QtWidgets.QLabel] = {}
        for k, (key, text, tip) in enumerate(rows):
            name = QtWidgets.QLabel(text + ":", self)
            name.setAlignment(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
            value = QtWidgets.QLabel("–", self)
            value.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
            value.setMinimumWidth(120)
            name.setToolTip(tip)
            value.setToolTip(tip)
            r, c = k % per_col, (k // per_col) * 2
            grid.addWidget(name, r, c)
            grid.addWidget(value, r, c + 1)
            grid.setColumnStretch(c + 1, 1)
            self.labels[key] = value

    def set_colour(self, key: str, background: str | None) -> None:
        """Colour a value label (health), or back to plain with None."""
        label = self.labels[key]
        style = f"QLabel {{ background: {background}; border-radius: 2px; padding: 0 4px; }}" if background else ""
        if label.styleSheet() != style:
            label.setStyleSheet(style)


class EventLog(QtWidgets.QGroupBox):
    """The last ``max_lines`` stream events, fixed-width, newest at the bottom (``log``)."""

    def __init__(self, parent: QtWidgets.QWidget, max_lines: int):
        super().__init__("Events", parent)
        self.log = QtWidgets.QPlainTextEdit(self)
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(max_lines)
        self.log.setLineWrapMode(QtWidgets.QPlainTextEdit.LineWrapMode.WidgetWidth)  # details never cut off
        self.log.setPlaceholderText("Stream events (gaps, resets, malformed input, new sensors) appear here")
        self.log.setFont(QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont))
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.log)
