"""A calm dark look for long reading sessions, and the icon helper used by all widgets."""

from __future__ import annotations

import qtawesome
from PySide6.QtGui import QColor, QIcon, QPalette
from PySide6.QtWidgets import QApplication

from medviewer import resource_path

#: Colours of the theme (also used for icons so they match the text).
WINDOW = "#1f2227"
BASE = "#16181c"
PANEL = "#272b31"
TEXT = "#d7dbe0"
MUTED = "#8b939c"
ACCENT = "#3d8fd1"
AXIAL_MARKER = "#c8463c"  # Slicer-style colour code of the axial (red) view


STYLE_SHEET = f"""
QMainWindow::separator {{ background: {BASE}; width: 3px; height: 3px; }}
QToolBar {{ background: {PANEL}; border: none; border-bottom: 1px solid {BASE}; spacing: 2px; padding: 2px 4px; }}
QToolBar::separator {{ background: #3a3f47; width: 1px; margin: 4px 6px; }}
QToolButton {{ border: 1px solid transparent; border-radius: 4px; padding: 3px; }}
QToolButton:hover {{ background: #343a42; border-color: #434a54; }}
QToolButton:pressed, QToolButton:checked {{ background: #2d4a63; border-color: {ACCENT}; }}
QStatusBar {{ background: {PANEL}; border-top: 1px solid {BASE}; }}
QStatusBar QLabel {{ padding: 0 6px; }}
QDockWidget {{ titlebar-close-icon: none; }}
QDockWidget::title {{ background: {PANEL}; padding: 5px 8px; font-weight: 600; }}
QGroupBox {{ border: 1px solid #353a42; border-radius: 5px; margin-top: 14px; padding: 8px 6px 6px 6px; }}
QGroupBox::title {{ subcontrol-origin: margin; left: 8px; padding: 0 4px; color: {MUTED}; }}
QTreeWidget, QListWidget {{ background: {BASE}; border: 1px solid #30353c; border-radius: 4px; }}
QHeaderView::section {{ background: {PANEL}; border: none; border-bottom: 1px solid #3a3f47; padding: 4px 6px; }}
QProgressBar {{ border: 1px solid #3a3f47; border-radius: 4px; background: {BASE}; text-align: center; height: 16px; }}
QProgressBar::chunk {{ background: {ACCENT}; border-radius: 3px; }}
QMenu {{ background: {PANEL}; border: 1px solid #3a3f47; }}
QMenu::item {{ padding: 5px 26px 5px 24px; }}
QMenu::item:selected {{ background: #2d4a63; }}
QMenuBar {{ background: {PANEL}; }}
QMenuBar::item:selected {{ background: #343a42; }}
"""


def icon(name: str, color: str = TEXT) -> QIcon:
    """A qtawesome icon tinted for the dark theme, with a dimmed disabled state."""
    return qtawesome.icon(name, color=color, color_disabled="#5a616b")


def app_icon() -> QIcon:
    """The application icon from resources/ (source tree, wheel or bundle), else a built-in one."""
    path = resource_path("medviewer.svg")
    if path.is_file():
        return QIcon(str(path))
    return icon("mdi6.brain", ACCENT)


def dark_palette() -> QPalette:
    palette = QPalette()
    roles = {
        QPalette.ColorRole.Window: WINDOW,
        QPalette.ColorRole.WindowText: TEXT,
        QPalette.ColorRole.Base: BASE,
        QPalette.ColorRole.AlternateBase: PANEL,
        QPalette.ColorRole.ToolTipBase: PANEL,
        QPalette.ColorRole.ToolTipText: TEXT,
        QPalette.ColorRole.PlaceholderText: MUTED,
        QPalette.ColorRole.Text: TEXT,
        QPalette.ColorRole.Button: PANEL,
        QPalette.ColorRole.ButtonText: TEXT,
        QPalette.ColorRole.BrightText: "#ffffff",
        QPalette.ColorRole.Highlight: ACCENT,
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.Link: ACCENT,
        QPalette.ColorRole.Mid: "#3a3f47",
        QPalette.ColorRole.Dark: BASE,
        QPalette.ColorRole.Light: "#3a3f47",
    }
    for role, color in roles.items():
        palette.setColor(role, QColor(color))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor("#5a616b"))
    return palette


def apply_theme(app: QApplication) -> None:
    """Fusion style with the dark palette; applied once per application."""
    app.setStyle("Fusion")
    app.setPalette(dark_palette())
    app.setStyleSheet(STYLE_SHEET)
