"""Samples → tensors for a backbone: a ``torch.utils.data.Dataset`` over an array or over image files.

Three kinds of ``X`` (see :class:`~tlrun.data.base.Domain`):

- feature rows (``image_shape`` is ``None``): float32 rows, as they are;
- pixel rows (``image_shape = (C, H, W)``): float32 rows, which the backbone views as images. When the backbone
  has an ``image_size`` (the ImageNet ResNets), each row is instead reshaped, grayscale repeated to the
  backbone's channels, resized to ``image_size`` (bilinear) and normalised with the backbone's
  ``normalization``; pixel values are expected in ``[0, 1]``;
- image file paths: opened as RGB (or grayscale for a 1-channel backbone), resized so that the shorter side is
  ``image_size / crop_fraction`` and center-cropped to ``image_size`` (224 from 256 for the ResNets, the usual
  ImageNet evaluation transform), scaled to ``[0, 1]`` and normalised.

Training-time augmentation (``augment``, one of :data:`~tlrun.data.base.AUGMENTATIONS`), drawn anew at every
access from torch's random generator (so reproducible under ``torch.manual_seed``, and seeded per worker by the
DataLoader):

- ``none``: the transforms above;
- ``crop_flip`` (the usual Office-31 / Office-Home training transform): image files get
  ``RandomResizedCrop(image_size)`` (scale 0.08–1, aspect 3/4–4/3) and a horizontal flip with probability 1/2
  instead of the resize and center crop; pixel rows ``(C, H, W)`` are zero-padded by ``⌊H/8⌋`` and ``⌊W/8⌋``
  pixels (at least 1), randomly cropped back to ``H × W``, and flipped with probability 1/2;
- ``affine`` (for digits): a random affine map, rotation uniform in ±10°, translation up to ±10 % of each side,
  scale uniform in [0.9, 1.1], bilinear, zero fill, no flip; after the center crop for image files, on the
  ``(C, H, W)`` view of pixel rows.

Pixel rows are augmented at their own size, then returned as the non-augmented path returns them (a flat row, or
resized and normalised for a backbone with an ``image_size``). Feature rows cannot be augmented.

:func:`loader_options` chooses how a ``DataLoader`` reads the samples: worker processes for image files only, pinned
memory for a CUDA device.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from tlrun.data.base import AUGMENTATIONS
from tlrun.data.images import open_image

#: Bump when the transforms below change: part of the feature-cache key.
INPUTS_VERSION = 1
#: The most DataLoader worker processes ``num_workers=auto`` starts (one per CPU thread of the run but one).
AUTO_WORKERS_MAX = 8


def is_paths(X: Any) -> bool:
    """True when ``X`` is a sequence of image file paths rather than an array."""
    return not isinstance(X, (np.ndarray, torch.Tensor))


def sample_shape(X: np.ndarray | Sequence[str], image_shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """The ``input_shape`` a backbone is built with for samples ``X``: ``image_shape`` for pixel rows, ``(d,)``
    for feature rows, ``None`` for image files (the backbone then takes ``(3, image_size, image_size)``)."""
    if is_paths(X):
        return None
    if image_shape is not None:
        return tuple(int(s) for s in image_shape)
    return (int(np.asarray(X).shape[1]),)


def run_cores() -> int:
    """The CPU threads this run computes with: torch's (which the ``threads`` setting and, under DDP, Lightning's
    share per process set), at most the cores the process may run on."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(torch.get_num_threads(), usable)


