"""Safe output: never overwrite the source scan, ask before replacing, write atomically.

Every exporter writes to a hidden temporary file next to the target and renames it into
place only when the write succeeded, so a crash or a full disk never leaves a truncated
file under the real name, and an existing file is either fully old or fully new.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from medviewer.io.errors import OutputExistsError, WriteError


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Read once at import: temporary files are created private (0600) and get the permissions
#: an ordinary new file would have before they are renamed into place.
_FILE_MODE = 0o666 & ~_current_umask()


def protected_paths(volume=None, extra: Iterable[str | Path] = ()) -> list[Path]:
    """Files an export must never replace: the scan's source file(s) plus ``extra``."""
    paths: list[Path] = [Path(p) for p in extra if p]
    if volume is not None:
        info = volume.info
        if info.source and Path(info.source).is_file():
            paths.append(Path(info.source))
        for file in info.extra.get("source_files") or []:
            if file:
                paths.append(Path(file))
    return paths


def check_output(path: str | Path, overwrite: bool = False, protected: Iterable[str | Path] = ()) -> Path:
    """Refuse to replace a source file, or an existing file unless ``overwrite``; check the folder."""
    path = Path(path)
    resolved = path.resolve()
    for source in protected:
        try:
            if Path(source).resolve() == resolved:
                raise WriteError("refusing to overwrite the source scan", path)
        except OSError:
            continue
    if path.exists() and not overwrite:
        raise OutputExistsError("the file already exists (confirm overwriting, or use --force)", path)
    if path.is_dir():
        raise WriteError("a folder has that name", path)
    if not path.parent.is_dir():
        raise WriteError("the folder does not exist", path.parent)
    return path


@contextlib.contextmanager
def atomic_output(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success."""
    path = Path(path)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial" + suffix, dir=path.parent)
    os.close(handle)
    temp = Path(temp_name)
    try:
        yield temp
        os.chmod(temp, _FILE_MODE)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    try:
        with atomic_output(path) as temp:
            with open(temp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
    except OSError as exc:
        raise WriteError(f"writing failed ({exc.strerror or exc})", path) from None
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))
