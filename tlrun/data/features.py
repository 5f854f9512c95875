"""Datasets of precomputed feature vectors: Office+Caltech10 (SURF, DeCAF6) and a generic one-file-per-domain format.

Both read every domain into a float64 ``(n, d)`` matrix, preprocess it per domain (see
:mod:`tlrun.data.preprocess`) and record the sha256 of the file read. Imports numpy and scipy only (no torch).
"""

from __future__ import annotations

import csv
import zipfile
import zlib
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from tlrun.data import preprocess as _preprocess
from tlrun.data.base import (
    DataError, Domain, TransferDataset, caught, check_domains, image_shape_option, sha256_file,
)
from tlrun.data.shapes import square_shape_hint

#: Keys tried, in this order, for the samples and for the labels of a ``.mat`` (or ``.npz``) file.
X_KEYS = ("X", "fts", "feas", "features", "data")
Y_KEYS = ("y", "labels", "label", "gnd")
#: File extensions the generic :class:`Features` dataset reads, in order of preference.
EXTENSIONS = (".npz", ".mat", ".csv")
SAMPLE_AXES = ("auto", "rows", "columns")


# --------------------------------------------------------------------------------------------------- reading


def load_mat(path: Path, variable_names: tuple[str, ...] | None = None, download: str | None = None) -> dict[str, Any]:
    """Variables of a MATLAB file (v4 to v7; v7.3 is HDF5, which scipy cannot read): all of them, or only
    ``variable_names`` (the others are not parsed). ``download``: where a release's files come from, named in the
    errors."""
    import scipy.io

    try:
        with open(path, "rb") as handle:
            head = handle.read(128)
    except OSError as error:
        raise DataError(f"cannot read {path}: {error}") from None
    if b"MATLAB 7.3" in head:
        raise DataError(
            f"{path} is a MATLAB v7.3 (HDF5) file, which cannot be read; "
            + (f"download it again from {download}" if download else
               "re-save it in MATLAB with save(file, ..., '-v7') or convert it to .npz (arrays X and y)")
        )
    try:
        variables = scipy.io.loadmat(str(path), variable_names=list(variable_names) if variable_names else None)
    except Exception as error:  # scipy raises ValueError, TypeError, MatReadError... on corrupt files
        raise DataError(
            f"cannot read {path}: corrupt or not a MATLAB file ({type(error).__name__}: {error})"
            + (f"; download it again from {download}" if download else "")
        ) from None
    return {key: value for key, value in variables.items() if not key.startswith("__")}


@contextmanager
def _npz(path: Path) -> Iterator[Any]:
    """The open ``.npz`` archive, whose arrays are read (decompressed) only when indexed; a failure to open it or
    to read an array (truncated, corrupt, an object array) is a :class:`DataError`."""
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(
                f"{path} holds a single array (.npy format), not a .npz archive of features and labels; write it "
                "with numpy.savez(path, X=..., y=...)"
            )
        with archive:
            yield archive
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error) as error:
        raise DataError(
            f"cannot read {path}: corrupt, truncated or not a .npz archive ({type(error).__name__}: {error}); "
            "write it again with numpy.savez(path, X=..., y=...)"
        ) from None


def _pick(variables: dict[str, Any], wanted: str | None, candidates: tuple[str, ...], what: str, path: Path, option: str) -> np.ndarray:
    """The variable named ``wanted``, or the first of ``candidates`` present (exact name, then any case)."""
    if wanted:
        if wanted not in variables:
            raise DataError(
                f"{path} has no variable {wanted!r} ({option}); it holds: {', '.join(sorted(variables)) or 'nothing'}"
            )
        return variables[wanted]
    for key in candidates:
        if key in variables:
            return variables[key]
    lowered = {key.lower(): key for key in variables}
    for key in candidates:
        if key.lower() in lowered:
            return variables[lowered[key.lower()]]
    raise DataError(
        f"{path}: found no {what} among the usual names ({', '.join(candidates)}); it holds: "
        f"{', '.join(sorted(variables)) or 'nothing'}. Name the variable with dataset.{option}=<name>"
    )


