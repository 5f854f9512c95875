"""A diverging deep run: a tlrun error naming the epoch, the step and a learning rate worth trying."""

from __future__ import annotations

import pytest
from hydra.utils import get_class
from mlflow.tracking import MlflowClient

from tests.helpers import QUICK
from tlrun.errors import TlrunError
from tlrun.methods.deep import TrainingDiverged, configured_lr
from tlrun.run import run

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Where the lr is set: in the method's config (dann), in the base it merges (source_only: method_base/deep; target_only:
# method_base/finetune), in the base of that base (mcc: method_base/deep_da, then deep).
@pytest.mark.parametrize("name", ["dann", "source_only", "target_only", "mcc"])
def test_configured_lr_is_the_lr_tlrun_composes_for_the_method(compose, name):
    method = compose(f"method={name}").method
    assert configured_lr(get_class(method._target_)) == (name, method.lr)


def test_a_diverging_run_ends_failed_with_a_tlrun_error_that_advises_the_default_lr(compose, mlflow_store):
    cfg = compose("method=dann", "method.lr=1e6", QUICK, experiment="diverged")
    with pytest.raises(TrainingDiverged) as raised:
        run(cfg)
    assert isinstance(raised.value, TlrunError)  # the CLI prints one `tlrun: error:` line and exits 2
    assert str(raised.value).startswith("DANN: the training loss became nan at epoch 1, optimizer step ")
    assert "with method.lr=1e+06: training diverged. Try method.lr=0.001 (dann's default)" in str(raised.value)
    client = MlflowClient(tracking_uri=mlflow_store)
    (record,) = client.search_runs([client.get_experiment_by_name("diverged").experiment_id])
    assert record.info.status == "FAILED"
