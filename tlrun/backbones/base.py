"""What every backbone shares: its input shape, its feature size, named stages, and loading a weights file.

A backbone maps a batch of samples to an ``(n, out_features)`` feature matrix. It is built by Hydra from
``conf/backbone/<name>.yaml`` with the runner adding ``input_shape`` (the per-sample shape: ``(d,)`` for
feature vectors, ``(C, H, W)`` for pixel rows, ``None`` for image files: then ``(3, image_size, image_size)``,
what the input pipeline makes of the files). Image backbones accept either image tensors ``(n, C, H, W)`` or
flat rows ``(n, C*H*W)``, which they view with ``input_shape``.

Attributes that the input pipeline (:mod:`tlrun.backbones.inputs`) and the feature cache
(:mod:`tlrun.backbones.extract`) read:

- ``image_size``: the side images are resized (and center-cropped) to before they enter the network, or
  ``None`` to keep their own size;
- ``crop_fraction``: image files are resized to ``image_size / crop_fraction`` before the center crop;
- ``in_channels``: the channels the network consumes (grayscale is repeated to 3 for ImageNet networks);
- ``normalization``: ``(mean, std)`` per channel applied to images in ``[0, 1]``, or ``None``;
- ``config``: the constructor arguments (part of the feature-cache key);
- :meth:`weights_id`: what the weights are (part of the feature-cache key).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tlrun.errors import TlrunError

#: Per-channel mean and std of ImageNet (RGB, values in [0, 1]), used by networks pretrained on it.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Prefixes stripped from the keys of a weights file when its keys do not match as they are: a whole deep
#: method's state (``backbone.``), ``nn.DataParallel`` (``module.``), and common wrappers.
KEY_PREFIXES = ("", "backbone.", "model.backbone.", "module.", "module.backbone.", "model.", "encoder.")


class WeightsError(TlrunError):
    """Backbone weights cannot be obtained or do not fit the network. The message says what to do."""


class Backbone(nn.Module):
    """Base class of the backbones: records the input shape and reshapes flat rows into images.

    Subclasses set ``out_features``, may set ``image_size`` / ``in_channels`` / ``normalization``, fill
    ``config`` with their constructor arguments and implement :meth:`stages` and ``forward``.
    """

    out_features: int
    image_size: int | None = None
    crop_fraction: float = 1.0
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    def __init__(self, input_shape: tuple[int, ...] | list[int] | None, image_size: int | None = None) -> None:
        super().__init__()
        if input_shape is None:
            # Image files: the input pipeline makes (3, image_size, image_size) tensors of them.
            if not image_size:
                raise ValueError(
                    f"{type(self).__name__}: no input_shape given (image files) and no image_size to resize them to; "
                    "set backbone.image_size, or use an image backbone (resnet18, resnet50, lenet)"
                )
            input_shape = (3, int(image_size), int(image_size))
        shape = tuple(int(size) for size in input_shape)
        if not shape or any(size <= 0 for size in shape):
            raise ValueError(f"{type(self).__name__}: input_shape must be positive sizes, got {tuple(input_shape)}")
        self.input_shape = shape
        self.config: dict[str, Any] = {"input_shape": list(shape)}
        #: sha256 of the weights file when the weights came from a path (set by :func:`load_weights_file`).
        self.weights_sha256: str | None = None

    # ----------------------------------------------------------------------------------------- inputs

    @property
    def in_features(self) -> int:
        """Size of one flattened sample."""
        return math.prod(self.input_shape)

    @property
    def in_channels(self) -> int:
        """Channels of the images the network consumes (the input's own channels unless overridden)."""
        return self.input_shape[0] if len(self.input_shape) == 3 else 1

    def as_images(self, x: torch.Tensor) -> torch.Tensor:
        """View ``x`` as ``(n, C, H, W)``: flat rows are reshaped with ``input_shape``; grayscale is repeated
        to ``in_channels`` channels when the network wants more."""
        if len(self.input_shape) != 3:
            raise ValueError(
                f"{type(self).__name__} needs images; input_shape is {self.input_shape}. Use a dataset of images "
                "(input_shape (C, H, W)) or a backbone for feature vectors (identity, mlp)."
            )
        if x.dim() == 2:
            if x.shape[1] != self.in_features:
                raise ValueError(
                    f"{type(self).__name__}: rows of {x.shape[1]} values cannot be viewed as images of shape "
                    f"{self.input_shape}"
                )
            x = x.reshape(x.shape[0], *self.input_shape)
        elif x.dim() == 3:  # a batch of single-channel images without the channel axis
            x = x.unsqueeze(1)
        if x.dim() != 4:
            raise ValueError(f"{type(self).__name__}: expected (n, C, H, W) images or flat rows, got {tuple(x.shape)}")
        if x.shape[1] == 1 and self.in_channels > 1:
            x = x.expand(-1, self.in_channels, -1, -1)
        return x

    def as_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Flatten every sample of ``x`` to one row."""
        return x.reshape(x.shape[0], -1)

    # ------------------------------------------------------------------------------------- structure

    def stages(self) -> list[tuple[str, nn.Module]]:
        """The network's parts from input to output, as ``(name, module)``: the units that layer-wise
        fine-tuning freezes, unfreezes or gives their own learning rate, and that multi-task and progressive
        networks split or copy. They hold every parameter of the network; empty for a network without any."""
        raise NotImplementedError

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The input batch as the first stage takes it (images ``(n, C, H, W)`` by default)."""
        return self.as_images(x)

    def finish(self, h: torch.Tensor) -> torch.Tensor:
        """The last stage's output as the ``(n, out_features)`` features (parameter-free: pooling, flattening)."""
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``finish(stage_S(... stage_1(prepare(x))))``."""
        h = self.prepare(x)
        for _, stage in self.stages():
            h = stage(h)
        return self.finish(h)

    def weights_id(self) -> str:
        """What the weights are, for cache keys: ``none`` (random), ``imagenet:<url>``, ``sha256:<hex>``."""
        if self.weights_sha256:
            return f"sha256:{self.weights_sha256}"
        return "none"

    def extra_repr(self) -> str:
        return f"input_shape={self.input_shape}, out_features={self.out_features}"


# ----------------------------------------------------------------------------------------- weights files


def read_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict held by ``path``: a plain state dict, or a checkpoint dict with a ``state_dict`` entry
    (Lightning checkpoints, most training scripts)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise WeightsError(
            f"weights file {file} does not exist; set backbone.weights to a state-dict file saved with "
            "torch.save(model.state_dict(), path), to 'imagenet' (ResNets) or to 'none'"
        )
    try:
        loaded = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure gets the same advice
        raise WeightsError(
            f"cannot read weights file {file}: {type(error).__name__}: {error}. It must be a tensor-only file "
            "written by torch.save(model.state_dict(), path) (or a checkpoint dict holding 'state_dict')."
        ) from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    elif isinstance(loaded, dict) and isinstance(loaded.get("model"), dict):
        loaded = loaded["model"]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise WeightsError(
            f"weights file {file} holds no state dict (a dict of tensors, or a dict with a 'state_dict' entry)"
        )
    return loaded


def match_state_dict(
    module: nn.Module,
    state: dict[str, torch.Tensor],
    *,
    source: str,
    ignore_prefixes: tuple[str, ...] = (),
) -> dict[str, torch.Tensor]:
    """Select from ``state`` exactly the tensors ``module`` needs, with matching names and shapes.

    Keys are tried as they are and then without one of :data:`KEY_PREFIXES`; keys starting with one of
    ``ignore_prefixes`` (after stripping, e.g. a classifier ``fc.`` the backbone removed) are dropped. Raises
    :class:`WeightsError` listing missing and unexpected keys, or the first mismatched shapes.
    """
    expected = module.state_dict()
    best: tuple[int, str, dict[str, torch.Tensor]] | None = None
    for prefix in KEY_PREFIXES:
        candidate = {
            key[len(prefix):]: value
            for key, value in state.items()
            if key.startswith(prefix) and not key[len(prefix):].startswith(ignore_prefixes or ("\0",))
        }
        overlap = len(expected.keys() & candidate.keys())
        if best is None or overlap > best[0]:
            best = (overlap, prefix, candidate)
        if candidate.keys() == expected.keys():
            break
    assert best is not None
    _, prefix, candidate = best
    missing = sorted(expected.keys() - candidate.keys())
    unexpected = sorted(candidate.keys() - expected.keys())
    if missing or unexpected:
        def listing(keys: list[str]) -> str:
            return ", ".join(keys[:6]) + (f", ... ({len(keys)} in all)" if len(keys) > 6 else "") if keys else "none"

        raise WeightsError(
            f"weights {source} do not fit {type(module).__name__} {getattr(module, 'config', '')}: "
            f"missing keys: {listing(missing)}; unexpected keys: {listing(unexpected)}"
            + (f" (after removing the prefix {prefix!r})" if prefix else "")
            + ". Were they saved from a backbone of the same kind and configuration?"
        )
    wrong = [
        f"{key}: file {tuple(candidate[key].shape)} vs network {tuple(value.shape)}"
        for key, value in expected.items()
        if candidate[key].shape != value.shape
    ]
    if wrong:
        raise WeightsError(
            f"weights {source} do not fit {type(module).__name__} {getattr(module, 'config', '')}: mismatched shapes: "
            + "; ".join(wrong[:5])
            + (f"; ... ({len(wrong)} in all)" if len(wrong) > 5 else "")
            + ". Check the backbone's configuration (architecture, sizes, input_shape) against the file's."
        )
    return candidate


def load_weights_file(backbone: Backbone, path: str | Path, ignore_prefixes: tuple[str, ...] = ()) -> None:
    """Load a state-dict file into ``backbone`` (see :func:`match_state_dict`) and record its sha256."""
    from tlrun.data.base import sha256_file

    file = Path(path).expanduser()
    state = match_state_dict(backbone, read_weights_file(file), source=f"file {file}", ignore_prefixes=ignore_prefixes)
    backbone.load_state_dict(state, strict=True)
    backbone.weights_sha256 = sha256_file(file)


def check_weights_spec(weights: str | None, allowed: tuple[str, ...] = ("none",)) -> str:
    """Normalise a ``weights`` config value: ``none`` (also YAML null), one of ``allowed``, or a path."""
    if weights is None:
        return "none"
    value = str(weights)
    if value.lower() in allowed:
        return value.lower()
    return value
