"""Tiny stand-in segmentation models for GUI and engine tests: no torch, exact known masks."""

from __future__ import annotations

import time

import numpy as np

from medviewer.ai import Embedding, ModelInfo, Prediction, PromptKind, SegmentationModel


class BoxFillModel(SegmentationModel):
    """Fills the prompt box; ``delay`` seconds per encode (a slow model for cancel / stop tests)."""

    info = ModelInfo(id="test-boxfill", name="Box fill (test)", version="1", prompts=frozenset({PromptKind.BOX}))
    delay = 0.0

    def load(self, checkpoint, device):
        pass

    def encode(self, image2d, window=None, *, modality="", control=None):
        end = time.perf_counter() + type(self).delay
        while time.perf_counter() < end:
            if control is not None:
                control.check()
            time.sleep(0.01)
        shape = tuple(image2d.shape)
        return Embedding(self.info.id, np.asarray(image2d), shape, shape, shape, 1.0)

    def decode(self, embedding, prompt, previous_low_res_mask=None, *, control=None):
        mask = np.zeros(embedding.original_size, bool)
        x0, y0, x1, y1 = (int(round(v)) for v in prompt.box)
        mask[y0 : y1 + 1, x0 : x1 + 1] = True
        return Prediction(mask.astype(np.float32), mask, 0.9)
