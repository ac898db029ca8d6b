"""Image preprocessing shared by SAM-family plugins (windowing, longest-side resize, padding).

Models reproduce their training pipeline bit for bit or lose accuracy: LiteMedSAM resized with
a bilinear filter instead of OpenCV's INTER_AREA shifted single masks' Dice by up to 0.38.
So the steps here follow the reference scripts exactly and say so where it matters.
"""

from __future__ import annotations

import numpy as np

CT_DEFAULT_WINDOW = (40.0 - 200.0, 40.0 + 200.0)  # level 40, width 400 (soft tissue / abdomen)
PERCENTILE_RANGE = (0.5, 99.5)
PERCENTILE_SAMPLES = 2_000_000


def default_window(image: np.ndarray, modality: str = "") -> tuple[float, float]:
    """MedSAM's rule: CT gets level 40 / width 400; anything else its 0.5-99.5 percentiles.

    Percentiles are taken over non-zero voxels like MedSAM's preprocessing (zero is usually
    background outside the field of view); ``image`` may be a slice or a whole volume.
    """
    if modality.strip().upper() == "CT":
        return CT_DEFAULT_WINDOW
    flat = np.asarray(image).reshape(-1)
    if flat.size > PERCENTILE_SAMPLES:
        flat = flat[:: flat.size // PERCENTILE_SAMPLES]
    nonzero = flat[flat != 0]
    values = nonzero if nonzero.size else flat
    if values.size == 0:
        return (0.0, 1.0)
    low, high = np.percentile(values.astype(np.float64), PERCENTILE_RANGE)
    if high <= low:
        low, high = float(values.min()), float(values.max())
        if high <= low:
            high = low + 1.0
    return (float(low), float(high))


def window_to_uint8(image: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Clip to [low, high] and map linearly to 0..255, truncating like MedSAM's ``np.uint8``."""
    low, high = float(window[0]), float(window[1])
    if not high > low:
        raise ValueError(f"window must have low < high, got {window}")
    clipped = np.clip(np.asarray(image, dtype=np.float64), low, high)
    return ((clipped - low) / (high - low) * 255.0).astype(np.uint8)


def longest_side_shape(rows: int, columns: int, target: int) -> tuple[int, int]:
    """(rows, columns) after scaling the longest side to ``target``, rounded half up."""
    scale = target * 1.0 / max(rows, columns)
    return int(rows * scale + 0.5), int(columns * scale + 0.5)


def resize_longest_side_area(image_uint8: np.ndarray, target: int) -> np.ndarray:
    """Resize keeping the aspect ratio with OpenCV's INTER_AREA, as LiteMedSAM's inference does."""
    import cv2

    rows, columns = image_uint8.shape[:2]
    new_rows, new_columns = longest_side_shape(rows, columns, target)
    return cv2.resize(image_uint8, (new_columns, new_rows), interpolation=cv2.INTER_AREA)


def min_max_normalise(image: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] in float64; a constant image becomes all zeros."""
    image = np.asarray(image, dtype=np.float64)
    low = image.min()
    return (image - low) / np.clip(image.max() - low, a_min=1e-8, a_max=None)


def pad_bottom_right(image: np.ndarray, target: int) -> np.ndarray:
    """Zero-pad the first two axes to ``target`` at the bottom and right."""
    rows, columns = image.shape[:2]
    widths = [(0, target - rows), (0, target - columns)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, widths)


def scale_box_truncated(box: tuple[float, float, float, float], scale: float) -> tuple[int, int, int, int]:
    """Scale box corners and truncate to integers: ``int(v * 256 / max(H, W))`` as trained."""
    return tuple(int(v * scale) for v in box)  # type: ignore[return-value]
