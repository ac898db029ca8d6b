"""Application entry point: ``run_app`` builds the QApplication and the main window."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QEvent, QEventLoop, QPointF, Qt, QTimer
from PySide6.QtGui import QGuiApplication, QMouseEvent
from PySide6.QtWidgets import QApplication

from medviewer import gc_control
from medviewer.model.document import Document
from medviewer.ui import theme
from medviewer.ui.main_window import MainWindow

#: Longest a screenshot run waits for its loads before giving up (seconds).
SCREENSHOT_TIMEOUT_S = 180.0
#: Window size of screenshot runs (shrunk to the screen when it is smaller).
SCREENSHOT_SIZE = (1600, 1000)


def get_application() -> QApplication:
    """The running QApplication, or a new themed one."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
        app.setApplicationName("medviewer")
        app.setOrganizationName("medviewer")
        app.setApplicationDisplayName("medviewer")
        theme.apply_theme(app)
    app.setWindowIcon(theme.app_icon())
    return app  # type: ignore[return-value]


def _wait_until(condition, timeout_s: float) -> bool:
    """Run the event loop until ``condition()`` holds (True) or the timeout passes (False)."""
    deadline = time.monotonic() + timeout_s
    loop = QEventLoop()
    while not condition():
        if time.monotonic() > deadline:
            return False
        QTimer.singleShot(20, loop.quit)
        loop.exec()
    return True


def _settle(milliseconds: int) -> None:
    loop = QEventLoop()
    QTimer.singleShot(milliseconds, loop.quit)
    loop.exec()


def _hover_view_centre(window: MainWindow) -> None:
    """Put a synthetic mouse over the middle of a visible slice view so the readout shows."""
    views = [v for v in window.slice_views.values() if v.isVisible() and v.volume is not None]
    if not views:
        return
    widget = views[0].vtk_widget
    local = QPointF(widget.width() / 2.0, widget.height() / 2.0)
    event = QMouseEvent(
        QEvent.Type.MouseMove, local, widget.mapToGlobal(local),
        Qt.MouseButton.NoButton, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(widget, event)


def save_window_screenshot(window: MainWindow, path: str | Path) -> bool:
    """Save what the window shows, VTK views included (QWidget.grab cannot read OpenGL)."""
    window.render_all()
    _settle(150)
    window.render_all()
    screen = window.screen() or QGuiApplication.primaryScreen()
    pixmap = screen.grabWindow(int(window.winId()))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return pixmap.save(str(path), "PNG")


def run_app(
    path: str | None = None,
    series: str | None = None,
    demo: bool = False,
    labels: str | None = None,
    screenshot: str | None = None,
    layout: str | None = None,
    preset: str | None = None,
) -> int:
    """Start the viewer; return the process exit code.

    ``layout`` picks the view layout ('2x2', '1x3', 'axial', 'coronal', 'sagittal', '3d')
    and ``preset`` a window/level preset by name, applied once the data is shown.
    With ``screenshot`` the window is shown, the requested data loaded (slices centred,
    labels and 3D surfaces included), a PNG of the window saved, and the function returns
    without waiting for the user (0 on success, 1 when a load failed, the preset is unknown
    or the image could not be written).
    """
    app = get_application()
    window = MainWindow(Document())
    window.auto_select_first_series = screenshot is not None
    failures: list[str] = []
    window.load_failed.connect(failures.append)
    if layout:
        # A layout asked for on the command line is for this run, not a new preference.
        window.set_layout(layout, remember=False)
    if screenshot is not None:
        window.remember_layout = False
        screen = window.screen() or QGuiApplication.primaryScreen()
        available = screen.availableGeometry() if screen is not None else None
        width, height = SCREENSHOT_SIZE
        if available is not None:
            width, height = min(width, available.width()), min(height, available.height())
        window.resize(width, height)
    window.show()

    def apply_preset(_volume=None) -> None:
        if preset and window.document.active_volume is not None:
            try:
                window.apply_window_preset(preset)
            except ValueError as exc:
                failures.append(str(exc))
                window.statusBar().showMessage(str(exc), 15000)

    window.volume_loaded.connect(apply_preset)
    if demo:
        window.open_demo()
    elif path:
        window.open_path(path, series)
    if labels:
        if window.document.active_volume is not None and not window.is_busy:
            window.load_labels(labels)
        else:
            pending_labels = [labels]

            def load_pending_labels(_volume) -> None:
                if pending_labels:
                    window.load_labels(pending_labels.pop())

            window.volume_loaded.connect(load_pending_labels)

    if screenshot is None:
        # Qt, VTK and the window's objects live as long as the process: out of the cyclic
        # collector's sight from now on, so its full passes cannot freeze the GUI (gc_control).
        gc_control.enable()
        gc_control.collect_and_freeze()
        return app.exec()

    def settled() -> bool:
        return not window.is_busy and (bool(failures) or window.document.active_volume is not None or not (demo or path))

    finished = _wait_until(settled, SCREENSHOT_TIMEOUT_S)
    if labels and finished and not failures:
        finished = _wait_until(lambda: not window.is_busy, SCREENSHOT_TIMEOUT_S)
    if finished and window.layout_state.is_visible("3d"):
        # Surfaces are built in the background; the screenshot should show them.
        finished = _wait_until(lambda: not getattr(window.view3d, "busy", False), SCREENSHOT_TIMEOUT_S)
    _hover_view_centre(window)
    _settle(200)
    saved = save_window_screenshot(window, screenshot)
    for message in failures:
        print(f"medviewer: {message}", file=sys.stderr)
    if not finished:
        print("medviewer: gave up waiting for the load to finish", file=sys.stderr)
    if not saved:
        print(f"medviewer: could not write the screenshot {screenshot}", file=sys.stderr)
    window.close()
    window.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    return 0 if (saved and finished and not failures) else 1
