"""Embedding cache: encoded slices kept in memory, bounded by bytes, safe across threads.

An entry is only reused when everything that shaped it is identical: the image content, the
slice, the window, the model and its exact weights. That signature is the key, so changing
the window or the checkpoint simply misses instead of returning a stale embedding.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from medviewer.ai.api import Embedding

DEFAULT_CACHE_BYTES = 512 * 1024 * 1024  # ~128 LiteMedSAM slices (4 MiB each)
FINGERPRINT_SAMPLES = 1 << 20

_memo_lock = threading.Lock()
_fingerprint_memo: dict[int, tuple[weakref.ref, str]] = {}


def _array_and_geometry(volume: Any) -> tuple[np.ndarray, Any]:
    if hasattr(volume, "array"):
        return np.asarray(volume.array), getattr(volume, "geometry", None)
    return np.asarray(volume), None


def _compute_fingerprint(array: np.ndarray, geometry: Any, samples: int) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((tuple(array.shape), array.dtype.str)).encode())
    if geometry is not None:
        digest.update(
            repr(
                (
                    tuple(getattr(geometry, "spacing", ())),
                    tuple(getattr(geometry, "origin", ())),
                    tuple(getattr(geometry, "direction", ())),
                )
            ).encode()
        )
    if array.size:
        count = min(array.size, samples)
        indices = np.linspace(0, array.size - 1, num=count).astype(np.int64)
        digest.update(np.ascontiguousarray(array.flat[indices]).tobytes())
    return digest.hexdigest()


def volume_fingerprint(volume: Any, samples: int = FINGERPRINT_SAMPLES) -> str:
    """Cheap content hash: shape, dtype, geometry and an evenly strided sample of voxels.

    Hashing every voxel of a 300-slice CT costs ~100 ms; a 1 M-voxel sample costs a few ms
    and still tells two different scans apart. Remembered per object (images are not edited
    in place), forgotten when the object is garbage collected.
    """
    key = id(volume)
    with _memo_lock:
        known = _fingerprint_memo.get(key)
        if known is not None and known[0]() is volume:
            return known[1]
    array, geometry = _array_and_geometry(volume)
    value = _compute_fingerprint(array, geometry, samples)
    try:
        ref = weakref.ref(volume, lambda _ref, key=key: _forget(key, _ref))
    except TypeError:  # objects without weak references are hashed every time
        return value
    with _memo_lock:
        _fingerprint_memo[key] = (ref, value)
    return value


def known_fingerprint(volume: Any) -> str | None:
    """The fingerprint remembered for ``volume``, or None if it was never computed (cheap)."""
    with _memo_lock:
        known = _fingerprint_memo.get(id(volume))
    return known[1] if known is not None and known[0]() is volume else None


def _forget(key: int, ref: weakref.ref) -> None:
    with _memo_lock:
        known = _fingerprint_memo.get(key)
        if known is not None and known[0] is ref:
            del _fingerprint_memo[key]


def normalise_window(window: tuple[float, float] | None) -> tuple[float, float] | None:
    """Round a window so float noise from a slider does not defeat the cache."""
    if window is None:
        return None
    low, high = window
    return (round(float(low), 4), round(float(high), 4))


@dataclass(frozen=True)
class EmbeddingKey:
    """Everything an embedding depends on."""

    volume: str  # volume_fingerprint(...)
    axis: int  # array axis the slice is taken across: 0 = z (axial), 1 = y, 2 = x
    index: int
    window: tuple[float, float] | None
    model_id: str
    checkpoint_sha256: str

    def __post_init__(self):
        object.__setattr__(self, "window", normalise_window(self.window))
        object.__setattr__(self, "axis", int(self.axis))
        object.__setattr__(self, "index", int(self.index))


class EmbeddingCache:
    """Least-recently-used mapping EmbeddingKey -> Embedding, capped by total bytes."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES):
        self._entries: OrderedDict[EmbeddingKey, Embedding] = OrderedDict()
        self._sizes: dict[EmbeddingKey, int] = {}
        self._lock = threading.RLock()
        self._max_bytes = int(max_bytes)
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        with self._lock:
            self._max_bytes = int(value)
            self._evict()

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: EmbeddingKey) -> bool:
        with self._lock:
            return key in self._entries

    def keys(self) -> list[EmbeddingKey]:
        """Keys from least to most recently used."""
        with self._lock:
            return list(self._entries)

    def get(self, key: EmbeddingKey) -> Embedding | None:
        with self._lock:
            embedding = self._entries.get(key)
            if embedding is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return embedding

    def put(self, key: EmbeddingKey, embedding: Embedding) -> bool:
        """Store an embedding; False when it alone is bigger than the whole budget."""
        size = int(embedding.nbytes)
        with self._lock:
            self._remove(key)
            if size > self._max_bytes:
                return False
            self._entries[key] = embedding
            self._sizes[key] = size
            self._bytes += size
            self._evict()
            return key in self._entries

    def discard(self, predicate: Callable[[EmbeddingKey], bool]) -> int:
        """Drop every entry whose key matches (e.g. a closed volume); returns how many."""
        with self._lock:
            doomed = [key for key in self._entries if predicate(key)]
            for key in doomed:
                self._remove(key)
            return len(doomed)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._sizes.clear()
            self._bytes = 0

    def _remove(self, key: EmbeddingKey) -> None:
        if key in self._entries:
            del self._entries[key]
            self._bytes -= self._sizes.pop(key)

    def _evict(self) -> None:
        while self._bytes > self._max_bytes and self._entries:
            oldest = next(iter(self._entries))
            self._remove(oldest)
