"""Pre-train → fine-tune chains through MLflow: a run logs its weights in its model, a later run starts
from exactly those weights with ``backbone.weights=runs:/<run_id>/model`` and records where they came from."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.helpers import QUICK
from tlrun.errors import TlrunError
from tlrun.run import run
from tlrun.tracking.models import download_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _latest(client: MlflowClient, experiment: str):
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], order_by=["start_time DESC"])
    return runs[0]


def _logged_state(client: MlflowClient, run_id: str, tmp_path: Path) -> dict[str, torch.Tensor]:
    """The plain state dict inside the run's logged model (beside the pickled predictor)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    folder = download_model(run_id, client.tracking_uri, tmp_path)
    assert sorted(f.name for f in folder.rglob("*.pt")) == ["predictor.pt", "state_dict.pt"]
    return torch.load(next(folder.rglob("state_dict.pt")), weights_only=True)


@pytest.mark.parametrize("suffix", ["model", "model/state_dict.pt"])
def test_fine_tuning_starts_from_exactly_the_weights_the_pretraining_run_logged(compose, mlflow_store, tmp_path, suffix):
    client = MlflowClient(tracking_uri=mlflow_store)
    run(compose("method=source_only", "backbone=lenet", QUICK, experiment="chain"))
    source_run = _latest(client, "chain")
    pretrained = _logged_state(client, source_run.info.run_id, tmp_path / "source")
    assert any(key.startswith("classifier.") for key in pretrained)  # the whole network is logged

    # Everything but the head frozen: the fine-tuned backbone must still be the logged one, bit for bit.
    run(compose("method=finetune", f"backbone.weights=runs:/{source_run.info.run_id}/{suffix}",
                "method.freeze=all_but_head", QUICK, "method.iterations_per_epoch=2",
                experiment="chain"))
    tuned_run = _latest(client, "chain")
    assert tuned_run.data.tags["lineage.weights_run"] == source_run.info.run_id
    assert tuned_run.data.params["lineage.weights_run"] == source_run.info.run_id
    assert tuned_run.data.params["backbone.weights"] == f"runs:/{source_run.info.run_id}/{suffix}"
    assert not any(key.startswith("pretrain.") for key in tuned_run.data.metrics)  # the weights were given
    tuned = _logged_state(client, tuned_run.info.run_id, tmp_path / "tuned")
    backbone_keys = [key for key in pretrained if key.startswith("backbone.")]
    assert backbone_keys
    for key in backbone_keys:
        assert torch.equal(tuned[key], pretrained[key]), key


def test_weights_of_an_unknown_run_or_a_run_without_weights_fail_before_the_run(compose):
    with pytest.raises(TlrunError, match="has no run 0123456789abcdef"):
        run(compose("method=finetune", "backbone.weights=runs:/0123456789abcdef/model"))
    run(compose("method=coral", experiment="chain-closed-form"))  # closed-form: a model, but no network weights
    client = MlflowClient(tracking_uri=compose().logger.tracking_uri)
    closed_form = _latest(client, "chain-closed-form").info.run_id
    with pytest.raises(TlrunError, match=f"run {closed_form} has no network weights"):
        run(compose("method=finetune", f"backbone.weights=runs:/{closed_form}/model"))


def test_save_model_false_logs_no_model(compose, mlflow_store):
    run(compose("method=source_only", QUICK, "save_model=false", experiment="chain-nosave"))
    client = MlflowClient(tracking_uri=mlflow_store)
    record = _latest(client, "chain-nosave")
    assert "model" not in [artifact.path for artifact in client.list_artifacts(record.info.run_id)]
    assert not record.outputs.model_outputs
    with pytest.raises(TlrunError, match=f"run {record.info.run_id} logged no model"):
        download_model(record.info.run_id, mlflow_store, Path("unused"))
