"""The embedded default dataset: scikit-learn's bundled 8×8 handwritten digits under synthetic domain shifts.

No download: the 1,797 images ship with scikit-learn (``sklearn.datasets.load_digits``). The images are split once,
by a fixed random draw stratified by class, into two disjoint halves: the *source* domain is built from the first
half and every *target* domain from the second, so a target never holds transformed copies of source images.
Each domain applies one deterministic transformation to its half; random transformations draw from a generator
seeded by the domain's name, independent of the run's seed, so a domain is the same array on every run.

=============  =====================================================================================
domain         transformation (pixels in [0, 1])
=============  =====================================================================================
``original``   none
``rotate``     rotation by an angle drawn per image uniformly in [25°, 35°] (counter-clockwise, bilinear)
``thick``      stroke thickening: grey dilation with a 2 × 2 window (the default target)
``thin``       stroke thinning: grey erosion with a 2 × 2 window
``blur``       Gaussian blur, sigma = 1 pixel
``noise``      additive Gaussian noise, sigma = 0.5, clipped to [0, 1]
``shift``      translation by one pixel down and one right (zero fill)
``shrink``     scaled by 0.75 about the centre (bilinear), zero padding
``invert``     contrast inversion, ``1 - x`` (an extreme shift that no linear alignment recovers)
=============  =====================================================================================

``X`` is float32 ``(n, 64)``, row ``i`` the flattened 8 × 8 image, with ``image_shape = (1, 8, 8)``.

Every scenario is served from the two halves: ``da`` and ``finetune`` (source half labeled, target half
unlabeled or partly labeled), ``selftaught`` and ``selftaught_clustering`` (the source half without labels), and
``zeroshot``: 4 unseen digits are held out, the seen digits of the source half train, and the target half,
under the *source's* shift (``dataset.target`` is not used: the unseen classes are the target), gives the seen and
unseen test sets. The classes are linked by an attribute table written for this project: each digit's glyph on a
5 × 3 grid (:data:`DIGIT_GLYPHS`, :data:`DIGIT_ATTRIBUTES`).

Which digits are unseen is fixed by a rule stated before any accuracy was looked at (:func:`unseen_splits`):
:data:`N_UNSEEN_SPLITS` = 5 splits of 4 digits drawn once by ``numpy.random.default_rng(2026)``, each draw
``sorted(rng.choice(10, size=4, replace=False))``, a draw equal to an earlier one or to :data:`TUNED_UNSEEN` drawn
again. ``dataset.unseen_split=k`` (default 0) picks split ``k`` (:data:`UNSEEN_SPLITS`); report a method as the
mean ± std over the 5 (``benchmarks/zeroshot_digits.py``), not on one split, since the choice of unseen digits moves
ESZSL's accuracy from 8 % to 69 %. An explicit ``dataset.unseen`` list overrides the rule. :data:`TUNED_UNSEEN`,
(0, 2, 6, 7), the default until issue 14, was chosen as ESZSL's best of the 210 possible splits, with the test
labels: it stays reachable only as ``dataset.unseen=[0,2,6,7]`` and its numbers are no default result.

Imports numpy only at module level (scikit-learn and scipy when loading).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from tlrun.data import preprocess as _preprocess
from tlrun.data.base import (
    DataError,
    Domain,
    TransferDataset,
    ZeroShotDomains,
    caught,
    check_domains,
    image_shape_option,
    sha256_file,
)

DIGIT_CLASSES = tuple(str(k) for k in range(10))
#: Each digit drawn as a person would write it on a 5 × 3 grid (rows top to bottom, ``#``: ink), the way pocket
#: calculators and pixel fonts draw digits. Written for this project without looking at the data set.
DIGIT_GLYPHS = {
    0: ("###", "#.#", "#.#", "#.#", "###"),
    1: (".#.", "##.", ".#.", ".#.", "###"),
    2: ("###", "..#", "###", "#..", "###"),
    3: ("###", "..#", "###", "..#", "###"),
    4: ("#.#", "#.#", "###", "..#", "..#"),
    5: ("###", "#..", "###", "..#", "###"),
    6: ("###", "#..", "###", "#.#", "###"),
    7: ("###", "..#", ".#.", ".#.", ".#."),
    8: ("###", "#.#", "###", "#.#", "###"),
    9: ("###", "#.#", "###", "..#", "###"),
}
#: The attributes: "ink in cell (row, column) of the glyph", 15 per digit.
ATTRIBUTE_NAMES = tuple(f"ink_r{row}c{column}" for row in range(5) for column in range(3))
#: The per-class attribute table of ``zeroshot`` (10 × 15, 0/1): row ``k`` is digit ``k``'s glyph, flattened.
DIGIT_ATTRIBUTES = np.array(
    [[1.0 if cell == "#" else 0.0 for line in DIGIT_GLYPHS[digit] for cell in line] for digit in range(10)]
)
#: The split held out until issue 14: ESZSL's best of the 210 ways to hold out 4 digits, found with the test labels
#: (69.1 % at seed 0, where the 210 average 38.6 %). Never a default; a draw of :func:`unseen_splits` equal to it is
#: redrawn. Reachable only as ``dataset.unseen=[0,2,6,7]``, and then not to be reported as a default result.
TUNED_UNSEEN = (0, 2, 6, 7)
#: Seed and size of the fixed draw of unseen-digit splits (:func:`unseen_splits`); chosen before looking at accuracy.
UNSEEN_SPLITS_SEED = 2026
N_UNSEEN_SPLITS = 5
N_UNSEEN = 4


def unseen_splits(seed: int = UNSEEN_SPLITS_SEED, count: int = N_UNSEEN_SPLITS, size: int = N_UNSEEN) -> tuple[tuple[int, ...], ...]:
    """The fixed splits of unseen digits, by a rule that reads neither images nor labels nor accuracies.

    ``rng = numpy.random.default_rng(seed)``; repeat ``sorted(rng.choice(10, size=size, replace=False))`` and keep
    the draw unless it equals an earlier one or :data:`TUNED_UNSEEN`, until ``count`` are kept. With the defaults:
    (0, 1, 5, 6), (2, 3, 5, 8), (1, 5, 6, 7), (2, 5, 6, 8), (0, 4, 5, 8).
    """
    rng = np.random.default_rng(seed)
    kept: list[tuple[int, ...]] = []
    while len(kept) < count:
        draw = tuple(sorted(int(digit) for digit in rng.choice(10, size=size, replace=False)))
        if draw not in kept and draw != TUNED_UNSEEN:
            kept.append(draw)
    return tuple(kept)


#: The :data:`N_UNSEEN_SPLITS` splits that ``dataset.unseen_split`` indexes (see :func:`unseen_splits`).
UNSEEN_SPLITS = unseen_splits()
#: The digits held out as unseen classes in ``zeroshot`` when neither ``dataset.unseen`` nor
#: ``dataset.unseen_split`` is set: split 0 of the seeded rule.
DEFAULT_UNSEEN = UNSEEN_SPLITS[0]
#: Seed of the draw that splits the images into the source half and the target half.
HALVES_SEED = 20240601
IMAGE_SHAPE = (1, 8, 8)


def _rotate(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from scipy import ndimage

    angles = rng.uniform(25.0, 35.0, size=len(images))
    return np.stack(
        [ndimage.rotate(image, angle, reshape=False, order=1, mode="constant", cval=0.0) for image, angle in zip(images, angles)]
    )


def _thick(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from scipy import ndimage

    return ndimage.grey_dilation(images, size=(1, 2, 2))


def _thin(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from scipy import ndimage

    return ndimage.grey_erosion(images, size=(1, 2, 2))


def _blur(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from scipy import ndimage

    return ndimage.gaussian_filter(images, sigma=(0.0, 1.0, 1.0))


def _noise(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return images + rng.normal(0.0, 0.5, size=images.shape)


def _shift(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros_like(images)
    out[:, 1:, 1:] = images[:, :-1, :-1]
    return out


def _shrink(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from scipy import ndimage

    # Output pixel p samples the input at centre + (p - centre) / 0.75.
    centre = (np.array(images.shape[1:]) - 1) / 2.0
    scale = 1.0 / 0.75
    offset = centre - scale * centre
    return np.stack(
        [ndimage.affine_transform(image, [scale, scale], offset=offset, order=1, mode="constant", cval=0.0) for image in images]
    )


def _invert(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return 1.0 - images


SHIFTS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "original": lambda images, rng: images,
    "rotate": _rotate,
    "thick": _thick,
    "thin": _thin,
    "blur": _blur,
    "noise": _noise,
    "shift": _shift,
    "shrink": _shrink,
    "invert": _invert,
}


def domain_seed(domain: str) -> int:
    """The fixed seed of a domain's random transformation (CRC-32 of its name)."""
    return zlib.crc32(f"tlrun-digits:{domain}".encode())


