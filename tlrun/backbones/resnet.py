"""ResNets from torchvision with the ImageNet classifier removed (He et al. 2016).

Weights: ``none`` (random initialisation), ``imagenet`` (torchvision's ``IMAGENET1K_V1`` weights, the ones the
deep domain-adaptation papers start from, fetched into the torch hub cache), or a path to a state-dict file
(a torchvision ResNet's, with or without ``fc``, or one saved from this backbone or from a deep method).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tlrun.backbones.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Backbone,
    WeightsError,
    check_weights_spec,
    load_weights_file,
)

#: Supported architectures: torchvision builder name -> (weights enum name, feature size).
ARCHS: dict[str, tuple[str, int]] = {
    "resnet18": ("ResNet18_Weights", 512),
    "resnet34": ("ResNet34_Weights", 512),
    "resnet50": ("ResNet50_Weights", 2048),
    "resnet101": ("ResNet101_Weights", 2048),
    "resnet152": ("ResNet152_Weights", 2048),
}


def imagenet_weights(arch: str) -> Any:
    """torchvision's ImageNet weights entry for ``arch`` (``IMAGENET1K_V1``)."""
    import torchvision.models as models

    return getattr(models, ARCHS[arch][0]).IMAGENET1K_V1


def imagenet_cache_file(arch: str) -> Path:
    """Where torch keeps the downloaded ImageNet weights of ``arch`` (``$TORCH_HOME/hub/checkpoints/...``)."""
    url = imagenet_weights(arch).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def download_imagenet_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """The ImageNet state dict of ``arch``, from the torch hub cache or downloaded into it.

    Raises :class:`WeightsError` naming the file to place in the cache and the URL it comes from when the
    download fails (offline machines) or the cached file is damaged.
    """
    url = imagenet_weights(arch).url
    cached = imagenet_cache_file(arch)
    try:
        return torch.hub.load_state_dict_from_url(url, progress=True, check_hash=True, map_location="cpu")
    except Exception as error:  # noqa: BLE001 - network, hash and unpickling errors all get the same advice
        damaged = cached.exists()
        raise WeightsError(
            f"cannot {'read' if damaged else 'download'} the ImageNet weights of {arch} "
            f"({type(error).__name__}: {error}). "
            + (f"The cached file {cached} is damaged: delete it and retry, or replace it. " if damaged else "")
            + f"On a machine without internet access, download {url} elsewhere and place it, "
            f"under the same file name, at {cached} (the torch hub cache; set TORCH_HOME to move it). "
            "Or set backbone.weights to a local state-dict file, or to none."
        ) from error


class ResNet(Backbone):
    """A torchvision ResNet without its classifier: images → pooled features (512 or 2048).

    Args:
        input_shape: per-sample shape ``(C, H, W)`` (flat rows are viewed with it; 1 channel is repeated to 3);
            ``None`` (image files): ``(3, image_size, image_size)``.
        arch: ``resnet18``, ``resnet34``, ``resnet50``, ``resnet101`` or ``resnet152``.
        weights: ``none``, ``imagenet`` or a path to a state-dict file.
        image_size: side that images are resized and center-cropped to by the input pipeline (224 for
            ImageNet weights); ``None`` keeps the images' own size.
    Stages: ``stem`` (conv1, bn1, relu, maxpool), ``layer1`` ... ``layer4`` (the global pooling has no
    parameters). The state dict uses torchvision's key names, without ``fc``.
    """

    normalization = (IMAGENET_MEAN, IMAGENET_STD)
    crop_fraction = 0.875  # image files: resize to 256, center-crop 224

    def __init__(
        self,
        input_shape: tuple[int, ...] | None = None,
        arch: str = "resnet50",
        weights: str | None = "none",
        image_size: int | None = 224,
    ) -> None:
        super().__init__(input_shape, image_size=image_size or 224)
        import torchvision.models as models

        if arch not in ARCHS:
            raise ValueError(f"ResNet: unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
        if len(self.input_shape) != 3 or self.input_shape[0] not in (1, 3):
            raise ValueError(
                f"ResNet needs RGB or grayscale images: input_shape (3|1, H, W), got {self.input_shape}"
            )
        weights = check_weights_spec(weights, allowed=("none", "imagenet"))
        self.arch = arch
        self.weights = weights
        self.image_size = int(image_size) if image_size else None
        self.config.update(arch=arch, weights=weights, image_size=self.image_size)

        net = getattr(models, arch)(weights=None)
        if weights == "imagenet":
            state = download_imagenet_state_dict(arch)
            net.load_state_dict(state)
        # Keep torchvision's attribute names, so that state dicts are interchangeable with torchvision's.
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.out_features = ARCHS[arch][1]
        if weights not in ("none", "imagenet"):
            load_weights_file(self, weights, ignore_prefixes=("fc.",))

    @property
    def in_channels(self) -> int:
        return 3

    def weights_id(self) -> str:
        if self.weights == "imagenet":
            return f"imagenet:{imagenet_weights(self.arch).url}"
        return super().weights_id()

    def finish(self, h: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(h), 1)

    def stages(self) -> list[tuple[str, nn.Module]]:
        stem = nn.Sequential(self.conv1, self.bn1, self.relu, self.maxpool)
        return [
            ("stem", stem),
            ("layer1", self.layer1),
            ("layer2", self.layer2),
            ("layer3", self.layer3),
            ("layer4", self.layer4),
        ]


__all__ = ["ARCHS", "ResNet", "WeightsError", "download_imagenet_state_dict", "imagenet_cache_file"]
