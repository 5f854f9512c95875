"""MNIST, USPS and SVHN as the domains of one 10-class digit dataset, read by torchvision's dataset classes.

All three live under one ``root``, where ``torchvision.datasets`` looks for them (files of ``split: train`` /
``split: test``):

- ``mnist`` (28×28 gray, 60,000 / 10,000): ``MNIST/raw/train-images-idx3-ubyte``, ``train-labels-idx1-ubyte`` /
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (torchvision wants all four present);
- ``usps`` (16×16 gray, 7,291 / 2,007): ``usps.bz2`` / ``usps.t.bz2``, libsvm text, pixels in [-1, 1], labels
  1..10 for digits 0..9;
- ``svhn`` (32×32 RGB, 73,257 / 26,032): ``train_32x32.mat`` / ``test_32x32.mat``, ``X`` (32, 32, 3, N) and
  ``y`` (N, 1), label 10 for digit 0; torchvision checks their md5.

Every domain is converted to one ``image_shape`` ``(C, H, W)`` so that one network reads them all (see
:func:`to_image_shape`); ``X`` holds float32 rows ``(n, C·H·W)`` with pixels in [0, 1], and class ``k`` is the
digit ``k``.

Imports numpy only at module level: :meth:`DigitDomains.check` finds missing files without torch (unless it has to
download them); :meth:`DigitDomains.load` imports torchvision.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tlrun.data import preprocess as _preprocess
from tlrun.data.base import (
    DataError, Domain, TransferDataset, caught, check_domains, image_shape_option, sha256_file,
)
from tlrun.data.digits import DIGIT_CLASSES

SPLITS = ("train", "test")
#: Seed of the stratified subsample drawn when ``max_per_domain`` is set (fixed: a domain is the same subset in
#: every run, whatever the run's seed).
SUBSAMPLE_SEED = 0
#: Images converted per chunk (bounds the float32 copy of SVHN in memory).
CHUNK = 4096

_MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_USPS_URL = "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/"
_SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"


@dataclass(frozen=True)
class DigitRelease:
    """Where torchvision's class for one domain reads its files, and where it downloads them from.

    Attributes:
        files: split → the files read, relative to ``root``.
        urls: split → the addresses torchvision downloads those files from.
        how: what to do with the downloaded files by hand.
        needs_all_splits: torchvision refuses to load one split unless the files of every split are present.
    """

    files: dict[str, tuple[str, ...]]
    urls: dict[str, tuple[str, ...]]
    how: str
    needs_all_splits: bool = False

    def _needed(self, split: str) -> tuple[str, ...]:
        return tuple(self.files) if self.needs_all_splits else (split,)

    def required(self, split: str) -> tuple[str, ...]:
        """The files that must be present to load ``split``."""
        return tuple(name for needed in self._needed(split) for name in self.files[needed])

    def required_urls(self, split: str) -> tuple[str, ...]:
        """The addresses of :meth:`required`'s files."""
        return tuple(url for needed in self._needed(split) for url in self.urls[needed])


def _mnist_files(prefix: str) -> tuple[str, ...]:
    return (f"MNIST/raw/{prefix}-images-idx3-ubyte", f"MNIST/raw/{prefix}-labels-idx1-ubyte")


def _mnist_urls(prefix: str) -> tuple[str, ...]:
    return tuple(f"{_MNIST_MIRROR}{Path(name).name}.gz" for name in _mnist_files(prefix))


#: The releases torchvision 0.29 reads (``tests/test_data_torchvision_digits.py`` checks them against it).
RELEASES: dict[str, DigitRelease] = {
    "mnist": DigitRelease(
        files={"train": _mnist_files("train"), "test": _mnist_files("t10k")},
        urls={"train": _mnist_urls("train"), "test": _mnist_urls("t10k")},
        how="gunzip them into <root>/MNIST/raw",
        needs_all_splits=True,
    ),
    "usps": DigitRelease(
        files={"train": ("usps.bz2",), "test": ("usps.t.bz2",)},
        urls={"train": (f"{_USPS_URL}usps.bz2",), "test": (f"{_USPS_URL}usps.t.bz2",)},
        how="put the .bz2 files as they are directly in <root>",
    ),
    "svhn": DigitRelease(
        files={"train": ("train_32x32.mat",), "test": ("test_32x32.mat",)},
        urls={"train": (f"{_SVHN_URL}train_32x32.mat",), "test": (f"{_SVHN_URL}test_32x32.mat",)},
        how="put the .mat files directly in <root> (torchvision checks their md5)",
    ),
}