def halves(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (source, target) index halves of the images, stratified by class, from a fixed draw."""
    rng = np.random.default_rng(HALVES_SEED)
    first, second = [], []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        first.append(members[: len(members) // 2])
        second.append(members[len(members) // 2 :])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


def stratified_share(labels: np.ndarray, k: int, n: int) -> np.ndarray:
    """The positions of the ``k``-th of ``n`` disjoint shares of samples labeled ``labels``: every ``n``-th sample
    of each class from the ``k``-th on, in order."""
    return np.sort(np.concatenate([np.flatnonzero(labels == label)[k::n] for label in np.unique(labels)]))


def _digits_file() -> Path | None:
    """scikit-learn's bundled ``digits.csv.gz``, when it can be located (for the checksum tag)."""
    try:
        import sklearn.datasets

        path = Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"
        return path if path.is_file() else None
    except Exception:  # pragma: no cover - only the checksum tag is lost
        return None


class Digits(TransferDataset):
    """scikit-learn's 8×8 digits (10 classes) under reproducible synthetic shifts; the default dataset.

    The source domain is built from one half of the 1,797 images, every target domain from the other half (see
    :func:`halves`). Source and target may name the same shift (``source=original target=original`` is a no-shift
    control): they still hold different images.

    Args:
        root: unused (the data ship with scikit-learn); accepted so that configs stay uniform.
        source: the source shift (default ``original``).
        target: the target shift (default ``thick``); one of :data:`SHIFTS`.
        preprocess: ``none`` by default (pixels in [0, 1]); others are applied per domain, result kept float32.
        source_val_fraction: source fraction held out for ``source_acc`` (default 0.2).
        augment: training-time augmentation policy (see :data:`~tlrun.data.base.AUGMENTATIONS`).
        unseen: an explicit list of the digits held out as unseen classes in ``zeroshot`` (at least one, and at
            least two digits must stay seen); overrides ``unseen_split``. ``None`` (default): the rule's split.
        unseen_split: which of the :data:`N_UNSEEN_SPLITS` seeded splits (:data:`UNSEEN_SPLITS`) is unseen when
            ``unseen`` is not set, 0 to 4 (default 0: :data:`DEFAULT_UNSEEN`, digits 0, 1, 5, 6).
        image_shape: the rows' image shape, fixed at ``[1, 8, 8]``: the config states it so that ``backbone=auto``
            reads the rows as images (LeNet for a deep method); any other value is an error.
    """

    name = "digits"
    disjoint_roles = True  # source and target images are disjoint halves
    domains = tuple(SHIFTS)

    def __init__(
        self,
        root: str | None = None,
        source: str = "original",
        target: str = "thick",
        preprocess: str = "none",
        source_val_fraction: float = 0.2,
        augment: str = "none",
        unseen: int | tuple[int, ...] | list[int] | None = None,
        unseen_split: int = 0,
        image_shape: tuple[int, ...] | list[int] = IMAGE_SHAPE,
    ) -> None:
        super().__init__(root, source, target, preprocess, source_val_fraction, augment)
        self.explicit_unseen = unseen is not None
        self.unseen_split = unseen_split
        if unseen is None:
            valid_split = isinstance(unseen_split, int) and not isinstance(unseen_split, bool)
            unseen = UNSEEN_SPLITS[unseen_split] if valid_split and 0 <= unseen_split < len(UNSEEN_SPLITS) else ()
        self.unseen = (unseen,) if isinstance(unseen, int) else tuple(unseen)
        self.image_shape = image_shape

    @property
    def split_rule(self) -> str:
        """Where the unseen digits come from, for the run's ``unseen_split`` tag: ``<k> of 5 (seeded rule)``, or
        ``explicit`` (``explicit, tuned on test labels`` for :data:`TUNED_UNSEEN`)."""
        if not self.explicit_unseen:
            return f"{self.unseen_split} of {N_UNSEEN_SPLITS} (seeded rule, default_rng({UNSEEN_SPLITS_SEED}))"
        if tuple(sorted(self.unseen)) == TUNED_UNSEEN:
            return "explicit (0,2,6,7: ESZSL's best of 210, tuned on test labels)"
        return "explicit"

    def problems(self) -> list[str]:
        found = super().problems()
        if not self.explicit_unseen and not (
            isinstance(self.unseen_split, int) and not isinstance(self.unseen_split, bool)
            and 0 <= self.unseen_split < N_UNSEEN_SPLITS
        ):
            found.append(
                f"dataset.unseen_split must be an integer in 0..{N_UNSEEN_SPLITS - 1} (one of the {N_UNSEEN_SPLITS} "
                f"seeded splits of unseen digits), got {self.unseen_split!r}; or list the digits in dataset.unseen"
            )
            return found + caught(self._check_image_shape)
        valid = all(isinstance(digit, int) and 0 <= digit <= 9 for digit in self.unseen)
        if not valid or len(set(self.unseen)) != len(self.unseen) or not 1 <= len(self.unseen) <= 8:
            found.append(
                f"dataset.unseen must list 1 to 8 distinct digits in 0..9 (at least two stay seen), got {list(self.unseen)}"
            )
        return found + caught(self._check_image_shape)

    def _check_image_shape(self) -> None:
        if image_shape_option(self.image_shape) != IMAGE_SHAPE:
            raise DataError(
                f"dataset.image_shape of digits is fixed at {list(IMAGE_SHAPE)} (8 x 8 grey images), got {self.image_shape!r}; "
                "to feed other image sizes, use dataset=features with your own arrays"
            )

    def _images(self) -> tuple[np.ndarray, np.ndarray]:
        try:
            from sklearn.datasets import load_digits
        except ImportError as error:  # pragma: no cover - scikit-learn is a dependency
            raise DataError(f"the digits dataset needs scikit-learn, which cannot be imported ({error})") from None
        bunch = load_digits()
        images = np.asarray(bunch.images, dtype=np.float64) / 16.0
        return images, np.asarray(bunch.target, dtype=np.int64)

    def load(self, domain: str, half: str | None = None, share: tuple[int, int] = (0, 1)) -> Domain:
        """Load one domain; ``half`` is ``source`` or ``target`` (default: ``source`` iff ``domain`` is the source);
        ``share`` ``(k, n)`` keeps the ``k``-th of ``n`` disjoint, class-stratified shares of that half."""
        check_domains(self.name, self.domains, domain)
        if half is None:
            half = "source" if domain in self.sources else "target"
        if half not in ("source", "target"):
            raise DataError(f"digits: half must be 'source' or 'target', got {half!r}")
        images, y = self._images()
        first, second = halves(y)
        index = first if half == "source" else second
        shifted = SHIFTS[domain](images[index].copy(), np.random.default_rng(domain_seed(domain)))
        if share[1] > 1:  # the share after the shift: an image looks the same whether or not the half is shared
            kept = stratified_share(y[index], *share)
            index, shifted = index[kept], shifted[kept]
        X = np.clip(shifted, 0.0, 1.0).reshape(len(index), -1)
        X = _preprocess.apply(self.preprocess, X)
        checksums = {}
        data_file = _digits_file()
        if data_file is not None:
            checksums[data_file.name] = sha256_file(data_file)
        return Domain(
            name=domain,
            X=np.ascontiguousarray(X, dtype=np.float32),
            y=y[index],
            classes=DIGIT_CLASSES,
            image_shape=IMAGE_SHAPE,
            checksums=checksums,
        )

    def load_zeroshot(self) -> ZeroShotDomains:
        """Seen digits of the source half train; the other half's seen and unseen digits test (GZSL). Both halves
        are under the source's shift: zero-shot transfer here is across classes, not domains."""
        self.check()
        _preprocess.check_row_wise(self.preprocess, "would mix the unseen digits into the training samples")
        unseen = np.array(sorted(self.unseen))
        source = self.load(self.source, half="source")
        target = self.load(self.source, half="target")

        def part(domain: Domain, keep: np.ndarray, suffix: str) -> Domain:
            return Domain(f"{domain.name}-{suffix}", domain.X[keep], domain.y[keep], domain.classes,
                          domain.image_shape, domain.checksums)

        seen_in_source = ~np.isin(source.y, unseen)
        seen_in_target = ~np.isin(target.y, unseen)
        return ZeroShotDomains(
            train=part(source, seen_in_source, "seen"),
            test_seen=part(target, seen_in_target, "seen-test"),
            test_unseen=part(target, ~seen_in_target, "unseen"),
            unseen=tuple(int(digit) for digit in unseen),
            attributes=DIGIT_ATTRIBUTES.copy(),
            split_rule=self.split_rule,
        )

    def load_as(self, domain: str, role: str) -> Domain:
        """``domain``'s shift applied to the ``role``'s half of the images; several sources split the source half
        into disjoint class-stratified shares, one each (no image is seen under two shifts, so a source's held-out
        samples, or a source held out whole, are images no other source trains on)."""
        if role == "source" and len(self.sources) > 1:
            return self.load(domain, half=role, share=(self.sources.index(domain), len(self.sources)))
        return self.load(domain, half=role)
