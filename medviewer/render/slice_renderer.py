"""The VTK pipeline of one axial 2D slice view: scan layer, label layer, annotations.

:class:`SliceRenderer` owns a ``vtkRenderer`` and knows nothing of Qt; the widget that
hosts it forwards mouse and keyboard gestures as plain method calls. The scan slice and
the label slice are each a contiguous 2D numpy buffer shared with a ``vtkImageData``
(no extra copy), stacked with ``vtkImageStack`` so the overlay never z-fights the scan.

World coordinates are index space scaled by the pixel spacing: voxel (i, j) of the shown
slice sits at (i * sx, j * sy, 0), so non-square pixels have the right aspect. The camera
looks along +z with view-up -y, which puts row 0 at the top and i increasing to the right
(radiological convention for an LPS axial stack) without mirroring the image.
"""

from __future__ import annotations

import math

import numpy as np
from vtkmodules.util.numpy_support import numpy_to_vtk
from vtkmodules.vtkCommonDataModel import vtkImageData
from vtkmodules.vtkRenderingAnnotation import vtkCornerAnnotation
from vtkmodules.vtkRenderingCore import (
    vtkImageProperty,
    vtkImageSlice,
    vtkImageSliceMapper,
    vtkRenderer,
)
from vtkmodules.vtkRenderingImage import vtkImageStack

import vtkmodules.vtkRenderingFreeType  # noqa: F401  (text rendering backend)
import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (registers the OpenGL factories)

from medviewer.model.events import Box
from medviewer.model.labelmap import LabelMap
from medviewer.model.segments import SegmentTable
from medviewer.model.volume import Volume
from medviewer.render.label_colors import DEFAULT_LABEL_ALPHA, build_label_colors, label_table_size, make_lookup_table
from medviewer.render.orientation import OrientationLetters, screen_orientation_letters
from medviewer.render.readout import format_slice_counter
from medviewer.render.slicing import SliceBuffer, slice_position_text
from medviewer.render.window_level import WindowLevel, format_window_level

#: vtkCornerAnnotation slots.
_LOWER_LEFT, _LOWER_RIGHT, _UPPER_LEFT, _UPPER_RIGHT = 0, 1, 2, 3
_BOTTOM_EDGE, _RIGHT_EDGE, _LEFT_EDGE, _TOP_EDGE = 4, 5, 6, 7

#: Fraction of free space around the image when it is fitted to the view.
FIT_MARGIN = 1.03

TEXT_COLOR = (0.86, 0.88, 0.90)
LETTER_COLOR = (1.0, 0.80, 0.35)


class _ImageLayer:
    """A 2D numpy buffer shown through vtkImageData -> vtkImageSliceMapper -> vtkImageSlice."""

    def __init__(self, interpolation: str):
        self.data = vtkImageData()
        self.mapper = vtkImageSliceMapper()
        self.mapper.SetInputData(self.data)
        self.mapper.BorderOn()  # draw whole voxels up to the image edge
        self.property = vtkImageProperty()
        if interpolation == "nearest":
            self.property.SetInterpolationTypeToNearest()
        else:
            self.property.SetInterpolationTypeToLinear()
        self.actor = vtkImageSlice()
        self.actor.SetMapper(self.mapper)
        self.actor.SetProperty(self.property)
        self.actor.PickableOff()
        self.slices: SliceBuffer | None = None
        self._vtk_array = None

    def attach(self, source: np.ndarray, spacing_xy: tuple[float, float]) -> None:
        self.slices = SliceBuffer(source)
        ny, nx = self.slices.buffer.shape
        self.data.SetDimensions(nx, ny, 1)
        self.data.SetSpacing(spacing_xy[0], spacing_xy[1], 1.0)
        self.data.SetOrigin(0.0, 0.0, 0.0)
        self._vtk_array = numpy_to_vtk(self.slices.buffer.reshape(-1), deep=False)
        self._vtk_array.SetName("slice")
        self.data.GetPointData().SetScalars(self._vtk_array)
        self.mapper.SetInputData(self.data)

    def modified(self) -> None:
        if self._vtk_array is not None:
            self._vtk_array.Modified()
        self.data.Modified()