def _dense(array: Any, path: Path, what: str) -> np.ndarray:
    if hasattr(array, "toarray"):  # scipy.sparse matrices, as MATLAB saves sparse variables
        array = array.toarray()
    array = np.asarray(array)
    if array.dtype == object:
        raise DataError(f"{path}: the {what} are not a numeric array (MATLAB cell or struct?)")
    return array


def labels_vector(y: Any, path: Path) -> np.ndarray:
    """Labels as a 1-D array: integers (from integral numbers) or strings."""
    y = _dense(y, path, "labels")
    if y.ndim == 2 and 1 in y.shape:
        y = y.reshape(-1)
    if y.ndim != 1:
        raise DataError(f"{path}: labels must be a vector, got an array of shape {y.shape}")
    if y.dtype.kind in "US":
        return np.char.strip(y.astype(str))
    if y.dtype.kind == "b":
        return y.astype(np.int64)
    if y.dtype.kind in "iu":
        return y.astype(np.int64)
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)):
            raise DataError(f"{path}: labels contain NaN or infinite values")
        if not np.all(y == np.round(y)):
            raise DataError(f"{path}: labels must be integer class ids or names, found non-integer values")
        return y.astype(np.int64)
    raise DataError(f"{path}: labels of type {y.dtype} are neither integers nor strings")


def _orient(X: Any, n_labels: int, samples: str, path: Path, prefer_rows: bool = False) -> np.ndarray:
    """``X`` as a float64 ``(n, d)`` matrix with samples in rows, checked for shape and finiteness.

    ``samples="auto"`` takes the axis whose length is the number of labels; when both are, it is an error
    unless ``prefer_rows`` (formats documented as samples-in-rows, like ``.npz``).
    """
    X = _dense(X, path, "features")
    if X.dtype.kind not in "biuf":
        raise DataError(f"{path}: features of type {X.dtype} are not numeric")
    if X.ndim == 1 and samples != "columns":
        X = X.reshape(-1, 1)
    if X.ndim != 2:
        raise DataError(f"{path}: features must be a 2-D matrix, got shape {X.shape}")
    if samples not in SAMPLE_AXES:
        raise DataError(f"dataset.samples must be one of {', '.join(SAMPLE_AXES)}, got {samples!r}")
    if samples == "auto":
        rows, cols = X.shape[0] == n_labels, X.shape[1] == n_labels
        if rows and cols and not prefer_rows:
            raise DataError(
                f"{path}: the features are {X.shape[0]} x {X.shape[1]} for {n_labels} labels, so samples could "
                "be rows or columns; set dataset.samples=rows or dataset.samples=columns"
            )
        if not rows and not cols:
            raise DataError(
                f"{path}: the features are {X.shape[0]} x {X.shape[1]}, but there are {n_labels} labels: "
                "neither axis matches the number of labels"
            )
        samples = "rows" if rows else "columns"
    if samples == "columns":
        X = X.T
    if X.shape[0] != n_labels:
        raise DataError(
            f"{path}: {X.shape[0]} samples (as dataset.samples={samples}) but {n_labels} labels"
        )
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"{path}: no data (features of shape {X.shape})")
    X = np.asarray(X, dtype=np.float64)
    bad = count_non_finite(X)
    if bad:
        raise DataError(f"{path}: the features contain {bad} NaN or infinite values; fix or drop those samples")
    return X


