"""medviewer: view medical scans, prompt segmentation models, correct and export masks."""

__version__ = "0.1.0"
