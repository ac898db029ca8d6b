"""MedLAM, MedLSAM's 3D localiser network, written for medviewer so the official weights load.

A 3D U-Net-like CNN on 64^3 patches (3 mm CT): an encoder of 3x3x3 convolutions with instance
norm (no affine parameters) and ReLU, max-pooled four times to 4^3; a fully connected head
(three linear layers, no activations between them) that maps the bottleneck to a 3-vector,
the patch's position in a learned anatomical coordinate frame; and a decoder (trilinear
upsampling + skip connections) whose last three stages give the multi-scale feature maps used
to refine a localisation ("MSS"). Parameter names match openmedlab/MedLSAM's
``networks/medlam.py`` (``conv0_1.model.conv1_1.Conv.weight``, ``fc1.weight``, ...); the
released ``medlam.pth`` stores them with DataParallel's ``module.`` prefix, which the
checkpoint loader strips.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class MedLAMConfig:
    """Defaults: the released model (base 24 channels, 64^3 patches, 3 output classes)."""

    base_channels: int = 24
    patch_size: tuple[int, int, int] = (64, 64, 64)
    in_channels: int = 1
    n_classes: int = 3

    @property
    def fc_inputs(self) -> int:
        voxels = self.patch_size[0] * self.patch_size[1] * self.patch_size[2]
        return int(voxels / 4096) * 16 * self.base_channels


class _ConvHolder(nn.Module):
    """Keeps the parameter path ``...conv1_1.Conv.weight`` of the reference layer."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.Conv = nn.Conv3d(cin, cout, kernel_size=3, padding=1)  # noqa: N815 - checkpoint name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.Conv(x)


class ConvNormReLU(nn.Module):
    """3x3x3 convolution, instance norm without parameters, ReLU (``model.conv1_1/norm1_1/relu1_1``)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.model = nn.Sequential()
        self.model.add_module("conv1_1", _ConvHolder(cin, cout))
        self.model.add_module("norm1_1", nn.InstanceNorm3d(cout))
        self.model.add_module("relu1_1", nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class MedLAM(nn.Module):
    def __init__(self, config: MedLAMConfig | None = None):
        super().__init__()
        self.config = config = config or MedLAMConfig()
        b = config.base_channels
        layers = {
            "conv0_1": (config.in_channels, 2 * b),
            "conv0_2": (2 * b, 2 * b),
            "conv1_1": (2 * b, 2 * b),
            "conv1_2": (2 * b, 2 * b),
            "conv2_1": (2 * b, 2 * b),
            "conv2_2": (2 * b, 4 * b),
            "conv3_1": (4 * b, 4 * b),
            "conv3_2": (4 * b, 8 * b),
            "conv4_1": (8 * b, 8 * b),
            "conv4_2": (8 * b, 16 * b),
            "conv5_1": (24 * b, 8 * b),
            "conv5_2": (8 * b, 8 * b),
            "conv6_1": (12 * b, 4 * b),
            "conv6_2": (4 * b, 4 * b),
            "conv7_1": (6 * b, 4 * b),
            "conv7_2": (4 * b, 4 * b),
            "conv8_1": (6 * b, 4 * b),
            "conv8_2": (4 * b, 4 * b),
        }
        for name, (cin, cout) in layers.items():
            self.add_module(name, ConvNormReLU(cin, cout))
        self.classification = nn.Sequential(nn.Conv3d(4 * b, config.n_classes, kernel_size=1))
        self.fc1 = nn.Linear(config.fc_inputs, 8 * b)
        self.fc2 = nn.Linear(8 * b, 4 * b)
        self.fc3 = nn.Linear(4 * b, 3)

    @staticmethod
    def _up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="trilinear", align_corners=False)

    def forward(self, x: torch.Tensor, position: bool = True, features: bool = False) -> dict[str, torch.Tensor]:
        """(B, 1, 64, 64, 64) normalised patches -> {'position': (B, 3)} and, with
        ``features``, {'feature0': 16^3, 'feature1': 32^3, 'feature2': 64^3} maps."""
        out: dict[str, torch.Tensor] = {}
        level0 = self.conv0_2(self.conv0_1(x))
        level1 = self.conv1_2(self.conv1_1(F.max_pool3d(level0, 2, 2)))
        level2 = self.conv2_2(self.conv2_1(F.max_pool3d(level1, 2, 2)))
        level3 = self.conv3_2(self.conv3_1(F.max_pool3d(level2, 2, 2)))
        bottom = self.conv4_2(self.conv4_1(F.max_pool3d(level3, 2, 2)))
        if position:
            out["position"] = self.fc3(self.fc2(self.fc1(bottom.reshape(bottom.shape[0], -1))))
        if features:
            y = self.conv5_2(self.conv5_1(torch.cat((self._up(bottom), level3), 1)))
            out["feature0"] = self.conv6_2(self.conv6_1(torch.cat((self._up(y), level2), 1)))
            out["feature1"] = self.conv7_2(self.conv7_1(torch.cat((self._up(out["feature0"]), level1), 1)))
            out["feature2"] = self.conv8_2(self.conv8_1(torch.cat((self._up(out["feature1"]), level0), 1)))
        return out
