"""The document model, I/O, editing tools and AI core must stay importable without Qt or VTK."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "medviewer"
HEADLESS_PACKAGES = ("model", "io", "ai", "tools")
FORBIDDEN = ("PySide6", "PyQt5", "PyQt6", "shiboken6", "vtk", "vtkmodules", "pyvista", "pyvistaqt", "qtawesome", "medviewer.ui", "medviewer.render")


def headless_modules():
    files = []
    for name in HEADLESS_PACKAGES:
        files.extend(sorted((PACKAGE / name).rglob("*.py")))
    files += [PACKAGE / "jobs.py", PACKAGE / "demo.py", PACKAGE / "export" / "__init__.py", PACKAGE / "export" / "formats.py"]
    return files


def imported_names(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


@pytest.mark.parametrize("path", headless_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_headless_module_imports_no_gui_toolkit(path):
    bad = [name for name in imported_names(path) if name.split(".")[0] in FORBIDDEN or name.startswith(FORBIDDEN)]
    assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}; keep Qt/VTK out of model/io/ai"


def test_headless_packages_load_without_gui_modules():
    """Importing the core and the CLI must not pull Qt or VTK in at run time."""
    code = (
        "import sys, medviewer.model, medviewer.io, medviewer.io.dicom, medviewer.ai, medviewer.cli, medviewer.demo;"
        "import medviewer.tools.brush, medviewer.tools.threshold, medviewer.tools.islands, medviewer.tools.morphology,"
        " medviewer.tools.logical, medviewer.tools.interpolate, medviewer.tools.statistics, medviewer.export.formats,"
        " medviewer.io.session, medviewer.io.dicom_seg, medviewer.io.segnrrd, medviewer.io.segmentation_files;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'vtkmodules', 'vtk', 'pyvista'));"
        "print(','.join(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_rule_catches_a_violation(tmp_path):
    """Guard the guard: the AST scan really reports a toolkit import."""
    sample = tmp_path / "bad.py"
    sample.write_text("from PySide6.QtCore import QObject\nimport vtkmodules.all\n")
    assert [n for n in imported_names(sample) if n.split(".")[0] in FORBIDDEN] == ["PySide6.QtCore", "vtkmodules.all"]
