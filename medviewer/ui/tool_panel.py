"""The dock that hosts the active tool's controls (paint, threshold, AI prompts, ...).

Tools call :meth:`ToolPanel.set_tool_widget` with their own widget. The panel keeps every
widget it was given (hidden while another tool is active) and never deletes one, so a
tool that is switched away from and back keeps its state; a tool that goes away for good
calls :meth:`ToolPanel.remove_tool_widget`. With no tool active the panel says so.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QScrollArea, QStackedWidget, QVBoxLayout, QWidget

from medviewer.ui import theme


class ToolPanel(QWidget):
    """Shows the active tool's widget, or a hint when no tool is active."""

    tool_changed = Signal(str)  # the active tool's title, "" when none is active

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._titles: dict[int, str] = {}
        self.placeholder = QLabel("No tool is active.\nSegmentation tools show their settings here.", self)
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.placeholder.setStyleSheet(f"color: {theme.MUTED}; padding: 18px;")
        self._stack = QStackedWidget(self)
        self._stack.addWidget(self.placeholder)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(self._stack)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(scroll, 1)

    @property
    def tool_widget(self) -> QWidget | None:
        """The active tool's widget, or None."""
        current = self._stack.currentWidget()
        return None if current is self.placeholder else current

    @property
    def title(self) -> str:
        widget = self.tool_widget
        return self._titles.get(id(widget), "") if widget is not None else ""

    def set_tool_widget(self, widget: QWidget | None, title: str = "") -> None:
        """Show ``widget`` (added on first use); None shows the 'no tool' hint."""
        if widget is None:
            self._stack.setCurrentWidget(self.placeholder)
        else:
            if self._stack.indexOf(widget) < 0:
                self._stack.addWidget(widget)
            self._titles[id(widget)] = title
            self._stack.setCurrentWidget(widget)
        self.tool_changed.emit(self.title)

    def remove_tool_widget(self, widget: QWidget) -> None:
        """Take ``widget`` out of the panel (hidden, not deleted; its parent stays the same)."""
        if self._stack.indexOf(widget) < 0:
            return
        was_active = widget is self._stack.currentWidget()
        self._stack.removeWidget(widget)
        self._titles.pop(id(widget), None)
        if was_active:
            self._stack.setCurrentWidget(self.placeholder)
            self.tool_changed.emit("")

    def clear_tool_widget(self) -> None:
        self.set_tool_widget(None)
