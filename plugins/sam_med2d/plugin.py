"""SAM-Med2D as a medviewer model (OpenGVLab/SAM-Med2D, sam-med2d_b.pth).

The network is SAM ViT-B at 256 x 256 whose encoder blocks carry adapters
(:mod:`.adapter_vit`, our implementation), with segment-anything's prompt encoder and mask
decoder (16 x 16 image embedding, 64 x 64 low-res logits). The checkpoint is a dict
``{'model': state_dict}``; it is read with ``weights_only=True`` and loaded strictly (the
reference loads it non-strictly, which silently accepts wrong files).

Pre/post-processing follows the reference ``SammedPredictor`` and ``test.py``:
- window the slice to 8 bit, three identical RGB channels;
- normalise at native size with SAM's mean/std, then resize to 256 x 256 with OpenCV's
  INTER_NEAREST (aspect ratio not kept, no padding);
- points and boxes scaled per axis: x * 256 / W, y * 256 / H;
- the decoder always returns three candidates (``multimask_output=True``, the default of
  their predictor and evaluation) and the one with the highest predicted IoU is kept;
- iterative refinement feeds back the previous low-res mask as sigmoid probabilities, as
  their interactive evaluation does (our ``Prediction.low_res_logits`` are logits and are
  converted here);
- 64 x 64 logits -> bilinear to 256 x 256 -> bilinear to the slice size -> sigmoid > 0.5.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from medviewer.ai.api import Embedding, Prediction, Prompt2D, Window
from medviewer.ai.sam_common import (
    PIXEL_MEAN,
    PIXEL_STD,
    SamFamilyModel,
    SamSpec,
    as_numpy_2d,
    build_sam,
    to_uint8,
)
from medviewer.jobs import JobControl

from .adapter_vit import AdapterImageEncoderViT

THRESHOLD = 0.5  # on probabilities
IMAGE_SIZE = 256

#: The released model: SAM ViT-B hyper-parameters, 256 x 256 input, adapters in every block.
SAM_MED2D_B = SamSpec(768, 12, 12, (2, 5, 8, 11), image_size=IMAGE_SIZE, adapter=True)


def build_network(spec: SamSpec = SAM_MED2D_B) -> torch.nn.Module:
    """SAM-Med2D with random weights: adapter ViT encoder + SAM prompt encoder and decoder."""
    return build_sam(spec, image_encoder=AdapterImageEncoderViT(spec))


def normalise_and_resize(image_uint8: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Reference order: (RGB - mean) / std at native size, then nearest to size x size.

    The reference subtracts the model's float32 ``pixel_mean`` buffer from the uint8 image in
    numpy, so the arithmetic is float32; we do the same. Returns [size, size, 3] float32.
    ``cv2.resize`` with INTER_NEAREST is what the reference's albumentations
    ``Resize(interpolation=cv2.INTER_NEAREST)`` calls.
    """
    import cv2

    rgb = np.repeat(np.asarray(image_uint8, dtype=np.uint8)[:, :, None], 3, axis=-1)
    normalised = (rgb - np.array(PIXEL_MEAN, dtype=np.float32)) / np.array(PIXEL_STD, dtype=np.float32)
    return cv2.resize(normalised, (size, size), interpolation=cv2.INTER_NEAREST)


def preprocess(image2d: np.ndarray, window: Window, size: int = IMAGE_SIZE) -> torch.Tensor:
    """Raw slice -> [1, 3, size, size] float32 network input."""
    resized = normalise_and_resize(to_uint8(image2d, window), size)
    return torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1)))[None]


def postprocess_logits(low_res: torch.Tensor, size: int, original_size: tuple[int, int]) -> torch.Tensor:
    """64 x 64 logits -> bilinear size x size -> bilinear to the slice (align_corners=False)."""
    masks = F.interpolate(low_res, (size, size), mode="bilinear", align_corners=False)
    return F.interpolate(masks, tuple(original_size), mode="bilinear", align_corners=False)


class SAMMed2D(SamFamilyModel):
    """Points (+/-), boxes and iterative refinement with the previous mask."""

    display_name = "SAM-Med2D"
    expected_file = "sam-med2d_b.pth"
    adapter = True
    fallback_spec = SAM_MED2D_B

    def build(self, spec: SamSpec) -> torch.nn.Module:
        return build_network(spec)

    def load(self, checkpoint, device: str) -> None:
        # OpenCV (the reference's nearest resize) is imported while loading, not on the first
        # encode: an import holds the GIL while its library loads and would freeze the GUI.
        import cv2  # noqa: F401

        super().load(checkpoint, device)

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
        spec = self.spec
        points, boxes, masks = self._prompt_tensors(
            embedding, prompt, previous_low_res_mask, as_probabilities=True
        )
        low_res, score = self._run_decoder(embedding, points, boxes, masks, multimask=True)
        with torch.inference_mode():
            logits = postprocess_logits(low_res, spec.image_size, embedding.original_size)
            probabilities = as_numpy_2d(torch.sigmoid(logits))
        return Prediction(
            probabilities=probabilities.astype(np.float32),
            mask=probabilities > THRESHOLD,
            score=score,
            low_res_logits=as_numpy_2d(low_res),
        )
