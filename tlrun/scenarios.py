"""Label availability: which splits carry labels, and which methods and datasets fit which scenario.

The four cells of transfer learning (source × target labels):

=============  ==========================  ========================================
source\\target  labeled                     unlabeled
=============  ==========================  ========================================
labeled        ``finetune``                ``da``, ``zeroshot`` (target classes unseen)
unlabeled      ``selftaught``              ``selftaught_clustering``
=============  ==========================  ========================================

:func:`split` turns two loaded domains into what a method may train on (:class:`TrainingData`) and what only
the evaluation reads (:class:`EvaluationData`). Labels a scenario withholds are not hidden: they are never put
into the training containers at all (:class:`Unlabeled` has no label field).

Imports numpy only: compatibility errors are raised before torch is imported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tlrun.data.base import Domain, check_same_classes
from tlrun.errors import TlrunError


@dataclass(frozen=True)
class ScenarioSpec:
    """One cell of the table: what is labeled on each side."""

    name: str
    source: str
    target: str
    summary: str


SCENARIOS: dict[str, ScenarioSpec] = {
    spec.name: spec
    for spec in (
        ScenarioSpec("da", "labeled", "unlabeled", "domain adaptation: same classes, shifted inputs"),
        ScenarioSpec("finetune", "labeled", "labeled (a few)", "fine-tuning, layer transfer, multi-task"),
        ScenarioSpec("zeroshot", "labeled", "unseen classes", "classes linked by attributes or label embeddings"),
        ScenarioSpec("selftaught", "unlabeled", "labeled (a few)", "self-taught learning"),
        ScenarioSpec("selftaught_clustering", "unlabeled", "unlabeled", "self-taught clustering"),
    )
}


class ScenarioError(TlrunError):
    """A method, dataset and scenario that do not fit together. The message names what would fit."""


@dataclass(frozen=True)
class Labeled:
    """Samples with their labels (``X`` as in :class:`~tlrun.data.base.Domain`)."""

    X: np.ndarray | tuple[str, ...]
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Unlabeled:
    """Samples without labels: the labels were never copied here."""

    X: np.ndarray | tuple[str, ...]

    def __len__(self) -> int:
        return len(self.X)


@dataclass(frozen=True)
class TrainingData:
    """Everything a method may train on.

    ``source_val`` is the held-out labeled part of the source (for label-free model selection), or ``None``;
    ``target_val`` (``finetune`` only) is the part of the labeled target pool held out for early stopping and
    checkpoint selection, or ``None``; ``augment`` names the dataset's training-time augmentation policy (see
    :mod:`tlrun.backbones.inputs`).
    """

    source: Labeled | Unlabeled
    target: Labeled | Unlabeled
    num_classes: int
    classes: tuple[str, ...]
    image_shape: tuple[int, int, int] | None = None
    source_val: Labeled | None = None
    augment: str = "none"
    target_val: Labeled | None = None


@dataclass(frozen=True)
class EvaluationData:
    """Held by the runner, never passed to a method's ``fit``.

    ``target_test`` is what ``target_acc`` is measured on. In ``da`` it is the whole target domain, the same
    samples as the unlabeled training target in the same order (the transductive protocol of the papers).
    ``source_val`` is a held-out part of the source, or ``None`` when the whole source trains.
    """

    target_test: Labeled
    source_val: Labeled | None
    target_is_training_target: bool


def natural_scenario(method_scenarios: list[str]) -> str:
    """The scenario a method runs in when none is given: the first one it declares."""
    return method_scenarios[0]


def check_fit(
    method: str,
    scenario: str,
    dataset: str,
    dataset_scenarios: list[str],
    method_scenarios: dict[str, list[str]],
) -> None:
    """Raise :class:`ScenarioError` unless ``method`` supports ``scenario`` and ``dataset`` can serve it.

    ``method_scenarios`` maps every known method to the scenarios it declares; it is used to name the methods
    that would fit.
    """
    if method not in method_scenarios:
        raise ScenarioError(f"unknown method {method!r}; known methods: {', '.join(sorted(method_scenarios))}")
    if scenario not in SCENARIOS:
        raise ScenarioError(f"unknown scenario {scenario!r}; known scenarios: {', '.join(SCENARIOS)}")
    supported = method_scenarios[method]
    if scenario not in supported:
        fitting = sorted(name for name, scens in method_scenarios.items() if scenario in scens)
        raise ScenarioError(
            f"method {method!r} does not fit scenario {scenario!r} "
            f"({SCENARIOS[scenario].source} source, {SCENARIOS[scenario].target} target): it supports "
            f"{', '.join(supported)}. Use scenario={supported[0]}"
            + (f", or a method for {scenario}: {', '.join(fitting)}." if fitting else f"; no method supports {scenario!r} yet.")
        )
    if scenario not in dataset_scenarios:
        raise ScenarioError(
            f"dataset {dataset!r} cannot serve scenario {scenario!r}: it serves {', '.join(dataset_scenarios)}."
        )


def _holdout(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random (train, held-out) index split with ``round(fraction · n)`` held out."""
    order = rng.permutation(n)
    n_out = int(round(fraction * n))
    return np.sort(order[n_out:]), np.sort(order[:n_out])


def take(X: np.ndarray | tuple[str, ...], index: np.ndarray) -> np.ndarray | tuple[str, ...]:
    if isinstance(X, np.ndarray):
        return X[index]
    return tuple(X[i] for i in index)


