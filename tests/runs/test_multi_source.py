"""Multi-source DA end to end on the embedded digits: ``dann`` on the pooled sources, and ``m3sda`` and ``mdan``, which
read each sample's source domain, run as the command line writes them and tag every source."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import QUICK
from tlrun.run import run

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("method", ["dann", "m3sda", "mdan"])
def test_a_deep_method_adapts_from_two_pooled_sources(compose, mlflow_store, method):
    experiment = f"multi-source-{method}"
    accuracy = run(compose(f"method={method}", "dataset.source=[original,rotate]", "dataset.target=thick", QUICK,
                           experiment=experiment))
    assert 0.0 <= accuracy <= 1.0
    client = MlflowClient(tracking_uri=mlflow_store)
    record, = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert record.info.status == "FINISHED"
    assert record.data.tags["method"] == method and record.data.tags["target"] == "thick"
    assert record.data.tags["source"] == "original+rotate"
