"""Small 8-bit previews of DICOM series for the series browser (no Qt, no VTK).

Runs on a worker thread: it decodes one middle image with pydicom, windows it from its own
percentiles and shrinks it by block averaging, so even a 300-slice series costs one file.
"""

from __future__ import annotations

import numpy as np

THUMBNAIL_SIZE = 64


def to_thumbnail(image: np.ndarray, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """A (h, w) uint8 preview at most ``size`` pixels on its long side, windowed 1-99 %."""
    image = np.asarray(image)
    if image.ndim == 3:  # colour: average the channels
        image = image[..., :3].mean(axis=-1)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"need a 2D image, got shape {image.shape}")
    factor = max(1, int(np.ceil(max(image.shape) / size)))
    rows, cols = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    if rows == 0 or cols == 0:
        small = image.astype(np.float32)
    else:
        small = image[:rows, :cols].astype(np.float32).reshape(rows // factor, factor, cols // factor, factor).mean(axis=(1, 3))
    low, high = np.percentile(small, [1.0, 99.0])
    if high <= low:
        high = low + 1.0
    return np.ascontiguousarray(np.clip((small - low) / (high - low) * 255.0, 0, 255).astype(np.uint8))


def series_thumbnail(series, size: int = THUMBNAIL_SIZE) -> np.ndarray | None:
    """Preview of the middle frame of a DicomSeries, or None when it cannot be decoded."""
    frames = list(getattr(series, "frames", None) or [])
    if not frames:
        return None
    frame = frames[len(frames) // 2]
    try:
        import pydicom

        dataset = pydicom.dcmread(frame.path, force=True)
        pixels = dataset.pixel_array
        if frame.frame_index is not None and pixels.ndim >= 3 and int(getattr(dataset, "NumberOfFrames", 1) or 1) > 1:
            pixels = pixels[frame.frame_index]
        thumbnail = to_thumbnail(pixels, size)
    except Exception:  # noqa: BLE001 - a preview is optional; the series still opens
        return None
    if str(getattr(dataset, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        thumbnail = 255 - thumbnail
    return thumbnail
