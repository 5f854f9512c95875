"""The classifiers closed-form methods put on top of their adapted features.

:func:`make_classifier` builds one by name:

- ``1nn``: the nearest neighbour by Euclidean distance, in torch (float64, chunked over the queries). Ties go
  to the lowest training index, as MATLAB's ``knnsearch``/``min`` resolve them, so that published 1-NN numbers
  reproduce exactly. It cannot weight samples.
- ``logreg``: multinomial logistic regression (scikit-learn), L2-penalised with inverse strength ``C``.
- ``linear_svm``: a one-vs-rest linear SVM (scikit-learn's liblinear ``LinearSVC``, squared hinge), ``C``.

Every classifier has ``fit(X, y, sample_weight=None)``, ``predict(X) -> int64 labels`` and ``scores(X)`` (class
probabilities, or decision values for the SVM; ``None`` for 1-NN), and says through
``supports_sample_weight`` whether ``fit`` honours weights (as :data:`~tlrun.methods.settings.WEIGHTING_CLASSIFIERS`
lists them: methods such as KMM check the name at construction).
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol

import numpy as np
import torch

from tlrun.config import read_only
from tlrun.methods.settings import chosen_classifier_options

#: The ``classifier_options`` of the method configs (conf/method/*.yaml), their constructors' default: each
#: classifier's entry, ``C`` at 1.
DEFAULT_CLASSIFIER_OPTIONS = read_only({"1nn": {}, "logreg": {"C": 1.0}, "linear_svm": {"C": 1.0}})


class Classifier(Protocol):
    """What a method needs of a classifier."""

    supports_sample_weight: bool

    def fit(self, X: np.ndarray | torch.Tensor, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "Classifier":
        """Train on ``X`` (n × d) with labels ``y`` (n,), optionally weighting each sample."""

    def predict(self, X: np.ndarray | torch.Tensor) -> np.ndarray:
        """Labels (int64) for the rows of ``X``."""

    def scores(self, X: np.ndarray | torch.Tensor) -> np.ndarray | None:
        """Per-class scores ``(n, C)`` of the rows of ``X`` (``None``: the classifier has none)."""


def as_float64(X: np.ndarray | torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """``X`` as a float64 tensor on ``device`` (where the closed-form methods compute)."""
    return torch.as_tensor(X, dtype=torch.float64).to(device)


def stacked_float64(arrays: list[np.ndarray], device: str | torch.device) -> torch.Tensor:
    """The rows of ``arrays`` stacked into one new float64 tensor on ``device``, each array converted as it is
    copied in (no concatenated or converted copy beside the result: at 100,000 × 2,048 each is 1.6 GB)."""
    stacked = torch.empty((sum(len(array) for array in arrays), *np.shape(arrays[0])[1:]), dtype=torch.float64,
                          device=device)
    start = 0
    for array in arrays:
        stacked[start : start + len(array)] = torch.as_tensor(np.asarray(array))
        start += len(array)
    return stacked


def _as_numpy(X: np.ndarray | torch.Tensor) -> np.ndarray:
    return X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else np.asarray(X, dtype=np.float64)


class NearestNeighbor:
    """1-nearest-neighbour classification by Euclidean distance.

    The squared distance ``‖q − s‖² = ‖s‖² − 2 qᵀs + ‖q‖²`` is computed by matrix products in float64; the
    ``‖q‖²`` term is constant per query and left out of the ``argmin``. Queries are processed in chunks so that
    at most ``max_block`` distances are held at once. ``torch.argmin`` returns the first minimum, so ties go to
    the lowest training index.
    """

    supports_sample_weight = False

    def __init__(self, device: str | torch.device = "cpu", max_block: int = 1 << 24) -> None:
        self.device = torch.device(device)
        self.max_block = max_block

    def fit(self, X: np.ndarray | torch.Tensor, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "NearestNeighbor":
        if sample_weight is not None:
            raise ValueError("the 1nn classifier cannot weight samples; use classifier=logreg or linear_svm")
        self._train = as_float64(X, self.device)
        self._train_sq_norms = (self._train * self._train).sum(dim=1)
        self._labels = np.asarray(y, dtype=np.int64)
        return self

    def nearest(self, X: np.ndarray | torch.Tensor) -> np.ndarray:
        """Index of the nearest training sample of every row of ``X`` (ties: the lowest index)."""
        queries = as_float64(X, self.device)
        chunk = max(1, self.max_block // max(1, len(self._train)))
        nearest = [
            (self._train_sq_norms[None, :] - 2.0 * block @ self._train.T).argmin(dim=1)
            for block in queries.split(chunk)
        ]
        return torch.cat(nearest).cpu().numpy() if nearest else np.zeros(0, dtype=np.int64)

    def predict(self, X: np.ndarray | torch.Tensor) -> np.ndarray:
        return self._labels[self.nearest(X)]

    def scores(self, X: np.ndarray | torch.Tensor) -> None:
        return None


class SklearnClassifier:
    """A scikit-learn estimator behind the :class:`Classifier` interface (inputs moved to CPU numpy)."""

    supports_sample_weight = True

    def __init__(self, estimator: Any, num_classes: int | None = None) -> None:
        self.estimator = estimator
        self.num_classes = num_classes

    def fit(self, X: np.ndarray | torch.Tensor, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "SklearnClassifier":
        self.estimator.fit(_as_numpy(X), np.asarray(y), sample_weight=sample_weight)
        return self

    def predict(self, X: np.ndarray | torch.Tensor) -> np.ndarray:
        return self.estimator.predict(_as_numpy(X)).astype(np.int64)

    def scores(self, X: np.ndarray | torch.Tensor) -> np.ndarray:
        """``predict_proba`` where the estimator has it, else its decision values (two classes: ``[-d, d]``), in
        column ``k`` for label ``k`` of ``0..num_classes-1``; a label the training set lacked scores 0 (probability)
        or ``-inf`` (decision value), so the row-wise argmax is :meth:`predict`."""
        probabilities = hasattr(self.estimator, "predict_proba")
        if probabilities:
            values = self.estimator.predict_proba(_as_numpy(X))
        else:
            values = self.estimator.decision_function(_as_numpy(X))
            values = np.stack([-values, values], axis=1) if values.ndim == 1 else values
        fitted = np.asarray(self.estimator.classes_, dtype=np.int64)
        width = self.num_classes or int(fitted.max()) + 1
        scores = np.full((len(values), width), 0.0 if probabilities else -np.inf)
        scores[:, fitted] = values
        return scores


def _nearest_neighbor(device: str | torch.device, seed: int = 0, num_classes: int | None = None,
                      **options: Any) -> NearestNeighbor:
    return NearestNeighbor(device=device, **options)  # deterministic: the seed has nothing to set; no scores


def _logistic_regression(device: str | torch.device, C: float = 1.0, max_iter: int = 1000, seed: int = 0,
                         num_classes: int | None = None) -> SklearnClassifier:
    from sklearn.linear_model import LogisticRegression

    return SklearnClassifier(LogisticRegression(C=C, max_iter=max_iter, random_state=seed), num_classes)


def _linear_svm(device: str | torch.device, C: float = 1.0, max_iter: int = 10000, seed: int = 0,
                num_classes: int | None = None) -> SklearnClassifier:
    from sklearn.svm import LinearSVC

    return SklearnClassifier(LinearSVC(C=C, max_iter=max_iter, random_state=seed), num_classes)


_BUILDERS = {
    "1nn": _nearest_neighbor,
    "logreg": _logistic_regression,
    "linear_svm": _linear_svm,
}


def make_classifier(
    name: str,
    device: str | torch.device = "cpu",
    options: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
    num_classes: int | None = None,
) -> Classifier:
    """Build the classifier ``name`` (one of :data:`~tlrun.methods.settings.CLASSIFIERS`).

    ``device`` is where ``1nn`` computes (the scikit-learn ones run on the CPU). ``options`` maps classifier
    names to their constructor arguments (``max_block`` for ``1nn``; ``C``, ``max_iter`` and ``seed`` for
    ``logreg`` and ``linear_svm``), e.g. ``{"linear_svm": {"C": 1e-4}}``; only the entry of ``name`` is used,
    so switching ``method.classifier`` never carries another classifier's settings over. ``seed`` seeds the
    scikit-learn solvers (the run's seed, unless the options set one). ``num_classes`` is the width of
    ``scores`` (default: the largest label fitted, plus one).
    """
    chosen = chosen_classifier_options(name, options)
    return _BUILDERS[name](device, **{"seed": seed, **chosen}, num_classes=num_classes)
