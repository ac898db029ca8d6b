"""Region growing from clicks (connected threshold), in 2D or 3D, with no weights.

The intensity range comes from the neighbourhood of the positive clicks (mean +/- k standard
deviations, like ITK's confidence-connected filter but computed once so the result is easy
to predict); a negative click whose neighbourhood falls inside the range moves the nearer
bound halfway towards it, and its own voxel is always excluded. A box, when given, limits
where the region may grow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medviewer.ai.api import (
    Embedding,
    Prediction,
    Prediction3D,
    Prompt2D,
    Prompt3D,
    SegmentationModel,
    Window,
)
from medviewer.ai.errors import UnsupportedPromptError
from medviewer.jobs import JobControl

NEIGHBOURHOOD_RADIUS = 2  # voxels around each positive click used for the statistics
STD_MULTIPLIER = 2.5
MIN_HALF_WIDTH_FRACTION = 0.02  # of the robust intensity range, so flat regions still grow


def _seed_indices(points, shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Round (x, y[, z]) points to array indices (z, y, x), clipped into the array."""
    seeds = []
    for point in points:
        index = tuple(int(round(c)) for c in reversed(point))
        seeds.append(tuple(min(max(i, 0), n - 1) for i, n in zip(index, shape, strict=True)))
    return seeds


def _box_slices(box, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """(x0, y0[, z0], x1, y1[, z1]) inclusive -> array slices in (z, y, x) order."""
    dims = len(shape)
    low = [int(np.floor(v)) for v in box[:dims]][::-1]
    high = [int(np.floor(v)) + 1 for v in box[dims:]][::-1]
    return tuple(slice(max(lo, 0), min(hi, n)) for lo, hi, n in zip(low, high, shape, strict=True))


def intensity_range(image: np.ndarray, positives, negatives) -> tuple[float, float]:
    """Threshold range from the positive seeds' neighbourhoods, narrowed by negative seeds."""
    values = np.concatenate([_neighbourhood(image, seed) for seed in positives])
    mean, std = float(values.mean()), float(values.std())
    flat = np.asarray(image).ravel()
    sample = flat[:: max(1, flat.size // 1_000_000)].astype(np.float64)
    p_low, p_high = np.percentile(sample, [1.0, 99.0])
    half_width = max(STD_MULTIPLIER * std, MIN_HALF_WIDTH_FRACTION * float(p_high - p_low), 1e-6)
    low, high = mean - half_width, mean + half_width
    low = min(low, float(values.min()))  # the clicked voxels themselves always qualify
    high = max(high, float(values.max()))
    for seed in negatives:
        value = float(_neighbourhood(image, seed).mean())
        if low <= value <= high:  # move the nearer bound halfway towards the excluded intensity
            if value < mean:
                low = max(low, (value + mean) / 2)
            else:
                high = min(high, (value + mean) / 2)
    return float(low), float(high)


def _neighbourhood(image: np.ndarray, seed: tuple[int, ...]) -> np.ndarray:
    region = tuple(slice(max(i - NEIGHBOURHOOD_RADIUS, 0), i + NEIGHBOURHOOD_RADIUS + 1) for i in seed)
    return np.asarray(image[region], dtype=np.float64).ravel()


def grow(
    image: np.ndarray,
    positives: list[tuple[int, ...]],
    negatives: list[tuple[int, ...]],
    control: JobControl | None = None,
) -> tuple[np.ndarray, tuple[float, float]]:
    """Connected threshold from the positive seeds; returns (bool mask, (low, high))."""
    low, high = intensity_range(image, positives, negatives)
    itk_image = sitk.GetImageFromArray(np.ascontiguousarray(image))
    grower = sitk.ConnectedThresholdImageFilter()
    grower.SetLower(low)
    grower.SetUpper(high)
    grower.SetReplaceValue(1)
    grower.SetSeedList([tuple(int(i) for i in reversed(seed)) for seed in positives])  # ITK wants (x, y, z)
    if control is not None:
        grower.AddCommand(sitk.sitkProgressEvent, lambda: grower.Abort() if control.cancelled else None)
        control.check()
    try:
        result = grower.Execute(itk_image)
    except RuntimeError:
        if control is not None:
            control.check()  # an abort we asked for becomes JobCancelled
        raise
    if control is not None:
        control.check()
    mask = sitk.GetArrayViewFromImage(result).astype(bool)
    for seed in negatives:  # a negative click must never end up inside the result
        if mask[seed]:
            mask[seed] = False
    return mask, (low, high)


class RegionGrowing(SegmentationModel):
    """Connected-threshold growing from clicks; needs no checkpoint and no torch."""

    def load(self, checkpoint: Path | None, device: str) -> None:
        self.device = "cpu"  # SimpleITK runs on the CPU whatever the AI device is
        self.loaded = True

    def encode(
        self,
        image2d: np.ndarray,
        window: Window | None = None,
        *,
        modality: str = "",
        control: JobControl | None = None,
    ) -> Embedding:
        image = np.array(image2d, copy=True)
        if image.ndim != 2:
            raise UnsupportedPromptError(f"expected one 2D slice, got shape {image.shape}")
        size = (int(image.shape[0]), int(image.shape[1]))
        return Embedding(self.info.id, image, size, size, size, 1.0, (0, 0), window)

    def decode(
        self,
        embedding: Embedding,
        prompt: Prompt2D,
        previous_low_res_mask: np.ndarray | None = None,
        *,
        control: JobControl | None = None,
    ) -> Prediction:
        self.check_prompt(prompt)
        mask = self._grow_with_prompt(embedding.features, prompt, control)
        return Prediction(probabilities=mask.astype(np.float32), mask=mask, score=None, low_res_logits=None)

    def predict_3d(
        self,
        volume: np.ndarray,
        prompt: Prompt3D,
        *,
        spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
        window: Window | None = None,
        modality: str = "",
        control: JobControl | None = None,
    ) -> Prediction3D:
        self.check_prompt(prompt)
        volume = np.asarray(volume)
        if volume.ndim != 3:
            raise UnsupportedPromptError(f"expected a 3D volume, got shape {volume.shape}")
        mask = self._grow_with_prompt(volume, prompt, control)
        return Prediction3D(mask=mask, probabilities=None, score=None)

    @staticmethod
    def _grow_with_prompt(image: np.ndarray, prompt: Prompt2D | Prompt3D, control: JobControl | None) -> np.ndarray:
        positives = _seed_indices(prompt.points_with_label(1), image.shape)
        negatives = _seed_indices(prompt.points_with_label(0), image.shape)
        region = tuple(slice(0, n) for n in image.shape)
        if prompt.box is not None:
            region = _box_slices(prompt.box, image.shape)
            if any(s.stop <= s.start for s in region):
                raise UnsupportedPromptError("the box lies outside the image")
            if not positives:
                positives = [tuple((s.start + s.stop - 1) // 2 for s in region)]
        if not positives:
            raise UnsupportedPromptError("region growing needs at least one positive click inside the structure")
        offset = [s.start for s in region]

        def local(seeds):
            inside = [
                tuple(i - o for i, o in zip(seed, offset, strict=True))
                for seed in seeds
                if all(s.start <= i < s.stop for i, s in zip(seed, region, strict=True))
            ]
            return inside

        local_positives = local(positives)
        if not local_positives:
            raise UnsupportedPromptError("every positive click lies outside the box")
        grown, _ = grow(image[region], local_positives, local(negatives), control)
        mask = np.zeros(image.shape, dtype=bool)
        mask[region] = grown
        return mask
