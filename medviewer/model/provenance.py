"""What a provenance record says about an AI call or a manual edit, in physical units.

Prompts are stored in LPS millimetres, not voxel indices, so a record stays meaningful
after the label map is resampled or exported, and can be replayed against the scan.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from medviewer.model.geometry import Geometry


def now_iso() -> str:
    """Current UTC time, ISO 8601 with milliseconds (the format every entry uses)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class ModelProvenance:
    """Which model produced a mask: identity, version and the exact weights used."""

    model_id: str
    name: str = ""
    version: str = ""
    checkpoint_sha256: str = ""
    device: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_model_info(cls, info, checkpoint_sha256: str = "", device: str = "", **extra: Any) -> ModelProvenance:
        """Build from an AI plugin's ``ModelInfo`` (duck-typed: ``id``, ``name``, ``version``)."""
        sha = checkpoint_sha256 or getattr(getattr(info, "checkpoint", None), "sha256", "") or ""
        return cls(str(info.id), str(getattr(info, "name", "")), str(getattr(info, "version", "")), sha, device, dict(extra))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SlicePlane:
    """An axis-aligned slice of the array: ``axis`` 0, 1 or 2 of (z, y, x) at ``index``.

    A 2D slice is ``array[index]``, ``array[:, index, :]`` or ``array[:, :, index]`` with
    no flips, so a 2D position (column, row) on it maps to one voxel index.

    A view that reslices an oblique volume shows a plane no array slice matches; it then
    also gives the plane itself, ``origin`` (a point on it) and unit ``normal`` in LPS mm,
    so tools that can be exact (the circle brush) are, while ``axis``/``index`` (the
    nearest array slice) still serve the tools that work on array slices.
    """

    axis: int
    index: int
    origin: tuple[float, float, float] | None = None
    normal: tuple[float, float, float] | None = None

    def __post_init__(self):
        if self.axis not in (0, 1, 2):
            raise ValueError(f"slice axis must be 0 (z), 1 (y) or 2 (x), got {self.axis}")
        if (self.origin is None) != (self.normal is None):
            raise ValueError("a physical slice plane needs both its origin and its normal")
        if self.origin is not None:
            origin = np.asarray(self.origin, dtype=float).ravel()
            normal = np.asarray(self.normal, dtype=float).ravel()
            length = float(np.linalg.norm(normal)) if normal.size == 3 else 0.0
            if origin.size != 3 or not np.all(np.isfinite(origin)) or not np.isfinite(length) or length < 1e-9:
                raise ValueError(f"slice plane needs a 3D origin and a non-zero normal, got {self.origin}, {self.normal}")
            object.__setattr__(self, "origin", tuple(float(v) for v in origin))
            object.__setattr__(self, "normal", tuple(float(v) for v in normal / length))

    @property
    def is_physical(self) -> bool:
        """Whether the plane is given in LPS mm (an oblique reslice), not only as an array slice."""
        return self.normal is not None

    def as_dict(self) -> dict[str, Any]:
        """JSON form: ``axis`` letter and ``index`` always (older readers need no more), plus
        ``origin`` and ``normal`` in LPS mm for a physical plane."""
        out: dict[str, Any] = {"axis": "zyx"[self.axis], "index": int(self.index)}
        if self.origin is not None and self.normal is not None:
            out["origin"] = [round(v, 4) for v in self.origin]
            out["normal"] = [round(v, 6) for v in self.normal]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SlicePlane:
        """Inverse of :meth:`as_dict`; also reads records written before planes had an origin."""
        axis = data["axis"]
        axis = "zyx".index(axis) if isinstance(axis, str) else int(axis)
        origin, normal = data.get("origin"), data.get("normal")
        return cls(axis, int(data["index"]), None if origin is None else tuple(origin), None if normal is None else tuple(normal))

    def to_ijk(self, column: float, row: float) -> tuple[float, float, float]:
        """(i, j, k) index of a (column, row) position on this slice."""
        if self.axis == 0:
            return (column, row, float(self.index))
        if self.axis == 1:
            return (column, float(self.index), row)
        return (float(self.index), column, row)


def _points_lps(geometry: Geometry, ijk_points) -> list[list[float]]:
    if not len(ijk_points):
        return []
    return [[round(float(v), 4) for v in p] for p in np.atleast_2d(geometry.index_to_physical(np.asarray(ijk_points, float)))]


def prompt_to_physical(prompt, geometry: Geometry, plane: SlicePlane | None = None, time: str | None = None) -> dict[str, Any]:
    """A model prompt (``box``, ``points``, ``labels`` in voxel indices) in LPS mm, stamped with its time.

    2D prompts (x = column, y = row on ``plane``) need the plane; 3D prompts are (x, y, z)
    voxel indices. The box becomes its two corner points. Call it when the model is
    called (one record per call) and pass the list to ``accept_ai_result``.
    """
    box = getattr(prompt, "box", None)
    points = list(getattr(prompt, "points", ()) or ())
    labels = [int(v) for v in (getattr(prompt, "labels", ()) or ())]
    if box is not None and len(box) == 4:
        if plane is None:
            raise ValueError("a 2D prompt needs the slice it was drawn on")
        corners = [plane.to_ijk(box[0], box[1]), plane.to_ijk(box[2], box[3])]
    elif box is not None:
        corners = [tuple(box[:3]), tuple(box[3:])]
    else:
        corners = []
    if points and len(points[0]) == 2:
        if plane is None:
            raise ValueError("a 2D prompt needs the slice it was drawn on")
        ijk = [plane.to_ijk(p[0], p[1]) for p in points]
    else:
        ijk = [tuple(p) for p in points]
    out: dict[str, Any] = {"coordinates": "LPS mm", "time": time or now_iso()}
    if corners:
        out["box_corners"] = _points_lps(geometry, corners)
    if ijk:
        out["points"] = _points_lps(geometry, ijk)
        out["point_labels"] = labels
    if plane is not None:
        out["slice"] = plane.as_dict()
    return out