class SliceRenderer:
    """Axial slice k of a volume with its label overlay, window/level and annotations."""

    def __init__(self, renderer: vtkRenderer | None = None):
        self.renderer = renderer if renderer is not None else vtkRenderer()
        self.renderer.SetBackground(0.0, 0.0, 0.0)
        self.volume: Volume | None = None
        self.labelmap: LabelMap | None = None
        self.segments: SegmentTable | None = None
        self.slice_index = 0
        self.window = WindowLevel(0.0, 1.0)
        self.label_alpha = DEFAULT_LABEL_ALPHA
        self.labels_visible = True
        self.orientation: OrientationLetters | None = None
        #: Boxes re-uploaded to the label layer since the last reset (tests, diagnostics).
        self.label_uploads: list[Box] = []

        self._scan = _ImageLayer("linear")
        self._labels = _ImageLayer("nearest")
        self._labels.property.SetUseLookupTableScalarRange(True)
        self._labels.property.SetLayerNumber(1)
        self._scan.property.SetLayerNumber(0)
        self._label_table_size = 0
        self._stack = vtkImageStack()
        self._stack.AddImage(self._scan.actor)
        self._stack.AddImage(self._labels.actor)
        self._stack.SetActiveLayer(0)
        self._stack_shown = False

        self._corner_text = self._make_annotation(TEXT_COLOR, bold=False, max_size=15)
        self._edge_letters = self._make_annotation(LETTER_COLOR, bold=True, max_size=18)
        self.renderer.AddViewProp(self._corner_text)
        self.renderer.AddViewProp(self._edge_letters)

        camera = self.renderer.GetActiveCamera()
        camera.ParallelProjectionOn()

    # -- construction helpers ------------------------------------------------------------
    @staticmethod
    def _make_annotation(color, bold: bool, max_size: int) -> vtkCornerAnnotation:
        annotation = vtkCornerAnnotation()
        annotation.SetMaximumFontSize(max_size)
        annotation.SetMinimumFontSize(max(9, max_size - 5))
        annotation.SetLinearFontScaleFactor(2.0)
        annotation.SetNonlinearFontScaleFactor(1.0)
        prop = annotation.GetTextProperty()
        prop.SetColor(*color)
        prop.SetFontFamilyToArial()
        prop.SetBold(bold)
        prop.ShadowOn()
        prop.SetShadowOffset(1, -1)
        annotation.PickableOff()
        return annotation

    # -- content -------------------------------------------------------------------------
    @property
    def has_volume(self) -> bool:
        return self.volume is not None

    @property
    def num_slices(self) -> int:
        return int(self.volume.shape[0]) if self.volume is not None else 0

    @property
    def intensity_span(self) -> float:
        if self.volume is None:
            return 1.0
        low, high = self.volume.intensity_range()
        return max(high - low, 1e-6)

    def set_volume(self, volume: Volume | None, labelmap: LabelMap | None = None, segments: SegmentTable | None = None) -> None:
        """Show ``volume`` at its middle slice with its default window; None clears the view."""
        self.volume = volume
        if volume is None:
            self.labelmap = self.segments = None
            if self._stack_shown:
                self.renderer.RemoveViewProp(self._stack)
                self._stack_shown = False
            self._corner_text.ClearAllTexts()
            self._edge_letters.ClearAllTexts()
            return
        spacing = volume.geometry.spacing
        self._scan.attach(volume.array, (spacing[0], spacing[1]))
        preset = volume.auto_window()
        self.window = WindowLevel(preset.center, max(preset.width, 1e-6))
        self._apply_window()
        self.slice_index = volume.shape[0] // 2
        self._scan.slices.load(self.slice_index)
        self._scan.modified()
        self.set_labels(labelmap, segments)
        if not self._stack_shown:
            self.renderer.AddViewProp(self._stack)
            self._stack_shown = True
        self._update_orientation_letters()
        self._update_annotations()

    def set_labels(self, labelmap: LabelMap | None, segments: SegmentTable | None) -> None:
        """Attach the overlay's label map (must be on the volume's grid) and its segments."""
        if labelmap is not None and (self.volume is None or labelmap.shape != self.volume.shape):
            raise ValueError("the label map is not on the shown volume's grid")
        self.labelmap = labelmap
        self.segments = segments
        self.label_uploads.clear()
        if labelmap is None:
            self._labels.actor.VisibilityOff()
            return
        self._reattach_labels()
        self._labels.actor.SetVisibility(self.labels_visible)

    def _reattach_labels(self) -> None:
        spacing = self.volume.geometry.spacing
        self._labels.attach(self.labelmap.array, (spacing[0], spacing[1]))
        self._labels.slices.load(self.slice_index)
        self._labels.modified()
        self.segments_changed()

    def segments_changed(self, *_args) -> None:
        """Rebuild the overlay colours (a segment was added, recoloured or hidden)."""
        if self.labelmap is None:
            return
        size = label_table_size(self._labels.slices.buffer.dtype)
        colors = build_label_colors(self.segments, size, self.label_alpha)
        self._labels.property.SetLookupTable(make_lookup_table(colors))
        self._label_table_size = size

    def labels_changed(self, box: Box | None = None) -> bool:
        """Re-upload the part of ``box`` on the shown slice; True when the display changed."""
        if self.labelmap is None or self._labels.slices is None:
            return False
        box = box or Box.full(self.labelmap.shape)
        slices = self._labels.slices
        if slices.source is not self.labelmap.array:
            # The array was replaced (loaded labels, or promoted to uint16): start over.
            self._reattach_labels()
            self.label_uploads.append(Box.full(self.labelmap.shape))
            return True
        if not slices.update(box):
            return False
        self._labels.modified()
        self.label_uploads.append(box)
        return True

    def set_labels_visible(self, visible: bool) -> None:
        self.labels_visible = bool(visible)
        self._labels.actor.SetVisibility(self.labels_visible and self.labelmap is not None)

    def set_label_alpha(self, alpha: float) -> None:
        self.label_alpha = float(np.clip(alpha, 0.0, 1.0))
        self.segments_changed()

    # -- slice and window ----------------------------------------------------------------
    def set_slice(self, index: int) -> bool:
        """Show slice ``index`` (clamped); True when it changed."""
        if self.volume is None:
            return False
        index = int(np.clip(index, 0, self.num_slices - 1))
        if index == self.slice_index and self._scan.slices.index == index:
            return False
        self.slice_index = index
        self._scan.slices.load(index)
        self._scan.modified()
        if self.labelmap is not None and self._labels.slices is not None:
            self._labels.slices.load(index)
            self._labels.modified()
        self._update_annotations()
        return True

    def step_slice(self, delta: int) -> bool:
        return self.set_slice(self.slice_index + int(delta))

    def set_window_level(self, window: WindowLevel) -> None:
        self.window = WindowLevel(float(window.center), max(float(window.width), 1e-6))
        self._apply_window()
        self._update_annotations()

    def _apply_window(self) -> None:
        self._scan.property.SetColorWindow(self.window.width)
        self._scan.property.SetColorLevel(self.window.center)

    def scan_slice(self) -> np.ndarray | None:
        """The buffer VTK is showing for the scan (read-only use)."""
        return self._scan.slices.buffer if self._scan.slices is not None else None

    def label_slice(self) -> np.ndarray | None:
        return self._labels.slices.buffer if (self.labelmap is not None and self._labels.slices) else None

    # -- annotations ---------------------------------------------------------------------
    def _update_orientation_letters(self) -> None:
        letters = screen_orientation_letters(self.volume.geometry.direction_matrix)
        self.orientation = letters
        self._edge_letters.SetText(_LEFT_EDGE, letters.left)
        self._edge_letters.SetText(_RIGHT_EDGE, letters.right)
        self._edge_letters.SetText(_TOP_EDGE, letters.top)
        self._edge_letters.SetText(_BOTTOM_EDGE, letters.bottom)

    def _update_annotations(self) -> None:
        volume = self.volume
        if volume is None:
            return
        info = volume.info
        title = info.name or info.series_description or "Untitled"
        second = " · ".join(v for v in (info.modality, info.series_description if info.series_description != title else "") if v)
        self._corner_text.SetText(_UPPER_LEFT, title + ("\n" + second if second else ""))
        nx, ny, _ = volume.geometry.size_xyz
        sx, sy, sz = volume.geometry.spacing
        self._corner_text.SetText(_UPPER_RIGHT, f"{nx} x {ny}\n{sx:.3g} x {sy:.3g} x {sz:.3g} mm")
        self._corner_text.SetText(
            _LOWER_LEFT,
            f"{format_slice_counter(self.slice_index, self.num_slices)}\n"
            f"{slice_position_text(volume.geometry, self.slice_index)}",
        )
        self._corner_text.SetText(_LOWER_RIGHT, format_window_level(self.window))

    def corner_texts(self) -> dict[str, str]:
        """The annotation strings currently drawn (for tests and accessibility)."""
        names = {"lower_left": _LOWER_LEFT, "lower_right": _LOWER_RIGHT, "upper_left": _UPPER_LEFT, "upper_right": _UPPER_RIGHT}
        return {name: self._corner_text.GetText(slot) or "" for name, slot in names.items()}

    # -- camera --------------------------------------------------------------------------
    def _image_extent_mm(self) -> tuple[float, float, float, float]:
        """(x_min, x_max, y_min, y_max) of the drawn image including the voxel borders."""
        nx, ny, _ = self.volume.geometry.size_xyz
        sx, sy, _ = self.volume.geometry.spacing
        return (-sx / 2.0, (nx - 0.5) * sx, -sy / 2.0, (ny - 0.5) * sy)

    def fit_camera(self, view_width: int | None = None, view_height: int | None = None) -> None:
        """Centre the slice and zoom so the whole image is visible and fills the view."""
        if self.volume is None:
            return
        if view_width is None or view_height is None:
            view_width, view_height = self.renderer.GetSize()
        aspect = (view_width / view_height) if view_width and view_height else 1.0
        x0, x1, y0, y1 = self._image_extent_mm()
        cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        half_height = max((y1 - y0) / 2.0, (x1 - x0) / 2.0 / aspect) * FIT_MARGIN
        camera = self.renderer.GetActiveCamera()
        camera.ParallelProjectionOn()
        distance = 10.0 * max(x1 - x0, y1 - y0, 1.0)
        camera.SetFocalPoint(cx, cy, 0.0)
        camera.SetPosition(cx, cy, -distance)  # look along +z ...
        camera.SetViewUp(0.0, -1.0, 0.0)  # ... with row 0 at the top
        camera.SetParallelScale(half_height)
        camera.SetClippingRange(distance * 0.5, distance * 1.5)

    def zoom(self, factor: float) -> None:
        """factor > 1 magnifies."""
        if factor <= 0 or not math.isfinite(factor):
            return
        camera = self.renderer.GetActiveCamera()
        camera.SetParallelScale(camera.GetParallelScale() / factor)

    def pan(self, from_display: tuple[float, float], to_display: tuple[float, float]) -> None:
        """Move the image with the mouse from one display point to another."""
        start = self.display_to_world(*from_display)
        end = self.display_to_world(*to_display)
        delta = np.asarray(end) - np.asarray(start)
        camera = self.renderer.GetActiveCamera()
        camera.SetFocalPoint(*(np.asarray(camera.GetFocalPoint()) - delta))
        camera.SetPosition(*(np.asarray(camera.GetPosition()) - delta))

    # -- coordinates ---------------------------------------------------------------------
    def display_to_world(self, x: float, y: float) -> tuple[float, float, float]:
        """VTK display pixel (origin bottom-left) -> world point on the slice plane."""
        renderer = self.renderer
        renderer.SetDisplayPoint(float(x), float(y), 0.0)
        renderer.DisplayToWorld()
        wx, wy, wz, w = renderer.GetWorldPoint()
        if w:
            wx, wy, wz = wx / w, wy / w, wz / w
        return (wx, wy, 0.0)

    def display_to_index(self, x: float, y: float) -> tuple[int, int, int] | None:
        """Voxel (i, j, k) under a display pixel, or None outside the image."""
        if self.volume is None:
            return None
        wx, wy, _ = self.display_to_world(x, y)
        sx, sy, _ = self.volume.geometry.spacing
        i, j = int(math.floor(wx / sx + 0.5)), int(math.floor(wy / sy + 0.5))
        nx, ny, _ = self.volume.geometry.size_xyz
        if not (0 <= i < nx and 0 <= j < ny):
            return None
        return (i, j, self.slice_index)

    def index_to_display(self, i: float, j: float) -> tuple[float, float]:
        """Display pixel (origin bottom-left) of the centre of voxel (i, j) on the slice."""
        sx, sy, _ = self.volume.geometry.spacing
        self.renderer.SetWorldPoint(i * sx, j * sy, 0.0, 1.0)
        self.renderer.WorldToDisplay()
        x, y, _ = self.renderer.GetDisplayPoint()
        return (x, y)
