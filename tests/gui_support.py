"""Shared pieces of the GUI tests: settings isolation, a real main window, event helpers.

Import the fixtures into a test module (``from gui_support import window, ...``) so the
module's tests get them; headless test modules never import Qt through this file.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QPointF, QSettings, Qt
from PySide6.QtGui import QImage, QMouseEvent
from PySide6.QtWidgets import QApplication, QDockWidget

from medviewer.model import Document
from medviewer.ui.main_window import MainWindow


def settle(qtbot, window: MainWindow, ms: int = 30) -> None:
    """Let queued events run and every view render before a screen grab."""
    QApplication.processEvents()
    window.render_all()
    qtbot.wait(ms)


def view_pixels(view) -> np.ndarray:
    """A slice view's rendered image as an (h, w, 3) uint8 array."""
    image = view.grab_view().convertToFormat(QImage.Format.Format_RGB888)
    width, height = image.width(), image.height()
    data = np.frombuffer(image.constBits(), np.uint8, count=image.sizeInBytes())
    return data.reshape(height, image.bytesPerLine())[:, : width * 3].reshape(height, width, 3).copy()


def send_mouse(widget, kind, pos, button=Qt.MouseButton.NoButton, buttons=Qt.MouseButton.NoButton,
               modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    """Deliver one synthetic mouse event at ``pos`` (widget coordinates, y down)."""
    local = QPointF(pos)
    event = QMouseEvent(kind, local, QPointF(widget.mapToGlobal(local.toPoint())), button, buttons, modifiers)
    QApplication.sendEvent(widget, event)


def drag(widget, points) -> None:
    """Left-button drag through ``points`` (widget coordinates, y down)."""
    left = Qt.MouseButton.LeftButton
    send_mouse(widget, QEvent.Type.MouseButtonPress, points[0], left, left)
    for point in points[1:]:
        send_mouse(widget, QEvent.Type.MouseMove, point, Qt.MouseButton.NoButton, left)
    send_mouse(widget, QEvent.Type.MouseButtonRelease, points[-1], left, Qt.MouseButton.NoButton)


def wait_for_job(qtbot, job, timeout: int = 20_000) -> str:
    """Wait until a background job's outcome reached the GUI thread; returns the outcome."""
    assert job is not None, "no job was started"
    qtbot.waitUntil(lambda: job.done, timeout=timeout)
    return job.outcome


def keep_view_sizes_fixed(window: MainWindow) -> None:
    """Hide docks that other features add (AI, editing): their contents must not resize the
    views between two screen grabs of a test. The viewer's own docks stay."""
    for dock in window.findChildren(QDockWidget):
        if dock not in (window.data_dock, window.segment_dock, window.tool_dock):
            dock.hide()
    window.data_dock.raise_()


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path):
    """Windows built here read and write a settings file in a temp folder, never the user's."""
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    return QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def recovery_dir(monkeypatch, tmp_path):
    """This test's autosaves go to its own temp folder, so no other test's recovery shows up."""
    monkeypatch.setenv("MEDVIEWER_RECOVERY_DIR", str(tmp_path / "recovery"))
    return tmp_path / "recovery"


@pytest.fixture
def window(qtbot, isolated_settings):
    window = MainWindow(Document(), settings=isolated_settings)
    qtbot.addWidget(window)
    window.resize(1240, 940)
    keep_view_sizes_fixed(window)
    window.show()
    qtbot.waitExposed(window)
    yield window
    # pytest-qt has closed the window and called deleteLater(); delete it now, while the X
    # server still runs: a VTK widget destroyed at interpreter exit (after pytest-xvfb
    # stopped Xvfb) makes Xlib abort the process with exit code 1.
    window.close()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    del window
    gc.collect()


@pytest.fixture
def demo_window(window, qtbot):
    window.open_demo()
    settle(qtbot, window)
    return window
