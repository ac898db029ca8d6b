"""Editing tools (paint, erase, threshold, ...) as small objects acting on the label map.

Each tool computes a mask (pure numpy/scipy, testable without a GUI) and applies it through
:class:`medviewer.model.editing.SegmentEditor`, which enforces the edit policy, records one
undo step and the provenance. Modules: ``brush`` (paint/erase, circle or sphere),
``threshold``, ``islands`` (islands and flood fill), ``morphology`` (fill holes, smoothing,
margin), ``logical``, ``interpolate`` (fill between slices) and ``statistics``.
"""
