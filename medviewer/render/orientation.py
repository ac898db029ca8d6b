"""Anatomical orientation letters for the edges of a 2D view, from the direction matrix.

A view knows which index-space direction points to the right of and down the screen; the
geometry's direction matrix turns that into an LPS direction, and the dominant component
names the letter. Nothing is hard-coded per view, so rotated or flipped acquisitions get
correct labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Letter for the positive and for the negative direction of each LPS axis.
_POSITIVE = ("L", "P", "S")
_NEGATIVE = ("R", "A", "I")


@dataclass(frozen=True)
class OrientationLetters:
    """The anatomical direction each screen edge of a view points to."""

    left: str
    right: str
    top: str
    bottom: str


def nearest_anatomical_letter(vector_lps) -> str:
    """'L', 'R', 'P', 'A', 'S' or 'I' for the LPS axis closest to ``vector_lps``."""
    vector = np.asarray(vector_lps, dtype=float)
    if vector.shape != (3,) or not np.any(vector):
        raise ValueError(f"need a non-zero 3-vector, got {vector_lps!r}")
    axis = int(np.argmax(np.abs(vector)))
    return _POSITIVE[axis] if vector[axis] > 0 else _NEGATIVE[axis]


def screen_orientation_letters(
    direction_matrix,
    screen_right_index=(1.0, 0.0, 0.0),
    screen_down_index=(0.0, 1.0, 0.0),
) -> OrientationLetters:
    """Letters for the four edges of a view.

    ``screen_right_index`` and ``screen_down_index`` are the index-space (i, j, k)
    directions that point right and down on the screen. The axial view of this app shows
    i to the right and j downwards, which for an identity (LPS) direction gives the
    radiological convention: R on the left, L on the right, A at the top, P at the bottom.
    """
    matrix = np.asarray(direction_matrix, dtype=float).reshape(3, 3)
    right = matrix @ np.asarray(screen_right_index, dtype=float)
    down = matrix @ np.asarray(screen_down_index, dtype=float)
    return OrientationLetters(
        left=nearest_anatomical_letter(-right),
        right=nearest_anatomical_letter(right),
        top=nearest_anatomical_letter(-down),
        bottom=nearest_anatomical_letter(down),
    )
