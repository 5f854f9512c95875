"""A fitted method packaged to label new samples as its run labelled the target: the model every run logs.

A :class:`Predictor` holds the fitted method (its projection, recolouring or weights, its classifier and, for
1-NN, the training samples it compares with; a deep method's whole network), what its inputs look like
(:class:`Inputs`), the frozen backbone a closed-form method read image files through, and the label space. It
takes samples as the run's dataset gives them *before* ``dataset.preprocess``:

- rows ``(n, d)``: a ``dataset=features`` file's values, the digit datasets' pixels in [0, 1] (an image-shaped
  row is the flattened ``C·H·W`` image, reshaped with the run's ``image_shape``);
- image files, for runs on image files: a sequence of paths (or of ``PIL`` images), or pixel arrays ``(n, H, W)`` /
  ``(n, H, W, 3)`` (uint8, or floats in [0, 1]), which pass through the run's image transforms as decoded files do.

and applies the run's own steps: ``dataset.preprocess`` (over the samples given, as the run did over each domain),
then the backbone a closed-form method extracted features with (image files: backbone first, then the
preprocessing, as the run did), then the method. :meth:`Predictor.predict` gives class names; :meth:`Predictor.scores`
the method's per-class scores (a deep method's probabilities, a zero-shot compatibility, a scikit-learn classifier's
probabilities or decision values; ``None`` for 1-NN). Per task:

- ``classify`` (``da``, ``semi_da``, ``finetune``, ``selftaught``): the dataset's classes; a model of an open-set DA
  run, its known classes and ``unknown`` (:attr:`Predictor.unknown_label`), answered as the run answered it;
- ``zeroshot``: the classes of :attr:`Predictor.descriptions` (every class the dataset describes), by default among
  the run's unseen classes; ``classes=`` names others of them, and new descriptions may be given as a
  :class:`~tlrun.scenarios.ClassDescriptions` (attributes for attribute methods, names for label embeddings);
- ``cluster`` (``selftaught_clustering``): cluster ids ``cluster 0..k-1`` by the method's assignment rule
  (k-means: the nearest centroid; STC: the target step's KL rule); clusters are not classes.

:meth:`Predictor.save` and :func:`load_predictor` write and read one file (``torch.save`` of the object: reading it
runs tlrun's code, so read only files you trust, as with any pickle); a predictor saved on a GPU loads on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tlrun.errors import TlrunError
from tlrun.scenarios import ClassDescriptions

#: What a predictor labels (see the module's docstring).
TASKS = ("classify", "zeroshot", "cluster")
#: The task of each scenario that is not a plain classification.
_SCENARIO_TASKS = {"zeroshot": "zeroshot", "selftaught_clustering": "cluster"}


def task_of(scenario: str) -> str:
    """What a run of ``scenario`` predicts: one of :data:`TASKS`."""
    return _SCENARIO_TASKS.get(str(scenario), "classify")


@dataclass(frozen=True)
class Inputs:
    """The samples a predictor takes, as the run's dataset gave them before its preprocessing.

    Attributes:
        kind: ``rows`` (arrays ``(n, n_features)``) or ``images`` (image files).
        n_features: the columns of a row (``None`` for image files).
        image_shape: ``(C, H, W)`` when a row is a flattened image.
        preprocess: the run's ``dataset.preprocess``.
        dtype: the rows' dtype in the run (``float32`` pixels, ``float64`` features), restored after preprocessing.
    """

    kind: str
    n_features: int | None = None
    image_shape: tuple[int, int, int] | None = None
    preprocess: str = "none"
    dtype: str = "float64"

    def describe(self) -> str:
        """What the predictor expects, for messages: ``rows of 64 values (1x8x8 images)`` or ``image files``."""
        if self.kind == "images":
            return "image files"
        shape = f" ({'x'.join(map(str, self.image_shape))} images)" if self.image_shape else ""
        return f"rows of {self.n_features} values{shape}"


class Predictor:
    """A fitted method with what it needs to label new samples (see the module's docstring).

    Args:
        method: the fitted method (:class:`~tlrun.methods.base.Method`).
        classes: the names of the method's output labels ``0..C-1`` (the dataset's classes).
        inputs: what the samples look like.
        task: one of :data:`TASKS`.
        feature_extractor: the frozen backbone a closed-form method's samples go through (``None``: none).
        descriptions: ``zeroshot``: every class the dataset describes (labels are their ids in ``classes``).
        default_classes: ``zeroshot``: the class names predicted among by default (the run's unseen classes).
        unknown_label: open-set DA: the label ``K`` of the class ``unknown``, the last of ``classes``, which a
            sample gets as the run's scoring gave it (:func:`tlrun.metrics.open_set_labels`: the method's own unknown
            output, else the unknown rule on its probabilities); ``None`` otherwise.
    """

    #: Open-set DA's unknown label (see Args); the class default serves models saved before it was kept.
    unknown_label: int | None = None

    def __init__(self, method: Any, classes: Sequence[str], inputs: Inputs, task: str = "classify",
                 feature_extractor: Any = None, descriptions: ClassDescriptions | None = None,
                 default_classes: Sequence[str] = (), unknown_label: int | None = None) -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
        self.method, self.classes, self.inputs, self.task = method, tuple(classes), inputs, task
        self.feature_extractor, self.descriptions = feature_extractor, descriptions
        self.default_classes, self.unknown_label = tuple(default_classes), unknown_label

    # ------------------------------------------------------------------------------------------------ inputs

    def check(self, X: Any) -> Any:
        """``X`` as the predictor takes it (rows as a 2-D float array, image files as a tuple of paths), else a
        :class:`~tlrun.errors.TlrunError` saying what was expected."""
        expected = self.inputs.describe()
        if self.inputs.kind == "images":
            if isinstance(X, np.ndarray) and X.dtype.kind in "biuf":
                return _as_images(X, expected)
            if isinstance(X, (str, Path)):
                raise TlrunError(f"this model takes {expected} (a list of paths), got {_what(X)}")
            return tuple(item if hasattr(item, "convert") else str(item) for item in X)
        try:
            if isinstance(X, (str, Path)):
                raise ValueError
            rows = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError):
            raise TlrunError(f"this model takes {expected}, got {_what(X)}") from None
        if rows.ndim == 1 and self.inputs.n_features and rows.size == self.inputs.n_features:
            rows = rows[None, :]
        if rows.ndim != 2 or rows.shape[1] != self.inputs.n_features:
            raise TlrunError(f"this model takes {expected}, got an array of shape {rows.shape}")
        return rows

    def prepare(self, X: Any) -> Any:
        """The method's input for samples ``X``: checked, preprocessed, through the frozen backbone if any."""
        from tlrun.data import preprocess

        X = self.check(X)
        if self.inputs.kind == "rows":
            X = preprocess.apply(self.inputs.preprocess, X).astype(self.inputs.dtype, copy=False)
        if self.feature_extractor is not None:
            from tlrun.backbones.extract import run_backbone

            X = run_backbone(self.feature_extractor, X, image_shape=self.inputs.image_shape, progress=False)
            if self.inputs.kind == "images":
                X = preprocess.apply(self.inputs.preprocess, X)
        return X

    # ------------------------------------------------------------------------------------------------ outputs

    def candidates(self, classes: Sequence[str] | ClassDescriptions | None = None) -> ClassDescriptions:
        """``zeroshot``: the descriptions of the classes to predict among: ``classes`` given as descriptions, or
        names among :attr:`descriptions`, or by default :attr:`default_classes`."""
        if isinstance(classes, ClassDescriptions):
            return classes
        names = tuple(classes) if classes is not None else self.default_classes
        known = self.descriptions.names
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise TlrunError(f"classes: {', '.join(unknown) or 'none given'}: the model describes these classes: "
                             f"{', '.join(known)} (give new ones as ClassDescriptions)")
        return self.descriptions.subset([self.descriptions.labels[known.index(name)] for name in names])

    def _output_names(self, classes: Any) -> tuple[str, ...]:
        if self.task == "zeroshot":
            return self.candidates(classes).names
        if classes is not None:
            raise TlrunError("classes= applies to zero-shot models only")
        return self.classes

    def predict(self, X: Any, classes: Sequence[str] | ClassDescriptions | None = None) -> np.ndarray:
        """The label (class name, or ``cluster k``) of every sample of ``X``."""
        return self.predict_with_scores(X, classes, scored=False)[0]

    def scores(self, X: Any, classes: Sequence[str] | ClassDescriptions | None = None) -> tuple[tuple[str, ...], np.ndarray] | None:
        """``(class names, scores (n, C))``: higher means more likely; ``None`` when the method has no scores. An
        open-set model without an unknown output of its own scores its known classes only."""
        return self.predict_with_scores(X, classes)[1]

    def predict_with_scores(self, X: Any, classes: Sequence[str] | ClassDescriptions | None = None, scored: bool = True
                            ) -> tuple[np.ndarray, tuple[tuple[str, ...], np.ndarray] | None]:
        """The labels of ``X`` and, when ``scored`` and the method has them, its scores, from one pass of ``X``
        through the run's steps: a method's labels are the row-wise argmax of its scores (open-set DA:
        :func:`tlrun.metrics.open_set_labels` of them)."""
        from tlrun.metrics import open_set_labels

        names = self._output_names(classes)
        prepared = self.prepare(X)
        if self.task == "zeroshot":
            values = self.method.class_scores(prepared, self.candidates(classes))
        else:
            values = self.method.predict_scores(prepared) if scored or self.unknown_label is not None else None
        if values is None:
            labels = np.asarray(self.method.predict(prepared), dtype=np.int64)
        else:
            values = np.asarray(values, dtype=np.float64)
            labels = (values.argmax(axis=1) if self.unknown_label is None else
                      open_set_labels(values, self.unknown_label, getattr(self.method, "predicts_unknown", False)))
        if self.task == "cluster":
            named = np.asarray([f"cluster {k}" for k in labels], dtype=object)
        else:
            named = np.asarray(names, dtype=object)[labels]
        if values is None or not scored:
            return named, None
        return named, (names[:values.shape[1]] if self.unknown_label is not None else names, values)

    # ------------------------------------------------------------------------------------------------ storage

    def save(self, file: str | Path) -> Path:
        """Write the predictor to ``file`` (moved to the CPU first); returns the file."""
        import torch

        relocate(self, "cpu")
        torch.save(self, str(file))
        return Path(file)


