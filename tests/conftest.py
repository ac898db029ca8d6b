"""Test-wide isolation: nothing a test does may reach the user's own medviewer data."""

import os
import tempfile

_ISOLATED_HOME = tempfile.mkdtemp(prefix="medviewer-tests-")


def pytest_configure(config):
    # Autosaves and user plugins of tests go to a throw-away folder unless a test sets its own.
    os.environ.setdefault("MEDVIEWER_RECOVERY_DIR", os.path.join(_ISOLATED_HOME, "recovery"))
    os.environ.setdefault("MEDVIEWER_PLUGIN_PATH", os.path.join(_ISOLATED_HOME, "plugins"))


def pytest_sessionfinish(session, exitstatus):
    """Destroy every leftover Qt/VTK window while the virtual display still exists.

    pytest-xvfb stops Xvfb when pytest unconfigures; a VTK render window finalized after
    that aborts the process with "XIO: fatal IO error" and turns a green run red.
    """
    import gc
    import sys

    if "PySide6.QtWidgets" not in sys.modules:
        return
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        return
    for widget in app.topLevelWidgets():
        widget.close()
        widget.deleteLater()
    app.processEvents()
    gc.collect()
    app.processEvents()
