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
    """A label map and its segment table, always on its volume's grid, plus their undo history."""

    labelmap: LabelMap
    segments: SegmentTable
    history: EditHistory = field(default_factory=EditHistory)


class Document:
    """Everything the user has open. Views observe it; it never imports a GUI toolkit.

    Events: ``volume_added(volume)``, ``volume_removed(volume)``,
    ``active_volume_changed(volume_or_None)``.
    """

    def __init__(self):
        self.volumes: list[Volume] = []
        self._segmentations: dict[int, Segmentation] = {}
        self.active_volume: Volume | None = None
        self.volume_added = Event("volume_added")
        self.volume_removed = Event("volume_removed")
        self.active_volume_changed = Event("active_volume_changed")

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
        return seg

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