def load_predictor(file: str | Path, device: str = "cpu") -> Predictor:
    """A predictor written by :meth:`Predictor.save`, its tensors on ``device``."""
    import torch

    predictor = torch.load(str(file), map_location=device, weights_only=False)
    if not isinstance(predictor, Predictor):
        raise TlrunError(f"{file} holds no tlrun model")
    return relocate(predictor, device)


def relocate(value: Any, device: str, seen: set[int] | None = None) -> Any:
    """Move ``value`` to ``device`` in place: modules and tensors, and every ``torch.device`` attribute of tlrun's
    objects (a method remembers where it computes), through their attributes, lists, tuples and dicts."""
    import torch

    seen = set() if seen is None else seen
    if id(value) in seen:
        return value
    seen.add(id(value))
    attributes = vars(value) if type(value).__module__.startswith("tlrun.") and hasattr(value, "__dict__") else {}
    if isinstance(value, torch.nn.Module):  # its parameters and buffers move with it; its tlrun submodules walked
        value.to(device)
        for child in value.children():
            relocate(child, device, seen)
        attributes = {key: item for key, item in attributes.items() if key not in _MODULE_STATE}
    if isinstance(value, dict):
        for key, item in list(value.items()):
            value[key] = _relocated(item, device, seen)
    elif isinstance(value, list):
        value[:] = [_relocated(item, device, seen) for item in value]
    for key, item in list(attributes.items()):
        moved = _relocated(item, device, seen)
        if moved is not item:
            object.__setattr__(value, key, moved)
    return value


