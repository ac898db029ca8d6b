"""DICOM reading: scan folders for series, then stack one into a :class:`Volume`.

Slices are placed by their physical position, never by file name; anything a regular
voxel grid cannot represent (gantry tilt, irregular spacing, repeated positions) is
refused with a message instead of producing a silently wrong volume.
"""

from medviewer.io.dicom.build import load_dicom, load_series
from medviewer.io.dicom.scan import scan_dicom
from medviewer.io.dicom.series import DicomFrame, DicomSeries

__all__ = ["DicomFrame", "DicomSeries", "load_dicom", "load_series", "scan_dicom"]
