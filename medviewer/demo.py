"""Built-in demo case: a synthetic abdominal CT phantom generated in code.

Organs are ellipsoids at realistic Hounsfield values with mild noise, so a newcomer sees a
CT-like scan at once and tests have a case with a known ground-truth label map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medviewer.model.geometry import Geometry
from medviewer.model.labelmap import LabelMap
from medviewer.model.segments import SegmentTable
from medviewer.model.volume import Volume, VolumeInfo, WindowPreset


@dataclass(frozen=True)
class Organ:
    name: str
    label: int
    hu: float
    center_mm: tuple[float, float, float]  # LPS offset from the volume centre (x, y, z)
    radii_mm: tuple[float, float, float]
    color: tuple[int, int, int]


#: Label value, HU, position and size of each structure. Patient left = +x (LPS), posterior = +y.
ORGANS: tuple[Organ, ...] = (
    Organ("liver", 1, 60.0, (-55.0, -5.0, 10.0), (65.0, 55.0, 60.0), (221, 130, 101)),
    Organ("spleen", 2, 50.0, (75.0, 30.0, 20.0), (28.0, 35.0, 40.0), (157, 108, 162)),
    Organ("right kidney", 3, 30.0, (-50.0, 55.0, -35.0), (22.0, 25.0, 45.0), (185, 102, 83)),
    Organ("left kidney", 4, 30.0, (55.0, 55.0, -30.0), (22.0, 25.0, 45.0), (185, 102, 83)),
    Organ("aorta", 5, 200.0, (8.0, 25.0, 0.0), (11.0, 11.0, 200.0), (224, 97, 76)),
    Organ("vertebra", 6, 700.0, (0.0, 65.0, 0.0), (18.0, 16.0, 200.0), (241, 214, 145)),
)


def make_demo_case(shape=(96, 192, 192), spacing=(1.6, 1.6, 2.5), seed: int = 7) -> tuple[Volume, LabelMap, SegmentTable]:
    """Return (CT volume int16, ground-truth labels, segment table) on one grid.

    ``shape`` is numpy order (z, y, x); ``spacing`` is (x, y, z) mm. The default is small
    enough to open instantly (3.5 M voxels) yet CT-like in field of view (~30 cm).
    """
    nz, ny, nx = shape
    origin = (-(nx - 1) * spacing[0] / 2.0, -(ny - 1) * spacing[1] / 2.0, -(nz - 1) * spacing[2] / 2.0)
    geometry = Geometry(shape, spacing, origin)
    z = (np.arange(nz) * spacing[2] + origin[2]).astype(np.float32)[:, None, None]
    y = (np.arange(ny) * spacing[1] + origin[1]).astype(np.float32)[None, :, None]
    x = (np.arange(nx) * spacing[0] + origin[0]).astype(np.float32)[None, None, :]

    def ellipsoid(center, radii) -> np.ndarray:
        return ((x - center[0]) / radii[0]) ** 2 + ((y - center[1]) / radii[1]) ** 2 + ((z - center[2]) / radii[2]) ** 2 <= 1.0

    def cylinder(center, radii) -> np.ndarray:
        return (((x - center[0]) / radii[0]) ** 2 + ((y - center[1]) / radii[1]) ** 2 <= 1.0) & np.ones_like(z, dtype=bool)

    ct = np.full(shape, -1000.0, dtype=np.float32)
    body = cylinder((0.0, 5.0), (140.0, 100.0))
    ct[body] = -90.0  # subcutaneous fat
    ct[cylinder((0.0, 5.0), (125.0, 86.0))] = 35.0  # muscle / soft tissue
    lungs_z = z > 70.0
    for side in (-1, 1):
        ct[ellipsoid((side * 60.0, 10.0, 140.0), (50.0, 60.0, 80.0)) & lungs_z & body] = -850.0
    labels = np.zeros(shape, dtype=np.uint8)
    table = SegmentTable()
    for organ in ORGANS:
        radius_for = cylinder if organ.radii_mm[2] >= 200.0 else ellipsoid
        inside = radius_for(organ.center_mm, organ.radii_mm)
        inside = np.broadcast_to(inside, shape) & body
        ct[inside] = organ.hu
        labels[inside] = organ.label
        table.add(organ.name, organ.color, label=organ.label)
    rng = np.random.default_rng(seed)
    ct += rng.normal(0.0, 12.0, size=shape).astype(np.float32)
    info = VolumeInfo(
        name="Demo abdomen phantom",
        modality="CT",
        series_description="Synthetic abdominal CT phantom (generated)",
        source="demo",
        units="HU",
        window_presets=[WindowPreset("Abdomen", 40.0, 400.0)],
        rescale_applied=True,
    )
    volume = Volume(np.clip(np.rint(ct), -1024, 3071).astype(np.int16), geometry, info)
    return volume, LabelMap(geometry, labels), table
