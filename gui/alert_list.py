"""The list of near-miss events (newest first): time, sensor, event, margin, Dmin ± σ,
probability; a sound checkbox (off by default). Layout and its own rows only."""

from __future__ import annotations

import math
import time

from PySide6 import QtCore, QtGui, QtWidgets

from gui.fleet_state import Alert

HEADERS = ("Time", "Sensor", "Event", "Margin", "Dmin ± σ", "P(Dmin < M)")


class AlertList(QtWidgets.QGroupBox):
    """At most ``max_rows`` rows; double-click a row to open its sensor."""

    sensorActivated = QtCore.Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None, max_rows: int = 500):
        super().__init__("Near-miss alerts", parent)
        self.max_rows = max_rows
        self.tree = QtWidgets.QTreeWidget(self)
        self.tree.setHeaderLabels(HEADERS)
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        self.tree.setPlaceholderText("near_miss events (serve --alert-dmin-m M) appear here") \
            if hasattr(self.tree, "setPlaceholderText") else None
        self.tree.header().setStretchLastSection(False)
        fm = self.fontMetrics()
        for k, sample in enumerate(("00:00:00.0xx", "radar-1000xx", "near_miss_clearedx", "Marginxx", "9999 ± 999 mxx", "P(Dmin < M)xx")):
            self.tree.header().resizeSection(k, fm.horizontalAdvance(sample) + 8)
        self.sound = QtWidgets.QCheckBox("Sound on alert", self)
        self.sound.setChecked(False)
        self.sound.setToolTip("Beep when a near_miss arrives (off by default)")
        self.count = QtWidgets.QLabel("none", self)
        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.count, 1)
        top.addWidget(self.sound)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.tree, 1)
        self.tree.itemDoubleClicked.connect(lambda item, _c: self.sensorActivated.emit(item.text(1)))
        self.raised = 0
        self.cleared = 0

    def add(self, alert: Alert) -> QtWidgets.QTreeWidgetItem:
        stamp = (time.strftime("%H:%M:%S", time.localtime(alert.wall_s)) + f".{int(alert.wall_s * 10) % 10}"
                 if alert.wall_s > 0 else "--:--:--")
        sigma = f" ± {alert.std_m:.0f}" if math.isfinite(alert.std_m) else ""
        margin = f"{alert.margin_m:.0f} m" if alert.active and math.isfinite(alert.margin_m) else ""
        prob = f"{alert.probability:.2f}" if math.isfinite(alert.probability) else ""
        dmin = f"{alert.dmin_m:.0f}{sigma} m" if math.isfinite(alert.dmin_m) else "–"
        item = QtWidgets.QTreeWidgetItem([stamp, alert.sensor, alert.type, margin, dmin, prob])
        for col in (3, 4, 5):
            item.setTextAlignment(col, QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
        if alert.active:
            item.setForeground(2, QtGui.QBrush(QtGui.QColor("#D55E00")))
            f = item.font(2)
            f.setBold(True)
            item.setFont(2, f)
        self.tree.insertTopLevelItem(0, item)
        while self.tree.topLevelItemCount() > self.max_rows:
            self.tree.takeTopLevelItem(self.tree.topLevelItemCount() - 1)
        if alert.active:
            self.raised += 1
        else:
            self.cleared += 1
        self.count.setText(f"{self.raised} raised · {self.cleared} cleared (newest first)")
        if alert.active and self.sound.isChecked():
            QtWidgets.QApplication.beep()
        return item

    def clear(self) -> None:
        self.tree.clear()
        self.raised = self.cleared = 0
        self.count.setText("none")
