"""MedSAM as a medviewer model: SAM ViT-B fine-tuned for box prompts (medsam_vit_b.pth).

The network is segment-anything's ``Sam`` built from the checkpoint's shapes and loaded
through medviewer's safe, strict loader. Pre/post-processing follows MedSAM's reference
inference (bowang-lab/MedSAM ``MedSAM_Inference.py``), not SamPredictor's:
- window the slice to 8 bit (MedSAM's CT/MR preprocessing), three identical channels;
- resize to 1024 x 1024 WITHOUT keeping the aspect ratio: ``skimage.transform.resize``
  with ``order=3, preserve_range=True, anti_aliasing=True``, then ``astype(uint8)``;
- min-max normalise to [0, 1]; no pixel mean/std, no padding;
- the box scaled per axis: ``box / [W, H, W, H] * 1024``; box only, one mask
  (``multimask_output=False``);
- low-res logits (256 x 256) -> sigmoid -> bilinear to the slice size -> > 0.5.
Resizing one grey channel gives exactly the bytes of each channel of the RGB copy (checked
in the tests) at a third of the cost.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from medviewer.ai.api import Embedding, Prediction, Prompt2D, Window
from medviewer.ai.errors import UnsupportedPromptError
from medviewer.ai.preprocessing import min_max_normalise
from medviewer.ai.sam_common import SamFamilyModel, as_numpy_2d, to_uint8
from medviewer.jobs import JobControl

THRESHOLD = 0.5  # on probabilities


def resize_medsam(image_uint8: np.ndarray, size: int = 1024) -> np.ndarray:
    """MedSAM's ``transform.resize(img, (1024, 1024), order=3, preserve_range=True,
    anti_aliasing=True).astype(np.uint8)`` on one channel."""
    from skimage import transform

    resized = transform.resize(image_uint8, (size, size), order=3, preserve_range=True, anti_aliasing=True)
    return resized.astype(np.uint8)


def scale_box(box, original_size: tuple[int, int], size: int = 1024) -> np.ndarray:
    """MedSAM's ``box / [W, H, W, H] * 1024`` (float64, same operation order) -> [1, 1, 4]."""
    rows, columns = original_size
    return (np.array([box], dtype=np.float64) / np.array([columns, rows, columns, rows]) * size)[:, None, :]


def preprocess(image2d: np.ndarray, window: Window, size: int = 1024) -> torch.Tensor:
    """Raw slice -> [1, 3, size, size] float32 in [0, 1]."""
    normalised = min_max_normalise(resize_medsam(to_uint8(image2d, window), size))
    grey = torch.from_numpy(normalised.astype(np.float32))
    return grey[None].expand(3, -1, -1)[None].contiguous()


class MedSAM(SamFamilyModel):
    """Box-prompted 2D segmentation with MedSAM's own preprocessing."""

    display_name = "MedSAM"
    expected_file = "medsam_vit_b.pth"

    def encode(
        self,
        image2d: np.ndarray,
        window: Window | None = None,
        *,
        modality: str = "",
        control: JobControl | None = None,
    ) -> Embedding:
        return self._encode_stretched(image2d, window, modality, control, preprocess)

    def decode(
        self,
        embedding: Embedding,
        prompt: Prompt2D,
        previous_low_res_mask: np.ndarray | None = None,
        *,
        control: JobControl | None = None,
    ) -> Prediction:
        self.check_prompt(prompt)
        if previous_low_res_mask is not None:
            raise UnsupportedPromptError(
                "MedSAM was trained with boxes only and does not refine a previous mask: draw a new box instead"
            )
        boxes = torch.as_tensor(
            scale_box(prompt.box, embedding.original_size, self.spec.image_size), dtype=torch.float32
        ).to(embedding.features.device)
        low_res, score = self._run_decoder(embedding, None, boxes, None, multimask=False)
        with torch.inference_mode():
            probabilities = F.interpolate(
                torch.sigmoid(low_res), embedding.original_size, mode="bilinear", align_corners=False
            )
            probabilities = as_numpy_2d(probabilities)
        return Prediction(
            probabilities=probabilities.astype(np.float32),
            mask=probabilities > THRESHOLD,
            score=score,
            low_res_logits=as_numpy_2d(low_res),
        )