def count_non_finite(X: np.ndarray) -> int:
    """How many values of ``X`` are NaN or infinite, without an ``X``-sized temporary when there are none.

    A NaN or an infinity makes the sum non-finite, so a finite sum proves every value finite; only a
    non-finite sum (bad values, or an overflow) costs the exact count.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.sum(X)):
            return 0
    return int(X.size - np.count_nonzero(np.isfinite(X)))


def _as_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _read_csv(path: Path, header: str | bool) -> tuple[np.ndarray, np.ndarray]:
    """Features and raw labels of a CSV file whose last column is the label."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"cannot read {path}: {error}") from None
    if not rows:
        raise DataError(f"{path} is empty")
    if header == "auto":
        # A header row has a non-numeric cell among the feature columns; data rows are all numeric there.
        has_header = any(_as_number(cell) is None for cell in rows[0][:-1])
    elif isinstance(header, bool):
        has_header = header
    else:
        raise DataError(f"dataset.csv_header must be auto, true or false, got {header!r}")
    if has_header:
        rows = rows[1:]
    if not rows:
        raise DataError(f"{path} has a header but no data rows")
    width = len(rows[0])
    if width < 2:
        raise DataError(f"{path}: each row needs at least one feature and a label (last column), found {width} column")
    features = np.empty((len(rows), width - 1), dtype=np.float64)
    labels: list[str] = []
    first_line = 2 if has_header else 1
    for i, row in enumerate(rows):
        if len(row) != width:
            raise DataError(f"{path}, line {i + first_line}: {len(row)} columns where the first row has {width}")
        for j, cell in enumerate(row[:-1]):
            value = _as_number(cell)
            if value is None:
                raise DataError(f"{path}, line {i + first_line}, column {j + 1}: {cell!r} is not a number")
            features[i, j] = value
        labels.append(row[-1].strip())
    numeric = [_as_number(label) for label in labels]
    bad = [i for i, value in enumerate(numeric) if not labels[i] or (value is not None and not np.isfinite(value))]
    if bad:
        raise DataError(
            f"{path}, line {bad[0] + first_line}: the label (last column) {labels[bad[0]]!r} is no class"
            f"{f' (nor on {len(bad) - 1} other lines)' if len(bad) > 1 else ''}; give every row a class id or name"
        )
    if all(value is not None and value == int(value) for value in numeric):
        y = np.array([int(value) for value in numeric], dtype=np.int64)
    else:
        y = np.array(labels, dtype=str)
    return features, y


