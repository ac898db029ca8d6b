"""Rendering first and importing the AI stack later must not crash (Triton/Mesa LLVM clash)."""

import importlib.util
import subprocess
import sys

import pytest

SCRIPT = """
import medviewer.render  # preloads triton before any OpenGL window exists
from vtkmodules.vtkRenderingCore import vtkRenderWindow, vtkRenderer
import vtkmodules.vtkRenderingOpenGL2  # noqa: F401
window = vtkRenderWindow()
window.AddRenderer(vtkRenderer())
window.SetOffScreenRendering(1)
window.Render()
import threading
worker = threading.Thread(target=lambda: __import__("torchvision"))
worker.start()
worker.join()
print("ok")
"""


@pytest.mark.gui
@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="the 'ai' extra is not installed")
def test_import_ai_stack_after_rendering_in_a_worker_thread():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")
