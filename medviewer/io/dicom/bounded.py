"""Read DICOM through a file object that never asks for more bytes than the file holds.

pydicom reads an element's value with ``file.read(length)`` using the length the header
declares, and Python's buffered ``read(n)`` allocates ``n`` bytes before it reads. A
damaged or hostile 1 KB file declaring a 4 GB element therefore costs 4 GB of memory.
Clamping each read to the bytes left keeps every allocation within the file's size.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class ClampedFile:
    """A binary file whose ``read(n)`` reads at most the bytes that remain."""

    def __init__(self, path: str | Path):
        self._handle = open(path, "rb")  # noqa: SIM115 - closed by close() / the context manager
        self._size = os.fstat(self._handle.fileno()).st_size
        self.name = str(path)

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self._handle.read()
        return self._handle.read(max(0, min(size, self._size - self._handle.tell())))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> ClampedFile:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def dcmread_bounded(path: str | Path, **kwargs: Any):
    """``pydicom.dcmread(path, **kwargs)`` with reads clamped to the file's size."""
    import pydicom

    with ClampedFile(path) as handle:
        dataset = pydicom.dcmread(handle, **kwargs)
    dataset.filename = str(path)
    return dataset
