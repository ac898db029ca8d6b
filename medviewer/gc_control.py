"""Keeps Python's cyclic garbage collector from freezing the GUI.

With Qt, VTK, torch and a model loaded the process holds about half a million container
objects, and a full collection walks every one of them with the GIL held: 250-290 ms on the
two-core development machine, a visible freeze whichever thread happens to trigger it (the
AI worker included). Nearly all of those objects live as long as the process: modules,
classes, functions, the model's layers. :func:`freeze_survivors` moves them out of the
collector's sight (``gc.freeze``), so later collections only look at what was made since
and take a millisecond or two.

The price of freezing is that an object frozen while alive is never collected if it later
becomes part of a reference cycle. The application therefore calls
:func:`collect_and_freeze` where big things are let go (a closed volume, an unloaded model):
one full collection, then a fresh freeze. The policy is off until the application turns it
on with :func:`enable`, so library use and the test suite keep Python's defaults.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Iterator

log = logging.getLogger(__name__)

_lock = threading.Lock()
_enabled = False
_pauses = 0
_was_enabled_before_pause = True


def enable(on: bool = True) -> None:
    """Turn the freezing policy on (the application does this at start) or off again."""
    global _enabled
    _enabled = on
    if not on:
        gc.unfreeze()


def enabled() -> bool:
    return _enabled


def freeze_survivors() -> None:
    """Exclude every object alive now from future collections (no-op while the policy is off)."""
    if _enabled:
        gc.freeze()


def collect_and_freeze() -> float:
    """Reclaim cycles among frozen objects, then freeze the survivors again.

    Returns the seconds it took (0 while the policy is off). Meant for moments the user
    caused and expects to take a little while: closing a volume, unloading a model.
    """
    if not _enabled:
        return 0.0
    start = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    elapsed = time.perf_counter() - start
    log.debug("full garbage collection and freeze: %.0f ms", elapsed * 1000)
    return elapsed


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """No automatic collections inside the block, then :func:`freeze_survivors`.

    Importing a model stack (torch, OpenCV, the plugin) creates ~10^5 long-lived objects and
    set off full collections of 60-220 ms each on the worker while it ran; with the policy
    on they are all frozen at the end instead (not when the block raised: what a failure
    leaves behind is garbage). Nested and concurrent uses are counted: the collector comes
    back on when the last one ends, and only if it was on at the first.
    """
    if not _enabled:
        yield
        return
    global _pauses, _was_enabled_before_pause
    with _lock:
        if _pauses == 0:
            _was_enabled_before_pause = gc.isenabled()
            gc.disable()
        _pauses += 1
    succeeded = False
    try:
        yield
        succeeded = True
    finally:
        with _lock:
            _pauses -= 1
            if _pauses == 0 and _was_enabled_before_pause:
                gc.enable()
        if succeeded:
            freeze_survivors()
