"""Whether loaded samples fit the backbone that will read them, checked before a run opens (numpy only, no torch).

The rules mirror what the networks of :mod:`tlrun.backbones` accept (the package itself imports torch):

- ``LeNet`` reads images (pixel rows with an ``image_shape``, or image files), of any number of channels; its
  first 2×2 max-pooling needs a side of at least 2 pixels, and its second, present when the input shape's
  sides are all 8 or more, at least 4 (the sides the network sees: ``image_size`` when set, else the input's);
- ``ResNet`` reads images of 1 (repeated to 3) or 3 channels, at any size;
- ``Identity`` and ``MLP`` read any samples as flat rows.

A backbone of another ``_target_`` (one of the user's) is not checked.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from tlrun.data.base import DataError, Domain

LENET = "tlrun.backbones.small.LeNet"
RESNET = "tlrun.backbones.resnet.ResNet"


def square_shape_hint(size: int) -> str:
    """``, e.g. [1, 8, 8]`` when ``size`` pixels make square grey (or else RGB) images, else nothing."""
    for channels in (1, 3):
        side = math.isqrt(size // channels)
        if channels * side * side == size:
            return f", e.g. [{channels}, {side}, {side}]"
    return ""


def check_backbone_input(backbone_cfg: Mapping[str, Any], domain: Domain) -> None:
    """Raise :class:`DataError` when ``domain``'s samples cannot be read by the backbone ``backbone_cfg``
    describes (``cfg.backbone`` with ``backbone=auto`` resolved); the message names the samples' shape, the
    backbone, and what would fit."""
    target = str(backbone_cfg.get("_target_", ""))
    if target not in (LENET, RESNET):
        return
    backbone = f"backbone={backbone_cfg.get('name', target)}"
    image_size = backbone_cfg.get("image_size")
    if domain.is_images:
        if not image_size:  # preflight asks for a backbone with an image_size
            return
        shape = (3, int(image_size), int(image_size))
        what = f"images resized to {image_size} x {image_size} (backbone.image_size)"
    elif domain.image_shape is None:
        width = domain.X.shape[1]
        raise DataError(
            f"{backbone} reads images, but domain {domain.describe()} holds feature vectors of {width} values (no "
            f"dataset.image_shape): set dataset.image_shape=[C, H, W] with C x H x W = {width}"
            f"{square_shape_hint(width)} if they are flattened images, or use backbone=mlp or backbone=identity"
        )
    else:
        shape = tuple(domain.image_shape)
        what = f"images of shape {list(shape)} (dataset.image_shape)"
        if image_size:
            what += f", resized to {image_size} x {image_size} (backbone.image_size)"
    if target == RESNET and shape[0] not in (1, 3):
        raise DataError(
            f"{backbone} reads grey (1 channel) or RGB (3 channels) images, but domain {domain.describe()} holds "
            f"{what}, with {shape[0]} channels; use backbone=lenet (any number of channels), or images of 1 or 3 channels"
        )
    if target == LENET:
        sides = (int(image_size),) * 2 if image_size else shape[1:]
        need = 2 if min(shape[1:]) < 8 else 4
        if min(sides) < need:
            raise DataError(
                f"{backbone} needs images of at least {need} x {need} pixels here (its max-pooling halves each "
                f"side {'once' if need == 2 else 'twice'}), but domain {domain.describe()} holds {what}; "
                + ("set backbone.image_size to 4 or more, or to null" if image_size else
                   "use larger images, or backbone=mlp or backbone=identity")
            )