#: A module's own records of its parameters, buffers and submodules, which ``Module.to`` moves.
_MODULE_STATE = ("_parameters", "_buffers", "_modules")


def _relocated(item: Any, device: str, seen: set[int]) -> Any:
    import torch

    if isinstance(item, torch.device):
        return torch.device(device)
    if isinstance(item, torch.Tensor):
        return item.to(device)
    if isinstance(item, tuple):
        return type(item)(*(_relocated(each, device, seen) for each in item)) if hasattr(item, "_fields") else tuple(
            _relocated(each, device, seen) for each in item)
    return relocate(item, device, seen)


def _as_images(X: np.ndarray, expected: str) -> tuple[Any, ...]:
    """Pixel arrays ``(n, H, W)`` or ``(n, H, W, 3)`` (uint8, or floats in [0, 1]) as ``PIL`` images, which then go
    through the run's image transforms as decoded files do."""
    from PIL import Image

    if X.ndim not in (3, 4) or X.ndim == 4 and X.shape[-1] != 3:
        raise TlrunError(f"this model takes {expected}, or pixel arrays (n, H, W) or (n, H, W, 3); got shape {X.shape}")
    pixels = X if X.dtype == np.uint8 else np.clip(np.rint(np.asarray(X, dtype=np.float64) * 255), 0, 255).astype(np.uint8)
    return tuple(Image.fromarray(image) for image in pixels)


def _what(X: Any) -> str:
    if isinstance(X, (str, Path)):
        return f"one path ({X})"
    if isinstance(X, np.ndarray):
        return f"an array of shape {X.shape}"
    return type(X).__name__
