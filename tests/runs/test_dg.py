"""Domain generalisation runs end to end on the embedded digits: the issue's command, the selection rules (none of
them but the tagged oracle reading the test domain), and the DomainBed-style table of a leave-one-domain-out sweep."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tlrun.data.digits import Digits
from tlrun.methods.deep import DeepMethod
from tlrun.run import run
from tlrun.tracking.compare.table import comparison_table


def _runs(store: str, experiment: str) -> list:
    client = MlflowClient(tracking_uri=store)
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


def test_the_issue_s_command_runs(compose, mlflow_store, one_torch_thread):
    """``tlrun method=source_only scenario=dg "dataset.source=[original,rotate,thin]" dataset.target=thick``."""
    run(compose("method=source_only", "scenario=dg", "dataset.source=[original,rotate,thin]", "dataset.target=thick",
                "debug=quick", experiment="dg-command"))
    record, = _runs(mlflow_store, "dg-command")
    assert record.info.status == "FINISHED" and record.data.tags["scenario"] == "dg"
    assert record.data.tags["source"] == "original+rotate+thin" and record.data.tags["protocol"] == "held_out"
    assert record.data.params["data.n_target_train"] == "0" and "target_acc" in record.data.metrics


@pytest.mark.parametrize("method,select", [("source_only", "source_val"), ("dg_coral", "lodo"), ("dann", "source_val")])
def test_label_free_selection_never_reads_the_test_domain(compose, mlflow_store, monkeypatch, one_torch_thread, method,
                                                          select):
    """Every array a deep method turns into batches while it fits (training, per-epoch selection scores) is
    recorded: none holds a sample of the test domain, and the sources' do reach it."""
    fed: list[np.ndarray] = []
    make_loader = DeepMethod.make_loader

    def recording(self, X, *args, **kwargs):
        if self._data is not None:  # inside fit; the runner's evaluation afterwards predicts the test domain
            fed.append(np.asarray(X))
        return make_loader(self, X, *args, **kwargs)

    monkeypatch.setattr(DeepMethod, "make_loader", recording)
    run(compose(f"method={method}", "scenario=dg", "dataset.source=[original,rotate,thin]", "dataset.target=thick",
                f"trainer.select={select}", "debug=quick", "method.epochs=2", "diagnostics=true", experiment=f"dg-selection-{method}"))
    test_rows = {row.tobytes() for row in Digits(source="original", target="thick").load_pair()[1].X}
    source_rows = {row.tobytes() for row in Digits(source="rotate", target="thick").load_pair()[0].X}
    seen = {row.tobytes() for X in fed for row in X}
    assert seen & source_rows and not seen & test_rows
    record, = _runs(mlflow_store, f"dg-selection-{method}")
    assert f"select.{select}" in record.data.metrics and "selection.oracle" not in record.data.tags
    assert record.data.tags.get("val_domain") == ("thin" if select == "lodo" else None)  # lodo: the last source


def test_the_oracle_chooses_on_part_of_the_test_domain_and_is_tagged(compose, mlflow_store, one_torch_thread):
    run(compose("method=dann", "scenario=dg", "dataset.source=[original,rotate]", "dataset.target=thick",
                "trainer.select=oracle", "debug=quick", experiment="dg-oracle"))
    record, = _runs(mlflow_store, "dg-oracle")
    assert record.data.tags["selection.oracle"] == "true" and "selected.oracle" in record.data.metrics
    assert int(record.data.params["data.n_target_test"]) < 901  # the oracle's 20 % of each class is not tested


def test_a_leave_one_domain_out_sweep_gives_domainbed_s_table(compose, mlflow_store, one_torch_thread):
    """Rows: methods; columns: the held-out domains, then their average."""
    for method in ("source_only", "dg_coral"):
        for held_out in ("thick", "shrink"):
            run(compose("+experiment=dg_digits", f"method={method}", f"dataset.target={held_out}", "debug=quick",
                        "domains=[original,thick,shrink]", experiment="dg-table"))
    table = comparison_table(_runs(mlflow_store, "dg-table"))
    assert sorted(table.tasks) == ["shrink", "thick"]
    assert sorted(row.method for row in table.rows) == ["dg_coral", "source_only"], [row.label for row in table.rows]
    assert all(row.avg is not None and set(row.cells) == set(table.tasks) for row in table.rows)
