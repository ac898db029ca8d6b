"""A tiny observer mechanism for the document model.

The model must not depend on Qt, so views subscribe with plain callables. Qt widgets
adapt these callbacks into signals on their side of the boundary.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


class Event:
    """A named list of subscribers; ``emit`` calls each with the payload.

    A subscriber that raises is logged and skipped so one broken view cannot stop the
    others from updating (the same policy napari's EventEmitter uses).
    """

    def __init__(self, name: str):
        self.name = name
        self._callbacks: list[Callable[..., Any]] = []

    def connect(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        if callback not in self._callbacks:
            self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callable[..., Any]) -> None:
        try:
            self._callbacks.remove(callback)
        except ValueError:
            pass

    def emit(self, *args: Any, **kwargs: Any) -> None:
        for callback in list(self._callbacks):
            try:
                callback(*args, **kwargs)
            except Exception:  # noqa: BLE001 - a view's bug must not break the model
                log.exception("subscriber %r of event %r failed", callback, self.name)

    def __len__(self) -> int:
        return len(self._callbacks)


@dataclass(frozen=True)
class Box:
    """Half-open voxel region in array order (z, y, x): ``start`` inclusive, ``stop`` exclusive."""

    start: tuple[int, int, int]
    stop: tuple[int, int, int]

    @classmethod
    def full(cls, shape: tuple[int, ...]) -> Box:
        return cls((0, 0, 0), tuple(int(s) for s in shape))  # type: ignore[arg-type]

    @classmethod
    def from_mask(cls, mask) -> Box | None:
        """Tight box around the true voxels of a 3D boolean array, or None when empty."""
        import numpy as np

        coords = [np.flatnonzero(mask.any(axis=other)) for other in ((1, 2), (0, 2), (0, 1))]
        if any(c.size == 0 for c in coords):
            return None
        return cls(tuple(int(c[0]) for c in coords), tuple(int(c[-1]) + 1 for c in coords))  # type: ignore[arg-type]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))  # type: ignore[return-value]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(b - a for a, b in zip(self.start, self.stop))  # type: ignore[return-value]

    @property
    def is_empty(self) -> bool:
        return any(b <= a for a, b in zip(self.start, self.stop))

    def shifted(self, offset) -> Box:
        """The same box moved by ``offset`` (z, y, x), e.g. from a sub-array's to the whole array's coordinates."""
        return Box(
            tuple(int(a) + int(o) for a, o in zip(self.start, offset)),  # type: ignore[arg-type]
            tuple(int(b) + int(o) for b, o in zip(self.stop, offset)),  # type: ignore[arg-type]
        )

    def union(self, other: Box | None) -> Box:
        if other is None or other.is_empty:
            return self
        if self.is_empty:
            return other
        return Box(
            tuple(min(a, b) for a, b in zip(self.start, other.start)),  # type: ignore[arg-type]
            tuple(max(a, b) for a, b in zip(self.stop, other.stop)),  # type: ignore[arg-type]
        )
