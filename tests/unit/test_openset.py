"""Partial and open-set DA's pure pieces: carving a task out of two domains, the class-set check the carving allows,
the split's open-set evaluation data, the metrics (OS*, UNK, H-score) and the losses of PADA and OSBP, each against a
hand computation."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tlrun import metrics
from tlrun.config import CARVING_KEYS, constructor_arguments, group_options, option_node
from tlrun.data.base import (UNKNOWN_CLASS, ClassCarving, DataError, Domain, carve_classes, check_class_sets,
                             class_ids, pool_domains)
from tlrun.losses import domain_adversarial_loss, open_set_boundary_loss, pada_class_weights
from tlrun.runner.evaluation import open_set_predictions
from tlrun.scenarios import ScenarioError, Unlabeled, check_carving_fits, split

CLASSES = ("zero", "one", "two", "three")


def _domain(name: str, labels: list[int]) -> Domain:
    y = np.asarray(labels, dtype=np.int64)
    return Domain(name, np.arange(len(y), dtype=np.float64)[:, None] + 100 * (name == "target"), y, CLASSES)


SOURCE = _domain("source", [0, 0, 1, 1, 2, 2, 3, 3])
TARGET = _domain("target", [0, 1, 1, 2, 2, 3, 3, 3])


def test_without_options_the_pair_is_left_as_it_is():
    assert carve_classes(SOURCE, TARGET) == (SOURCE, TARGET, None)


def test_partial_keeps_the_target_samples_of_the_chosen_classes_with_their_labels():
    source, target, carving = carve_classes(SOURCE, TARGET, target_classes=[1, "two"])  # ids or names
    assert source is SOURCE
    assert target.y.tolist() == [1, 1, 2, 2] and target.X[:, 0].tolist() == [101, 102, 103, 104]
    assert target.classes == CLASSES
    assert carving == ClassCarving("partial", CLASSES, ("one", "two"))
    assert carving.unknown_label is None
    assert carving.tags() == {"class_sets": "partial", "classes.source": "zero,one,two,three",
                              "classes.target": "one,two"}


def test_open_set_relabels_the_known_classes_in_sorted_order_and_the_others_unknown():
    source, target, carving = carve_classes(SOURCE, TARGET, source_classes=[3, 1])
    assert source.classes == ("one", "three") and source.y.tolist() == [0, 0, 1, 1]
    assert source.X[:, 0].tolist() == [2, 3, 6, 7]
    assert target.classes == ("one", "three", UNKNOWN_CLASS)
    assert target.y.tolist() == [2, 0, 0, 2, 2, 1, 1, 1] and len(target) == len(TARGET)  # every target sample kept
    assert carving.kind == "open_set" and carving.unknown_label == 2
    check_class_sets(source, target, carving)


def test_open_set_with_target_classes_leaves_the_other_classes_out_of_the_target():
    """OSBP's protocol: known classes in both domains, some unknown ones in the target, the rest in neither."""
    source, target, carving = carve_classes(SOURCE, TARGET, source_classes=[0, 1], target_classes=[0, 1, 3])
    assert source.y.tolist() == [0, 0, 1, 1] and target.classes == ("zero", "one", UNKNOWN_CLASS)
    assert target.y.tolist() == [0, 1, 1, 2, 2, 2] and carving.unknown_label == 2  # the two twos are gone


def test_carving_pooled_sources_keeps_each_sample_s_source_domain():
    pooled = pool_domains([SOURCE, replace(SOURCE, name="other", y=SOURCE.y[::-1].copy())])
    source, _, _ = carve_classes(pooled, TARGET, source_classes=[0, 3])
    assert source.domain_names == ("source", "other")
    assert source.domain_index.tolist() == [0, 0, 0, 0, 1, 1, 1, 1] and source.y.tolist() == [0, 0, 1, 1, 1, 1, 0, 0]


@pytest.mark.parametrize("options, message", [
    ({"source_classes": [0, 1], "target_classes": [1, 2]}, "universal DA"),
    ({"target_classes": []}, "non-empty list"),
    ({"target_classes": 2}, "non-empty list"),
    ({"source_classes": [0, 7]}, "no class 7"),
    ({"source_classes": ["zero", "seven"]}, "no class 'seven'"),
    ({"target_classes": [1, 1, 2]}, "twice"),
    ({"target_classes": [3]}, "fewer than two classes"),
    ({"source_classes": [2]}, "at least two known classes"),
    ({"source_classes": [0, 1, 2, 3]}, "no unknown class"),
])
def test_bad_carving_options_are_data_errors(options, message):
    with pytest.raises(DataError, match=message):
        carve_classes(SOURCE, TARGET, **options)


