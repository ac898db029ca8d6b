"""AI core: model plugin API, discovery, checkpoints, embedding cache and the worker engine.

Nothing here imports Qt or VTK, and nothing imports torch until a model is actually used, so
the CLI, tests and the GUI's start-up stay fast. Typical use from a GUI::

    engine = Engine(ModelRegistry())              # discovers plugins, starts the worker
    job = engine.segment("litemedsam", volume, axis=0, index=42, prompt=Prompt2D(box=(x0, y0, x1, y1)))
    job.add_done_callback(emit_qt_signal)         # runs on the worker thread
    engine.prefetch("litemedsam", volume, axis=0, center_index=42, radius=3)
"""

from medviewer.ai.api import (
    CheckpointRule,
    Dimensionality,
    Embedding,
    ModelInfo,
    Prediction,
    Prediction3D,
    Prompt2D,
    Prompt3D,
    PromptKind,
    SegmentationModel,
)
from medviewer.ai.cache import EmbeddingCache, EmbeddingKey, volume_fingerprint
from medviewer.ai.engine import Engine, Job, JobStatus, Priority
from medviewer.ai.errors import (
    CheckpointError,
    ModelError,
    ModelOutOfMemoryError,
    PluginError,
    UnsupportedPromptError,
)
from medviewer.ai.registry import ModelEntry, ModelRegistry

__all__ = [
    "CheckpointError",
    "CheckpointRule",
    "Dimensionality",
    "Embedding",
    "EmbeddingCache",
    "EmbeddingKey",
    "Engine",
    "Job",
    "JobStatus",
    "ModelEntry",
    "ModelError",
    "ModelInfo",
    "ModelOutOfMemoryError",
    "ModelRegistry",
    "PluginError",
    "Prediction",
    "Prediction3D",
    "Priority",
    "Prompt2D",
    "Prompt3D",
    "PromptKind",
    "SegmentationModel",
    "UnsupportedPromptError",
    "volume_fingerprint",
]
