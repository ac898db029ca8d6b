"""Embedding cache: LRU by bytes, signatures that miss when anything relevant changes."""

from __future__ import annotations

import gc
import threading

import numpy as np

from medviewer.ai.api import Embedding
from medviewer.ai.cache import EmbeddingCache, EmbeddingKey, volume_fingerprint
from medviewer.model import Geometry, Volume

MIB = 1024 * 1024


def embedding(nbytes: int, tag: str = "m") -> Embedding:
    features = np.zeros(nbytes, dtype=np.uint8)
    return Embedding(tag, features, (8, 8), (8, 8), (8, 8), 1.0)


def key(index: int, window=(0.0, 100.0), sha: str = "a" * 64, volume: str = "v", model: str = "m") -> EmbeddingKey:
    return EmbeddingKey(volume, 0, index, window, model, sha)


def test_lru_eviction_is_by_bytes_and_recency():
    cache = EmbeddingCache(max_bytes=10 * MIB)
    for index in range(4):
        assert cache.put(key(index), embedding(3 * MIB))
    # 4 x 3 MiB > 10 MiB: the oldest went.
    assert len(cache) == 3 and cache.nbytes == 9 * MIB and key(0) not in cache
    assert cache.get(key(1)) is not None  # touch 1, so 2 is now the least recently used
    cache.put(key(4), embedding(3 * MIB))
    assert key(2) not in cache and key(1) in cache
    assert cache.keys() == [key(3), key(1), key(4)]
    # A big entry pushes out as many as needed; one larger than the budget is refused.
    cache.put(key(5), embedding(7 * MIB))
    assert cache.keys() == [key(4), key(5)] and cache.nbytes == 10 * MIB
    assert not cache.put(key(6), embedding(11 * MIB)) and key(6) not in cache
    cache.max_bytes = 8 * MIB
    assert cache.keys() == [key(5)]
    cache.put(key(5), embedding(1 * MIB))  # replacing an entry re-counts its size
    assert cache.nbytes == 1 * MIB
    assert cache.discard(lambda k: k.index == 5) == 1 and len(cache) == 0 and cache.nbytes == 0


def test_signature_changes_miss():
    cache = EmbeddingCache(max_bytes=10 * MIB)
    cache.put(key(3), embedding(MIB))
    assert cache.get(key(3)) is not None
    assert cache.get(key(3, window=(0.0, 100.0000001))) is not None  # slider float noise still hits
    assert cache.get(key(3, window=(-160.0, 240.0))) is None  # another window
    assert cache.get(key(3, sha="b" * 64)) is None  # another checkpoint
    assert cache.get(key(3, model="other")) is None
    assert cache.get(key(3, volume="w")) is None
    assert cache.get(EmbeddingKey("v", 1, 3, (0.0, 100.0), "m", "a" * 64)) is None  # another axis
    assert cache.get(key(4)) is None
    assert cache.hits == 2 and cache.misses == 6


def test_volume_fingerprint_tracks_content_geometry_and_dtype():
    rng = np.random.default_rng(0)
    array = rng.integers(-1000, 1000, size=(40, 64, 64)).astype(np.int16)
    base = volume_fingerprint(Volume(array.copy(), Geometry(array.shape, spacing=(0.7, 0.7, 2.0))))
    same = volume_fingerprint(Volume(array.copy(), Geometry(array.shape, spacing=(0.7, 0.7, 2.0))))
    moved = volume_fingerprint(Volume(array.copy(), Geometry(array.shape, spacing=(0.7, 0.7, 2.0), origin=(0, 0, 5))))
    other_dtype = volume_fingerprint(Volume(array.astype(np.int32), Geometry(array.shape, spacing=(0.7, 0.7, 2.0))))
    edited = array.copy()
    edited += 1
    changed = volume_fingerprint(Volume(edited, Geometry(array.shape, spacing=(0.7, 0.7, 2.0))))
    assert base == same
    assert len({base, moved, other_dtype, changed}) == 4
    assert volume_fingerprint(array) != base  # a bare array has no geometry
    transposed = np.transpose(array, (2, 1, 0))  # non-contiguous views work without a copy
    assert volume_fingerprint(transposed) == volume_fingerprint(np.ascontiguousarray(transposed))


def test_fingerprint_is_remembered_per_object_and_forgotten_with_it():
    from medviewer.ai import cache as cache_module

    volume = Volume(np.zeros((4, 8, 8), np.int16))
    first = volume_fingerprint(volume)
    assert cache_module._fingerprint_memo[id(volume)][1] == first
    volume.array[0, 0, 0] = 5  # in-place edits are not seen: images are immutable by contract
    assert volume_fingerprint(volume) == first
    vid = id(volume)
    del volume
    gc.collect()
    assert vid not in cache_module._fingerprint_memo


def test_cache_is_thread_safe():
    cache = EmbeddingCache(max_bytes=50 * 1000)
    errors = []

    def worker(offset):
        try:
            for index in range(300):
                cache.put(key(offset * 1000 + index % 40), embedding(1000))
                cache.get(key(offset * 1000 + (index * 7) % 40))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert cache.nbytes == 1000 * len(cache) <= 50 * 1000