def test_a_number_is_an_id_or_a_name_and_refused_when_these_are_two_classes():
    """A ``features`` file labeled 1..10 has the class names ``"1".."10"`` on the ids 0..9: ``1`` could be either."""
    numbered = tuple(str(label) for label in range(1, 11))
    assert class_ids("target_classes", [0, 10], numbered) == [0, 9]  # only an id; only a name
    assert class_ids("target_classes", ["1", "2"], numbered) == [0, 1]  # quoted: names
    assert class_ids("target_classes", [2, "three"], CLASSES) == [2, 3]  # names that are no numbers: ids as given
    assert class_ids("target_classes", [3, 1], tuple(str(k) for k in range(10))) == [3, 1]  # name k is id k
    with pytest.raises(DataError, match=r"1 could be the class id 1 \(named '2'\) or the class named '1' \(id 0\)"):
        class_ids("target_classes", [1, 2], numbered)


def test_a_partial_target_class_must_be_a_source_class():
    source = _domain("source", [0, 0, 1, 1, 2, 2])
    with pytest.raises(DataError, match="has no sample of class three"):
        carve_classes(source, TARGET, target_classes=[2, 3])


def test_the_class_sets_may_differ_only_as_the_carving_allows():
    partial_target = _domain("target", [1, 2, 2])
    with pytest.raises(DataError, match="only in source: zero, three"):
        check_class_sets(SOURCE, partial_target, None)  # the same classes, unless carved
    check_class_sets(SOURCE, partial_target, ClassCarving("partial", CLASSES, ("one", "two")))
    with pytest.raises(DataError, match="among the source's"):
        check_class_sets(partial_target, SOURCE, ClassCarving("partial", ("one", "two"), CLASSES))
    with pytest.raises(DataError, match="open-set"):
        check_class_sets(SOURCE, TARGET, ClassCarving("open_set", CLASSES, CLASSES))


def test_an_open_set_split_trains_among_the_known_classes_and_evaluates_with_the_unknown_one():
    source, target, carving = carve_classes(SOURCE, TARGET, source_classes=[0, 1, 2])
    training, evaluation = split(source, target, "da", seed=0, carving=carving)
    assert training.num_classes == 3 and training.classes == ("zero", "one", "two")
    assert isinstance(training.target, Unlabeled) and len(training.target) == len(TARGET)  # target labels withheld
    assert evaluation.unknown_label == 3 and evaluation.target_test.y.tolist() == [0, 1, 1, 2, 2, 3, 3, 3]
    closed = split(SOURCE, TARGET, "da", seed=0)[1]
    assert closed.unknown_label is None


def test_a_partial_split_keeps_every_source_class():
    source, target, carving = carve_classes(SOURCE, TARGET, target_classes=[1, 2])
    training, evaluation = split(source, target, "da", seed=0, carving=carving)
    assert training.num_classes == 4 and evaluation.unknown_label is None
    assert set(evaluation.target_test.y.tolist()) == {1, 2}


def test_the_carving_must_fit_the_scenario_and_the_method():
    check_carving_fits("partial", "semi_da", "jda", "closed_form", ["dann"])  # partial DA: any DA method
    check_carving_fits("open_set", "da", "dann", "deep", ["dann"])
    with pytest.raises(ScenarioError, match="runs in scenario da or semi_da"):
        check_carving_fits("partial", "finetune", "finetune", "deep", ["dann"])
    with pytest.raises(ScenarioError, match="runs in scenario da .*not semi_da"):
        check_carving_fits("open_set", "semi_da", "dann", "deep", ["dann"])
    with pytest.raises(ScenarioError, match="needs a deep method.*use one of dann, osbp"):
        check_carving_fits("open_set", "da", "tca", "closed_form", ["dann", "osbp"])
    check_carving_fits(None, "semi_da", "dann", "deep", ["dann"])  # closed-set: any method of the scenario


def test_a_method_made_for_open_set_da_refuses_any_other_task():
    check_carving_fits("open_set", "da", "osbp", "deep", ["osbp"], needs="open_set")
    for kind, what in ((None, "closed-set"), ("partial", "partial")):
        with pytest.raises(ScenarioError, match=f"'osbp' is made for open-set DA only, and this task is {what}: "
                                                r"carve one with dataset.source_classes="):
            check_carving_fits(kind, "da", "osbp", "deep", ["osbp"], needs="open_set")


