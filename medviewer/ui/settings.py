"""What the window remembers between sessions (layout, recent files), kept in QSettings.

The QSettings object is passed in, never a global: tests hand over one backed by a file
in a temporary folder, so they cannot touch the user's own settings.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings

from medviewer.render.layout import LayoutState

MAX_RECENT_FILES = 10
_RECENT_KEY = "files/recent"
_LAYOUT_KEY = "view/layout"
_MAXIMISED_KEY = "view/maximised"
_LINEAR_KEY = "view/linearInterpolation"


def updated_recent_files(current: list[str], path: str, limit: int = MAX_RECENT_FILES) -> list[str]:
    """``path`` first, then the others without duplicates, at most ``limit`` entries."""
    normalised = str(Path(path).expanduser().resolve()) if path else path
    rest = [p for p in current if p and p != normalised]
    return ([normalised] + rest)[: max(limit, 0)]


class ViewerSettings:
    """Typed access to the few settings the viewer keeps."""

    def __init__(self, settings: QSettings):
        self.qsettings = settings

    def _list(self, key: str) -> list[str]:
        value = self.qsettings.value(key, [])
        if value is None:
            return []
        if isinstance(value, str):
            return [value] if value else []
        return [str(v) for v in value]

    # -- recent files -------------------------------------------------------------------
    def recent_files(self) -> list[str]:
        return self._list(_RECENT_KEY)[:MAX_RECENT_FILES]

    def add_recent_file(self, path: str) -> list[str]:
        files = updated_recent_files(self.recent_files(), path)
        self.qsettings.setValue(_RECENT_KEY, files)
        return files

    def clear_recent_files(self) -> None:
        self.qsettings.setValue(_RECENT_KEY, [])

    # -- layout -------------------------------------------------------------------------
    def layout_state(self) -> LayoutState:
        return LayoutState.from_strings(self.qsettings.value(_LAYOUT_KEY), self.qsettings.value(_MAXIMISED_KEY))

    def save_layout_state(self, state: LayoutState) -> None:
        layout, maximised = state.to_strings()
        self.qsettings.setValue(_LAYOUT_KEY, layout)
        self.qsettings.setValue(_MAXIMISED_KEY, maximised)

    # -- display ------------------------------------------------------------------------
    def linear_interpolation(self) -> bool:
        value = self.qsettings.value(_LINEAR_KEY, True)
        return value if isinstance(value, bool) else str(value).lower() not in ("false", "0", "no")

    def save_linear_interpolation(self, linear: bool) -> None:
        self.qsettings.setValue(_LINEAR_KEY, bool(linear))

    def sync(self) -> None:
        self.qsettings.sync()
