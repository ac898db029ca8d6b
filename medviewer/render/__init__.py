"""VTK display pipelines and the plain display logic behind them.

Nothing here imports Qt. The pure modules (reslice geometry in ``mpr``, window/level and
its presets, layouts, orientation letters, label colours and outlines, segment statistics,
cursor readout) need neither Qt nor VTK nor a display; ``slice_renderer`` and the 3D scene
only need a ``vtkRenderer`` to draw into. Import the submodules directly.
"""

from medviewer.render.llvm_preload import preload_triton_before_opengl

# Every OpenGL window is created through this package, so this runs before Mesa loads LLVM.
preload_triton_before_opengl()
