"""Partial and open-set DA end to end: the acceptance commands on the embedded digits, what the runs record, the
refusals before a run opens, PADA's class weights on a task whose answer is known, and OSBP's unknown output on a toy
case."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.helpers import QUICK
from tlrun.backbones import MLP
from tlrun.config import instantiate
from tlrun.methods.base import NullReporter, RunContext
from tlrun.run import run
from tlrun.runner.evaluation import open_set_predictions
from tlrun.scenarios import Labeled, ScenarioError, TrainingData, Unlabeled

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _last_run(store: str, experiment: str):
    client = MlflowClient(tracking_uri=store)
    found = client.get_experiment_by_name(experiment)
    return client, client.search_runs([found.experiment_id], order_by=["start_time DESC"], max_results=1)[0]


def test_partial_da_runs_under_the_default_scenario_and_is_tagged(compose, mlflow_store):
    run(compose("method=dann", "dataset.target_classes=[0,1,2,3,4]", QUICK, experiment="partial"))
    _, record = _last_run(mlflow_store, "partial")
    assert record.info.status == "FINISHED"
    assert record.data.tags["scenario"] == "da" and record.data.tags["class_sets"] == "partial"
    assert record.data.tags["classes.target"] == "0,1,2,3,4"
    assert record.data.tags["classes.source"] == "0,1,2,3,4,5,6,7,8,9"
    assert "target_os_star" not in record.data.metrics


def test_open_set_da_runs_under_the_default_scenario_with_its_metrics(compose, mlflow_store):
    run(compose("method=dann", "dataset.source_classes=[0,1,2,3,4,5]", QUICK, experiment="open-set"))
    client, record = _last_run(mlflow_store, "open-set")
    metrics, tags = record.data.metrics, record.data.tags
    assert tags["class_sets"] == "open_set" and tags["classes.target"] == "0,1,2,3,4,5,unknown"
    os_star, unk = metrics["target_os_star"], metrics["target_unk"]
    assert metrics["target_acc"] == pytest.approx((6 * os_star + unk) / 7)
    assert metrics["target_h_score"] == pytest.approx(0 if os_star + unk == 0 else 2 * os_star * unk / (os_star + unk))
    per_class = client.download_artifacts(record.info.run_id, "per_class_target_acc.csv")
    assert open(per_class).read().splitlines()[-1].startswith("unknown,")


def test_a_closed_form_method_runs_partial_da_and_refuses_open_set_before_a_run_opens(compose, mlflow_store):
    accuracy = run(compose("method=coral", "dataset.target_classes=[2,3,4]", experiment="carving-closed-form"))
    assert 0.0 <= accuracy <= 1.0
    with pytest.raises(ScenarioError, match="needs a deep method.*osbp"):
        run(compose("method=coral", "dataset.source_classes=[0,1,2]", experiment="carving-refused"))
    assert MlflowClient(tracking_uri=mlflow_store).get_experiment_by_name("carving-refused") is None


def test_osbp_refuses_a_task_that_is_not_open_set_before_a_run_opens(compose, mlflow_store):
    with pytest.raises(ScenarioError, match="'osbp' is made for open-set DA only, and this task is closed-set"):
        run(compose("method=osbp", experiment="osbp-closed-set"))
    with pytest.raises(ScenarioError, match="'osbp' does not fit scenario 'semi_da'"):
        run(compose("method=osbp", "scenario=semi_da", "dataset.source_classes=[0,1,2]", experiment="osbp-closed-set"))
    assert MlflowClient(tracking_uri=mlflow_store).get_experiment_by_name("osbp-closed-set") is None


def test_pada_weighs_down_the_classes_absent_from_the_target(compose, mlflow_store):
    """No shift (target ``original``: the other half of the images) and a target carved to digits 0-4: the target's
    predictions put little mass on 5-9, so PADA's weights for them end lower than every present class's."""
    run(compose("method=pada", "dataset.target=original", "dataset.target_classes=[0,1,2,3,4]", "method.epochs=6",
                "diagnostics=false", "save_model=false", "trainer.enable_progress_bar=false", experiment="pada"))
    _, record = _last_run(mlflow_store, "pada")
    weights = [record.data.metrics[f"class_weight.{k}"] for k in range(10)]  # the last epoch's
    assert max(weights[5:]) < 0.6 < min(weights[:5]), weights


class _Recorder(NullReporter):
    """Keeps what a method reports of its target predictions, and answers an oracle's question."""

    def __init__(self) -> None:
        self.reported: list[np.ndarray] = []
        self.oracle_asked: list[np.ndarray] = []

    def target_predictions(self, predictions, step):
        self.reported.append(np.asarray(predictions))

    def oracle_accuracy(self, predictions):
        self.oracle_asked.append(np.asarray(predictions))
        return 0.5