def loader_options(
    num_workers: int | str, X: Any, device: str | torch.device, cores: int | None = None
) -> dict[str, Any]:
    """The ``DataLoader`` settings for samples ``X`` read by a model on ``device``:

    - ``num_workers``: as given when a number; ``auto``: 0 for arrays (in memory already: workers would only add
      copies between processes), and for image files (decoded and augmented at every access) one worker per CPU
      thread of the run but one (``cores``, default :func:`run_cores`), at most :data:`AUTO_WORKERS_MAX`;
    - ``persistent_workers``: whenever there are workers (kept from one epoch to the next, not started again);
    - ``pin_memory``: on a CUDA device (page-locked batches copy to the GPU while it computes).
    """
    if num_workers == "auto":
        cores = run_cores() if cores is None else cores
        num_workers = min(AUTO_WORKERS_MAX, max(0, cores - 1)) if is_paths(X) else 0
    workers = int(num_workers)
    return {"num_workers": workers, "persistent_workers": workers > 0, "pin_memory": torch.device(device).type == "cuda"}


def _file_size(backbone: Any) -> int:
    size = getattr(backbone, "image_size", None)
    if size:
        return int(size)
    shape = getattr(backbone, "input_shape", ())
    if len(shape) == 3:
        return int(shape[1])
    raise ValueError(
        f"{type(backbone).__name__} takes feature vectors (input_shape {shape}); image files need an image "
        "backbone such as resnet50 or lenet"
    )


def check_augment(augment: str) -> None:
    """Raise ``ValueError`` listing the policies when ``augment`` is not one of :data:`AUGMENTATIONS`."""
    if augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {augment!r}; choose one of: {', '.join(AUGMENTATIONS)}")


def _random_affine() -> Any:
    """The ``affine`` policy's transform (PIL images and ``(C, H, W)`` tensors alike)."""
    from torchvision import transforms

    return transforms.RandomAffine(
        degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1), interpolation=transforms.InterpolationMode.BILINEAR
    )


