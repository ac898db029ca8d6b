"""Qt-free document model: volumes, label maps, segments, geometry and change events."""

from medviewer.model.anatomy import AnatomyEntry, lookup_anatomy
from medviewer.model.document import Document, Segmentation
from medviewer.model.editing import EditMode, EditPolicy, EditRefused, LabelCommand, SegmentEditor
from medviewer.model.events import Box, Event
from medviewer.model.geometry import Geometry
from medviewer.model.history import Command, EditHistory, VoxelDelta
from medviewer.model.labelmap import GridMismatchError, LabelMap
from medviewer.model.provenance import ModelProvenance, SlicePlane, prompt_to_physical
from medviewer.model.segments import ProvenanceEntry, Segment, SegmentTable
from medviewer.model.volume import Volume, VolumeInfo, WindowPreset

__all__ = [
    "AnatomyEntry",
    "Box",
    "Command",
    "Document",
    "EditHistory",
    "EditMode",
    "EditPolicy",
    "EditRefused",
    "Event",
    "Geometry",
    "GridMismatchError",
    "LabelCommand",
    "LabelMap",
    "ModelProvenance",
    "ProvenanceEntry",
    "Segment",
    "SegmentEditor",
    "SegmentTable",
    "Segmentation",
    "SlicePlane",
    "Volume",
    "VolumeInfo",
    "VoxelDelta",
    "WindowPreset",
    "lookup_anatomy",
    "prompt_to_physical",
]
