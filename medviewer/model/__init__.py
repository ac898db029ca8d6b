"""Qt-free document model: volumes, label maps, segments, geometry and change events."""

from medviewer.model.document import Document, Segmentation
from medviewer.model.events import Box, Event
from medviewer.model.geometry import Geometry
from medviewer.model.labelmap import GridMismatchError, LabelMap
from medviewer.model.segments import ProvenanceEntry, Segment, SegmentTable
from medviewer.model.volume import Volume, VolumeInfo, WindowPreset

__all__ = [
    "Box",
    "Document",
    "Event",
    "Geometry",
    "GridMismatchError",
    "LabelMap",
    "ProvenanceEntry",
    "Segment",
    "SegmentTable",
    "Segmentation",
    "Volume",
    "VolumeInfo",
    "WindowPreset",
]
