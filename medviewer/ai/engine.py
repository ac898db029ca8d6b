"""The AI engine: one worker thread that owns the models and the device, fed by a job queue.

Why one thread: torch models are not safe to drive from several threads, a GPU is one
resource, and the GUI must never block. The GUI submits jobs and gets :class:`Job` objects
back (status, progress, cancel, result); a job's done callbacks run on the worker thread and
the GUI marshals them to its own thread (a Qt signal with a queued connection).

Jobs run by priority: a click's decode (INTERACTIVE) overtakes queued explicit work
(FOREGROUND), which overtakes background pre-encoding of neighbouring slices (BACKGROUND, the
nearest slice first). A model error or an out-of-memory condition fails that job with a
readable message; the worker carries on with the next one.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import queue
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from medviewer import gc_control
from medviewer.ai.api import (
    Embedding,
    ModelInfo,
    Prediction,
    Prediction3D,
    Prompt2D,
    Prompt3D,
    SegmentationModel,
    Window,
)
from medviewer.ai.cache import (
    DEFAULT_CACHE_BYTES,
    EmbeddingCache,
    EmbeddingKey,
    known_fingerprint,
    normalise_window,
    volume_fingerprint,
)
from medviewer.ai.checkpoints import file_sha256, verify_sha256
from medviewer.ai.errors import ModelError, ModelOutOfMemoryError, PluginError
from medviewer.ai.preprocessing import default_window
from medviewer.ai.registry import ModelRegistry
from medviewer.jobs import JobCancelled, JobControl

log = logging.getLogger(__name__)


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


OBLIQUE_AXIS = -1  # the embedding cache's "axis" of resampled oblique planes


class Priority(IntEnum):
    """Lower runs first. BACKGROUND jobs add their distance from the cursor.

    CONTROL (load / unload / device) goes before everything queued, so a click submitted after
    the user switched checkpoints or devices never runs on the model being replaced.
    """

    CONTROL = -10
    INTERACTIVE = 0
    FOREGROUND = 10
    BACKGROUND = 100


_job_ids = itertools.count(1)


class Job:
    """One unit of work on the AI worker, observable from any thread.

    Done callbacks run on the worker thread; for a job cancelled before it started they run
    in the thread that called :meth:`cancel`. ``wait()`` returns after the callbacks ran.
    """

    def __init__(self, kind: str, description: str, priority: int, function: Callable[[JobControl], Any]):
        self.id = next(_job_ids)
        self.kind = kind
        self.description = description
        self.priority = int(priority)
        self.control = JobControl(progress=self._on_progress)
        self.result: Any = None
        self.error: str | None = None
        self.exception: BaseException | None = None
        self.progress: tuple[int, int, str] = (0, 0, "")
        self._function = function
        self._status = JobStatus.QUEUED
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._finishing_thread: int | None = None
        self._done_callbacks: list[Callable[[Job], None]] = []
        self._progress_callbacks: list[Callable[[Job], None]] = []

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.kind} {self._status.value}: {self.description}>"

    @property
    def status(self) -> JobStatus:
        return self._status

    @property
    def done(self) -> bool:
        return self._status in FINISHED

    @property
    def cancelled(self) -> bool:
        return self._status is JobStatus.CANCELLED

    def cancel(self) -> bool:
        """Ask the job to stop. Queued: cancelled at once. Running: stops at its next check."""
        with self._lock:
            if self._status in FINISHED:
                return False
            self.control.cancel()
            if self._status is not JobStatus.QUEUED:
                return True
            # Decided under the lock, so the worker can no longer start it.
            callbacks = self._finalise_locked(JobStatus.CANCELLED, None, None, None)
        self._notify(callbacks)
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job finished (True) or ``timeout`` seconds passed (False)."""
        if self._finishing_thread == threading.get_ident():
            return True  # called from one of our own done callbacks
        return self._finished.wait(timeout)

    def get(self, timeout: float | None = None) -> Any:
        """The result; raises the job's error, :class:`JobCancelled`, or TimeoutError."""
        if not self.wait(timeout):
            raise TimeoutError(f"{self.description} did not finish within {timeout} s")
        if self._status is JobStatus.CANCELLED:
            raise JobCancelled()
        if self._status is JobStatus.FAILED:
            if isinstance(self.exception, ModelError):
                raise self.exception
            raise ModelError(self.error or "failed") from self.exception
        return self.result

    def add_done_callback(self, callback: Callable[[Job], None]) -> None:
        """``callback(job)`` when the job finishes; at once if it already has."""
        with self._lock:
            if self._status not in FINISHED:
                self._done_callbacks.append(callback)
                return
        self._call(callback)

    def add_progress_callback(self, callback: Callable[[Job], None]) -> None:
        with self._lock:
            self._progress_callbacks.append(callback)

    # -- worker side ---------------------------------------------------------------------------
    def _on_progress(self, done: int, total: int, message: str) -> None:
        self.progress = (done, total, message)
        for callback in list(self._progress_callbacks):
            self._call(callback)

    def _start(self) -> bool:
        with self._lock:
            if self._status is not JobStatus.QUEUED:
                return False
            self._status = JobStatus.RUNNING
            return True

    def _finish(
        self, status: JobStatus, result: Any = None, error: str | None = None, exception: BaseException | None = None
    ) -> None:
        with self._lock:
            if self._status in FINISHED:
                return
            callbacks = self._finalise_locked(status, result, error, exception)
        self._notify(callbacks)

    def _finalise_locked(self, status, result, error, exception) -> list[Callable[[Job], None]]:
        self.result, self.error, self.exception = result, error, exception
        self._status = status
        callbacks, self._done_callbacks = self._done_callbacks, []
        return callbacks

    def _notify(self, callbacks: list[Callable[[Job], None]]) -> None:
        self._finishing_thread = threading.get_ident()
        try:
            for callback in callbacks:
                self._call(callback)
        finally:
            self._finishing_thread = None
            self._finished.set()

    def _call(self, callback: Callable[[Job], None]) -> None:
        try:
            callback(self)
        except Exception:  # noqa: BLE001 - a listener's bug must not kill the worker
            log.exception("callback %r of %r failed", callback, self)


