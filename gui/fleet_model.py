"""Table model of the fleet: one row per sensor, read straight from :class:`gui.fleet_state.FleetState`.

Virtualised: Qt asks ``data()`` only for the cells on screen, so the cost of a frame is the
number of visible rows, not the fleet's size. ``refresh(now)`` (from the window's redraw timer)
recomputes the arrays and emits one ``dataChanged`` over the table; rows are appended with
``beginInsertRows``. Sort keys are numbers (``SORT_ROLE``) for a QSortFilterProxyModel.
"""

from __future__ import annotations

import math

from PySide6 import QtCore, QtGui

from gui.fleet_state import KIND_HYBRID, KIND_TEXT, FleetState, Health

COLUMNS: tuple[tuple[str, str], ...] = (
    ("sensor", "Sensor"), ("state", "State"), ("age", "Last sample"), ("est", "Best estimate"),
    ("std", "± σ"), ("source", "Source"), ("cpa", "Time to CPA"), ("alerts", "Alerts"), ("alert", "Last alert"),
)
COLUMN = {key: k for k, (key, _) in enumerate(COLUMNS)}
SORT_ROLE = int(QtCore.Qt.ItemDataRole.UserRole) + 1
SENSOR_ROLE = int(QtCore.Qt.ItemDataRole.UserRole) + 2

TOOLTIPS = {
    "sensor": "Sensor id (double-click a row to open it in the detail view)",
    "state": "live · silent for N s (no sample for the silence interval, or the service's sensor_silent) · "
             "out of domain (outside the model's radar profile) · restarted / malformed input (last 10 s) · "
             "lagging (the service reports a backlog)",
    "age": "Time since the monitor last received a sample or prediction of this sensor",
    "est": "Latest best estimate of Dmin: the hybrid (classical fit + LSTM) where the service publishes it, "
           "else the causal LSTM",
    "std": "Its standard deviation, where the service publishes one (metres)",
    "source": "Which estimate the row shows",
    "cpa": "Time to the closest point of approach: not published by the service yet",
    "alerts": "near_miss events of this sensor since the monitor started",
    "alert": "Latest near-miss event (serve --alert-dmin-m): margin, time; 'cleared' once it cleared",
}

# Okabe–Ito hues; tinted over the table's base colour so that text stays readable
HEALTH_RGB = {
    Health.LIVE: (0, 158, 115), Health.WAITING: (200, 200, 200), Health.LAGGING: (240, 228, 66),
    Health.MALFORMED: (240, 228, 66), Health.RESTARTED: (86, 180, 233), Health.OUT_OF_DOMAIN: (204, 121, 167),
    Health.SILENT: (110, 110, 110),
}
ALERT_RGB = (213, 94, 0)


def tint(rgb: tuple[int, int, int], base: QtGui.QColor, alpha: float) -> QtGui.QColor:
    """``rgb`` blended over ``base`` (opaque result)."""
    b = (base.red(), base.green(), base.blue())
    return QtGui.QColor(*(int(round(bb + (c - bb) * alpha)) for c, bb in zip(rgb, b)))