def pixel_augmentation(augment: str, image_shape: tuple[int, ...]) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The random transform of a ``(C, H, W)`` pixel tensor for policy ``augment`` (``None`` for ``none``)."""
    from torchvision import transforms

    check_augment(augment)
    _, height, width = image_shape
    if augment == "crop_flip":
        padding = (max(1, width // 8), max(1, height // 8))
        return transforms.Compose(
            [transforms.RandomCrop((height, width), padding=padding), transforms.RandomHorizontalFlip()]
        )
    if augment == "affine":
        return _random_affine()
    return None


def file_steps(augment: str, image_size: int, crop_fraction: float) -> list[Any]:
    """The geometric transforms of an image file (a PIL image) for policy ``augment``, before ``ToTensor``."""
    from torchvision import transforms

    check_augment(augment)
    if augment == "crop_flip":
        return [transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip()]
    steps = [transforms.Resize(int(round(image_size / crop_fraction))), transforms.CenterCrop(image_size)]
    if augment == "affine":
        steps.append(_random_affine())
    return steps


def describe(backbone: Any, X: Any, image_shape: tuple[int, ...] | None) -> dict[str, Any]:
    """What the input pipeline does to ``X`` for ``backbone``: part of the feature-cache key."""
    norm = getattr(backbone, "normalization", None)
    info: dict[str, Any] = {"version": INPUTS_VERSION, "image_shape": list(image_shape) if image_shape else None}
    if is_paths(X):
        info.update(
            kind="files",
            image_size=_file_size(backbone),
            crop_fraction=getattr(backbone, "crop_fraction", 1.0),
            channels=getattr(backbone, "in_channels", 3),
            normalization=[list(v) for v in norm] if norm else None,
        )
    elif image_shape is not None and getattr(backbone, "image_size", None):
        info.update(
            kind="pixels_resized",
            image_size=int(backbone.image_size),
            channels=backbone.in_channels,
            normalization=[list(v) for v in norm] if norm else None,
        )
    else:
        info.update(kind="rows")
    return info


class ArrayInputs(Dataset):
    """Rows of an array (features, or flattened images for the backbone to view), with optional labels.

    With ``resize_to`` set, each row is turned into a ``(channels, resize_to, resize_to)`` image here instead;
    ``augment`` applies to the ``image_shape`` view of each row (see the module docstring).
    """

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray | None = None,
        *,
        image_shape: tuple[int, ...] | None = None,
        resize_to: int | None = None,
        channels: int = 3,
        normalization: tuple[Sequence[float], Sequence[float]] | None = None,
        augment: str = "none",
    ) -> None:
        check_augment(augment)
        if augment != "none" and not image_shape:
            raise ValueError(
                f"augmentation {augment!r} needs images, but these samples are feature vectors (no image_shape); "
                "use augment='none', or give the image shape of the rows"
            )
        self.X = torch.as_tensor(np.ascontiguousarray(X), dtype=torch.float32)
        if self.X.dim() != 2:
            raise ValueError(f"expected an (n, d) array of samples, got shape {tuple(self.X.shape)}")
        self.y = None if y is None else torch.as_tensor(np.asarray(y), dtype=torch.int64)
        if self.y is not None and len(self.y) != len(self.X):
            raise ValueError(f"{len(self.X)} samples but {len(self.y)} labels")
        self.image_shape = tuple(image_shape) if image_shape else None
        self.resize_to = resize_to if (resize_to and self.image_shape) else None
        self.channels = channels
        self.augmentation = pixel_augmentation(augment, self.image_shape) if self.image_shape else None
        if normalization is not None:
            self.mean = torch.tensor(normalization[0], dtype=torch.float32).view(-1, 1, 1)
            self.std = torch.tensor(normalization[1], dtype=torch.float32).view(-1, 1, 1)
        else:
            self.mean = self.std = None

    def __len__(self) -> int:
        return len(self.X)

    def _image(self, row: torch.Tensor) -> torch.Tensor:
        image = row.reshape(self.image_shape)
        if image.shape[0] == 1 and self.channels > 1:
            image = image.expand(self.channels, -1, -1)
        if tuple(image.shape[1:]) != (self.resize_to, self.resize_to):
            image = torch.nn.functional.interpolate(
                image.unsqueeze(0), size=(self.resize_to, self.resize_to), mode="bilinear",
                align_corners=False, antialias=True,
            ).squeeze(0)
        if self.mean is not None:
            image = (image - self.mean) / self.std
        return image

    def __getitem__(self, index: int):
        x = self.X[index]
        if self.augmentation is not None:
            x = self.augmentation(x.view(self.image_shape))
            if not self.resize_to:
                x = x.reshape(-1)
        if self.resize_to:
            x = self._image(x)
        return x if self.y is None else (x, self.y[index])


def _is_image(item: Any) -> bool:
    """A ``PIL.Image`` (images given in memory, e.g. to a logged model, go through the files' transforms)."""
    return hasattr(item, "convert") and hasattr(item, "size")


class ImageFiles(Dataset):
    """Image files (or ``PIL`` images) with optional labels, transformed for a backbone (see the module docstring)."""

    def __init__(
        self,
        paths: Sequence[str],
        y: np.ndarray | None = None,
        *,
        image_size: int,
        channels: int = 3,
        crop_fraction: float = 1.0,
        normalization: tuple[Sequence[float], Sequence[float]] | None = None,
        augment: str = "none",
    ) -> None:
        from torchvision import transforms

        self.paths = tuple(p if _is_image(p) else str(p) for p in paths)  # files, or images already in memory
        self.y = None if y is None else torch.as_tensor(np.asarray(y), dtype=torch.int64)
        if self.y is not None and len(self.y) != len(self.paths):
            raise ValueError(f"{len(self.paths)} images but {len(self.y)} labels")
        self.channels = channels
        steps = [*file_steps(augment, image_size, crop_fraction), transforms.ToTensor()]
        if normalization is not None:
            steps.append(transforms.Normalize(list(normalization[0]), list(normalization[1])))
        self.transform = transforms.Compose(steps)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        item = self.paths[index]
        image = item.convert("RGB") if _is_image(item) else open_image(item)
        if self.channels == 1:
            image = image.convert("L")
        x = self.transform(image)
        return x if self.y is None else (x, self.y[index])


class PerDomainBatches(Sampler[list[int]]):
    """Training batches of ``per_domain`` samples of every domain, ``N × per_domain`` indices each (the domains in
    index order), as the multi-source papers draw a batch from each source (fewer where a domain has fewer samples
    per process: then that many). Each domain's samples are shuffled and
    drawn without replacement; an epoch ends when the domain with the most full batches has given each once, the
    others reshuffled and cycled meanwhile. Every epoch draws new orders from ``seed`` and the epoch's number. Under
    DDP, process ``rank`` of ``world_size`` draws the ``rank``-th of every ``world_size`` positions of each domain's
    order (the processes see disjoint samples)."""

    def __init__(self, domains: np.ndarray, per_domain: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        domains = np.asarray(domains)
        self.groups = [np.flatnonzero(domains == domain) for domain in np.unique(domains)]
        smallest = min(len(group) for group in self.groups) // world_size
        if smallest < 1:
            raise ValueError(f"per-source batches: a source domain has fewer training samples than the {world_size} "
                             "processes")
        self.per_domain = min(int(per_domain), smallest)
        self.seed, self.rank, self.world_size = int(seed), rank, world_size
        self.epoch = 0

    def __len__(self) -> int:
        return max(len(group) // self.world_size // self.per_domain for group in self.groups)

    def __iter__(self):
        generator = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        needed = len(self) * self.per_domain
        orders = []
        for group in self.groups:
            mine = len(group) // self.world_size
            rounds = -(-needed // mine)  # ceil: the smaller domains cycle, reshuffled each round
            orders.append(np.concatenate([group[generator.permutation(len(group))][self.rank::self.world_size][:mine]
                                          for _ in range(rounds)])[:needed])
        for step in range(len(self)):
            window = slice(step * self.per_domain, (step + 1) * self.per_domain)
            yield [int(index) for order in orders for index in order[window]]


class WithDomains(Dataset):
    """The ``(x, y)`` items of ``labeled`` with each sample's domain index appended, ``(x, y, d)``: the batches of
    pooled source domains for the methods that read them (multi-source DA, domain generalisation)."""

    def __init__(self, labeled: Dataset, domains: np.ndarray) -> None:
        self.labeled = labeled
        self.domains = torch.as_tensor(np.asarray(domains), dtype=torch.int64)
        if len(self.domains) != len(labeled):
            raise ValueError(f"{len(labeled)} samples but {len(self.domains)} domain indices")

    def __len__(self) -> int:
        return len(self.labeled)

    def __getitem__(self, index: int):
        return (*self.labeled[index], self.domains[index])


def make_dataset(
    X: np.ndarray | Sequence[str],
    y: np.ndarray | None = None,
    *,
    backbone: Any,
    image_shape: tuple[int, ...] | None = None,
    augment: str = "none",
) -> Dataset:
    """The dataset that feeds ``X`` (and labels ``y``, when given) to ``backbone``, augmented by policy ``augment``.

    Items are ``x`` tensors, or ``(x, y)`` pairs when labels are given. Raises ``ValueError`` for an unknown
    policy, or for a policy other than ``none`` on feature rows.
    """
    norm = getattr(backbone, "normalization", None)
    channels = int(getattr(backbone, "in_channels", 3))
    if is_paths(X):
        return ImageFiles(
            X, y, image_size=_file_size(backbone), channels=channels,
            crop_fraction=float(getattr(backbone, "crop_fraction", 1.0)), normalization=norm, augment=augment,
        )
    resize_to = getattr(backbone, "image_size", None) if image_shape is not None else None
    return ArrayInputs(
        np.asarray(X), y, image_shape=image_shape, resize_to=resize_to, channels=channels, normalization=norm,
        augment=augment,
    )
