"""Cross-cutting vocabulary every package may use, importing nothing of the product itself:

* ``errors``  — :class:`RadarstreamError`, the root of every domain error (the CLI catches it once);
* ``palette`` — the colours of an attribution, shared by the CLI figures and the GUI overlay;
* ``online``, ``checks`` — the online-estimator vocabulary and its conformance suite.

So ``streamer``, ``models``, ``gui``, ``bench`` and ``tools`` can all depend on it without cycles
(and without pulling torch or Qt).
"""

from radarstream.errors import RadarstreamError, UsageError

__all__ = ["RadarstreamError", "UsageError"]
