"""Typed, human-readable AI errors: ``str(error)`` is what the user sees, never a traceback."""

from __future__ import annotations


class ModelError(Exception):
    """Base class for everything the AI engine reports to a user."""


class PluginError(ModelError):
    """A plugin could not be found, parsed, imported or instantiated."""


class CheckpointError(ModelError):
    """A checkpoint file is missing, corrupt, unsafe or does not fit the model."""


class UnsupportedPromptError(ModelError):
    """The model cannot use the prompt it was given (e.g. a 3D box on a 2D model)."""


class ModelOutOfMemoryError(ModelError):
    """The device ran out of memory; the message says what to try instead."""
