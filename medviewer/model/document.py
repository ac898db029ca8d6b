"""The document: open volumes and, per volume, its label map and segment table."""

from __future__ import annotations

from dataclasses import dataclass, field

from medviewer.model.events import Event
from medviewer.model.history import EditHistory, default_budget
from medviewer.model.labelmap import GridMismatchError, LabelMap
from medviewer.model.segments import SegmentTable
from medviewer.model.volume import Volume


@dataclass
class Segmentation:
    """A label map and its segment table, always on its volume's grid, plus their undo history.

    ``revision`` counts changes to the labels or the segment table; ``saved_revision`` is
    the revision last written to (or read from) a session, so a save that snapshots
    revision 7 while the user goes on editing leaves the segmentation modified.
    """

    labelmap: LabelMap
    segments: SegmentTable
    history: EditHistory = field(default_factory=EditHistory)
    revision: int = 0
    saved_revision: int = 0
    session_path: str | None = None  # the session file it was last saved to or opened from

    @property
    def modified(self) -> bool:
        """Unsaved changes since the last session save (exports do not count as saving)."""
        return self.revision != self.saved_revision


class Document:
    """Everything the user has open. Views observe it; it never imports a GUI toolkit.

    Events: ``volume_added(volume)``, ``volume_removed(volume)``,
    ``active_volume_changed(volume_or_None)``, ``modified_changed(volume, modified)`` (a
    segmentation gained unsaved changes or was saved; may fire on the thread that edited).
    """

    def __init__(self):
        self.volumes: list[Volume] = []
        self._segmentations: dict[int, Segmentation] = {}
        self.active_volume: Volume | None = None
        self.volume_added = Event("volume_added")
        self.volume_removed = Event("volume_removed")
        self.active_volume_changed = Event("active_volume_changed")
        self.modified_changed = Event("modified_changed")

    def add_volume(self, volume: Volume, make_active: bool = True) -> Volume:
        self.volumes.append(volume)
        self.volume_added.emit(volume)
        if make_active or self.active_volume is None:
            self.set_active_volume(volume)
        return volume

    def remove_volume(self, volume: Volume) -> None:
        self.volumes.remove(volume)
        self._segmentations.pop(id(volume), None)
        self.volume_removed.emit(volume)
        if self.active_volume is volume:
            self.set_active_volume(self.volumes[-1] if self.volumes else None)

    def set_active_volume(self, volume: Volume | None) -> None:
        if volume is not None and volume not in self.volumes:
            raise ValueError("the volume is not part of this document")
        if volume is self.active_volume:
            return
        self.active_volume = volume
        self.active_volume_changed.emit(volume)

    def segmentation(self, volume: Volume | None = None) -> Segmentation:
        """The segmentation of ``volume`` (default: the active one), created on first use."""
        volume = volume or self.active_volume
        if volume is None:
            raise ValueError("no volume is open")
        seg = self._segmentations.get(id(volume))
        if seg is None:
            seg = Segmentation(LabelMap(volume.geometry), SegmentTable(), EditHistory(default_budget(volume.nbytes)))
            self._segmentations[id(volume)] = seg
            seg.labelmap.changed.connect(lambda *_: self._count_change(volume, seg))
            seg.segments.changed.connect(lambda *_: self._count_change(volume, seg))
        return seg

    # -- unsaved changes ---------------------------------------------------------------------
    def _count_change(self, volume: Volume, seg: Segmentation) -> None:
        was_modified = seg.modified
        seg.revision += 1
        if not was_modified and seg.modified:
            self.modified_changed.emit(volume, True)

    def is_modified(self, volume: Volume | None = None) -> bool:
        """Whether ``volume``'s segmentation (default: any open one) has unsaved changes."""
        if volume is None:
            return bool(self.modified_volumes())
        seg = self._segmentations.get(id(volume))
        return seg is not None and seg.modified

    def modified_volumes(self) -> list[Volume]:
        return [v for v in self.volumes if self.is_modified(v)]

    def revision(self, volume: Volume) -> int:
        """The change count of ``volume``'s segmentation; take it with a save's snapshot."""
        return self.segmentation(volume).revision

    def mark_saved(self, volume: Volume, revision: int | None = None, session_path: str | None = None) -> None:
        """Record that the state at ``revision`` (default: now) is safely in a file."""
        if volume not in self.volumes:
            return  # closed while its save ran
        seg = self.segmentation(volume)
        was_modified = seg.modified
        seg.saved_revision = seg.revision if revision is None else int(revision)
        if session_path is not None:
            seg.session_path = str(session_path)
        if seg.modified != was_modified:
            self.modified_changed.emit(volume, seg.modified)

    def set_labels(self, volume: Volume, labelmap: LabelMap, segments: SegmentTable | None = None) -> Segmentation:
        """Attach a loaded label map; it must be on ``volume``'s grid."""
        if not volume.geometry.same_grid(labelmap.geometry):
            raise GridMismatchError(
                "the label map does not match the volume's grid: "
                + volume.geometry.describe_difference(labelmap.geometry)
            )
        if segments is None:
            segments = SegmentTable()
            segments.ensure(labelmap.labels_present())
        seg = self.segmentation(volume)
        seg.labelmap.array = labelmap.array
        for segment in segments:
            if segment.label in seg.segments:
                seg.segments.update(segment.label, name=segment.name, color=segment.color)
            else:
                seg.segments.add(segment.name, segment.color, label=segment.label)
        seg.history.clear()  # old commands refer to voxels that were just replaced
        seg.labelmap.notify()
        return seg
