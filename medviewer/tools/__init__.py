"""Editing tools (paint, erase, threshold, ...) as small objects acting on the label map."""
