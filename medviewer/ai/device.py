"""Choosing the compute device and CPU threads for torch.

torch is imported lazily so listing devices in the settings dialog is the first thing that
pays for it, not application start-up.
"""

from __future__ import annotations

import logging
import os

from medviewer.ai.errors import ModelError

log = logging.getLogger(__name__)

AUTO = "auto"
THREADS_ENV = "MEDVIEWER_TORCH_THREADS"


def _mps_available(torch) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _torch_or_none():
    """torch if installed; classic plugins (region growing) must work without it."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def available_devices() -> list[str]:
    """Devices a user can pick, best first; 'cpu' is always there."""
    torch = _torch_or_none()
    if torch is None:
        return ["cpu"]
    devices = []
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" if i else "cuda" for i in range(torch.cuda.device_count())]
    if _mps_available(torch):
        devices.append("mps")
    devices.append("cpu")
    return devices


def select_device(preference: str = AUTO) -> str:
    """Resolve a user's choice: 'auto' -> cuda, else mps, else cpu; explicit choices are checked."""
    preference = (preference or AUTO).strip().lower()
    torch = _torch_or_none()
    if torch is None:
        if preference in (AUTO, "cpu"):
            return "cpu"
        raise ModelError(f"the device {preference!r} needs torch, which is not installed")
    if preference == AUTO:
        if torch.cuda.is_available():
            return "cuda"
        if _mps_available(torch):
            return "mps"
        return "cpu"
    if preference == "cpu":
        return "cpu"
    if preference.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelError("CUDA was selected but no CUDA GPU is usable here (choose 'auto' or 'cpu')")
        _, _, index = preference.partition(":")
        if index and int(index) >= torch.cuda.device_count():
            raise ModelError(f"{preference} does not exist: {torch.cuda.device_count()} CUDA device(s) found")
        return preference
    if preference == "mps":
        if not _mps_available(torch):
            raise ModelError("Apple MPS was selected but is not available on this machine")
        return "mps"
    raise ModelError(f"unknown device {preference!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")


def recommended_threads() -> int:
    """CPU threads for torch: all cores up to 8 (more rarely helps these models).

    ``MEDVIEWER_TORCH_THREADS`` overrides. On a 2-core laptop LiteMedSAM encodes in 1.8 s
    with 2 threads and 2.7 s with 1, so we do not keep a core back for the GUI; the GUI
    thread is idle while waiting anyway.
    """
    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            log.warning("ignoring %s=%r: not a whole number", THREADS_ENV, value)
    return max(1, min(8, os.cpu_count() or 1))


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op thread count (if torch is installed) and return it."""
    threads = threads or recommended_threads()
    torch = _torch_or_none()
    if torch is None:
        return threads
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
