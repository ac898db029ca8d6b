"""Segment table: names, colours, flags and provenance for each label value."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medviewer.model.events import Event

#: Distinct, colour-blind-friendly colours cycled for new segments (RGB 0-255).
DEFAULT_COLORS: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 190),
    (0, 128, 128),
    (170, 110, 40),
)


@dataclass
class ProvenanceEntry:
    """One thing that changed a segment: an AI call, a tool run, an import."""

    kind: str  # "ai", "manual", "import", ...
    time: str  # ISO 8601, UTC
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Segment:
    label: int
    name: str
    color: tuple[int, int, int]
    visible: bool = True
    locked: bool = False
    provenance: list[ProvenanceEntry] = field(default_factory=list)
    #: Free-form key/value tags kept through .seg.nrrd round trips (Slicer's ``Segment{N}_Tags``).
    tags: dict[str, str] = field(default_factory=dict)


class SegmentTable:
    """Ordered segments keyed by label value. Emits ``changed(label)`` on every edit."""

    def __init__(self):
        self._segments: dict[int, Segment] = {}
        self.changed = Event("segments_changed")

    def __iter__(self):
        return iter(list(self._segments.values()))

    def __len__(self) -> int:
        return len(self._segments)

    def __contains__(self, label: int) -> bool:
        return label in self._segments

    def __getitem__(self, label: int) -> Segment:
        return self._segments[label]

    def get(self, label: int) -> Segment | None:
        return self._segments.get(label)

    def next_free_label(self) -> int:
        label = 1
        while label in self._segments:
            label += 1
        return label

    def add(
        self,
        name: str | None = None,
        color: tuple[int, int, int] | None = None,
        label: int | None = None,
    ) -> Segment:
        if label is None:
            label = self.next_free_label()
        if label <= 0 or label > 65535:
            raise ValueError(f"segment labels must lie in 1..65535, got {label}")
        if label in self._segments:
            raise ValueError(f"label {label} is already used by segment {self._segments[label].name!r}")
        if color is None:
            color = DEFAULT_COLORS[(label - 1) % len(DEFAULT_COLORS)]
        segment = Segment(label=label, name=name or f"Segment {label}", color=tuple(color))  # type: ignore[arg-type]
        self._segments[label] = segment
        self.changed.emit(label)
        return segment

    def ensure(self, labels) -> None:
        """Create default entries for label values present in a loaded label map."""
        for label in labels:
            if label not in self._segments:
                self.add(label=int(label))

    def update(self, label: int, **changes: Any) -> Segment:
        segment = self._segments[label]
        for key, value in changes.items():
            if not hasattr(segment, key) or key in ("label", "provenance"):
                raise AttributeError(f"segments have no editable field {key!r}")
            setattr(segment, key, value)
        self.changed.emit(label)
        return segment

    def remove(self, label: int) -> Segment:
        segment = self._segments.pop(label)
        self.changed.emit(label)
        return segment

    def record(self, label: int, entry: ProvenanceEntry) -> None:
        self._segments[label].provenance.append(entry)
        self.changed.emit(label)

    # -- order and restoring (used by undo) ----------------------------------------------
    def labels(self) -> list[int]:
        """Label values in display order."""
        return list(self._segments)

    def index_of(self, label: int) -> int:
        return list(self._segments).index(label)

    def insert(self, segment: Segment, index: int | None = None) -> Segment:
        """Put an existing :class:`Segment` object back at ``index`` (undo of a delete)."""
        if segment.label in self._segments:
            raise ValueError(f"label {segment.label} is already used by segment {self._segments[segment.label].name!r}")
        items = list(self._segments.items())
        index = len(items) if index is None else max(0, min(int(index), len(items)))
        items.insert(index, (segment.label, segment))
        self._segments = dict(items)
        self.changed.emit(segment.label)
        return segment

    def move(self, label: int, index: int) -> None:
        """Move a segment to position ``index`` of the display order."""
        segment = self._segments[label]
        items = [(k, v) for k, v in self._segments.items() if k != label]
        index = max(0, min(int(index), len(items)))
        items.insert(index, (label, segment))
        self._segments = dict(items)
        self.changed.emit(label)

    def unrecord(self, label: int, entry: ProvenanceEntry) -> None:
        """Remove one provenance entry again (its edit was undone)."""
        segment = self._segments.get(label)
        if segment is None:
            return
        for n in range(len(segment.provenance) - 1, -1, -1):
            if segment.provenance[n] is entry:
                del segment.provenance[n]
                self.changed.emit(label)
                return
