"""Which views the window shows and where (no Qt): the layout presets and the maximised pane."""

from __future__ import annotations

from dataclasses import dataclass

AXIAL, CORONAL, SAGITTAL, VIEW_3D = "axial", "coronal", "sagittal", "3d"
PANES = (AXIAL, CORONAL, SAGITTAL, VIEW_3D)

#: Layout name -> {pane: (row, column)}. 2x2 follows Slicer's Four-Up arrangement.
LAYOUTS: dict[str, dict[str, tuple[int, int]]] = {
    "2x2": {AXIAL: (0, 0), VIEW_3D: (0, 1), SAGITTAL: (1, 0), CORONAL: (1, 1)},
    "1x3": {AXIAL: (0, 0), CORONAL: (0, 1), SAGITTAL: (0, 2)},
    AXIAL: {AXIAL: (0, 0)},
    CORONAL: {CORONAL: (0, 0)},
    SAGITTAL: {SAGITTAL: (0, 0)},
    VIEW_3D: {VIEW_3D: (0, 0)},
}
LAYOUT_NAMES = tuple(LAYOUTS)
DEFAULT_LAYOUT = "2x2"

LAYOUT_TITLES = {
    "2x2": "Four-up (2 x 2)",
    "1x3": "Three slices (1 x 3)",
    AXIAL: "Axial only",
    CORONAL: "Coronal only",
    SAGITTAL: "Sagittal only",
    VIEW_3D: "3D only",
}


@dataclass
class LayoutState:
    """The chosen layout plus, optionally, one pane temporarily maximised over it."""

    layout: str = DEFAULT_LAYOUT
    maximised: str | None = None

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}; choose one of {', '.join(LAYOUT_NAMES)}")
        if self.maximised is not None and self.maximised not in PANES:
            raise ValueError(f"unknown view {self.maximised!r}")

    def cells(self) -> dict[str, tuple[int, int]]:
        """The panes shown now and their grid cells."""
        if self.maximised is not None:
            return {self.maximised: (0, 0)}
        return dict(LAYOUTS[self.layout])

    def is_visible(self, pane: str) -> bool:
        return pane in self.cells()

    def toggle_maximised(self, pane: str) -> None:
        """Maximise ``pane``, or go back to the layout when it already fills the window."""
        if pane not in PANES:
            raise ValueError(f"unknown view {pane!r}")
        if self.maximised == pane or (self.maximised is None and LAYOUTS[self.layout] == {pane: (0, 0)}):
            self.maximised = None
        else:
            self.maximised = pane

    def set_layout(self, layout: str) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUT_NAMES)}")
        self.layout = layout
        self.maximised = None

    def to_strings(self) -> tuple[str, str]:
        return self.layout, self.maximised or ""

    @classmethod
    def from_strings(cls, layout, maximised) -> LayoutState:
        """Rebuild from stored settings, falling back to the default for stale or bad values."""
        layout = layout if isinstance(layout, str) and layout in LAYOUTS else DEFAULT_LAYOUT
        maximised = maximised if isinstance(maximised, str) and maximised in PANES else None
        return cls(layout, maximised)
