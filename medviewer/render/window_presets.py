"""Window/level presets a clinician expects for a volume (no Qt, no VTK).

Order of the list: windows the scanner wrote into the DICOM header, the standard CT windows
(for CT, or for unlabelled data whose values look like Hounsfield units), then data-driven
windows from intensity percentiles, which is what MR and everything else relies on.
"""

from __future__ import annotations

import re

from medviewer.model.volume import Volume, WindowPreset

#: Standard CT windows in HU (name, centre, width), after Radiopaedia's table.
CT_WINDOW_PRESETS: tuple[WindowPreset, ...] = (
    WindowPreset("Soft tissue", 40.0, 400.0),
    WindowPreset("Lung", -600.0, 1500.0),
    WindowPreset("Bone", 400.0, 1800.0),
    WindowPreset("Brain", 40.0, 80.0),
    WindowPreset("Liver", 30.0, 150.0),
    WindowPreset("Mediastinum", 50.0, 350.0),
)

AUTO_PRESET_NAME = "Auto (1–99 %)"
FULL_RANGE_PRESET_NAME = "Full range"


def looks_like_ct(volume: Volume) -> bool:
    """CT by its modality, or (when the file does not say) by air sitting near -1000 HU."""
    modality = volume.info.modality.upper()
    if modality:
        return modality == "CT"
    low, high = volume.intensity_range()
    return -1100.0 <= low <= -900.0 and high >= 200.0


def percentile_window(volume: Volume, low: float = 1.0, high: float = 99.0) -> WindowPreset:
    lo, hi = volume.percentiles(low, high)
    if hi <= lo:
        lo, hi = volume.intensity_range()
        if hi <= lo:
            hi = lo + 1.0
    return WindowPreset(AUTO_PRESET_NAME, (lo + hi) / 2.0, hi - lo)


def window_presets(volume: Volume) -> list[WindowPreset]:
    """Every preset offered for ``volume``; an exact repeat (same name and window) once.

    A scanner window equal to a standard one under another name ('Abdomen' = 'Soft tissue')
    keeps both names: users look for the name they know.
    """
    presets: list[WindowPreset] = []
    seen: set[tuple[str, float, float]] = set()

    def offer(preset: WindowPreset) -> None:
        key = (_normalise(preset.name), round(preset.center, 6), round(preset.width, 6))
        if key not in seen and preset.width > 0:
            seen.add(key)
            presets.append(preset)

    for preset in volume.info.window_presets:
        offer(WindowPreset(preset.name or "Scanner", preset.center, preset.width))
    if looks_like_ct(volume):
        for preset in CT_WINDOW_PRESETS:
            offer(preset)
    offer(percentile_window(volume))
    low, high = volume.intensity_range()
    if high > low:
        offer(WindowPreset(FULL_RANGE_PRESET_NAME, (low + high) / 2.0, high - low))
    return presets


def initial_window(volume: Volume) -> WindowPreset:
    """The window shown when a volume opens: the scanner's, else CT soft tissue, else auto."""
    if volume.info.window_presets:
        return volume.info.window_presets[0]
    if looks_like_ct(volume):
        return CT_WINDOW_PRESETS[0]
    return percentile_window(volume)


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def find_window_preset(presets: list[WindowPreset], name: str) -> WindowPreset | None:
    """Preset by name, forgiving case, spaces and punctuation ('soft-tissue', 'AUTO')."""
    wanted = _normalise(name)
    if not wanted:
        return None
    for preset in presets:
        if _normalise(preset.name) == wanted:
            return preset
    matches = [p for p in presets if _normalise(p.name).startswith(wanted)]
    return matches[0] if len(matches) == 1 else None
