"""The install-time check reports the stack and catches a mismatched torch/torchvision."""

import importlib.util
import subprocess
import sys

import pytest

from medviewer import envcheck


def test_core_stack_is_reported_ok():
    checks = {c.name: c for c in envcheck.run_checks()}
    for name in ("numpy", "SimpleITK", "pydicom", "PySide6", "vtkmodules"):
        assert checks[name].ok, checks[name].detail


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="the 'ai' extra (torch) is not installed")
def test_torch_and_torchvision_are_a_working_pair():
    checks = {c.name: c for c in envcheck.check_torch()}
    assert checks["torch"].ok
    assert checks["torchvision"].ok, checks["torchvision"].detail


def test_broken_torchvision_is_reported_with_a_fix(monkeypatch):
    pytest.importorskip("torch")
    import torchvision.ops

    def broken_nms(*args, **kwargs):
        raise RuntimeError("operator torchvision::nms does not exist")

    monkeypatch.setattr(torchvision.ops, "nms", broken_nms)
    checks = {c.name: c for c in envcheck.check_torch()}
    assert not checks["torchvision"].ok and checks["torchvision"].required
    assert "does not match torch" in checks["torchvision"].detail
    assert "force-reinstall" in checks["torchvision"].detail


def test_command_line_exit_code():
    result = subprocess.run([sys.executable, "-m", "medviewer.envcheck"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SimpleITK" in result.stdout
