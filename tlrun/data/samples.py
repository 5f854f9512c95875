"""New samples for a logged model (``tlrun predict``, ``tlrun evaluate``): one file or folder, read for what the
model takes (:class:`~tlrun.predictor.Inputs`).

- A model of rows reads a file ``dataset=features`` reads (``.npz``, ``.mat``, ``.csv``; see
  :func:`~tlrun.data.features.read_samples_file`): its samples, and its labels when it has them.
- A model of image files reads a folder: class folders (``<folder>/<class>/<image>``, as ``dataset=image_folder``
  lays a domain out: the folder names are the labels), or images directly in the folder (no labels).

Imports numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tlrun.data.base import DataError, sha256_file
from tlrun.data.features import read_samples_file
from tlrun.data.images import IMAGE_EXTENSIONS


@dataclass(frozen=True)
class Samples:
    """Samples read for a model: ``X`` (rows, or image paths), their ids (row numbers, or paths), their labels as
    text (``None``: the data has none), and the sha256 of the file read (``None`` for a folder)."""

    X: np.ndarray | tuple[str, ...]
    ids: tuple[str, ...]
    labels: np.ndarray | None
    digest: str | None = None


def read_samples(path: str | Path, kind: str, n_features: int | None = None) -> Samples:
    """Read ``path`` for a model of ``kind`` (``rows`` of ``n_features`` values, or ``images``); a
    :class:`~tlrun.data.base.DataError` naming the path and what the model takes when it cannot be read so."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"data={path}: no such file or folder")
    if kind == "images":
        if not path.is_dir():
            raise DataError(f"data={path}: this model takes image files: give a folder of images, or of class folders")
        return _image_folder(path)
    if path.is_dir():
        raise DataError(f"data={path} is a folder; this model takes rows of {n_features} values: give one .npz, .mat "
                        "or .csv file")
    X, labels = read_samples_file(path, int(n_features))
    if X.shape[1] != n_features:
        found = (f"rows of {X.shape[1] + (labels is not None)} columns" if path.suffix.lower() == ".csv"
                 else f"samples of {X.shape[1]} values")
        raise DataError(f"data={path}: {found}, but this model takes rows of {n_features} values (the features of "
                        f"the run it was trained in{', and a .csv may add a label column last' if path.suffix.lower() == '.csv' else ''})")
    return Samples(X, tuple(str(i) for i in range(len(X))), None if labels is None else labels.astype(str),
                   sha256_file(path))


def _images_in(folder: Path) -> list[Path]:
    return sorted(file for file in folder.iterdir() if file.is_file() and file.suffix.lower() in IMAGE_EXTENSIONS)


def _image_folder(folder: Path) -> Samples:
    """Images directly in ``folder`` (unlabeled), else in its class folders (labeled by the folders' names)."""
    direct = _images_in(folder)
    if direct:
        paths = tuple(str(file) for file in direct)
        return Samples(paths, paths, None)
    classes = sorted(entry for entry in folder.iterdir() if entry.is_dir())
    files = [(file, entry.name) for entry in classes for file in _images_in(entry)]
    if not files:
        raise DataError(f"data={folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) in it nor in folders inside it")
    paths = tuple(str(file) for file, _ in files)
    return Samples(paths, paths, np.array([label for _, label in files], dtype=str))
