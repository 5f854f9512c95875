"""ALE, zsl_attribute's ``variant=ale``: the weighted approximate ranking loss against a hand computation, the
bilinear head, the recipes that compare with ALE's numbers, and a short run on the digits."""

from __future__ import annotations

import pytest
import torch
from mlflow.tracking import MlflowClient

from tlrun.backbones.small import Identity
from tlrun.losses.ranking import ale_ranking_loss, hinge_ranking_loss
from tlrun.methods.settings import check_settings
from tlrun.methods.zsl_attribute import AttributeEmbedding
from tlrun.run import run

SCORES = torch.tensor([
    [2.0, 1.5, 0.0, 1.8],  # true 0: violators 1 (hinge 0.5) and 3 (0.8): r = 2, weight (1 + 1/2)/2 = 0.75
    [0.0, 3.0, -1.0, 0.5],  # true 1: every margin met: r = 0, no loss
    [0.0, 1.0, 1.0, 1.0],  # true 0: three violators of hinge 2: r = 3, weight (1 + 1/2 + 1/3)/3
])
LABELS = torch.tensor([0, 1, 0])


def test_ale_loss_matches_a_hand_computation_and_its_gradient():
    scores = SCORES.clone().requires_grad_(True)
    loss = ale_ranking_loss(scores, LABELS, margin=1.0)
    expected = (0.75 * (0.5 + 0.8) + 0.0 + (11 / 6) / 3 * 6.0) / 3
    assert loss.item() == pytest.approx(expected)
    loss.backward()
    # The weight is constant in the scores: each violator gets weight / n, the true class minus their sum.
    w0, w2 = 0.75 / 3, (11 / 18) / 3
    assert torch.allclose(scores.grad, torch.tensor([
        [-2 * w0, w0, 0.0, w0],
        [0.0, 0.0, 0.0, 0.0],
        [-3 * w2, w2, w2, w2],
    ]))


def test_ale_loss_is_the_plain_hinge_when_one_class_violates_and_scales_with_the_margin():
    scores = torch.tensor([[1.0, 0.5, -3.0], [0.2, -2.0, 0.0]])
    labels = torch.tensor([0, 0])  # one violator each: l(1)/1 = 1
    for violations in ("max", "sum"):
        assert ale_ranking_loss(scores, labels).item() == pytest.approx(hinge_ranking_loss(scores, labels, 1.0, violations).item())
    assert ale_ranking_loss(SCORES, LABELS, margin=0.0).item() == pytest.approx(
        (0.0 + 0.0 + (11 / 6) / 3 * 3.0) / 3)  # margin 0: the first sample's scores no longer violate
    with pytest.raises(ValueError, match="C >= 2"):
        ale_ranking_loss(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long))


def test_the_ale_variant_is_bilinear_without_bottleneck_or_bias():
    method = AttributeEmbedding(Identity((5,)), variant="ale")
    signatures = torch.randn(3, 4)
    method._seen_signatures = signatures.numpy()
    bottleneck, head = method.build_head(3)
    assert isinstance(bottleneck, torch.nn.Identity) and head.projection.bias is None
    assert [name for name, _ in head.named_parameters()] == ["projection.weight"]  # W (4 x 5) and nothing else
    x = torch.randn(2, 5)
    assert torch.allclose(head(x), x @ head.projection.weight.T @ signatures.T)
    notes = AttributeEmbedding(Identity((5,)))
    notes._seen_signatures = signatures.numpy()
    assert not isinstance(notes.build_head(3)[0], torch.nn.Identity)  # the default keeps the notes' MLP


def test_variant_settings_are_checked():
    target = "tlrun.methods.zsl_attribute.AttributeEmbedding"
    with pytest.raises(ValueError, match="variant must be one of notes, ale"):
        AttributeEmbedding(Identity((5,)), variant="wsabie")
    with pytest.raises(ValueError, match="learn_label_embedding"):
        AttributeEmbedding(Identity((5,)), variant="ale", learn_label_embedding=True)
    with pytest.raises(TypeError, match="method.variant=3"):
        check_settings(target, {"variant": 3})


@pytest.mark.parametrize("recipe", ["zsl_awa2", "zsl_cub"])
def test_the_recipes_run_zsl_attribute_as_ale_and_leave_the_others_as_they_are(compose, recipe):
    variants = {}
    for method in ("zsl_attribute", "devise"):
        cfg = compose(f"+experiment={recipe}", "dataset.root=/data/xlsa17/data", f"method={method}")
        variants[method] = (cfg.method.variant, cfg.method.violations)
    assert variants == {"zsl_attribute": ("ale", "max"), "devise": ("notes", "sum")}
    assert compose("method=zsl_attribute").method.variant == "notes"  # outside the recipes: the notes' default


def test_ale_learns_the_seen_digits_and_transfers(compose, mlflow_store, one_torch_thread):
    # The tuned split (0, 2, 6, 7): a check of the mechanics, which needs a split where transfer works at all.
    accuracy = run(compose("method=zsl_attribute", "method.variant=ale", "method.epochs=6", "method.lr=0.01",
                           "dataset.unseen=[0,2,6,7]", "trainer.enable_progress_bar=false", experiment="zsl-ale"))
    client = MlflowClient(tracking_uri=mlflow_store)
    experiment = client.get_experiment_by_name("zsl-ale")
    record = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
    assert record.data.params["method.variant"] == "ale"
    chance = 1 / len(record.data.tags["unseen"].split(","))
    assert record.data.metrics["source_acc"] > 0.75  # a linear map learns the seen digits (at lr 0.01: 1e-3 is slow)
    assert accuracy > chance + 0.1
