"""The monitor's control bar: which sensor, how long a window, which layer, the disagreement
threshold, the c colour scale, follow newest, pause / clear / export. Layout only: the window connects the signals to behaviour."""

from __future__ import annotations

from PySide6 import QtWidgets


class ControlBar(QtWidgets.QToolBar):
    """The toolbar's widgets, laid out; their signals are the window's to connect."""

    def __init__(self, parent: QtWidgets.QWidget, *, window_s: float, threshold_m: float):
        super().__init__("Controls", parent)
        self.setObjectName("controls")
        self.setMovable(False)
        self.sensor_box = QtWidgets.QComboBox(self)
        self.sensor_box.setMinimumContentsLength(12)
        self.sensor_box.setToolTip("Sensor to show (every sensor seen on the feed or the service)")
        self.window_box = _spin(self, 1.0, 3600.0, " s", window_s, "Length of the scrolling time window")
        self.layer_box = QtWidgets.QComboBox(self)
        self.layer_box.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.layer_box.setToolTip("LSTM layer whose h, c and gates are shown")
        self.layer_box.setEnabled(False)
        self.threshold_box = _spin(self, 0.0, 100000.0, " m", threshold_m,
                                   "Shade the estimates where |causal − bidirectional| exceeds this")
        self.pause_button = QtWidgets.QPushButton("Pause", self)
        self.pause_button.setIcon(self.style().standardIcon(QtWidgets.QStyle.StandardPixmap.SP_MediaPause))
        self.pause_button.setCheckable(True)
        self.pause_button.setToolTip("Freeze the display (data keeps being recorded); pan and zoom while paused")
        self.clear_button = QtWidgets.QPushButton("Clear", self)
        self.clear_button.setToolTip("Forget the history of every sensor")
        self.export_button = QtWidgets.QPushButton("Export CSV…", self)
        self.export_button.setToolTip("Write the visible time range of the selected sensor to a CSV file")
        self.follow_box = QtWidgets.QCheckBox("Follow newest", self)
        self.follow_box.setChecked(True)
        self.follow_box.setToolTip("Keep the newest samples at the right edge. Zooming or panning the time axis with "
                                   "the mouse turns it off (the data keep coming); tick it to jump back")
        self.c_scale_box = QtWidgets.QDoubleSpinBox(self)
        self.c_scale_box.setRange(0.0, 10000.0)
        self.c_scale_box.setDecimals(1)
        self.c_scale_box.setSpecialValueText("auto")
        self.c_scale_box.setPrefix("± ")
        self.c_scale_box.setValue(0.0)
        self.c_scale_box.setToolTip("Colour scale of the cell state c: fixed at ± this value. 'auto' picks a 1-2-5 "
                                    "value from the first data, then keeps it (the same colour always means the same "
                                    "value); type a value to change it")
        for label, widget in (("Sensor ", self.sensor_box), (" Window ", self.window_box),
                              (" Layer ", self.layer_box), (" |Δ| > ", self.threshold_box), (" c ", self.c_scale_box)):
            self.addWidget(QtWidgets.QLabel(label, self))
            self.addWidget(widget)
        self.addSeparator()
        self.addWidget(self.follow_box)
        for b in (self.pause_button, self.clear_button, self.export_button):
            self.addWidget(b)


def _spin(parent: QtWidgets.QWidget, lo: float, hi: float, suffix: str, value: float, tip: str) -> QtWidgets.QDoubleSpinBox:
    box = QtWidgets.QDoubleSpinBox(parent)
    box.setRange(lo, hi)
    box.setDecimals(0)
    box.setSuffix(suffix)
    box.setValue(value)
    box.setToolTip(tip)
    return box