@dataclass
class _LoadedModel:
    model: SegmentationModel
    checkpoint_path: Path | None
    checkpoint_sha256: str
    device: str


def _is_out_of_memory(exc: BaseException) -> bool:
    if type(exc).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError / torch.cuda.OutOfMemoryError
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _release_device_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        try:
            torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001 - best effort
            pass


#: Niceness added to the worker thread. The torch/OpenMP threads it starts inherit it, so on a
#: busy 2-core machine the kernel runs the GUI thread as soon as it wakes instead of letting it
#: queue behind compute threads for a time slice (measured: 160-330 ms event-loop stalls
#: while encoding, see docs/benchmarks.md). Encoding is no slower on an otherwise idle machine.
WORKER_NICENESS = 10


def lower_thread_priority(niceness: int = WORKER_NICENESS) -> bool:
    """Make the calling thread (and threads it starts later) yield the CPU to normal threads.

    Linux only (``setpriority`` on a thread id affects that thread alone); elsewhere, or when
    the OS refuses, nothing changes. Returns whether the priority was lowered.
    """
    if niceness <= 0 or not sys.platform.startswith("linux") or not hasattr(os, "setpriority"):
        return False
    try:
        thread_id = threading.get_native_id()
        # Relative to the main thread (whose id is the process id), so a worker restarted by a
        # dying worker does not sink further.
        target = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + niceness)
        if os.getpriority(os.PRIO_PROCESS, thread_id) < target:
            os.setpriority(os.PRIO_PROCESS, thread_id, target)
    except OSError:
        return False
    return True


def take_slice(array: np.ndarray, axis: int, index: int) -> np.ndarray:
    """The 2D slice across array ``axis`` (0 = z, 1 = y, 2 = x) at ``index``.

    Rows/columns of the result: axis 0 -> (y, x); axis 1 -> (z, x); axis 2 -> (z, y). Prompts
    for that slice are given in those pixel indices.
    """
    _check_slice_index(array, axis, index)
    if array.ndim == 2:
        return array
    return np.take(array, index, axis=axis)