def check_target_labels(
    per_class: int | None, fraction: float | None, val_fraction: float = 0.0, separate_test: bool = False
) -> None:
    """``finetune`` needs exactly one of a count per class (≥ 1) and a fraction (in (0, 1); up to 1 when the
    test set is a separate domain), and a validation fraction in [0, 1)."""
    if (per_class is None) == (fraction is None):
        raise ScenarioError(
            "finetune: set exactly one of scenario.target_labels_per_class, scenario.target_label_fraction "
            "(the other =null)"
        )
    if per_class is not None and (not isinstance(per_class, int) or per_class < 1):
        raise ScenarioError(f"finetune: scenario.target_labels_per_class must be an integer >= 1, got {per_class!r}")
    if fraction is not None and not (0.0 < float(fraction) <= 1.0 if separate_test else 0.0 < float(fraction) < 1.0):
        raise ScenarioError(
            f"finetune: scenario.target_label_fraction must be in (0, {'1]' if separate_test else '1)'}, got {fraction!r}"
            + ("" if separate_test else " (1 needs a separate test domain, dataset.target_test)")
        )
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ScenarioError(f"finetune: scenario.target_val_fraction must be in [0, 1), got {val_fraction!r}")


def _labeled_target_index(
    y: np.ndarray,
    per_class: int | None,
    fraction: float | None,
    val_fraction: float,
    rng: np.random.Generator,
    separate_test: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the labeled target pool, split into (training, validation): ``per_class`` samples of every
    class, or ``fraction`` of each class; ``floor(val_fraction · count)`` of each class's pool validate."""
    check_target_labels(per_class, fraction, val_fraction, separate_test)
    train, val = [], []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        count = per_class if per_class is not None else max(1, int(round(fraction * len(members))))
        if count > len(members) or (count == len(members) and not separate_test):
            raise ScenarioError(
                f"finetune: class {label} has {len(members)} target samples, so {count} labeled ones leave none "
                "to test on; lower scenario.target_labels_per_class or scenario.target_label_fraction"
            )
        n_val = int(np.floor(val_fraction * count))
        if val_fraction > 0 and n_val == 0:
            raise ScenarioError(
                f"finetune: scenario.target_val_fraction={val_fraction} of {count} labeled samples of class {label} "
                "holds out none; raise the fraction or the labels per class (or set it to 0: no validation split)"
            )
        val.append(members[:n_val])
        train.append(members[n_val:count])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def split(
    source: Domain,
    target: Domain,
    scenario: str,
    *,
    seed: int,
    source_val_fraction: float = 0.0,
    target_labels_per_class: int | None = None,
    target_label_fraction: float | None = None,
    target_val_fraction: float = 0.0,
    target_test: Domain | None = None,
    augment: str = "none",
) -> tuple[TrainingData, EvaluationData]:
    """Split two loaded domains into training and evaluation data for ``scenario``.

    - ``da``: labeled source (less ``source_val_fraction`` held out), the whole target *without* labels;
      evaluation on the whole target.
    - ``finetune``: labeled source, a labeled pool of the target (per class or a fraction of each class, drawn
      from ``seed``) of which ``target_val_fraction`` of each class is held out as ``target_val`` (early
      stopping, checkpoint selection); evaluation on the rest of the target, or on ``target_test`` when the
      dataset has a separate test domain (then the pool may be the whole target). No choice reads the test set.
    """
    check_same_classes(source, target)
    if target_test is not None:
        if target_test.name == target.name:
            raise ScenarioError(
                f"finetune: the test domain {target_test.name!r} is the target domain itself, so the labeled pool "
                "would be drawn from the test set; set dataset.target_test to another folder, or to null"
            )
        check_same_classes(target, target_test)
    rng = np.random.default_rng(seed)
    train_index, val_index = _holdout(len(source), source_val_fraction, rng)
    source_train = Labeled(take(source.X, train_index), source.y[train_index])
    source_val = Labeled(take(source.X, val_index), source.y[val_index]) if len(val_index) else None

    target_val: Labeled | None = None
    if scenario == "da":
        training_target: Labeled | Unlabeled = Unlabeled(target.X)
        test = Labeled(target.X, target.y)
        aligned = True
    elif scenario == "finetune":
        labeled, validating = _labeled_target_index(
            target.y, target_labels_per_class, target_label_fraction, target_val_fraction, rng, target_test is not None
        )
        training_target = Labeled(take(target.X, labeled), target.y[labeled])
        if len(validating):
            target_val = Labeled(take(target.X, validating), target.y[validating])
        if target_test is None:
            rest = np.setdiff1d(np.arange(len(target)), np.concatenate([labeled, validating]))
            test = Labeled(take(target.X, rest), target.y[rest])
        else:
            test = Labeled(target_test.X, target_test.y)
        aligned = False
    else:
        raise ScenarioError(f"scenario {scenario!r} has no data split yet; available: da, finetune")

    training = TrainingData(
        source=source_train,
        target=training_target,
        num_classes=len(source.classes),
        classes=source.classes,
        image_shape=source.image_shape,
        source_val=source_val,
        augment=augment,
        target_val=target_val,
    )
    return training, EvaluationData(target_test=test, source_val=source_val, target_is_training_target=aligned)
