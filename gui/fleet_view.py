"""The fleet view: every sensor in one sortable, colour-coded table (QTableView over
:class:`gui.fleet_model.FleetModel` through a QSortFilterProxyModel: no widget per row).

Layout and its own behaviour only (sorting, picking a sensor); the window owns the model's
refresh. A click picks the sensor for the detail view, a double-click (or Enter) opens it there.
"""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from gui.fleet_model import COLUMN, SENSOR_ROLE, SORT_ROLE, FleetModel
from gui.fleet_state import Health


class FleetProxy(QtCore.QSortFilterProxyModel):
    """Between the model and the view (a filter can go here); sorting is handed to the model's
    numpy sort (:meth:`gui.fleet_model.FleetModel.sort`), the proxy keeps the model's order."""

    def sort(self, column: int, order=QtCore.Qt.SortOrder.AscendingOrder) -> None:  # noqa: A003 (Qt name)
        src = self.sourceModel()
        if src is not None:
            src.sort(column, order)


class FleetView(QtWidgets.QWidget):
    """Summary line + the fleet table."""

    sensorClicked = QtCore.Signal(str)
    sensorActivated = QtCore.Signal(str)

    def __init__(self, model: FleetModel, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.model = model
        self.proxy = FleetProxy(self)
        self.proxy.setSourceModel(model)
        self.proxy.setSortRole(SORT_ROLE)
        # a dynamic proxy would re-sort (thousands of Python data() calls) on every dataChanged
        self.proxy.setDynamicSortFilter(False)
        self.summary = QtWidgets.QLabel("no sensor yet", self)
        self.summary.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.table = QtWidgets.QTableView(self)
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(COLUMN["sensor"], QtCore.Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(False)
        self.table.setAlternatingRowColors(False)  # the row colour is the health
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self.table.verticalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Fixed)
        head = self.table.horizontalHeader()
        head.setStretchLastSection(True)
        head.setHighlightSections(False)
        fm = self.fontMetrics()
        widths = {"sensor": "radar-1000-x", "state": "out of domain (rate) x", "age": "999.9 s agoxx",
                  "est": "Best estimatexx", "std": "± 999 mxx", "source": "hybridxx", "cpa": "Time to CPAx",
                  "alerts": "Alertsxx"}
        for key, sample in widths.items():
            head.resizeSection(COLUMN[key], fm.horizontalAdvance(sample) + 12)
        self.table.clicked.connect(lambda ix: self.sensorClicked.emit(self._sensor(ix)))
        self.table.doubleClicked.connect(lambda ix: self.sensorActivated.emit(self._sensor(ix)))
        self.table.activated.connect(lambda ix: self.sensorActivated.emit(self._sensor(ix)))
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)

    @property
    def resorts(self) -> int:
        """Times the rows were re-ordered (the order changed)."""
        return self.model.resorts

    def _sensor(self, proxy_index: QtCore.QModelIndex) -> str:
        return str(self.proxy.data(proxy_index, SENSOR_ROLE))

    def sensor_at(self, row: int) -> str:
        """The sensor shown on (sorted) row ``row``."""
        return self._sensor(self.proxy.index(row, 0))

    def refresh(self, now: float) -> None:
        """Recompute the model at ``now`` (re-sorted when the order changed) and the summary."""
        self.model.refresh(now)
        self._summary()

    def _summary(self) -> None:
        st = self.model.state
        n = len(st)
        if not n:
            return
        c = st.counts()
        alerting = int(st.alerting[:n].sum())
        parts = [f"<b>{n} sensors</b>", f"{c.get(Health.LIVE, 0) + c.get(Health.LAGGING, 0)} live"]
        for h, text in ((Health.SILENT, "silent"), (Health.OUT_OF_DOMAIN, "out of domain"),
                        (Health.RESTARTED, "restarted"), (Health.MALFORMED, "malformed input"),
                        (Health.WAITING, "waiting")):
            if c.get(h):
                parts.append(f"{c[h]} {text}")
        if st.lagging:
            parts.append("<b>service lagging</b>")
        if alerting:
            parts.append(f"<b><span style='color:#D55E00'>{alerting} near-miss alert{'s' if alerting > 1 else ''}</span></b>")
        text = " · ".join(parts) + " &nbsp; <i>(click a row to pick the sensor, double-click to open it)</i>"
        if text != self.summary.text():
            self.summary.setText(text)
