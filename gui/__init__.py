"""The radarstream monitor: a PySide6 + pyqtgraph window over the ZeroMQ streams (docs/gui.md).

Qt-free parts (``gui.stream``, ``gui.buffers``, ``gui.pipeline``, ``gui.summary``) can be used
without a display, e.g. by ``radarstream demo --headless``.
"""
