"""Interaction tools plugged into the 2D slice views (AI prompts, brush, ...).

A view offers every mouse/wheel/key event to its active :class:`ViewTool` first; the tool
returns True when it consumed the event, otherwise the view's own gestures (W/L drag,
pan, zoom, scroll) run. Tools receive positions already converted to LPS millimetres
and the view's slice plane, so they never deal with widget pixels or VTK coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QPointF, Qt

if TYPE_CHECKING:  # pragma: no cover
    from medviewer.ui.slice_view import SliceView


class ToolEventKind(str, Enum):
    PRESS = "press"
    MOVE = "move"
    RELEASE = "release"
    WHEEL = "wheel"
    KEY = "key"


@dataclass
class ToolEvent:
    """One user gesture in a slice view, in physical terms."""

    kind: ToolEventKind
    view: SliceView
    point_lps: np.ndarray | None  # None when the pointer is off the image plane
    widget_pos: QPointF | None
    button: Qt.MouseButton = Qt.MouseButton.NoButton
    buttons: Qt.MouseButton = Qt.MouseButton.NoButton
    modifiers: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier
    wheel_steps: int = 0
    key: int = 0

    @property
    def shift(self) -> bool:
        return bool(self.modifiers & Qt.KeyboardModifier.ShiftModifier)

    @property
    def control(self) -> bool:
        return bool(self.modifiers & Qt.KeyboardModifier.ControlModifier)


class ViewTool:
    """Base class: override :meth:`handle`; return True to consume the event."""

    #: Shown in the status bar while the tool is active.
    hint: str = ""

    def handle(self, event: ToolEvent) -> bool:  # pragma: no cover - default does nothing
        return False

    def activate(self) -> None:
        """Called when the tool becomes the active one."""

    def deactivate(self) -> None:
        """Called when another tool (or none) takes over; drop previews here."""
