"""Toolbar controls for window/level: numeric entry and the presets menu."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QMenu, QToolButton, QWidget

from medviewer.model.volume import Volume, WindowPreset
from medviewer.render.window_level import WindowLevel
from medviewer.render.window_presets import window_presets
from medviewer.ui import theme

_LIMIT = 1e9


class WindowLevelBar(QWidget):
    """'W [ 400 ]  L [ 40 ]  presets' for the shown volume; emits the window the user typed."""

    window_entered = Signal(float, float)  # centre, width

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.presets: list[WindowPreset] = []
        self.width_box = self._spin_box("Window width (contrast): type a value and press Enter")
        self.width_box.setMinimum(1e-6)
        self.level_box = self._spin_box("Window level (brightness, the centre value): type a value and press Enter")
        self.presets_menu = QMenu("Window &Presets", self)
        self.presets_menu.setIcon(theme.icon("mdi6.tune-variant"))
        self.presets_button = QToolButton(self)
        self.presets_button.setIcon(theme.icon("mdi6.tune-variant"))
        self.presets_button.setText("Presets")
        self.presets_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.presets_button.setToolTip("Window/level presets (CT windows, scanner windows, automatic)")
        self.presets_button.setMenu(self.presets_menu)
        self.presets_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 0)
        layout.setSpacing(4)
        for caption, box in (("W", self.width_box), ("L", self.level_box)):
            label = QLabel(caption, self)
            label.setStyleSheet(f"color: {theme.MUTED}; font-weight: 600;")
            label.setToolTip(box.toolTip())
            layout.addWidget(label)
            layout.addWidget(box)
        layout.addWidget(self.presets_button)
        self.set_volume(None)

    def _spin_box(self, tip: str) -> QDoubleSpinBox:
        box = QDoubleSpinBox(self)
        box.setRange(-_LIMIT, _LIMIT)
        box.setKeyboardTracking(False)
        box.setButtonSymbols(QDoubleSpinBox.ButtonSymbols.NoButtons)
        box.setAlignment(Qt.AlignmentFlag.AlignRight)
        box.setFixedWidth(72)
        box.setToolTip(tip)
        box.editingFinished.connect(self._on_edited)
        return box

    def set_volume(self, volume: Volume | None) -> list[QAction]:
        """Offer ``volume``'s presets; returns the preset actions (also in ``presets_menu``)."""
        self.presets_menu.clear()
        enabled = volume is not None
        for widget in (self.width_box, self.level_box, self.presets_button):
            widget.setEnabled(enabled)
        self.presets_menu.setEnabled(enabled)
        if volume is None:
            self.presets = []
            return []
        integer = np.issubdtype(volume.dtype, np.integer)
        low, high = volume.intensity_range()
        decimals = 0 if integer and high - low > 50 else 3
        for box in (self.width_box, self.level_box):
            box.setDecimals(decimals)
        self.width_box.setMinimum(10.0 ** -decimals)
        self.presets = window_presets(volume)
        actions = []
        for preset in self.presets:
            action = self.presets_menu.addAction(f"{preset.name}\tW {preset.width:g}  L {preset.center:g}")
            action.setToolTip(f"Window {preset.width:g}, level {preset.center:g}")
            action.setData(preset.name)
            action.triggered.connect(lambda _=False, p=preset: self.window_entered.emit(p.center, p.width))
            actions.append(action)
        return actions

    def show_window(self, window: WindowLevel) -> None:
        """Display the current window without emitting anything."""
        for box, value in ((self.width_box, window.width), (self.level_box, window.center)):
            box.blockSignals(True)
            box.setValue(value)
            box.blockSignals(False)

    def _on_edited(self) -> None:
        self.window_entered.emit(self.level_box.value(), self.width_box.value())