def _check_slice_index(array: np.ndarray, axis: int, index: int) -> None:
    if array.ndim == 2:
        if index != 0:
            raise ValueError(f"a 2D image has only slice 0, not {index}")
        return
    if array.ndim != 3:
        raise ValueError(f"expected a 2D or 3D image, got shape {array.shape}")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    if not 0 <= index < array.shape[axis]:
        raise ValueError(f"slice {index} is outside 0..{array.shape[axis] - 1} along axis {axis}")


def _array_of(volume: Any) -> np.ndarray:
    return np.asarray(volume.array if hasattr(volume, "array") else volume)


def _modality_of(volume: Any) -> str:
    info = getattr(volume, "info", None)
    return str(getattr(info, "modality", "") or "")


def _accepts_keyword(function: Callable[..., Any], name: str) -> bool:
    """Whether ``function`` takes the keyword ``name`` (or any keyword)."""
    import inspect

    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _spacing_of(volume: Any) -> tuple[float, float, float]:
    geometry = getattr(volume, "geometry", None)
    return tuple(getattr(geometry, "spacing", (1.0, 1.0, 1.0)))  # type: ignore[return-value]


class Engine:
    """Owns the AI worker thread. Create one per application; ``shutdown()`` on exit.

    ``volume`` arguments accept a :class:`medviewer.model.Volume` (array, geometry, modality)
    or a plain numpy array in ``[z, y, x]`` (or 2D) order. ``window=None`` uses the model
    family's default rule for the volume (CT: level 40 / width 400; else percentiles).
    """

    def __init__(
        self,
        registry: ModelRegistry | None = None,
        device: str = "auto",
        cache: EmbeddingCache | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        threads: int | None = None,
        start: bool = True,
        niceness: int = WORKER_NICENESS,
        decode_lane: bool = True,
    ):
        self.registry = registry if registry is not None else ModelRegistry()
        self.cache = cache if cache is not None else EmbeddingCache(cache_bytes)
        self._requested_device = device
        self._device: str | None = None
        self._threads = threads
        self._niceness = int(niceness)
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._sequence = itertools.count()
        self._lock = threading.Lock()
        self._models: dict[str, _LoadedModel] = {}  # touched only on the worker thread
        self._known_sha: dict[str, str] = {}
        self._prefetch_jobs: dict[tuple, Job] = {}
        self._default_windows: dict[tuple[str, str], Window] = {}
        self._current: Job | None = None
        self._in_hand: Job | None = None  # the job the worker took last (failed if the worker dies)
        self._thread: threading.Thread | None = None
        # The decode lane: prompts on slices already encoded, for models that declare
        # decode_while_encoding, run here at normal priority without waiting for the worker's
        # background encode. Loading and unloading hold _model_lock, and so does each decode.
        self._lane_enabled = bool(decode_lane)
        self._lane_queue: queue.Queue = queue.Queue()
        self._lane_thread: threading.Thread | None = None
        self._model_lock = threading.RLock()
        self._stopping = False
        self.stats = {"encodes": 0, "decodes": 0, "cache_hits": 0}
        if start:
            self.start()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="medviewer-ai-worker", daemon=True)
        self._thread.start()
        if self._lane_thread is None or not self._lane_thread.is_alive():
            self._lane_thread = threading.Thread(target=self._serve_lane, name="medviewer-ai-decoder", daemon=True)
            self._lane_thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def shutdown(self, wait: bool = True, timeout: float | None = 30.0) -> None:
        """Cancel queued and running jobs, stop the worker and free the models."""
        self._stopping = True
        with self._lock:
            pending = list(self._prefetch_jobs.values())
            self._prefetch_jobs.clear()
        for job in pending:
            job.cancel()
        self._drain_queue()
        current = self._current
        if current is not None:
            current.cancel()
        self._queue.put((sys.maxsize, next(self._sequence), None))
        self._lane_queue.put((sys.maxsize, next(self._sequence), None))
        if wait and self._thread is not None:
            self._thread.join(timeout)
        if wait and self._lane_thread is not None:
            self._lane_thread.join(timeout)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info) -> None:
        self.shutdown()

    def _drain_queue(self) -> None:
        for pending in (self._queue, self._lane_queue):
            while True:
                try:
                    _, _, job = pending.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    job.cancel()

    @property
    def device(self) -> str:
        """The resolved device once the worker has chosen one, else what was requested."""
        return self._device or self._requested_device

    # -- generic submission ------------------------------------------------------------------
    def submit(
        self,
        function: Callable[[JobControl], Any],
        kind: str = "task",
        description: str = "",
        priority: int = Priority.FOREGROUND,
    ) -> Job:
        """Run ``function(control)`` on the worker (e.g. a future propagation loop)."""
        if self._stopping:
            raise ModelError("the AI engine has been shut down")
        job = Job(kind, description or kind, priority, function)
        self._queue.put((job.priority, next(self._sequence), job))
        return job

    def pending_jobs(self) -> int:
        return self._queue.qsize() + self._lane_queue.qsize()

    # -- model management --------------------------------------------------------------------
    def load_model(self, model_id: str, checkpoint: str | Path | None = None) -> Job:
        """Load (or reload with another checkpoint) a model; result: its ModelInfo."""

        def run(control: JobControl):
            loaded = self._ensure_model(model_id, checkpoint, control, reload=checkpoint is not None)
            return loaded.model.info

        return self.submit(run, "load", f"loading model {model_id}", Priority.CONTROL)

    def unload_model(self, model_id: str) -> Job:
        def run(control: JobControl):
            self._unload(model_id)

        return self.submit(run, "unload", f"unloading model {model_id}", Priority.CONTROL)

    def set_device(self, device: str) -> Job:
        """Switch device; models reload there on next use and cached embeddings are dropped."""

        def run(control: JobControl):
            from medviewer.ai.device import select_device

            resolved = select_device(device)
            self._requested_device = device
            if resolved != self._device:
                for model_id in list(self._models):
                    self._unload(model_id)
                self.cache.clear()
                self._device = resolved
            return resolved

        return self.submit(run, "device", f"switching the AI device to {device}", Priority.CONTROL)

    def loaded_models(self) -> list[str]:
        return list(self._models)

    def checkpoint_sha(self, model_id: str) -> str:
        """SHA-256 of the checkpoint ``model_id`` is loaded from ("" when it is not loaded or
        needs no weights); safe from any thread, for provenance and the model card."""
        with self._lock:
            return self._known_sha.get(model_id, "")

    def loaded_model(self, model_id: str) -> SegmentationModel | None:
        """The live model object (for inspection in tests); use it only from the worker."""
        loaded = self._models.get(model_id)
        return loaded.model if loaded is not None else None

    # -- segmentation jobs -------------------------------------------------------------------
    def encode(
        self,
        model_id: str,
        volume: Any,
        axis: int,
        index: int,
        window: Window | None = None,
        priority: int = Priority.FOREGROUND,
    ) -> Job:
        """Encode one slice (or take it from the cache); result: the :class:`Embedding`."""
        request = self._request(model_id, volume, axis, index, window)

        def run(control: JobControl):
            return self._embedding_for(request, control)

        return self.submit(run, "encode", f"encoding slice {index} (axis {axis})", priority)

    def segment(
        self,
        model_id: str,
        volume: Any,
        axis: int,
        index: int,
        prompt: Prompt2D,
        window: Window | None = None,
        previous_low_res_mask: np.ndarray | None = None,
    ) -> Job:
        """Prompt a slice: encode it unless cached, then decode. Result: a :class:`Prediction`."""
        request = self._request(model_id, volume, axis, index, window)

        def run(control: JobControl) -> Prediction:
            control.report(0, 2, "encoding the slice")
            embedding = self._embedding_for(request, control)
            control.report(1, 2, "decoding the prompt")
            prediction = self._decode_now(model_id, embedding, prompt, previous_low_res_mask, control)
            control.report(2, 2, "done")
            return prediction

        description = f"segmenting slice {index} (axis {axis})"
        if self._decodes_on_lane(request):
            job = Job("segment", description, Priority.INTERACTIVE, functools.partial(self._on_lane, model_id, run))
            self._lane_queue.put((job.priority, next(self._sequence), job))
            return job
        return self.submit(run, "segment", description, Priority.INTERACTIVE)

    def _decodes_on_lane(self, request: dict) -> bool:
        """A prompt can skip the worker's queue: its model is loaded, declares
        decode_while_encoding, and the slice is encoded already."""
        if self._stopping or not self._lane_enabled or self._lane_thread is None:
            return False
        loaded = self._models.get(request["model_id"])
        if loaded is None or not getattr(loaded.model.info, "decode_while_encoding", False):
            return False
        with self._lock:
            return self._is_cached(request)

    def _on_lane(self, model_id: str, run: Callable[[JobControl], Any], control: JobControl) -> Any:
        """A segment job's body on the decode lane: with the model held against unloading, and
        only while it is still loaded on the device it was loaded for."""
        with self._model_lock:
            loaded = self._models.get(model_id)
            if loaded is None or loaded.device != self._device_for(loaded.model.info):
                raise ModelError(f"{model_id} was unloaded or moved to another device meanwhile; prompt again")
            return run(control)

    def segment_oblique(
        self,
        model_id: str,
        volume: Any,
        plane: Any,
        prompt: Prompt2D,
        window: Window | None = None,
        previous_low_res_mask: np.ndarray | None = None,
    ) -> Job:
        """Prompt the plane an oblique view shows (a :class:`medviewer.ai.oblique.ObliquePlane`):
        resampled on the worker, its embedding cached like a slice's. Result: a
        :class:`Prediction` on the plane's pixel grid (rows, columns)."""
        array = _array_of(volume)
        geometry = getattr(volume, "geometry", None)
        if array.ndim != 3 or geometry is None:
            raise ModelError("oblique prompts need a 3D volume with its geometry")
        modality = _modality_of(volume)
        asked_window = window

        def run(control: JobControl) -> Prediction:
            from medviewer.ai.oblique import sample_plane

            fingerprint = volume_fingerprint(volume)
            window = self._resolve_window(volume, fingerprint, asked_window)
            loaded = self._ensure_model(model_id, None, control)
            key = EmbeddingKey(fingerprint, OBLIQUE_AXIS, plane.cache_index(), window, model_id,
                               loaded.checkpoint_sha256)
            embedding = self.cache.get(key)
            if embedding is None:
                control.report(0, 2, "resampling the oblique plane")
                image = sample_plane(array, geometry, plane, control)
                embedding = loaded.model.encode(image, window, modality=modality, control=control)
                self.stats["encodes"] += 1
                self.cache.put(key, embedding)
            else:
                self.stats["cache_hits"] += 1
            control.report(1, 2, "decoding the prompt")
            return self._decode_now(model_id, embedding, prompt, previous_low_res_mask, control)

        return self.submit(run, "segment", "segmenting an oblique plane", Priority.INTERACTIVE)

    def decode(
        self,
        model_id: str,
        embedding: Embedding,
        prompt: Prompt2D,
        previous_low_res_mask: np.ndarray | None = None,
    ) -> Job:
        """Decode a prompt against an embedding you already hold."""

        def run(control: JobControl) -> Prediction:
            return self._decode_now(model_id, embedding, prompt, previous_low_res_mask, control)

        return self.submit(run, "decode", "decoding a prompt", Priority.INTERACTIVE)

    def predict_3d(
        self,
        model_id: str,
        volume: Any,
        prompt: Prompt3D,
        window: Window | None = None,
        previous: Prediction3D | None = None,
        **options: Any,
    ) -> Job:
        """Run a 3D model on the whole volume. Result: a :class:`Prediction3D`.

        ``options`` are passed on to the model's ``predict_3d`` as keywords. A model whose
        ``predict_3d`` accepts a ``geometry`` keyword also gets the volume's
        :class:`~medviewer.model.Geometry` (origin and direction, not only the spacing).
        ``previous`` (the last result of the same clicks minus the new ones) reaches models
        whose ``predict_3d`` takes it (SAM-Med3D reuses its low-res mask and crop); the others
        simply segment again from all the clicks.
        """
        array = _array_of(volume)
        modality = _modality_of(volume)
        spacing = _spacing_of(volume)
        geometry = getattr(volume, "geometry", None)

        def run(control: JobControl) -> Prediction3D:
            loaded = self._ensure_model(model_id, None, control)
            loaded.model.check_prompt(prompt)
            extra = dict(options)
            if geometry is not None and _accepts_keyword(loaded.model.predict_3d, "geometry"):
                extra.setdefault("geometry", geometry)
            if previous is not None and _accepts_keyword(loaded.model.predict_3d, "previous"):
                extra.setdefault("previous", previous)
            return loaded.model.predict_3d(
                array, prompt, spacing=spacing, window=window, modality=modality, control=control, **extra
            )

        return self.submit(run, "predict_3d", f"3D segmentation with {model_id}", Priority.FOREGROUND)

    def prefetch(
        self,
        model_id: str,
        volume: Any,
        axis: int,
        center_index: int,
        radius: int,
        window: Window | None = None,
    ) -> list[Job]:
        """Pre-encode slices around the cursor in the background, nearest first.

        Slices already cached or queued are skipped; queued prefetches outside the new range
        (the user scrolled away, changed the window, volume or model) are cancelled.
        """
        array = _array_of(volume)
        count = array.shape[axis] if array.ndim == 3 else 1
        wanted: list[tuple[int, int]] = []  # (distance, index)
        for distance in range(0, max(0, int(radius)) + 1):
            for index in sorted({center_index - distance, center_index + distance}):
                if 0 <= index < count:
                    wanted.append((distance, index))
        requests = {}
        for distance, index in wanted:
            request = self._request(model_id, volume, axis, index, window)
            requests[request["key"]] = (distance, request)
        new_jobs = []
        with self._lock:
            for key, job in list(self._prefetch_jobs.items()):
                if job.done:
                    del self._prefetch_jobs[key]
                elif key not in requests and job.status is JobStatus.QUEUED:
                    job.cancel()
                    del self._prefetch_jobs[key]
            for key, (distance, request) in requests.items():
                if key in self._prefetch_jobs or self._is_cached(request):
                    continue  # (a slice whose content hash is not known yet is checked on the worker)
                job = self._prefetch_job(request, Priority.BACKGROUND + distance)
                self._prefetch_jobs[key] = job
                new_jobs.append(job)
        return new_jobs

    def cancel_prefetch(self) -> int:
        """Drop every queued background encode (e.g. the volume was closed)."""
        with self._lock:
            jobs = list(self._prefetch_jobs.values())
            self._prefetch_jobs.clear()
        return sum(1 for job in jobs if job.status is JobStatus.QUEUED and job.cancel())

    def forget_volume(self, volume: Any) -> int:
        """Drop cached embeddings of a closed volume; returns how many."""
        fingerprint = known_fingerprint(volume)
        if fingerprint is None:  # never hashed, so never encoded
            return 0
        return self.cache.discard(lambda key: key.volume == fingerprint)

    # -- helpers (calling thread) ------------------------------------------------------------
    def _resolve_window(self, volume: Any, fingerprint: str, window: Window | None) -> Window:
        if window is not None:
            return normalise_window(window)  # type: ignore[return-value]
        modality = _modality_of(volume)
        memo_key = (fingerprint, modality)
        with self._lock:
            known = self._default_windows.get(memo_key)
        if known is None:
            known = normalise_window(default_window(_array_of(volume), modality))
            with self._lock:
                if len(self._default_windows) > 64:
                    self._default_windows.clear()
                self._default_windows[memo_key] = known  # type: ignore[assignment]
        return known  # type: ignore[return-value]

    def _request(self, model_id: str, volume: Any, axis: int, index: int, window: Window | None) -> dict:
        """What a slice job needs, taken on the calling thread; its content hash and default
        window are worked out on the worker (:meth:`_resolved`): the first time they sample the
        whole volume (tens of ms, over 100 ms for an MR's percentiles), too long for the GUI."""
        array = _array_of(volume)
        _check_slice_index(array, axis, index)  # fail now, in the caller's thread
        axis = int(axis) if array.ndim == 3 else 0
        window = normalise_window(window) if window is not None else None
        return {
            "model_id": model_id,
            "volume": volume,
            "array": array,
            "axis": axis,
            "index": int(index),
            "window": window,
            "modality": _modality_of(volume),
            # Tells queued prefetches apart; the volume object is alive while they are queued.
            "key": (id(volume), axis, int(index), window, model_id),
        }

    def _resolved(self, request: dict) -> tuple[str, Window]:
        """(content hash, window) of a request; remembered per volume after the first time."""
        fingerprint = volume_fingerprint(request["volume"])
        return fingerprint, self._resolve_window(request["volume"], fingerprint, request["window"])

    def _is_cached(self, request: dict) -> bool:
        """Cached already (False when the volume's content hash has not been worked out yet)."""
        sha = self._known_sha.get(request["model_id"])
        fingerprint = known_fingerprint(request["volume"])
        if sha is None or fingerprint is None:
            return False
        window = request["window"]
        if window is None:  # (called under self._lock: a plain read, no locking here)
            window = self._default_windows.get((fingerprint, request["modality"]))
            if window is None:
                return False
        return self._cache_key(request, fingerprint, window, sha) in self.cache

    @staticmethod
    def _cache_key(request: dict, fingerprint: str, window: Window, sha: str) -> EmbeddingKey:
        return EmbeddingKey(fingerprint, request["axis"], request["index"], window, request["model_id"], sha)

    def _prefetch_job(self, request: dict, priority: int) -> Job:
        def run(control: JobControl):
            return self._embedding_for(request, control)

        description = f"pre-encoding slice {request['index']} (axis {request['axis']})"
        return self.submit(run, "prefetch", description, priority)

    # -- worker thread -----------------------------------------------------------------------
    def _run(self) -> None:
        lower_thread_priority(self._niceness)
        try:
            self._serve_jobs()
        except BaseException as exc:  # noqa: BLE001 - a bookkeeping bug must not leave jobs hanging
            self._recover_from_worker_death(exc)

    def _recover_from_worker_death(self, exc: BaseException) -> None:
        """Fail the job in hand with a clear message and start a fresh worker for the queue."""
        log.critical("the AI worker thread died", exc_info=exc)
        job, self._in_hand, self._current = self._in_hand, None, None
        if job is not None and not job.done:
            message = (
                f"the AI worker stopped unexpectedly while {job.description} ({type(exc).__name__}); "
                "it was restarted"
            )
            try:
                job._finish(JobStatus.FAILED, error=message, exception=ModelError(message))
            except BaseException:  # noqa: BLE001 - the job object itself is broken; keep serving others
                log.exception("could not fail %r", job)
        if not self._stopping:
            self._thread = threading.Thread(target=self._run, name="medviewer-ai-worker", daemon=True)
            self._thread.start()

    def _serve_jobs(self) -> None:
        while True:
            _, _, job = self._queue.get()
            if job is None:
                break
            self._in_hand = job
            function, job._function = job._function, None  # the job must not keep volumes alive
            if not job._start():
                continue  # cancelled while queued
            self._current = job
            try:
                self._execute(job, function)
            finally:
                self._current = None
        for model_id in list(self._models):
            self._unload(model_id)

    def _serve_lane(self) -> None:
        """The decode lane's loop (normal priority; see :meth:`_decodes_on_lane`)."""
        while True:
            _, _, job = self._lane_queue.get()
            if job is None:
                break
            function, job._function = job._function, None
            if job._start():
                try:
                    self._execute(job, function)
                except BaseException:  # noqa: BLE001 - finishing the job itself failed; keep serving
                    log.exception("the decode lane could not finish %r", job)

    def _execute(self, job: Job, function: Callable[[JobControl], Any]) -> None:
        try:
            result = function(job.control)
        except JobCancelled:
            job._finish(JobStatus.CANCELLED)
        except BaseException as exc:  # noqa: BLE001 - the worker must survive any job
            message, error = self._describe_failure(exc, job)
            job._finish(JobStatus.FAILED, error=message, exception=error)
        else:
            job._finish(JobStatus.DONE, result=result)

    def _describe_failure(self, exc: BaseException, job: Job) -> tuple[str, BaseException]:
        if _is_out_of_memory(exc):
            _release_device_memory()
            message = (
                f"Out of memory on {self.device} while {job.description}. Close other programs using "
                "the GPU, work on a smaller region, or switch the AI device to 'cpu'."
            )
            return message, ModelOutOfMemoryError(message)
        if isinstance(exc, MemoryError):
            message = f"Not enough memory (RAM) while {job.description}; close other volumes or programs."
            return message, ModelOutOfMemoryError(message)
        if isinstance(exc, ModelError):
            return str(exc), exc
        log.error("AI job %r failed", job, exc_info=exc)
        try:
            text = str(exc).strip()
        except Exception:  # noqa: BLE001 - a plugin's exception whose str() itself fails
            text = ""
        detail = text.splitlines()[0] if text else ""
        message = f"{job.description} failed: {type(exc).__name__}" + (f": {detail}" if detail else "")
        return message, exc

    def _resolved_device(self) -> str:
        if self._device is None:
            from medviewer.ai.device import configure_threads, select_device

            self._device = select_device(self._requested_device)
            configure_threads(self._threads)
        return self._device

    def _device_for(self, info: ModelInfo | None) -> str:
        """Models whose manifest lists requirements without torch run on the CPU, and do not
        pay torch's import (seconds) on their first use."""
        if info is not None and info.requires and "torch" not in info.requires:
            return "cpu"
        return self._resolved_device()

    def _ensure_model(
        self,
        model_id: str,
        checkpoint: str | Path | None = None,
        control: JobControl | None = None,
        reload: bool = False,
    ) -> _LoadedModel:
        entry = self.registry.get(model_id)
        device = self._device_for(entry.info)
        loaded = self._models.get(model_id)
        if loaded is not None and not reload and loaded.device == device:
            return loaded
        if loaded is not None:
            self._unload(model_id)
        if control is not None:
            control.report(0, 1, f"loading {model_id}")
        path = self.registry.resolve_checkpoint(model_id, checkpoint)
        sha = ""
        if path is not None:
            expected = entry.info.checkpoint.sha256 if (checkpoint is None and entry.info) else ""
            sha = verify_sha256(path, expected) if expected else file_sha256(path)
        # Importing and building a model stack makes ~10^5 long-lived objects: no full
        # collections meanwhile (they hold the GIL the GUI needs), frozen afterwards.
        with self._model_lock, gc_control.collection_paused():
            model = self.registry.create(model_id)
            try:
                model.load(path, device)
            except Exception as exc:
                if checkpoint is None and not _is_out_of_memory(exc) and not isinstance(exc, MemoryError):
                    # The default weights do not load: the plugin itself is broken.
                    self.registry.mark_failed(model_id, str(exc) if isinstance(exc, ModelError) else repr(exc))
                raise
        model.loaded = True
        model.device = device
        model.checkpoint_path = path
        loaded = _LoadedModel(model, path, sha, device)
        with self._model_lock:
            self._models[model_id] = loaded
        with self._lock:
            self._known_sha[model_id] = sha
        self.registry.mark_loaded(model_id, True)
        return loaded

    def _unload(self, model_id: str) -> None:
        with self._model_lock:  # waits for a decode on the lane to finish
            loaded = self._models.pop(model_id, None)
        with self._lock:
            self._known_sha.pop(model_id, None)
        if loaded is None:
            return
        try:
            loaded.model.unload()
        except Exception:  # noqa: BLE001
            log.exception("unloading %s failed", model_id)
        self.registry.mark_loaded(model_id, False)
        del loaded
        gc_control.collect_and_freeze()  # the model's objects were frozen at load
        _release_device_memory()

    def _embedding_for(self, request: dict, control: JobControl) -> Embedding:
        loaded = self._ensure_model(request["model_id"], None, control)
        fingerprint, window = self._resolved(request)
        key = self._cache_key(request, fingerprint, window, loaded.checkpoint_sha256)
        cached = self.cache.get(key)
        if cached is not None:
            self.stats["cache_hits"] += 1
            return cached
        control.check()
        image = np.ascontiguousarray(take_slice(request["array"], request["axis"], request["index"]))
        embedding = loaded.model.encode(image, window, modality=request["modality"], control=control)
        self.stats["encodes"] += 1
        self.cache.put(key, embedding)
        return embedding

    def _decode_now(
        self,
        model_id: str,
        embedding: Embedding,
        prompt: Prompt2D,
        previous_low_res_mask: np.ndarray | None,
        control: JobControl,
    ) -> Prediction:
        loaded = self._ensure_model(model_id, None, control)
        if embedding.model_id != model_id:
            raise PluginError(f"that embedding was made by {embedding.model_id!r}, not {model_id!r}")
        loaded.model.check_prompt(prompt)
        control.check()
        prediction = loaded.model.decode(embedding, prompt, previous_low_res_mask, control=control)
        self.stats["decodes"] += 1
        return prediction
