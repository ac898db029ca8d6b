"""VTK display pipelines and the plain display logic behind them.

Everything here is free of Qt so it can be tested without a window: the pure helpers
(window/level math, orientation letters, label colours, cursor readout text) need neither
Qt nor a display, and :class:`SliceRenderer` only needs a ``vtkRenderer`` to draw into.
"""

from medviewer.render.label_colors import build_label_colors, label_table_size, make_lookup_table
from medviewer.render.orientation import OrientationLetters, nearest_anatomical_letter, screen_orientation_letters
from medviewer.render.readout import CursorSample, format_cursor_readout, format_slice_counter, sample_cursor
from medviewer.render.slicing import SliceBuffer, slice_position_text, vtk_friendly_dtype
from medviewer.render.window_level import WindowLevel, drag_window_level, format_window_level

__all__ = [
    "CursorSample",
    "OrientationLetters",
    "SliceBuffer",
    "WindowLevel",
    "build_label_colors",
    "drag_window_level",
    "format_cursor_readout",
    "format_slice_counter",
    "format_window_level",
    "label_table_size",
    "make_lookup_table",
    "nearest_anatomical_letter",
    "sample_cursor",
    "screen_orientation_letters",
    "slice_position_text",
    "vtk_friendly_dtype",
]