def test_open_set_per_epoch_and_oracle_scores_read_the_labels_the_final_scoring_reads(compose):
    """Inputs near zero give a fresh network near-uniform probabilities over 3 known classes (max < 0.5): the
    unknown rule calls every target sample unknown (label 3), the argmax never would. What the reporter scores per
    epoch, and what an oracle chooses the epoch by, are the final scoring's labels (open_set_predictions)."""
    rng = np.random.default_rng(0)
    source, target = rng.normal(0, 1e-3, (30, 2)).astype(np.float32), rng.normal(0, 1e-3, (20, 2)).astype(np.float32)
    cfg = compose("method=dann", "method.epochs=1", "method.bottleneck_dim=16", "method.lr=1e-6")
    torch.manual_seed(0)
    method = instantiate(cfg.method, backbone=MLP(input_shape=(2,), hidden=[8]))
    data = TrainingData(Labeled(source, np.arange(30) % 3), Unlabeled(target), 3, ("a", "b", "c"), unknown_label=3)
    reporter = _Recorder()
    method.fit(data, RunContext(reporter, select="oracle", trainer={"accelerator": "cpu", "enable_progress_bar": False,
                                                                     "enable_model_summary": False}))
    final = open_set_predictions(method, target, 3)
    assert np.all(final == 3)
    assert len(reporter.reported) == len(reporter.oracle_asked) == 1
    np.testing.assert_array_equal(reporter.reported[0], final)
    np.testing.assert_array_equal(reporter.oracle_asked[0], final)


def _blobs(rng: np.random.Generator, centre: tuple[float, float], n: int = 100) -> np.ndarray:
    return (np.asarray(centre, dtype=np.float32) + rng.normal(0, 0.5, (n, 2))).astype(np.float32)


@pytest.mark.parametrize("transfer_weight, far_unknown", [(1.0, True), (0.0, False)])
def test_osbp_calls_the_far_away_target_samples_unknown(compose, transfer_weight, far_unknown):
    """Two known classes around (0, 0) and (4, 0) in both domains, and target samples around (−6, 0), far beyond the
    left class: the boundary loss teaches OSBP's last output to claim them; without it (λ = 0) the classifier calls
    them ``left``, as a closed-set one would, and the unknown output never wins."""
    rng = np.random.default_rng(0)
    source = np.concatenate([_blobs(rng, (0, 0)), _blobs(rng, (4, 0))])
    target = np.concatenate([_blobs(rng, (0.3, 0.3)), _blobs(rng, (4.3, 0.3)), _blobs(rng, (-6, 0))])
    cfg = compose("method=osbp", "method.epochs=10", "method.bottleneck_dim=16", "method.lr=0.01",
                  f"method.transfer_weight={transfer_weight}")
    torch.manual_seed(0)
    method = instantiate(cfg.method, backbone=MLP(input_shape=(2,), hidden=[32]))
    data = TrainingData(Labeled(source, np.repeat([0, 1], 100)), Unlabeled(target), 2, ("left", "right"))
    method.fit(data, RunContext(NullReporter(), trainer={"accelerator": "cpu", "enable_progress_bar": False,
                                                          "enable_model_summary": False}))
    predicted = method.predict(target)
    assert np.mean(predicted[:100] == 0) > 0.9 and np.mean(predicted[100:200] == 1) > 0.9
    assert np.mean(predicted[200:] == 2) > 0.9 if far_unknown else not np.any(predicted == 2)
