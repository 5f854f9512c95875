"""Zero-shot learning benchmarks as released by Xian et al. ("proposed splits", TPAMI 2018): AWA1, AWA2, CUB, SUN, APY.

The release (``xlsa17.zip``, :data:`XLSA17_URL`) unpacks to ``xlsa17/data/<RELEASE>/`` with two files per dataset:

- ``res101.mat``: ``features``, 2048 × N ResNet-101 features (samples in columns); ``labels``, N × 1 class ids
  ``1..C`` (the row of the class in ``allclasses.txt``);
- ``att_splits.mat``: ``att``, a × C class attribute vectors (columns are classes, each of unit L2 norm);
  ``allclasses_names``, a C × 1 cell array of class names; ``trainval_loc``, ``test_seen_loc``,
  ``test_unseen_loc``, 1-based sample indices into ``res101.mat`` (column vectors); ``train_loc``/``val_loc``,
  the hyperparameter-tuning split (its train and validation classes split the trainval classes), read only by
  ``dataset.split=val``. ``original_att`` (attributes before normalisation) is not read. Some copies of the release
  lack ``train_loc``/``val_loc``; ``split=val`` then reads the class lists ``trainclasses1.txt`` and
  ``valclasses1.txt`` beside the file (one class name per line, as in ``allclasses_names``) and takes those
  classes' ``trainval_loc`` samples.

The dataset serves the ``zeroshot`` scenario only: :meth:`ZslXlsa.load_zeroshot` returns the training samples
(seen classes), the seen and unseen test samples, and the ``(C, a)`` attribute matrix. ``dataset.split`` says which:

=========  ==========================================  ==========================================  ===================
split      train                                       test_seen (GZSL seen)                       test_unseen
=========  ==========================================  ==========================================  ===================
``test``   ``trainval_loc``                            ``test_seen_loc``                           ``test_unseen_loc``
``val``    ``train_loc`` less the held-out part        ``val_seen_fraction`` (0.2) of each train   ``val_loc``
                                                       class's ``train_loc`` samples, fixed draw   (val classes)
=========  ==========================================  ==========================================  ===================

``split=val`` is the protocol's tuning split: the validation classes are unseen at training, so γ, λ, calibration
and epochs are chosen on them, then the chosen values run once with ``split=test``. The release has no seen
held-out part for the train classes, so ``split=val`` holds one out (:data:`VAL_SEEN_SEED`; 0 leaves test_seen
empty and GZSL reports no seen accuracy). No test sample enters ``split=val``: samples of ``test_seen_loc`` or
``test_unseen_loc`` listed in ``train_loc``/``val_loc`` are dropped (some copies list every sample of the trainval
classes there, test_seen ones included), and a ``train_loc``/``val_loc`` sample of an unseen (test) class, or a
class in both ``train_loc`` and ``val_loc``, is a :class:`DataError`. Imports numpy and scipy only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from tlrun.data import preprocess as _preprocess
from tlrun.data.base import DataError, Domain, TransferDataset, ZeroShotDomains, caught, sha256_file
from tlrun.data.features import labels_vector, load_mat, count_non_finite

XLSA17_URL = "https://datasets.d2.mpi-inf.mpg.de/xian/xlsa17.zip"
#: The release's dataset folders (``dataset.release``, case-insensitive).
RELEASES = ("AWA1", "AWA2", "CUB", "SUN", "APY")
FEATURES_FILE = "res101.mat"
SPLITS_FILE = "att_splits.mat"
#: Domain name of each part → the index variable of ``att_splits.mat`` that selects its samples.
PARTS = {"trainval": "trainval_loc", "test_seen": "test_seen_loc", "test_unseen": "test_unseen_loc"}
#: The tuning split's index variables (``dataset.split=val``), and the class lists read when they are absent.
VAL_PARTS = {"train": "train_loc", "val": "val_loc"}
VAL_CLASS_FILES = {"train": "trainclasses1.txt", "val": "valclasses1.txt"}
#: ``dataset.split`` values.
SPLITS = ("test", "val")
#: Seed of the fixed draw that holds out ``val_seen_fraction`` of each train class under ``split=val``.
VAL_SEEN_SEED = 17


def readable_class_name(name: str) -> str:
    """``001.Black_footed_Albatross`` → ``Black footed Albatross``, ``killer+whale`` → ``killer whale``."""
    return " ".join(re.sub(r"^\d+\.", "", name.strip()).replace("_", " ").replace("+", " ").split())


def _read_mat(path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """The variables ``keys`` of a MATLAB file (only those are parsed); :class:`DataError` when the file cannot be
    read or lacks one of them."""
    import scipy.io

    variables = load_mat(path, keys, XLSA17_URL)
    missing = [key for key in keys if key not in variables]
    if missing:
        held = sorted(name for name, _, _ in scipy.io.whosmat(str(path)))
        raise DataError(
            f"{path} has no variable {', '.join(missing)}; it holds: {', '.join(held) or 'nothing'}. "
            f"Is it the {path.name} of the xlsa17 release ({XLSA17_URL})?"
        )
    return variables


def _numeric_matrix(value: Any, key: str, path: Path) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "biuf" or array.ndim != 2 or array.size == 0:
        raise DataError(f"{path}: {key} must be a non-empty numeric matrix, got {array.dtype} of shape {array.shape}")
    array = array.astype(np.float64, copy=False)
    bad = count_non_finite(array)
    if bad:
        raise DataError(f"{path}: {key} contains {bad} NaN or infinite values")
    return array


def _sample_indices(value: Any, key: str, path: Path, n_samples: int) -> np.ndarray:
    """A 1-based index vector of ``att_splits.mat`` as 0-based int64, checked against the ``n_samples``."""
    array = np.asarray(value)
    if array.dtype.kind not in "iuf" or sum(size > 1 for size in array.shape) > 1:
        raise DataError(f"{path}: {key} must be a vector of sample indices, got {array.dtype} of shape {array.shape}")
    array = array.reshape(-1)
    if array.dtype.kind == "f" and not np.all(array == np.round(array)):
        raise DataError(f"{path}: {key} holds non-integer sample indices")
    indices = array.astype(np.int64)
    if indices.size and (indices.min() < 1 or indices.max() > n_samples):
        raise DataError(
            f"{path}: {key} holds sample indices {indices.min()}..{indices.max()}, outside 1..{n_samples} (the "
            f"samples of {FEATURES_FILE}); are the two files from the same dataset of the release?"
        )
    return indices - 1


def _named(classes: tuple[str, ...], ids: list[int]) -> str:
    """The names of classes ``ids`` for a message: the first ten, then ``...``."""
    return ", ".join(classes[k] for k in ids[:10]) + (" ..." if len(ids) > 10 else "")


def _shared_classes(y: np.ndarray, rows: np.ndarray, others: np.ndarray | set[int]) -> list[int]:
    """The classes of the samples ``rows`` that are also classes of the samples ``others`` (or in the set)."""
    other = others if isinstance(others, set) else set(np.unique(y[others]).tolist())
    return sorted(other.intersection(np.unique(y[rows]).tolist()))


def _class_names(value: Any, path: Path) -> list[str]:
    """The strings of ``allclasses_names`` (a cell array of strings, or a char matrix)."""
    names = []
    for cell in np.asarray(value, dtype=object).reshape(-1):
        text = np.asarray(cell).reshape(-1)
        if text.size != 1 or text.dtype.kind not in "US":
            raise DataError(f"{path}: allclasses_names must be a cell array of strings, found an element {cell!r}")
        names.append(str(text[0]))
    return names


class ZslXlsa(TransferDataset):
    """One dataset of the xlsa17 zero-shot release (Xian et al., TPAMI 2018), with its proposed split.

    ``root`` is the release's data folder, holding ``<RELEASE>/res101.mat`` and ``<RELEASE>/att_splits.mat``
    (``xlsa17/data``), or the ``<RELEASE>`` folder itself. Labels ``1..C`` become ``0..C-1``; every domain carries
    all ``C`` class names, made readable by :func:`readable_class_name`. The unseen classes are those of
    ``test_unseen_loc``; the attributes are ``att`` transposed, one row per class.

    ``preprocess`` (default ``none``: the features as released) is per sample only (``none`` or ``l2``): a
    statistic over the test samples would tell the seen test set from the unseen one. The release normalises only
    the attributes (``att``: unit L2 norm per class), not the features; methods that standardise features do so
    with the training samples' statistics (``eszsl``'s ``standardize``).

    ``split`` (default ``test``) chooses the release's evaluation split (trainval → test_seen, test_unseen) or its
    tuning split ``val`` (train_loc → held-out train samples, val_loc): see the module docstring.

    Args:
        release: the dataset of the release: AWA1, AWA2, CUB, SUN or APY (any case).
        source, target: fixed to ``trainval`` and ``test`` (they name the run; the parts come from the split).
        split: ``test`` (the proposed split's evaluation) or ``val`` (tune on the validation classes).
        val_seen_fraction: under ``split=val``, the fraction of each train class's samples held out as the GZSL
            seen test set (default 0.2, about the release's test_seen share; 0: none).
    """

    name = "zsl_xlsa"
    domains = ("trainval", "test")

    def __init__(
        self,
        root: str | None = None,
        release: str = "AWA2",
        source: str = "trainval",
        target: str = "test",
        preprocess: str = "none",
        source_val_fraction: float = 0.0,
        augment: str = "none",
        split: str = "test",
        val_seen_fraction: float = 0.2,
    ) -> None:
        super().__init__(root, source, target, preprocess, source_val_fraction, augment)
        self.release = release
        self.split = split
        self.val_seen_fraction = val_seen_fraction

    def augmentable(self) -> bool:
        return False

    def _release_name(self) -> str:
        release = str(self.release).upper()
        if release not in RELEASES:
            raise DataError(
                f"unknown dataset.release {self.release!r} for zsl_xlsa; choose one of: {', '.join(RELEASES)}"
            )
        return release

    def _folder(self) -> Path:
        """The folder holding this release's two files; :class:`DataError` saying where they go when absent."""
        release = self._release_name()
        where = (
            f"put {release}/{FEATURES_FILE} and {release}/{SPLITS_FILE} in dataset.root (the release's xlsa17/data "
            f"folder), or point dataset.root at the {release} folder itself; download {XLSA17_URL} and unzip it"
        )
        if self.root is None:
            raise DataError(f"dataset.root is not set: {where}")
        nested = (
            [path for path in sorted(self.root.iterdir()) if path.is_dir() and path.name.upper() == release]
            if self.root.is_dir()
            else []
        )
        for folder in (*nested, self.root):
            present = [name for name in (FEATURES_FILE, SPLITS_FILE) if (folder / name).is_file()]
            if not present:
                continue
            other = folder.name.upper()
            if folder == self.root and other in RELEASES and other != release:
                raise DataError(
                    f"dataset.root {self.root} is the {other} folder of the release, but dataset.release={release}; "
                    f"set dataset.release={other}, or point dataset.root at xlsa17/data"
                )
            if len(present) < 2:
                missing = FEATURES_FILE if SPLITS_FILE in present else SPLITS_FILE
                raise DataError(f"{folder / missing} not found beside {folder / present[0]}: {where}")
            return folder
        looked = f"looked in {self.root / release} and {self.root}" if self.root.is_dir() else f"{self.root} does not exist"
        raise DataError(f"xlsa17 {release} files not found ({looked}): {where}")

    def problems(self) -> list[str]:
        found = super().problems()
        if self.split not in SPLITS:
            found.append(f"dataset.split must be one of {', '.join(SPLITS)} for zsl_xlsa, got {self.split!r}")
        fraction = self.val_seen_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction < 1.0:
            found.append(f"dataset.val_seen_fraction must be in [0, 1), got {fraction!r}")
        if self.preprocess in _preprocess.PREPROCESSORS:  # an unknown one is the base's problem
            found += caught(lambda: _preprocess.check_row_wise(
                self.preprocess, "would tell the seen test samples from the unseen ones"))
        return found + caught(self._folder)

    def load(self, domain: str) -> Domain:
        raise DataError(
            "dataset zsl_xlsa serves scenario zeroshot only (its parts are trainval, test_seen and test_unseen); "
            "set scenario=zeroshot or use a method of the zeroshot scenario"
        )

    def load_zeroshot(self) -> ZeroShotDomains:
        self.check()
        folder = self._folder()
        features_path, splits_path = folder / FEATURES_FILE, folder / SPLITS_FILE
        samples = _read_mat(features_path, ("features", "labels"))
        splits = _read_mat(splits_path, ("att", "allclasses_names", *PARTS.values()))

        raw_names = _class_names(splits["allclasses_names"], splits_path)
        attributes = _numeric_matrix(splits["att"], "att", splits_path)
        if attributes.shape[1] != len(raw_names):
            raise DataError(
                f"{splits_path}: att is {attributes.shape[0]} x {attributes.shape[1]} (attributes x classes) but "
                f"allclasses_names names {len(raw_names)} classes"
            )
        labels = labels_vector(samples["labels"], features_path)
        if labels.dtype.kind != "i" or labels.min() < 1 or labels.max() > len(raw_names):
            raise DataError(
                f"{features_path}: labels must be class ids 1..{len(raw_names)} (the classes of {SPLITS_FILE}), "
                f"found {np.unique(labels).tolist()[:12]}"
            )
        X = _numeric_matrix(samples["features"], "features", features_path)
        if X.shape[1] != len(labels):
            if X.shape[0] != len(labels):
                raise DataError(
                    f"{features_path}: features are {X.shape[0]} x {X.shape[1]} for {len(labels)} labels; the release "
                    "stores one sample per column"
                )
        else:
            X = X.T
        y = labels - 1
        index = {part: _sample_indices(splits[key], key, splits_path, len(y)) for part, key in PARTS.items()}
        classes = tuple(readable_class_name(name) for name in raw_names)
        unseen = self._check_split(index, y, classes, splits_path)
        checksums = {features_path.name: sha256_file(features_path), splits_path.name: sha256_file(splits_path)}
        split_rule = "test: xlsa17 proposed split (trainval_loc; test_seen_loc, test_unseen_loc)"
        if self.split == "val":
            index, unseen, files = self._val_split(index, y, raw_names, classes, splits_path)
            checksums.update({path.name: sha256_file(path) for path in files})
            source = ", ".join(path.name for path in files) if files else "train_loc, val_loc"
            split_rule = (f"val: xlsa17 tuning split ({source}; {self.val_seen_fraction:g} of each train class held "
                          "out as test_seen; the val classes unseen)")

        names = dict(zip(PARTS, ("train", "train_heldout", "val") if self.split == "val" else PARTS))
        parts = {
            part: Domain(
                name=names[part],
                X=np.asarray(_preprocess.apply(self.preprocess, X[rows]), dtype=np.float64),
                y=y[rows],
                classes=classes,
                checksums=checksums,
                files=(str(features_path),),
            )
            for part, rows in index.items()
        }
        return ZeroShotDomains(
            train=parts["trainval"],
            test_seen=parts["test_seen"],
            test_unseen=parts["test_unseen"],
            unseen=unseen,
            attributes=np.ascontiguousarray(attributes.T),
            split_rule=split_rule,
        )

    def _val_split(
        self, index: dict[str, np.ndarray], y: np.ndarray, raw_names: list[str], classes: tuple[str, ...], path: Path
    ) -> tuple[dict[str, np.ndarray], tuple[int, ...], list[Path]]:
        """``split=val``: the parts (keyed as :data:`PARTS`) from ``train_loc``/``val_loc`` (or the class lists),
        with no sample of the test parts and no unseen (test) class; the validation classes are the unseen ones."""
        import scipy.io

        present = {name for name, _, _ in scipy.io.whosmat(str(path))}
        files: list[Path] = []
        if all(key in present for key in VAL_PARTS.values()):
            variables = _read_mat(path, tuple(VAL_PARTS.values()))
            tuning = {part: _sample_indices(variables[key], key, path, len(y)) for part, key in VAL_PARTS.items()}
        else:
            files = [path.parent / name for name in VAL_CLASS_FILES.values()]
            if not all(file.is_file() for file in files):
                raise DataError(
                    f"dataset.split=val needs the release's tuning split: {path} has no train_loc/val_loc (some "
                    f"copies of the release lack them) and {' and '.join(str(f) for f in files)} are not both "
                    "there; use dataset.split=test, or put the class lists of the release's data folder there"
                )
            ids = {name.strip(): k for k, name in enumerate(raw_names)}
            tuning = {}
            for part, file in zip(VAL_CLASS_FILES, files):
                listed = [line.strip() for line in file.read_text().splitlines() if line.strip()]
                unknown = [name for name in listed if name not in ids]
                if unknown or not listed:
                    raise DataError(
                        f"{file}: " + (f"classes not in allclasses_names of {path.name}: {', '.join(unknown[:5])}"
                                       if unknown else "lists no class")
                    )
                chosen = np.isin(y[index["trainval"]], [ids[name] for name in listed])
                tuning[part] = index["trainval"][chosen]
        where = VAL_CLASS_FILES if files else VAL_PARTS
        for part, rows in tuning.items():
            touched = _shared_classes(y, rows, index["test_unseen"])
            if touched:
                raise DataError(
                    f"{path}: {where[part]} holds samples of the unseen (test) classes ({_named(classes, touched)}); "
                    "tuning must not see them"
                )
            # Never tune on a test sample: drop test_seen_loc samples (some copies list them in train/val_loc).
            tuning[part] = np.setdiff1d(rows, index["test_seen"])
            if tuning[part].size == 0:
                raise DataError(f"{path}: {where[part]} holds no sample outside the test parts")
        shared = _shared_classes(y, tuning["train"], tuning["val"])
        if shared:
            raise DataError(
                f"{path}: {where['train']} and {where['val']} share classes ({_named(classes, shared)}); the "
                "validation classes must be unseen at training"
            )
        train, held_out = self._hold_out(tuning["train"], y)
        val_classes = tuple(np.unique(y[tuning["val"]]).tolist())
        return {"trainval": train, "test_seen": held_out, "test_unseen": tuning["val"]}, val_classes, files

    def _hold_out(self, rows: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``val_seen_fraction`` of each class's ``rows`` (rounded, at least one sample left to train), drawn
        with :data:`VAL_SEEN_SEED` independent of the run's seed."""
        rng = np.random.default_rng(VAL_SEEN_SEED)
        kept, held = [], []
        for label in np.unique(y[rows]):
            members = rng.permutation(np.sort(rows[y[rows] == label]))
            count = min(int(round(self.val_seen_fraction * len(members))), len(members) - 1)
            held.append(members[:count])
            kept.append(members[count:])
        return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held)).astype(np.int64)

    @staticmethod
    def _check_split(
        index: dict[str, np.ndarray], y: np.ndarray, classes: tuple[str, ...], path: Path
    ) -> tuple[int, ...]:
        """The unseen class ids; :class:`DataError` when the split mixes seen and unseen classes or samples."""
        for part in ("trainval", "test_unseen"):
            if index[part].size == 0:
                raise DataError(f"{path}: {PARTS[part]} is empty")
        for part in ("test_seen", "test_unseen"):
            shared = np.intersect1d(index["trainval"], index[part])
            if shared.size:
                raise DataError(
                    f"{path}: {shared.size} samples are in both trainval_loc and {PARTS[part]} "
                    f"(e.g. sample {shared[0] + 1})"
                )
        seen = set(np.unique(y[index["trainval"]]).tolist())
        unseen = tuple(np.unique(y[index["test_unseen"]]).tolist())
        leaked = _shared_classes(y, index["test_unseen"], seen)
        if leaked:
            raise DataError(
                f"{path}: trainval_loc holds samples of unseen classes (those of test_unseen_loc): {_named(classes, leaked)}"
            )
        untrained = sorted(set(np.unique(y[index["test_seen"]]).tolist()) - seen)
        if untrained:
            raise DataError(
                f"{path}: test_seen_loc holds classes without a trainval sample: "
                f"{_named(classes, untrained)}"
            )
        return unseen
