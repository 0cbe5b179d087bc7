"""The detail view's legend: one checkbox per series, with its colour, in a grid above the plots
(never over the data). Unticking hides the series. Layout only: the window connects ``toggled``."""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets


def swatch(colour: str, kind: str, size: int = 16) -> QtGui.QIcon:
    """A small picture of a series: a line, a dashed line, a tick or a filled box."""
    pix = QtGui.QPixmap(size, size)
    pix.fill(QtCore.Qt.GlobalColor.transparent)
    p = QtGui.QPainter(pix)
    p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
    c = QtGui.QColor(colour)
    if kind == "fill":
        p.fillRect(2, 4, size - 4, size - 8, c)
    elif kind == "tick":
        p.setPen(QtGui.QPen(c, 2))
        p.drawLine(size // 2, 3, size // 2, size - 3)
    else:
        pen = QtGui.QPen(c, 2)
        if kind == "dash":
            pen.setStyle(QtCore.Qt.PenStyle.DashLine)
        p.setPen(pen)
        p.drawLine(1, size // 2, size - 1, size // 2)
    p.end()
    return QtGui.QIcon(pix)


class SeriesLegend(QtWidgets.QWidget):
    """``toggled(name, visible)`` when a checkbox changes; ``boxes[name]`` are the checkboxes."""

    toggled = QtCore.Signal(str, bool)

    def __init__(self, styles: dict[str, tuple[str, str, str]], parent: QtWidgets.QWidget | None = None,
                 columns: int = 5):
        super().__init__(parent)
        grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(6, 2, 6, 0)
        grid.setHorizontalSpacing(12)
        grid.setVerticalSpacing(0)
        self.boxes: dict[str, QtWidgets.QCheckBox] = {}
        for k, (name, (label, _colour, _kind)) in enumerate(styles.items()):
            box = QtWidgets.QCheckBox(label, self)
            box.setChecked(True)
            box.setToolTip(f"Show or hide: {label}")
            box.toggled.connect(lambda on, n=name: self.toggled.emit(n, on))
            grid.addWidget(box, k // columns, k % columns)
            self.boxes[name] = box
        grid.setColumnStretch(columns, 1)
        self.set_styles(styles)

    def set_styles(self, styles: dict[str, tuple[str, str, str]]) -> None:
        for name, (_label, colour, kind) in styles.items():
            self.boxes[name].setIcon(swatch(colour, kind))
