"""Colours of an attribution: one mapping for the CLI figures and the GUI's explain overlay.

Okabe–Ito blue for "lowered the estimate" and a wine purple (Paul Tol's) for "raised it": the
vermillion of the GUI's disagreement shading (``gui/plots.py``) stays free for disagreements, so an
overlay on a shaded region can be told from the shading. No imports: the GUI reads these without
pulling matplotlib, torch or captum.
"""

from __future__ import annotations

from typing import Final

RGB = tuple[int, int, int]

RAISES: Final[RGB] = (170, 51, 119)
"""A sample (feature) that raised the estimate; also unsigned importance (saliency, attention)."""
LOWERS: Final[RGB] = (0, 114, 178)
"""A sample (feature) that lowered the estimate."""
NEUTRAL: Final[RGB] = (255, 255, 255)
"""No effect: the middle of the diverging scale in figures (transparent in the GUI)."""


def hex_colour(rgb: RGB) -> str:
    """``(r, g, b)`` as ``#rrggbb`` (matplotlib and Qt both read it)."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def diverging_stops() -> tuple[str, str, str]:
    """Lowers → neutral → raises, for a signed colour scale centred on zero."""
    return hex_colour(LOWERS), hex_colour(NEUTRAL), hex_colour(RAISES)


def sequential_stops() -> tuple[str, str]:
    """Neutral → raises, for unsigned importance (|gradient|, attention weight)."""
    return hex_colour(NEUTRAL), hex_colour(RAISES)
