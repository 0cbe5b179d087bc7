"""The near-miss banner above the views: hidden until a ``near_miss`` arrives, then the sensor,
the margin and the time in white on vermillion, with Open and Dismiss. Layout only: the window
decides what it shows."""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from gui.fleet_state import Alert


class AlertBanner(QtWidgets.QFrame):
    openRequested = QtCore.Signal(str)
    dismissed = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("alert-banner")
        self.setStyleSheet("#alert-banner { background: #D55E00; border-radius: 3px; }"
                           "#alert-banner QLabel { color: white; font-weight: bold; }")
        self.text = QtWidgets.QLabel("", self)
        self.text.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.open_button = QtWidgets.QPushButton("Open sensor", self)
        self.dismiss_button = QtWidgets.QPushButton("Dismiss", self)
        self.dismiss_button.setToolTip("Hide the banner (the alert stays in the alert list and the fleet row)")
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(8, 3, 8, 3)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.open_button)
        layout.addWidget(self.dismiss_button)
        self.sensor: str | None = None
        self.open_button.clicked.connect(lambda: self.sensor and self.openRequested.emit(self.sensor))
        self.dismiss_button.clicked.connect(self._dismiss)
        self.setVisible(False)

    def show_alert(self, alert: Alert, active: int) -> None:
        """Show ``alert`` (the newest active one); ``active``: alerts not cleared yet."""
        self.sensor = alert.sensor
        more = f"   (+{active - 1} more active)" if active > 1 else ""
        self.text.setText(f"⚠  NEAR MISS  {alert.sensor} · {alert.summary()}{more}")
        self.setVisible(True)

    def clear(self) -> None:
        self.sensor = None
        self.text.setText("")
        self.setVisible(False)

    def _dismiss(self) -> None:
        self.clear()
        self.dismissed.emit()
