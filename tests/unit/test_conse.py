"""ConSE: the convex combination of the seen classes' embeddings against a hand computation, the prediction it
makes, its settings, and a short run on the digits that beats chance on the unseen classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from tlrun.backbones.small import Identity
from tlrun.losses.ranking import conse_embedding
from tlrun.methods.conse import ConSE
from tlrun.run import run
from tlrun.scenarios import ClassDescriptions

PROBABILITIES = torch.tensor([[0.5, 0.3, 0.15, 0.05]], dtype=torch.float64)
SEEN = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
#: Two unseen classes: ``a`` is nearest to the top-2 mixture, ``b`` to the top-1 class alone (cosines in the test).
UNSEEN = np.array([[0.6, 0.8], [0.9, -0.436]])


def test_conse_embedding_is_the_top_t_convex_combination():
    # T = 2: (0.5 s0 + 0.3 s1) / 0.8
    assert torch.allclose(conse_embedding(PROBABILITIES, SEEN, top=2), torch.tensor([[0.625, 0.375]], dtype=torch.float64))
    # T = 3: (0.5 s0 + 0.3 s1 + 0.15 s2) / 0.95
    assert torch.allclose(conse_embedding(PROBABILITIES, SEEN, top=3), torch.tensor([[0.35, 0.3]], dtype=torch.float64) / 0.95)
    # T = 1: the most probable class's embedding; T above the number of seen classes: all of them
    assert torch.allclose(conse_embedding(PROBABILITIES, SEEN, top=1), SEEN[:1])
    assert torch.allclose(conse_embedding(PROBABILITIES, SEEN, top=10), conse_embedding(PROBABILITIES, SEEN, top=4))
    # a row that is not sorted: the top classes are found, not taken in order
    shuffled = PROBABILITIES[:, [2, 0, 3, 1]]
    assert torch.allclose(conse_embedding(shuffled, SEEN[[2, 0, 3, 1]], top=2), conse_embedding(PROBABILITIES, SEEN, top=2))
    with pytest.raises(ValueError, match="top must be >= 1"):
        conse_embedding(PROBABILITIES, SEEN, top=0)


def _fitted(top: int) -> ConSE:
    """A ConSE whose classifier gives :data:`PROBABILITIES` for any sample, over the seen embeddings :data:`SEEN`."""
    method = ConSE(Identity((2,)), top=top, center_signatures=False)
    method.classifier = torch.nn.Identity()  # fitted
    method._seen_signatures = SEEN.numpy()
    method._outputs = lambda X: (PROBABILITIES.numpy().repeat(len(X), axis=0), None)
    return method


@pytest.mark.parametrize("top, cosines, predicted", [
    (1, [0.6, 0.9], 1),  # f(x) = s0 = (1, 0)
    (2, [(0.625 * 0.6 + 0.375 * 0.8) / np.hypot(0.625, 0.375), (0.625 * 0.9 - 0.375 * 0.436) / np.hypot(0.625, 0.375)], 0),
])
def test_conse_scores_classes_by_cosine_and_predicts_the_nearest(top, cosines, predicted):
    unseen = ClassDescriptions(labels=(7, 8), names=("a", "b"), attributes=UNSEEN)
    scores = _fitted(top).class_scores(np.zeros((3, 2)), unseen)
    norms = np.linalg.norm(UNSEEN, axis=1)  # the signatures are scaled to unit length
    assert scores.shape == (3, 2)
    assert np.allclose(scores, np.array(cosines) / norms)
    assert (scores.argmax(axis=1) == predicted).all()


def test_conse_settings_are_checked():
    with pytest.raises(ValueError, match="top"):
        ConSE(Identity((2,)), top=0)


def test_conse_learns_the_seen_digits_and_transfers(compose, mlflow_store, one_torch_thread):
    # The tuned split (0, 2, 6, 7): a check of the mechanics, which needs a split where transfer works at all.
    accuracy = run(compose("method=conse", "method.epochs=6", "dataset.unseen=[0,2,6,7]", "trainer.enable_progress_bar=false",
                           experiment="zsl-conse"))
    client = MlflowClient(tracking_uri=mlflow_store)
    experiment = client.get_experiment_by_name("zsl-conse")
    record = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
    chance = 1 / len(record.data.tags["unseen"].split(","))
    assert record.data.metrics["source_acc"] > 0.85  # the softmax classifier learns the seen digits
    assert accuracy > chance + 0.1
    assert {"gzsl_seen_acc", "gzsl_unseen_acc", "gzsl_h"} <= set(record.data.metrics)  # class_scores serves GZSL
