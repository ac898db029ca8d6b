"""Load Triton's LLVM before Mesa's, so the AI stack can be imported after rendering starts.

PyPI's CUDA build of torch brings Triton, whose ``libtriton`` carries its own LLVM.
``import torchvision`` imports ``torch._dynamo``, which imports Triton. When Mesa's
software rasteriser (llvmpipe; also radeonsi) has already loaded the system's libLLVM,
loading ``libtriton`` afterwards crashes the process with a segmentation fault — seen
here under Xvfb: render one VTK window, then ``import torchvision`` -> SIGSEGV. Loaded in
the other order both work. Importing Triton costs ~0.15 s and does not import torch.
"""

from __future__ import annotations

import importlib.util
import logging

log = logging.getLogger(__name__)
_done = False


def preload_triton_before_opengl() -> bool:
    """Import Triton now if it is installed; return whether it is loaded. Safe to repeat."""
    global _done
    if _done:
        return True
    _done = True
    if importlib.util.find_spec("triton") is None:
        return False
    try:
        import triton  # noqa: F401  (loaded for its side effect on the process's LLVM)
    except Exception as exc:  # noqa: BLE001 - a broken Triton only matters to the AI stack
        log.warning("could not preload triton (%s); AI models may fail to import after rendering", exc)
        return False
    return True
