"""Self-taught learning and self-taught clustering end to end: the embedded digits serve both scenarios, the
runs log the scenario's metrics, and STC refuses features it cannot co-cluster."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from tlrun.errors import TlrunError
from tlrun.run import run


def _latest(store: str, experiment: str):
    client = MlflowClient(tracking_uri=store)
    found = client.get_experiment_by_name(experiment)
    record = client.search_runs([found.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
    return client, record


def test_selftaught_runs_on_digits_with_an_unlabeled_source(compose, mlflow_store, one_torch_thread):
    accuracy = run(compose("method=selftaught", "scenario.target_labels_per_class=3", experiment="st-run"))
    _, record = _latest(mlflow_store, "st-run")
    metrics, params, tags = record.data.metrics, record.data.params, record.data.tags
    assert params["scenario.name"] == "selftaught"  # the method's natural scenario
    assert metrics["target_acc"] == pytest.approx(accuracy) and accuracy > 0.5
    assert "source_acc" not in metrics and tags["source_acc_split"] == "none"  # the source has no labels
    assert params["data.n_target_train"] == "30"


@pytest.mark.parametrize("method", ["stc", "kmeans"])
def test_clustering_runs_log_clustering_accuracy_nmi_and_ari(compose, mlflow_store, method):
    experiment = f"stc-run-{method}"
    accuracy = run(compose(f"method={method}", experiment=experiment))
    client, record = _latest(mlflow_store, experiment)
    metrics = record.data.metrics
    assert record.data.params["scenario.name"] == "selftaught_clustering"
    assert metrics["target_acc"] == pytest.approx(accuracy) and accuracy > 0.3  # 10 clusters: chance ~0.1
    assert 0.0 < metrics["nmi"] <= 1.0 and -1.0 <= metrics["ari"] <= 1.0
    assert "source_acc" not in metrics
    # The per-iteration reports of the cluster assignments are scored as clustering accuracy too.
    history = client.get_metric_history(record.info.run_id, "target_acc")
    assert all(0.0 <= point.value <= 1.0 for point in history)


def test_stc_refuses_negative_features_and_the_run_ends_failed(compose, mlflow_store):
    with pytest.raises(TlrunError, match="non-negative"):
        run(compose("method=stc", "dataset.preprocess=zscore", experiment="stc-negative"))
    _, record = _latest(mlflow_store, "stc-negative")
    assert record.info.status == "FAILED"
