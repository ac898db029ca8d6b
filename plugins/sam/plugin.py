"""Segment Anything (SAM) as a medviewer model: ViT-B/L/H checkpoints in segment-anything format.

The network is segment-anything's own ``Sam`` (image encoder, prompt encoder, mask decoder),
built from the architecture read off the checkpoint's tensor shapes and filled through
medviewer's safe loader (``weights_only=True``, strict keys and shapes). segment-anything's
``build_sam_*(checkpoint=...)`` is not used: it unpickles the file without restrictions.

Pre/post-processing reproduces ``SamPredictor`` exactly:
- window the slice to 8 bit, three identical RGB channels;
- resize the longest side to 1024 with PIL bilinear (``ResizeLongestSide``), new size
  ``int(old * 1024 / max + 0.5)``;
- normalise with SAM's pixel mean/std, zero-pad bottom/right to 1024 x 1024;
- points and boxes scaled per axis by new/old size (``apply_coords`` / ``apply_boxes``);
- a single click asks for three masks and keeps the one with the highest predicted IoU; a
  box, several clicks or a previous mask ask for one mask (SAM's recommended use);
- the previous prediction's 256 x 256 low-res logits are the mask prompt for refinement;
- logits -> bilinear to 1024 -> crop the unpadded region -> bilinear to the slice size,
  threshold 0 (``Sam.postprocess_masks`` and ``mask_threshold``).
"""

from __future__ import annotations

import numpy as np
import torch

from medviewer.ai.api import Embedding, Prediction, Prompt2D, Window
from medviewer.ai.sam_common import (
    SamFamilyModel,
    as_numpy_2d,
    resize_longest_side_bilinear,
    resolve_window,
    sam_normalise_and_pad,
    sam_postprocess_logits,
    to_uint8,
)
from medviewer.jobs import JobControl

MASK_THRESHOLD = 0.0  # on logits, as Sam.mask_threshold


def preprocess(image2d: np.ndarray, window: Window, image_size: int = 1024) -> tuple[torch.Tensor, tuple[int, int]]:
    """Raw slice -> ([1, 3, S, S] network input, (rows, columns) after resizing, before padding)."""
    resized = resize_longest_side_bilinear(to_uint8(image2d, window), image_size)
    return sam_normalise_and_pad(resized, image_size), resized.shape[:2]


def wants_multimask(prompt: Prompt2D, previous_low_res_mask) -> bool:
    """Three candidate masks only for an ambiguous prompt: one click, no box, no previous mask."""
    return len(prompt.points) == 1 and prompt.box is None and previous_low_res_mask is None


class SegmentAnything(SamFamilyModel):
    """SAM with points (+/-), boxes and mask refinement."""

    display_name = "SAM"
    expected_file = "sam_vit_b_01ec64.pth"

    def encode(
        self,
        image2d: np.ndarray,
        window: Window | None = None,
        *,
        modality: str = "",
        control: JobControl | None = None,
    ) -> Embedding:
        image = self._checked_slice(image2d)
        window = resolve_window(image, window, modality)
        size = self.spec.image_size
        network_input, resized = preprocess(image, window, size)
        if control is not None:
            control.check()
        with torch.inference_mode():
            features = self.network.image_encoder(network_input.to(self.device))
        scale = size / max(image.shape)
        return self._embedding(features, image.shape, resized, scale, window, variant=self.spec.variant)

    def decode(
        self,
        embedding: Embedding,
        prompt: Prompt2D,
        previous_low_res_mask: np.ndarray | None = None,
        *,
        control: JobControl | None = None,
    ) -> Prediction:
        spec = self.spec
        points, boxes, masks = self._prompt_tensors(
            embedding, prompt, previous_low_res_mask, as_probabilities=False
        )
        multimask = wants_multimask(prompt, previous_low_res_mask)
        low_res, score = self._run_decoder(embedding, points, boxes, masks, multimask)
        with torch.inference_mode():
            logits = sam_postprocess_logits(low_res, spec.image_size, embedding.resized_size, embedding.original_size)
            probabilities = as_numpy_2d(torch.sigmoid(logits))
            mask = as_numpy_2d(logits) > MASK_THRESHOLD
        return Prediction(
            probabilities=probabilities.astype(np.float32),
            mask=mask,
            score=score,
            low_res_logits=as_numpy_2d(low_res),
        )