class FleetModel(QtCore.QAbstractTableModel):
    """Rows = sensors of a :class:`FleetState` (in the order first seen), columns = :data:`COLUMNS`."""

    def __init__(self, state: FleetState, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.state = state
        self._rows = 0
        self._version = -1
        self.set_base(QtGui.QColor("white"))
        self._align_num = int(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)

    def set_base(self, base: QtGui.QColor) -> None:
        """Row colours for a table whose background is ``base`` (light or dark palette)."""
        dark = base.lightness() < 128
        alpha = 0.45 if dark else 0.30
        self.brushes = {h: QtGui.QBrush(tint(rgb, base, alpha)) for h, rgb in HEALTH_RGB.items()}
        self.alert_brush = QtGui.QBrush(tint(ALERT_RGB, base, 0.75 if dark else 0.55))
        if self._rows:
            self.dataChanged.emit(self.index(0, 0), self.index(self._rows - 1, len(COLUMNS) - 1))

    # ------------------------------------------------------------------ Qt model API

    def rowCount(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else self._rows

    def columnCount(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation, role=QtCore.Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation != QtCore.Qt.Orientation.Horizontal or not 0 <= section < len(COLUMNS):
            return None
        if role == QtCore.Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section][1]
        if role == QtCore.Qt.ItemDataRole.ToolTipRole:
            return TOOLTIPS[COLUMNS[section][0]]
        return None

    def data(self, index: QtCore.QModelIndex, role=QtCore.Qt.ItemDataRole.DisplayRole):
        k, col = index.row(), index.column()
        if not index.isValid() or k >= self._rows:
            return None
        st = self.state
        key = COLUMNS[col][0]
        R = QtCore.Qt.ItemDataRole
        if role == R.DisplayRole:
            return self._text(k, key)
        if role == R.BackgroundRole:
            return self.alert_brush if st.alerting[k] else self.brushes[Health(int(st.health[k]))]
        if role == SORT_ROLE:
            return float(self._sort_key(k, key))  # a Python float: Qt cannot compare numpy scalars
        if role == R.TextAlignmentRole:
            return self._align_num if key in ("age", "est", "std", "alerts", "cpa") else None
        if role == SENSOR_ROLE:
            return st.names[k]
        if role == R.ToolTipRole:
            if key == "state" and st.health[k] == Health.OUT_OF_DOMAIN:
                return st.reasons.get(k) or "out of domain"
            return TOOLTIPS[key]
        if role == R.FontRole and key == "sensor":
            f = QtGui.QFont()
            f.setBold(bool(st.alerting[k]))
            return f
        return None

    def _text(self, k: int, key: str) -> str:
        st = self.state
        if key == "sensor":
            return st.names[k]
        if key == "state":
            return st.state_text(k)
        if key == "age":
            return st.age_text(k)
        if key == "est":
            v = st.est_m[k]
            return f"{v:.0f} m" if math.isfinite(v) else "–"
        if key == "std":
            v = st.std_m[k]
            return f"± {v:.0f} m" if math.isfinite(v) else "–"
        if key == "source":
            return KIND_TEXT[int(st.kind[k])]
        if key == "cpa":
            return "–"  # the service does not publish a time to CPA (yet)
        if key == "alerts":
            return str(int(st.alerts[k])) if st.alerts[k] else ""
        if key == "alert":
            return st.alert_text(k)
        return ""

    def _sort_key(self, k: int, key: str) -> float:
        st = self.state
        if key == "sensor":
            return float(st.order[k])
        if key == "state":  # alerting first, then by severity
            return float(st.health[k]) + (100.0 if st.alerting[k] else 0.0)
        if key == "age":
            v = st.age_s[k]
            return v if math.isfinite(v) else 1e18
        if key == "est":
            v = st.est_m[k]
            return v if math.isfinite(v) else 1e18
        if key == "std":
            v = st.std_m[k]
            return v if math.isfinite(v) else 1e18
        if key == "source":
            return float(st.kind[k] == KIND_HYBRID)
        if key == "alerts":
            return float(st.alerts[k])
        if key == "alert":
            v = st.alert_wall_s[k]
            return v if math.isfinite(v) else -1.0
        return 0.0

    # ------------------------------------------------------------------ per frame

    def sort_keys(self, column: int):
        """Every row's sort key of ``column`` as an array (to tell whether a re-sort is due)."""
        import numpy as np

        n = self._rows
        st = self.state
        key = COLUMNS[column][0]
        arrays = {"sensor": st.order, "age": st.age_s, "est": st.est_m, "std": st.std_m, "alerts": st.alerts,
                  "alert": st.alert_wall_s}
        if key == "state":
            return st.health[:n] + 100 * st.alerting[:n]
        if key in arrays:
            return np.nan_to_num(np.asarray(arrays[key][:n], float), nan=1e18)
        return st.kind[:n]

    def refresh(self, now: float) -> None:
        """Recompute the fleet at ``now``, add new rows, and tell the views every cell changed
        (they repaint the visible ones)."""
        st = self.state
        st.refresh(now)
        n = len(st)
        if n > self._rows:
            self.beginInsertRows(QtCore.QModelIndex(), self._rows, n - 1)
            self._rows = n
            self.endInsertRows()
        if n:
            self.dataChanged.emit(self.index(0, 0), self.index(n - 1, len(COLUMNS) - 1))

    def reset_rows(self) -> None:
        self.beginResetModel()
        self._rows = len(self.state)
        self.endResetModel()
