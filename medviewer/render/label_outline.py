"""Outline-only display of a 2D label slice (no Qt, no VTK)."""

from __future__ import annotations

import numpy as np


def label_outline(labels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Keep a label only where a 4-neighbour differs from it (or at the image border).

    The result has the input's dtype and shape, 0 elsewhere; ``out`` is reused when given so
    the outline buffer VTK reads stays the same memory from frame to frame.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"need a 2D label slice, got shape {labels.shape}")
    edge = np.zeros(labels.shape, dtype=bool)
    if labels.size:
        edge[0, :] = edge[-1, :] = True
        edge[:, 0] = edge[:, -1] = True
        edge[1:, :] |= labels[1:, :] != labels[:-1, :]
        edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
        edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
        edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    if out is None:
        out = np.zeros_like(labels)
    np.multiply(labels, edge, out=out, casting="unsafe")
    return out
