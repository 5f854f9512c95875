"""Small backbones trained from scratch: the identity (raw features), a multilayer perceptron, a LeNet-style CNN."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from tlrun.backbones.base import Backbone, check_weights_spec, load_weights_file


class Identity(Backbone):
    """No network: every sample flattened to one row (``out_features = prod(input_shape)``).

    With a deep method it makes the method's classifier act on the raw inputs (a linear softmax classifier);
    with a closed-form method it means "use the dataset's features as they are".
    """

    def __init__(self, input_shape: tuple[int, ...]) -> None:
        super().__init__(input_shape)
        self.out_features = self.in_features

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return self.as_rows(x)

    def stages(self) -> list[tuple[str, nn.Module]]:
        return []


class MLP(Backbone):
    """Fully connected layers with ReLU (and dropout) on flattened samples.

    Args:
        input_shape: per-sample shape (images are flattened).
        hidden: widths of the hidden layers; ``out_features`` is the last one (the input size when empty).
        dropout: dropout probability after every hidden layer.
        weights: ``none`` (random initialisation) or a state-dict file saved from an MLP of the same sizes.
    Stages: ``block1`` ... ``blockN``, one per hidden layer.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        hidden: Sequence[int] = (256,),
        dropout: float = 0.0,
        weights: str | None = "none",
    ) -> None:
        super().__init__(input_shape)
        widths = [int(width) for width in hidden]
        if any(width <= 0 for width in widths):
            raise ValueError(f"MLP: hidden widths must be positive, got {widths}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLP: dropout must be in [0, 1), got {dropout}")
        weights = check_weights_spec(weights)
        self.config.update(hidden=widths, dropout=float(dropout), weights=weights)
        self.blocks = nn.ModuleList()
        size = self.in_features
        for width in widths:
            layers: list[nn.Module] = [nn.Linear(size, width), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            self.blocks.append(nn.Sequential(*layers))
            size = width
        self.out_features = size
        if weights != "none":
            load_weights_file(self, weights)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return self.as_rows(x)

    def stages(self) -> list[tuple[str, nn.Module]]:
        return [(f"block{index}", block) for index, block in enumerate(self.blocks, start=1)]


class LeNet(Backbone):
    """A LeNet-style CNN for digit-sized images (8×8 to 32×32, any number of channels).

    Two 5×5 convolution blocks (ReLU, 2×2 max-pooling; the second pool is skipped for images smaller than
    8 pixels), then adaptive average pooling to 4×4, so that every input size gives the same feature size,
    and a fully connected layer.

    Args:
        input_shape: ``(C, H, W)``; flat rows are viewed with it. ``None`` (image files): ``(3, image_size,
            image_size)``.
        channels: output channels of the two convolutions.
        features: ``out_features``, the width of the fully connected layer.
        dropout: dropout probability before and after the fully connected layer.
        weights: ``none`` or a state-dict file saved from a LeNet of the same configuration.
        image_size: side that image *files* are resized to (``None``: the input_shape's height; required when
            input_shape is ``None``).
    Stages: ``conv1``, ``conv2``, ``fc``.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        channels: Sequence[int] = (32, 64),
        features: int = 500,
        dropout: float = 0.0,
        weights: str | None = "none",
        image_size: int | None = None,
    ) -> None:
        super().__init__(input_shape, image_size=image_size)
        if len(self.input_shape) != 3:
            raise ValueError(
                f"LeNet needs images: input_shape (C, H, W), got {self.input_shape}; for feature vectors use "
                "backbone=mlp or backbone=identity"
            )
        first, second = (int(c) for c in channels)
        weights = check_weights_spec(weights)
        self.image_size = int(image_size) if image_size else None
        self.config.update(
            channels=[first, second], features=int(features), dropout=float(dropout), weights=weights,
            image_size=self.image_size,
        )
        small = min(self.input_shape[1:]) < 8
        self.conv1 = nn.Sequential(
            nn.Conv2d(self.input_shape[0], first, kernel_size=5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2)
        )
        self.conv2 = nn.Sequential(
            nn.Conv2d(first, second, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.Identity() if small else nn.MaxPool2d(2),
        )
        fc: list[nn.Module] = [nn.AdaptiveAvgPool2d(4), nn.Flatten()]
        if dropout > 0:
            fc.append(nn.Dropout(dropout))
        fc += [nn.Linear(second * 16, int(features)), nn.ReLU(inplace=True)]
        if dropout > 0:
            fc.append(nn.Dropout(dropout))
        self.fc = nn.Sequential(*fc)
        self.out_features = int(features)
        if weights != "none":
            load_weights_file(self, weights)

    def stages(self) -> list[tuple[str, nn.Module]]:
        return [("conv1", self.conv1), ("conv2", self.conv2), ("fc", self.fc)]
