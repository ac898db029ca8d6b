"""Check that the installed stack works together, with a fix for each known trap.

Run by ``make setup`` right after installing, so a broken torch/torchvision pair is
reported at install time with the command that fixes it, not at the first AI click.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True


def _version(module_name: str) -> Check:
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the finding
        return Check(module_name, False, f"import failed: {exc}")
    return Check(module_name, True, str(getattr(module, "__version__", getattr(module, "VTK_VERSION", "ok"))))


def check_torch() -> list[Check]:
    """torch must import and torchvision's compiled ops must match it (the CPU/CUDA trap)."""
    try:
        import torch
    except ImportError:
        return [Check("torch", False, "not installed: AI models are unavailable (pip install 'medviewer[ai]')", required=False)]
    checks = [Check("torch", True, f"{torch.__version__} (CUDA available: {torch.cuda.is_available()})")]
    try:
        import torchvision
        from torchvision.ops import nms

        boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0]])
        keep = nms(boxes, torch.tensor([0.9, 0.8]), 0.5)
        checks.append(Check("torchvision", keep.tolist() == [0], f"{torchvision.__version__} (ops work)"))
    except ImportError:
        checks.append(Check("torchvision", False, "not installed: segment-anything based models need it", required=False))
    except Exception as exc:  # noqa: BLE001
        checks.append(
            Check(
                "torchvision",
                False,
                f"does not match torch {torch.__version__}: {exc}. Reinstall both from one index, e.g. "
                "'pip install --force-reinstall torch torchvision' (or the CPU pair from "
                "https://download.pytorch.org/whl/cpu)",
            )
        )
    return checks


def run_checks() -> list[Check]:
    checks = [_version(name) for name in ("numpy", "SimpleITK", "pydicom", "PySide6", "vtkmodules")]
    checks += check_torch()
    return checks


def main() -> int:
    checks = run_checks()
    width = max(len(c.name) for c in checks)
    for check in checks:
        mark = "ok " if check.ok else ("!! " if check.required else "-- ")
        print(f"{mark}{check.name:<{width}}  {check.detail}")
    failed = [c for c in checks if c.required and not c.ok]
    if failed:
        print(f"environment check failed: {', '.join(c.name for c in failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
