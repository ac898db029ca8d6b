"""Speed and memory measurements; each figure is a ratio against a baseline from the same run."""
