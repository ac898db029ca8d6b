"""Test-wide isolation: nothing a test does may reach the user's own medviewer data."""

import os
import tempfile

_ISOLATED_HOME = tempfile.mkdtemp(prefix="medviewer-tests-")


def pytest_configure(config):
    # Autosaves and user plugins of tests go to a throw-away folder unless a test sets its own.
    os.environ.setdefault("MEDVIEWER_RECOVERY_DIR", os.path.join(_ISOLATED_HOME, "recovery"))
    os.environ.setdefault("MEDVIEWER_PLUGIN_PATH", os.path.join(_ISOLATED_HOME, "plugins"))