def read_samples_file(path: Path, n_features: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The samples (float64, one per row) of one file in a format :class:`Features` reads, and its raw labels when
    it has them, for a model that takes rows of ``n_features`` values: a ``.csv`` of ``n_features`` columns has no
    labels, one of ``n_features + 1`` its labels last; a ``.npz`` or ``.mat`` holds the samples under one of
    :data:`X_KEYS` (samples in rows or in columns) and may hold labels under one of :data:`Y_KEYS`."""
    suffix = path.suffix.lower()
    if suffix not in EXTENSIONS:
        raise DataError(f"{path}: not a file dataset=features reads ({', '.join(EXTENSIONS)})")
    if suffix == ".csv":
        X, y = _read_csv(path, "auto")
        if X.shape[1] == n_features - 1:  # no label column: the last column was a feature
            return _orient(np.column_stack([X, _numbers(y, path)]), len(y), "rows", path), None
        return _orient(X, len(y), "rows", path), y
    with _npz(path) if suffix == ".npz" else nullcontext(load_mat(path)) as variables:
        X = _dense(_pick(variables, None, X_KEYS, "features", path, "x_key"), path, "features")
        y = next((labels_vector(variables[key], path) for key in Y_KEYS if key in variables), None)
    samples = "columns" if X.ndim == 2 and X.shape[1] != n_features and X.shape[0] == n_features else "rows"
    count = len(y) if y is not None else X.shape[1 if samples == "columns" else 0]
    return _orient(X, count, samples, path), y


def _numbers(values: np.ndarray, path: Path) -> np.ndarray:
    try:
        return values.astype(np.float64)
    except ValueError:
        raise DataError(f"{path}: the last column holds text; as a feature it must be a number") from None


# --------------------------------------------------------------------------------------------------- Features


class Features(TransferDataset):
    """Generic feature dataset: one file per domain, ``<root>/<domain>.npz|.mat|.csv``.

    - ``.npz``: arrays ``X`` (samples × features) and ``y`` (labels);
    - ``.mat``: variables found among ``X, fts, feas, features, data`` and ``y, labels, label, gnd`` (or named by
      ``x_key``/``y_key``); MATLAB v7.3 files must be re-saved as v7 or converted;
    - ``.csv``: one sample per line, the label in the last column; a first line with non-numeric feature cells
      is a header (``csv_header: auto``), or say ``true``/``false``.

    The domains are the file names found in ``root``. Labels may be integers or strings; they are mapped to
    ``0..C-1`` by one mapping, the sorted union of the raw labels of the source and the target (plus the loaded
    domain if it is neither), and ``classes[k]`` is ``str(raw label)``.

    Args:
        samples: ``rows``, ``columns``, or ``auto``: the axis whose length equals the number of labels.
        x_key, y_key: variable names in ``.mat``/``.npz`` files, when not one of the usual ones.
        csv_header: ``auto``, ``true`` or ``false``.
        image_shape: ``(C, H, W)`` when every row is a flattened image (``C·H·W`` must equal the feature
            dimension): the domains then carry it, so that a CNN backbone views the rows as images and ``augment``
            applies; ``None``: plain features.
        augment: training-time augmentation policy; anything but ``none`` needs ``image_shape``.
    """

    name = "features"

    def __init__(
        self,
        root: str | None = None,
        source: str = "",
        target: str = "",
        preprocess: str = "none",
        source_val_fraction: float = 0.0,
        samples: str = "auto",
        x_key: str | None = None,
        y_key: str | None = None,
        csv_header: str | bool = "auto",
        image_shape: list[int] | tuple[int, ...] | None = None,
        augment: str = "none",
    ) -> None:
        super().__init__(root, source, target, preprocess, source_val_fraction, augment)
        self.samples = samples
        self.x_key = x_key
        self.y_key = y_key
        self.csv_header = csv_header
        self.image_shape = image_shape
        self._raw: dict[str, tuple[np.ndarray, np.ndarray, str, Path]] = {}

    # -- discovery

    def _files(self) -> dict[str, Path]:
        """Domain name → file, for every readable extension in ``root``."""
        if self.root is None:
            raise DataError(
                "dataset.root is not set: give the folder holding one feature file per domain "
                "(<root>/<domain>.npz, .mat or .csv), e.g. dataset.root=/path/to/features"
            )
        if not self.root.is_dir():
            raise DataError(
                f"feature folder {self.root} does not exist: create it and put one file per domain in it "
                "(<domain>.npz with arrays X and y, <domain>.mat, or <domain>.csv with the label last), "
                "or point dataset.root at the folder that holds them"
            )
        found: dict[str, Path] = {}
        for path in sorted(self.root.iterdir()):
            if path.is_file() and path.suffix.lower() in EXTENSIONS and not path.name.startswith("."):
                if path.stem in found:
                    raise DataError(
                        f"two files for domain {path.stem!r} in {self.root}: {found[path.stem].name} and "
                        f"{path.name}; keep one"
                    )
                found[path.stem] = path
        return found

    @property
    def domains(self) -> tuple[str, ...]:  # type: ignore[override]
        """The domains whose files are in ``root`` (empty when ``root`` is missing)."""
        try:
            return tuple(self._files())
        except DataError:
            return ()

    def _missing_files(self, missing: list[str], files: dict[str, Path]) -> str:
        expected = ", ".join(f"{domain!r} (expected {domain}.npz, {domain}.mat or {domain}.csv)" for domain in missing)
        return (
            f"no file for domain{'s' if len(missing) > 1 else ''} {expected} in {self.root}; domains found there: "
            f"{', '.join(files) or 'none'}"
        )

    def problems(self) -> list[str]:
        try:
            files = self._files()
        except DataError as error:
            return [str(error), *self.option_problems()]
        missing = [domain for domain in self.wanted_domains() if domain not in files]
        if not files:
            found = [
                f"no feature files in {self.root}: put one file per domain there, named <domain>.npz "
                "(arrays X, y), <domain>.mat or <domain>.csv (label in the last column)"
            ]
        else:
            found = [self._missing_files(missing, files)] if missing else []
        return found + self.option_problems()

    def option_problems(self) -> list[str]:
        found = super().option_problems()
        if self.samples not in SAMPLE_AXES:
            found.append(f"dataset.samples must be one of {', '.join(SAMPLE_AXES)}, got {self.samples!r}")
        if self.csv_header != "auto" and not isinstance(self.csv_header, bool):
            found.append(f"dataset.csv_header must be auto, true or false, got {self.csv_header!r}")
        if self.image_shape is not None:
            found += caught(lambda: image_shape_option(self.image_shape))
        return found

    def augmentable(self) -> bool:
        return self.image_shape is not None

    # -- reading

    def _read(self, domain: str) -> tuple[np.ndarray, np.ndarray, str, Path]:
        """Features (float64, samples in rows), raw labels, sha256 and path of one domain, cached."""
        if domain in self._raw:
            return self._raw[domain]
        files = self._files()
        if domain not in files:
            raise DataError(self._missing_files([domain], files))
        path = files[domain]
        suffix = path.suffix.lower()
        if suffix == ".csv":
            X, y = _read_csv(path, self.csv_header)
            X = _orient(X, len(y), "rows", path)
        else:
            # Only the two arrays used are read from a .npz (an archive's other arrays stay on disk).
            with _npz(path) if suffix == ".npz" else nullcontext(load_mat(path)) as variables:
                y = _pick(variables, self.y_key, Y_KEYS, "labels", path, "y_key")
                X = _pick(variables, self.x_key, X_KEYS, "features", path, "x_key")
            y = labels_vector(y, path)
            X = _orient(X, len(y), self.samples, path, prefer_rows=suffix == ".npz")
        if len(y) == 0:
            raise DataError(f"{path} holds no samples")
        self._raw[domain] = (X, y, sha256_file(path), path)
        return self._raw[domain]

    def _label_space(self, *domains: str) -> list[Any]:
        """Sorted union of the raw labels of ``domains``."""
        raws = [self._read(domain) for domain in dict.fromkeys(domains) if domain]
        kinds = {y.dtype.kind for _, y, _, _ in raws}
        if len(kinds) > 1:
            names = ", ".join(f"{path.name} ({'names' if y.dtype.kind == 'U' else 'numbers'})" for _, y, _, path in raws)
            raise DataError(f"labels are numbers in some files and names in others: {names}; use one kind")
        return sorted(set().union(*(np.unique(y).tolist() for _, y, _, _ in raws)))

    def load(self, domain: str) -> Domain:
        X, y_raw, digest, path = self._read(domain)
        labels = self._label_space(*self.sources, self.target, domain)
        index = {label: k for k, label in enumerate(labels)}
        y = np.array([index[label] for label in y_raw.tolist()], dtype=np.int64)
        image_shape = None
        if self.image_shape is not None:
            image_shape = image_shape_option(self.image_shape)
            pixels = int(np.prod(image_shape))
            if pixels != X.shape[1]:
                raise DataError(
                    f"{path}: dataset.image_shape={list(image_shape)} makes {pixels} pixels per sample, but the "
                    f"samples have {X.shape[1]} features; give the shape of the flattened images (C x H x W = "
                    f"{X.shape[1]}{square_shape_hint(X.shape[1])}), or dataset.image_shape=null for plain features"
                )
        Xp = _preprocess.apply(self.preprocess, X)
        return Domain(
            name=domain,
            X=np.asarray(Xp, dtype=np.float64),
            y=y,
            classes=tuple(str(label) for label in labels),
            image_shape=image_shape,
            checksums={path.name: digest},
            files=(str(path),),
        )


# --------------------------------------------------------------------------------------------------- Office+Caltech10

OFFICE_CALTECH10_CLASSES = (
    "back_pack",
    "bike",
    "calculator",
    "headphones",
    "keyboard",
    "laptop_computer",
    "monitor",
    "mouse",
    "mug",
    "projector",
)

OFFICE_CALTECH10_URL = "https://github.com/jindongwang/transferlearning/blob/master/data/dataset.md#office+caltech"

#: ``features`` value → (file name per domain, variable holding the features, feature dimension).
OFFICE_CALTECH10_RELEASES: dict[str, tuple[dict[str, str], str, int]] = {
    "surf": (
        {
            "amazon": "amazon_SURF_L10.mat",
            "caltech": "Caltech10_SURF_L10.mat",
            "dslr": "dslr_SURF_L10.mat",
            "webcam": "webcam_SURF_L10.mat",
        },
        "fts",
        800,
    ),
    "decaf6": (
        {
            "amazon": "amazon_decaf.mat",
            "caltech": "caltech_decaf.mat",
            "dslr": "dslr_decaf.mat",
            "webcam": "webcam_decaf.mat",
        },
        "feas",
        4096,
    ),
}


class OfficeCaltech10(TransferDataset):
    """Office+Caltech10 (Gong et al., CVPR 2012): the 10 classes shared by Office-31 and Caltech-256.

    Domains ``amazon``, ``caltech``, ``dslr``, ``webcam``; the files of one release lie directly in ``root``:

    - ``features: surf``: ``amazon_SURF_L10.mat``, ``Caltech10_SURF_L10.mat``, ``dslr_SURF_L10.mat``,
      ``webcam_SURF_L10.mat`` (variables ``fts``: n × 800 bag-of-words counts, ``labels``: 1..10);
    - ``features: decaf6``: ``amazon_decaf.mat``, ``caltech_decaf.mat``, ``dslr_decaf.mat``, ``webcam_decaf.mat``
      (variables ``feas``: n × 4096, ``labels``: 1..10).

    Labels 1..10 become 0..9 in the order of :data:`OFFICE_CALTECH10_CLASSES`. The default preprocessing,
    ``rowsum_zscore``, is the protocol of the JDA release. Feature vectors cannot be augmented (``augment`` must
    be ``none``).
    """

    name = "office_caltech10"
    domains = ("amazon", "caltech", "dslr", "webcam")

    def __init__(
        self,
        root: str | None = None,
        source: str = "amazon",
        target: str = "webcam",
        features: str = "surf",
        preprocess: str = "rowsum_zscore",
        source_val_fraction: float = 0.0,
        augment: str = "none",
    ) -> None:
        super().__init__(root, source, target, preprocess, source_val_fraction, augment)
        self.features = features

    def augmentable(self) -> bool:
        return False

    def _release(self) -> tuple[dict[str, str], str, int]:
        try:
            return OFFICE_CALTECH10_RELEASES[self.features]
        except (KeyError, TypeError):
            raise DataError(
                f"unknown dataset.features {self.features!r} for office_caltech10; choose one of: "
                f"{', '.join(OFFICE_CALTECH10_RELEASES)}"
            ) from None

    def _path(self, domain: str) -> Path:
        files, _, _ = self._release()
        if self.root is None:
            raise DataError(
                "dataset.root is not set: give the folder holding the Office+Caltech10 "
                f"{self.features} files ({', '.join(files.values())}); download them from {OFFICE_CALTECH10_URL}"
            )
        return self.root / files[domain]

    def problems(self) -> list[str]:
        found = super().problems()
        try:
            files, _, _ = self._release()
            paths = [self._path(domain) for domain in self.wanted_domains() if domain in self.domains]
        except DataError as error:
            return found + [str(error)]
        missing = [path for path in paths if not path.is_file()]
        if missing:
            where = (
                f"the folder {self.root} does not exist"
                if self.root is not None and not self.root.is_dir()
                else f"missing: {', '.join(str(path) for path in missing)}"
            )
            found.append(
                f"Office+Caltech10 {self.features} files not found ({where}). Put {', '.join(files.values())} "
                f"directly in {self.root} (or set dataset.root to the folder holding them); the "
                f"{self.features} release is linked from {OFFICE_CALTECH10_URL}"
            )
        return found

    def load(self, domain: str) -> Domain:
        check_domains(self.name, self.domains, domain)
        _, x_key, dim = self._release()
        path = self._path(domain)
        if not path.is_file():
            raise DataError(
                f"Office+Caltech10 file {path} not found: put the {self.features} release there "
                f"(download it from {OFFICE_CALTECH10_URL})"
            )
        variables = load_mat(path, download=OFFICE_CALTECH10_URL)
        y_raw = labels_vector(_pick(variables, None, ("labels", "label", "y", "gnd"), "labels", path, "y_key"), path)
        X = _orient(_pick(variables, None, (x_key,) + X_KEYS, "features", path, "x_key"), len(y_raw), "auto" if dim != len(y_raw) else "rows", path)
        if X.shape[1] != dim:
            raise DataError(f"{path}: expected {dim} {self.features} features per sample, found {X.shape[1]}")
        if y_raw.dtype.kind != "i" or y_raw.min() < 1 or y_raw.max() > len(OFFICE_CALTECH10_CLASSES):
            raise DataError(
                f"{path}: labels must be 1..{len(OFFICE_CALTECH10_CLASSES)}, found "
                f"{np.unique(y_raw).tolist()[:12]}"
            )
        return Domain(
            name=domain,
            X=np.asarray(_preprocess.apply(self.preprocess, X), dtype=np.float64),
            y=(y_raw - 1).astype(np.int64),
            classes=OFFICE_CALTECH10_CLASSES,
            checksums={path.name: sha256_file(path)},
            files=(str(path),),
        )
