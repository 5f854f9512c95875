"""Semi-supervised domain adaptation (``scenario=semi_da``): a few labeled target samples per class beside the
unlabeled rest; deep DA methods add them to their classification loss, SDT applies its soft labels to them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from torch.nn import functional as F

from tests.helpers import QUICK
from tlrun.backbones import MLP
from tlrun.config import instantiate, methods
from tlrun.data.base import Domain
from tlrun.run import run
from tlrun.scenarios import Labeled, TrainingData, Unlabeled, split

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SEMI_DA_METHODS = methods(scenario="semi_da")


def test_every_deep_da_method_runs_in_semi_da():
    """But those made for a task carved in ``da`` only (``osbp``: open-set DA)."""
    deep_da = methods(family="deep", scenario="da", closed_set=True)
    assert deep_da and set(deep_da) <= set(SEMI_DA_METHODS)


def test_semi_da_labels_a_few_target_samples_per_class_and_scores_the_rest():
    rng = np.random.default_rng(0)
    source = Domain("s", rng.normal(size=(30, 4)), np.arange(30) % 3, ("a", "b", "c"))
    target = Domain("t", rng.normal(size=(60, 4)), np.arange(60) % 3, ("a", "b", "c"))
    training, evaluation = split(source, target, "semi_da", seed=0, target_labels_per_class=2)
    assert np.bincount(training.target_labeled.y).tolist() == [2, 2, 2]
    assert isinstance(training.target, Unlabeled) and len(training.target) == 54
    labeled = {tuple(row) for row in training.target_labeled.X}
    assert not labeled & {tuple(row) for row in training.target.X}
    np.testing.assert_array_equal(evaluation.target_test.X, training.target.X)  # the unlabeled rest is scored
    assert evaluation.protocol == "transductive" and not labeled & {tuple(row) for row in evaluation.target_test.X}


def _built(compose, name: str):
    torch.manual_seed(0)
    method = instantiate(compose(f"method={name}").method, backbone=MLP(input_shape=(1, 8, 8), hidden=[32]))
    X = np.random.default_rng(0).random((8, 64)).astype(np.float32)
    data = TrainingData(Labeled(X, np.arange(8) % 4), Unlabeled(X), 4, tuple("abcd"), (1, 8, 8),
                        target_labeled=Labeled(X[:4], np.arange(4)))
    method._image_shape = data.image_shape
    method.num_classes = 4
    method.bottleneck, method.classifier = method.build_head(4)
    method.build_extra(data)
    method.train()
    method.warmup_factor = lambda: 1.0  # no Trainer: no training progress
    method.record = lambda *args, **kwargs: None
    return method


def _batch(n: int = 8):
    generator = torch.Generator().manual_seed(1)
    source, target, labeled = (torch.rand(n, 64, generator=generator) for _ in range(3))
    return {"source": (source, torch.arange(n) % 4), "target": target, "labeled_target": (labeled[:4], torch.arange(4))}


def test_the_labeled_target_batch_joins_the_classification_loss(compose):
    """With no transfer term, the step's loss is the cross-entropy over source and labeled target samples together."""
    method = _built(compose, "dann")
    method.transfer_weight = 0.0
    method.eval()  # running statistics: each sample's logits do not depend on the batch it is in
    batch = _batch()
    loss = method.training_step(batch, 0)
    (source, labels), (labeled, target_labels) = batch["source"], batch["labeled_target"]
    expected = F.cross_entropy(torch.cat([method(source), method(labeled)]), torch.cat([labels, target_labels]))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss.item() != pytest.approx(F.cross_entropy(method(source), labels).item(), rel=1e-6)  # not the source's alone


def test_sdt_applies_its_soft_labels_to_the_labeled_target_samples(compose, monkeypatch):
    """As published: the soft-label term reads the labeled target samples with their labels, not pseudo-labels."""
    import tlrun.methods.sdt as sdt

    seen = {}

    def soft_label_loss(logits, labels, soft_labels, temperature):
        seen["labels"] = labels.clone()
        return logits.sum() * 0

    monkeypatch.setattr(sdt, "soft_label_loss", soft_label_loss)
    method = _built(compose, "sdt")
    method.training_step(_batch(), 0)
    assert seen["labels"].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("name", SEMI_DA_METHODS)
def test_trains_end_to_end_in_semi_da(compose, mlflow_store, name):
    accuracy = run(compose(f"method={name}", "scenario=semi_da", QUICK, experiment="semi-da"))
    assert 0.0 <= accuracy <= 1.0
    client = MlflowClient(tracking_uri=mlflow_store)
    record = client.search_runs([client.get_experiment_by_name("semi-da").experiment_id], f"tags.method = '{name}'",
                                max_results=1)[0]
    assert record.info.status == "FINISHED" and record.data.tags["scenario"] == "semi_da"
    assert record.data.tags["protocol"] == "transductive"
    assert int(record.data.params["data.n_target_test"]) == int(record.data.params["data.n_target_train"])