def test_open_set_scores_against_a_hand_computation():
    # K = 2 known classes and unknown (2). Class 0: 3 of 4 right; class 1: 1 of 2 (the other called unknown);
    # unknown: 2 of 4 right (one called 0, one called 1).
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    predictions = np.array([0, 0, 0, 1, 1, 2, 2, 2, 0, 1])
    scores = metrics.open_set_scores(labels, predictions, unknown=2)
    os_star, unk = (3 / 4 + 1 / 2) / 2, 2 / 4
    assert scores["target_os_star"] == pytest.approx(0.625)
    assert scores["target_unk"] == pytest.approx(unk)
    assert scores["target_h_score"] == pytest.approx(2 * os_star * unk / (os_star + unk))  # 0.5556
    assert scores["target_acc"] == pytest.approx((3 / 4 + 1 / 2 + 2 / 4) / 3)  # OS = (K OS* + UNK) / (K + 1)
    assert metrics.target_scores("classify", labels, predictions, unknown=2)[0]["target_acc"] == scores["target_acc"]
    with pytest.raises(ValueError, match="unknown samples"):
        metrics.open_set_scores(np.array([0, 1]), np.array([0, 1]), unknown=2)


def test_the_unknown_rule_reads_the_largest_probability_only():
    probabilities = np.array([[0.9, 0.1], [0.45, 0.55], [0.5, 0.5], [0.3, 0.2]])  # the last: an unnormalised row
    assert metrics.UNKNOWN_THRESHOLD == 0.5
    assert metrics.unknown_by_confidence(probabilities, unknown=2).tolist() == [0, 1, 0, 2]


class _Scored:
    def predict_scores(self, X):
        return np.array([[0.8, 0.2], [0.4, 0.35]])[: len(X)]


class _WithUnknownOutput:
    predicts_unknown = True

    def predict_scores(self, X):  # K + 1 = 3 columns, the last unknown: the argmax, under 0.5 or not
        return np.array([[0.3, 0.3, 0.4], [0.45, 0.3, 0.25]])


def test_open_set_predictions_use_an_unknown_output_or_else_the_rule():
    assert open_set_predictions(_Scored(), np.zeros((2, 1)), unknown=2).tolist() == [0, 2]
    assert open_set_predictions(_WithUnknownOutput(), np.zeros((2, 1)), unknown=2).tolist() == [2, 0]


def test_pada_class_weights_against_a_hand_computation():
    probabilities = torch.tensor([[0.6, 0.3, 0.1], [0.8, 0.1, 0.1], [0.4, 0.5, 0.1]])
    # mean (0.6, 0.3, 0.1), divided by its max 0.6
    assert torch.allclose(pada_class_weights(probabilities), torch.tensor([1.0, 0.5, 1 / 6]))
    with pytest.raises(ValueError):
        pada_class_weights(torch.zeros(0, 3))


def test_the_weighted_domain_loss_against_a_hand_computation():
    squeeze = torch.nn.Flatten(0)  # one logit per sample: the feature itself
    source, target = torch.tensor([[0.0], [2.0]]), torch.tensor([[-1.0]])
    weights = torch.tensor([0.5, 1.0])
    by_hand = -(0.5 * math.log(0.5) + math.log(1 / (1 + math.exp(-2.0))) + math.log(1 - 1 / (1 + math.exp(1.0)))) / 3
    assert domain_adversarial_loss(squeeze, source, target, source_weights=weights).item() == pytest.approx(by_hand)
    unweighted = domain_adversarial_loss(squeeze, source, target).item()
    ones = torch.ones(2)
    assert domain_adversarial_loss(squeeze, source, target, source_weights=ones).item() == pytest.approx(unweighted)


def test_the_open_set_boundary_loss_against_a_hand_computation():
    logits = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, math.log(3.0)]])
    # p(unknown) = 1/3 for the first sample, 3 / (e^2 + 1 + 3) for the second; t = 0.5
    p = [1 / 3, 3 / (math.exp(2.0) + 4)]
    by_hand = -sum(0.5 * math.log(q) + 0.5 * math.log(1 - q) for q in p) / 2
    assert open_set_boundary_loss(logits).item() == pytest.approx(by_hand, rel=1e-6)
    t = 0.3
    assert open_set_boundary_loss(logits, t).item() == pytest.approx(
        -sum(t * math.log(q) + (1 - t) * math.log(1 - q) for q in p) / 2, rel=1e-6)
    # at p(unknown) = t the classifier's gradient vanishes: t is the boundary it learns
    at_boundary = torch.tensor([[0.0, 0.0, math.log(2.0)]], requires_grad=True)  # p(unknown) = 2/4
    open_set_boundary_loss(at_boundary).backward()
    assert torch.allclose(at_boundary.grad, torch.zeros(1, 3), atol=1e-7)


@pytest.mark.parametrize("dataset", group_options("dataset"))
def test_every_dataset_config_has_the_carving_options_unset_and_keeps_them_from_its_constructor(dataset):
    node = OmegaConf.create(option_node("dataset", dataset))
    assert node.target_classes is None and node.source_classes is None
    assert not set(CARVING_KEYS) & set(constructor_arguments(node))
