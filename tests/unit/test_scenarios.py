"""Label availability: what each scenario lets a method see, and the fit checks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tlrun.config import dataset_scenarios
from tlrun.runner.evaluation import EvaluationReporter, target_scorer
from tlrun.data.base import DataError, Domain
from tlrun.scenarios import EvaluationData, ScenarioError, TrainingData, Unlabeled, check_fit, split

CLASSES = ("a", "b", "c")


def _domain(name: str, n: int, seed: int, labels: np.ndarray | None = None) -> Domain:
    rng = np.random.default_rng(seed)
    y = labels if labels is not None else np.arange(n) % len(CLASSES)
    return Domain(name=name, X=rng.normal(size=(n, 4)), y=y.astype(np.int64), classes=CLASSES)


def _arrays(tree) -> list[np.ndarray]:
    """Every array reachable from a (nested) dataclass."""
    if isinstance(tree, np.ndarray):
        return [tree]
    if dataclasses.is_dataclass(tree):
        return [a for f in dataclasses.fields(tree) for a in _arrays(getattr(tree, f.name))]
    return []


def test_da_training_data_never_holds_target_labels():
    source, target = _domain("s", 30, 0), _domain("t", 24, 1)
    training, evaluation = split(source, target, "da", seed=0, source_val_fraction=0.2)
    assert isinstance(training.target, Unlabeled)
    assert not hasattr(training.target, "y")
    # Nothing the method receives depends on the target labels: permuting them leaves the training data as is.
    permuted = dataclasses.replace(target, y=np.random.default_rng(5).permutation(target.y))
    training_permuted, _ = split(source, permuted, "da", seed=0, source_val_fraction=0.2)
    for mine, other in zip(_arrays(training), _arrays(training_permuted), strict=True):
        np.testing.assert_array_equal(mine, other)
    # ... while evaluation reads the labels, on the very samples the method saw unlabeled, in the same order.
    np.testing.assert_array_equal(evaluation.target_test.y, target.y)
    np.testing.assert_array_equal(evaluation.target_test.X, training.target.X)
    assert evaluation.target_is_training_target
    # The reporter a method logs through holds no labels, only a scorer, and gives the method nothing back.
    reporter = EvaluationReporter(tracked=None, score=target_scorer(evaluation))
    assert not [value for value in vars(reporter).values() if isinstance(value, (np.ndarray, EvaluationData))]


def test_da_source_holdout_is_disjoint_and_seeded():
    source, target = _domain("s", 50, 0), _domain("t", 20, 1)
    training, evaluation = split(source, target, "da", seed=3, source_val_fraction=0.2)
    assert len(training.source) == 40 and len(evaluation.source_val) == 10
    rows = {tuple(r) for r in training.source.X}
    assert not rows & {tuple(r) for r in evaluation.source_val.X}
    again, _ = split(source, target, "da", seed=3, source_val_fraction=0.2)
    np.testing.assert_array_equal(again.source.X, training.source.X)
    whole, no_val = split(source, target, "da", seed=3)
    assert len(whole.source) == 50 and no_val.source_val is None
    assert whole.source.X is source.X  # the whole source trains: no copy of it


def test_finetune_labels_per_class_and_fraction():
    source, target = _domain("s", 30, 0), _domain("t", 60, 1)
    training, evaluation = split(source, target, "finetune", seed=1, target_labels_per_class=2)
    assert np.bincount(training.target.y).tolist() == [2, 2, 2]
    assert len(evaluation.target_test) == 54 and not evaluation.target_is_training_target
    seen = {tuple(r) for r in training.target.X}
    assert not seen & {tuple(r) for r in evaluation.target_test.X}
    by_fraction, _ = split(source, target, "finetune", seed=1, target_label_fraction=0.25)
    assert np.bincount(by_fraction.target.y).tolist() == [5, 5, 5]
    other_seed, _ = split(source, target, "finetune", seed=2, target_labels_per_class=2)
    assert not np.array_equal(other_seed.target.X, training.target.X)
    with pytest.raises(ScenarioError, match="exactly one"):
        split(source, target, "finetune", seed=1, target_labels_per_class=2, target_label_fraction=0.1)
    with pytest.raises(ScenarioError, match="leave none"):
        split(source, target, "finetune", seed=1, target_labels_per_class=20)


def test_class_sets_must_agree():
    source = _domain("s", 9, 0)
    target = _domain("t", 9, 1, labels=np.array([0, 1, 0, 1, 0, 1, 0, 1, 0]))
    with pytest.raises(DataError, match="only in source: c; only in target: none"):
        split(source, target, "da", seed=0)


def test_training_data_is_typed_by_label_availability():
    source, target = _domain("s", 12, 0), _domain("t", 12, 1)
    training, _ = split(source, target, "da", seed=0)
    assert isinstance(training, TrainingData) and training.num_classes == 3


METHODS = {"jda": ["da"], "finetune": ["finetune"], "source_only": ["da"]}


def test_check_fit_names_what_would_fit():
    check_fit("jda", "da", "digits", ["da", "finetune"], METHODS)
    with pytest.raises(ScenarioError) as error:
        check_fit("jda", "finetune", "digits", ["da", "finetune"], METHODS)
    message = str(error.value)
    assert "does not fit scenario 'finetune'" in message and "scenario=da" in message and "finetune" in message
    with pytest.raises(ScenarioError, match="no method supports 'zeroshot' yet"):
        check_fit("jda", "zeroshot", "digits", ["da"], METHODS)
    with pytest.raises(ScenarioError, match="cannot serve scenario 'finetune'"):
        check_fit("finetune", "finetune", "office31", ["da"], METHODS)
    with pytest.raises(ScenarioError, match="Datasets that serve zeroshot: dataset=digits, dataset=zsl_xlsa"):
        check_fit("eszsl", "zeroshot", "office31", ["da"], {"eszsl": ["zeroshot"]}, dataset_scenarios())
    with pytest.raises(ScenarioError, match="unknown method 'nope'.*jda"):
        check_fit("nope", "da", "digits", ["da"], METHODS)


def test_finetune_validation_split_is_per_class_and_disjoint_from_training_and_test():
    source, target = _domain("s", 30, 0), _domain("t", 60, 1)
    training, evaluation = split(source, target, "finetune", seed=2, target_labels_per_class=5, target_val_fraction=0.4)
    assert np.bincount(training.target.y).tolist() == [3, 3, 3]
    assert np.bincount(training.target_val.y).tolist() == [2, 2, 2]
    train_rows = {tuple(r) for r in training.target.X}
    val_rows = {tuple(r) for r in training.target_val.X}
    test_rows = {tuple(r) for r in evaluation.target_test.X}
    assert not train_rows & val_rows and not (train_rows | val_rows) & test_rows
    assert len(test_rows) == 60 - 15
    with pytest.raises(ScenarioError, match="holds out none"):  # floor(0.4 * 1) = 0 per class
        split(source, target, "finetune", seed=2, target_labels_per_class=1, target_val_fraction=0.4)
    with pytest.raises(ScenarioError, match="target_val_fraction must be in"):
        split(source, target, "finetune", seed=2, target_labels_per_class=5, target_val_fraction=1.0)


def test_selftaught_source_has_no_labels_and_target_is_a_labeled_pool():
    source, target = _domain("s", 30, 0), _domain("t", 30, 1)
    training, evaluation = split(source, target, "selftaught", seed=0, target_labels_per_class=2)
    assert isinstance(training.source, Unlabeled) and not hasattr(training.source, "y")
    assert not any(array is source.y or np.shares_memory(array, source.y) for array in _arrays(training))
    assert np.bincount(training.target.y).tolist() == [2, 2, 2]
    assert evaluation.source_val is None and len(evaluation.target_test) == 24
    training_rows = {row.tobytes() for row in training.target.X}
    assert not any(row.tobytes() in training_rows for row in evaluation.target_test.X)
    with pytest.raises(ScenarioError, match="selftaught: set exactly one"):
        split(source, target, "selftaught", seed=0, target_labels_per_class=None)


def test_selftaught_source_may_hold_other_classes():
    source = Domain("s", np.ones((6, 4)), np.zeros(6, dtype=np.int64), CLASSES)  # one class only
    training, _ = split(source, _domain("t", 30, 1), "selftaught", seed=0, target_labels_per_class=1)
    assert len(training.source) == 6 and training.num_classes == 3


def test_selftaught_clustering_holds_no_label_on_either_side():
    source, target = _domain("s", 12, 0), _domain("t", 9, 1)
    training, evaluation = split(source, target, "selftaught_clustering", seed=0)
    assert isinstance(training.source, Unlabeled) and isinstance(training.target, Unlabeled)
    labels = [array for array in _arrays(training) if array.dtype.kind == "i"]
    assert labels == []  # no integer array (label) anywhere in the training data
    assert evaluation.target_is_training_target and evaluation.scenario == "selftaught_clustering"
    np.testing.assert_array_equal(evaluation.target_test.y, target.y)
    assert training.num_classes == 3


def test_zeroshot_needs_its_own_split():
    with pytest.raises(ScenarioError, match="split_zeroshot"):
        split(_domain("s", 12, 0), _domain("t", 12, 1), "zeroshot", seed=0)


def test_da_can_hold_part_of_the_target_out_of_training():
    """scenario.target_test_fraction: no held-out sample reaches fit; each class keeps its share; the rest is scored
    transductively, the held-out part inductively."""
    source, target = _domain("s", 30, 0), _domain("t", 60, 1)
    whole, transductive = split(source, target, "da", seed=0)
    assert transductive.protocol == "transductive" and transductive.transductive is None
    training, evaluation = split(source, target, "da", seed=0, target_test_fraction=0.25)
    assert evaluation.protocol == "held_out" and not evaluation.target_is_training_target
    adapted = {tuple(row) for row in training.target.X}
    held_out = {tuple(row) for row in evaluation.target_test.X}
    assert not adapted & held_out and len(adapted) + len(held_out) == len(target)
    assert np.bincount(evaluation.target_test.y).tolist() == [5, 5, 5]  # a quarter of each class's 20
    np.testing.assert_array_equal(evaluation.transductive.X, training.target.X)
    again, _ = split(source, target, "da", seed=0, target_test_fraction=0.25)
    np.testing.assert_array_equal(again.target.X, training.target.X)