def read_with_torchvision(domain: str, root: Path, split: str, download: bool) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images ``(n, c, h, w)`` and int64 labels (digits 0..9) of one domain, read by torchvision."""
    from torchvision import datasets

    train = split == "train"
    if domain == "mnist":
        mnist = datasets.MNIST(str(root), train=train, download=download)
        return mnist.data.numpy()[:, None], mnist.targets.numpy().astype(np.int64)
    if domain == "usps":
        usps = datasets.USPS(str(root), train=train, download=download)
        return np.asarray(usps.data)[:, None], np.asarray(usps.targets, dtype=np.int64)
    svhn = datasets.SVHN(str(root), split=split, download=download)  # maps label 10 to digit 0
    return np.asarray(svhn.data), np.asarray(svhn.labels, dtype=np.int64)


def to_image_shape(images: np.ndarray, image_shape: tuple[int, int, int]) -> np.ndarray:
    """uint8 images ``(n, c, h, w)`` → float32 rows ``(n, C·H·W)`` in [0, 1] of shape ``image_shape``.

    Pixels are scaled by 1/255; RGB becomes gray (``0.2989 R + 0.587 G + 0.114 B``) when ``C = 1``, gray is
    repeated when ``C = 3``; then each image is resized to ``H × W`` (bilinear, antialiased).
    """
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    channels, height, width = image_shape
    rows = np.empty((len(images), channels * height * width), dtype=np.float32)
    for start in range(0, len(images), CHUNK):
        x = torch.from_numpy(np.ascontiguousarray(images[start : start + CHUNK])).float() / 255.0
        if x.shape[1] == 3 and channels == 1:
            x = F.rgb_to_grayscale(x)
        elif x.shape[1] == 1 and channels == 3:
            x = x.expand(-1, 3, -1, -1)
        if tuple(x.shape[-2:]) != (height, width):
            x = F.resize(x, [height, width], interpolation=InterpolationMode.BILINEAR, antialias=True)
        rows[start : start + len(x)] = x.clamp(0.0, 1.0).reshape(len(x), -1).numpy()
    return rows


def stratified_subsample(y: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of ``size`` samples drawn without replacement, each class in proportion to its count
    (all indices when ``size >= len(y)``)."""
    if size >= len(y):
        return np.arange(len(y))
    from sklearn.utils import resample

    return np.sort(resample(np.arange(len(y)), n_samples=size, replace=False, stratify=y, random_state=seed))


