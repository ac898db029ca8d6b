"""Help > Shortcuts: every keyboard shortcut of the window's actions and the mouse gestures."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QHeaderView, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from medviewer.ui import theme


def action_shortcut_rows(actions: Iterable[QAction]) -> list[tuple[str, str]]:
    """(description, key) for each action that has a shortcut, in the given order."""
    rows = []
    seen = set()
    for action in actions:
        if action.shortcut().isEmpty():
            continue
        key = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
        text = action.text().replace("&", "").replace("...", "").split("\t")[0]
        if (text, key) not in seen:
            seen.add((text, key))
            rows.append((text, key))
    return rows


class ShortcutsDialog(QDialog):
    """A searchable-by-eye table grouped into keyboard and mouse sections."""

    def __init__(self, sections: Sequence[tuple[str, Sequence[tuple[str, str]]]], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Keyboard and mouse shortcuts")
        self.setWindowIcon(theme.icon("mdi6.keyboard-outline"))
        self.resize(620, 620)
        self.tree = QTreeWidget(self)
        self.tree.setHeaderLabels(("Action", "Shortcut"))
        self.tree.setRootIsDecorated(False)
        self.tree.setAlternatingRowColors(True)
        for title, rows in sections:
            group = QTreeWidgetItem([title, ""])
            font = group.font(0)
            font.setBold(True)
            group.setFont(0, font)
            group.setFirstColumnSpanned(False)
            self.tree.addTopLevelItem(group)
            for text, key in rows:
                group.addChild(QTreeWidgetItem([text, key]))
            group.setExpanded(True)
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.tree.header().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.header().setStretchLastSection(False)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tree, 1)
        layout.addWidget(buttons)

    def rows(self) -> list[tuple[str, str, str]]:
        """(section, action, shortcut) of every row (tests)."""
        result = []
        for n in range(self.tree.topLevelItemCount()):
            group = self.tree.topLevelItem(n)
            for m in range(group.childCount()):
                child = group.child(m)
                result.append((group.text(0), child.text(0), child.text(1)))
        return result