class DigitDomains(TransferDataset):
    """MNIST, USPS and SVHN (10 digit classes) through ``torchvision.datasets``; see the module docstring.

    Args:
        root: the folder holding (or to hold) the files of every domain, in torchvision's layout.
        source, target: ``mnist``, ``usps`` or ``svhn``.
        download: when files are missing, let torchvision download them into ``root`` (needs network).
        split: ``train`` or ``test``: which official split is the domain's data.
        image_shape: ``(C, H, W)``, ``C`` 1 or 3, that every domain is converted to.
        max_per_domain: ``None``, or keep this many samples of each domain: a class-stratified subsample drawn
            with :data:`SUBSAMPLE_SEED` (for quick runs).
        preprocess: per-domain preprocessing of the rows (``none`` keeps pixels in [0, 1]); result float32.
        source_val_fraction: source fraction held out for ``source_acc``.
        augment: training-time augmentation policy (see :data:`~tlrun.data.base.AUGMENTATIONS`).
    """

    name = "mnist_usps_svhn"
    domains = tuple(RELEASES)

    def __init__(
        self,
        root: str | None = None,
        source: str = "mnist",
        target: str = "usps",
        preprocess: str = "none",
        source_val_fraction: float = 0.0,
        augment: str = "none",
        download: bool = False,
        split: str = "train",
        image_shape: list[int] | tuple[int, ...] = (1, 28, 28),
        max_per_domain: int | None = None,
    ) -> None:
        super().__init__(root, source, target, preprocess, source_val_fraction, augment)
        self.download = bool(download)
        self.split = split
        self.image_shape = image_shape
        self.max_per_domain = max_per_domain

    # -- configuration

    def _root(self) -> Path:
        if self.root is None:
            raise DataError(
                "dataset.root is not set: give the folder that holds (or, with dataset.download=true, will hold) "
                "the MNIST, USPS and SVHN files, e.g. dataset.root=~/data/digits"
            )
        return self.root

    def _shape(self) -> tuple[int, int, int]:
        shape = image_shape_option(self.image_shape)
        if shape[0] not in (1, 3):
            raise DataError(f"dataset.image_shape must have 1 or 3 channels, got {list(shape)}")
        return shape

    def _check_options(self) -> None:
        if self.split not in SPLITS:
            raise DataError(f"unknown dataset.split {self.split!r}; choose one of: {', '.join(SPLITS)}")
        self._shape()
        size = self.max_per_domain
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < len(DIGIT_CLASSES)):
            raise DataError(
                f"dataset.max_per_domain must be null or an integer >= {len(DIGIT_CLASSES)} (one per class), "
                f"got {size!r}"
            )

    def _missing(self, domain: str) -> list[Path]:
        root = self._root()
        return [root / name for name in RELEASES[domain].required(self.split) if not (root / name).is_file()]

    def _where_to_get(self, domain: str) -> str:
        release = RELEASES[domain]
        return (
            f"download {', '.join(release.required_urls(self.split))} and "
            f"{release.how.replace('<root>', str(self._root()))}"
        )

    def _missing_error(self, domain: str, missing: list[Path]) -> DataError:
        return DataError(
            f"{domain} ({self.split} split) not found in {self._root()}: missing {', '.join(map(str, missing))}. "
            f"Set dataset.download=true to let torchvision download it, or {self._where_to_get(domain)}"
        )

    def problems(self) -> list[str]:
        found = super().problems() + caught(self._check_options, self._root)
        if self.root is not None and self.split in SPLITS:
            for domain in self.wanted_domains():
                if domain in self.domains:
                    found += caught(lambda: self._check_files(domain))
        return found

    def _check_files(self, domain: str) -> None:
        """:class:`DataError` when ``domain``'s files are missing (after downloading them, with ``download``)."""
        missing = self._missing(domain)
        if missing and self.download:
            self._read(domain)
            missing = self._missing(domain)
        if missing:
            raise self._missing_error(domain, missing)

    # -- loading

    def _read(self, domain: str) -> tuple[np.ndarray, np.ndarray]:
        """:func:`read_with_torchvision`, its failures (a download, an unreadable file) raised as :class:`DataError`."""
        missing = self._missing(domain)
        if missing and not self.download:
            raise self._missing_error(domain, missing)
        try:
            return read_with_torchvision(domain, self._root(), self.split, self.download)
        except Exception as error:  # torchvision and its readers raise RuntimeError, URLError, AssertionError...
            cause = f"{type(error).__name__}: {' '.join(str(error).split())}"
            files = ", ".join(str(self._root() / name) for name in RELEASES[domain].required(self.split))
            if missing:
                raise DataError(
                    f"downloading {domain} failed ({cause}); {self._where_to_get(domain)}, "
                    f"so that these files exist: {files}"
                ) from None
            raise DataError(
                f"torchvision cannot read {domain} from {files} ({cause}): a file is "
                f"corrupt or not in the official format; delete it and download it again "
                f"({self._where_to_get(domain)})"
            ) from None

    def load(self, domain: str) -> Domain:
        check_domains(self.name, self.domains, domain)
        self._check_options()
        images, y = self._read(domain)
        if self.max_per_domain is not None:
            keep = stratified_subsample(y, self.max_per_domain, SUBSAMPLE_SEED)
            images, y = images[keep], y[keep]
        shape = self._shape()
        X = _preprocess.apply(self.preprocess, to_image_shape(images, shape))
        root = self._root()
        return Domain(
            name=domain,
            X=np.ascontiguousarray(X, dtype=np.float32),
            y=y,
            classes=DIGIT_CLASSES,
            image_shape=shape,
            checksums={Path(name).name: sha256_file(root / name) for name in RELEASES[domain].files[self.split]},
        )
