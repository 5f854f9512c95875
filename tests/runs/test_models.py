"""Every run logs a loadable MLflow model: for one method of each family, the model loaded in a fresh process with
``mlflow.pyfunc.load_model`` labels the run's evaluation samples as the run's own evaluation did (the same metric,
computed from the loaded model's labels), and carries a signature."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import QUICK
from tlrun import metrics
from tlrun.runner.job import run_job
from tlrun.runner.preflight import preflight
from tlrun.runner.steps import load_data, split_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: One method of each family, with the overrides that keep its run short.
FAMILIES = {
    "closed_form": ("method=jda",),
    "deep": ("method=source_only", QUICK),
    "zeroshot": ("method=eszsl",),
    "selftaught": ("method=selftaught",),
    "clustering": ("method=kmeans",),
}

#: Loads the model in a fresh process and writes its labels of the samples (and the model's signature) as JSON.
LOAD_AND_PREDICT = """
import json, sys
import numpy as np
import mlflow.pyfunc
model = mlflow.pyfunc.load_model(sys.argv[1])
labels = model.predict(np.load(sys.argv[2])["X"])
json.dump({"labels": [str(label) for label in labels], "signature": model.metadata.signature.to_dict()},
          open(sys.argv[3], "w"))
"""


def _evaluation(cfg):
    """The run's config (``auto`` resolved), its evaluation data rebuilt by the runner's own steps (as read: before
    any feature extraction) and the dataset's class names."""
    plan = preflight(cfg)
    loaded = load_data(plan)
    return plan.cfg, split_data(plan, loaded, None).evaluation, loaded.domains()[0].classes


@pytest.mark.parametrize("family", FAMILIES)
def test_the_logged_model_loads_in_a_fresh_process_and_labels_as_the_run_did(compose, mlflow_store, tmp_path, family):
    cfg = compose(*FAMILIES[family], experiment="models")
    outcome = run_job(cfg)
    resolved, evaluation, class_names = _evaluation(cfg)
    test = evaluation.target_test
    np.savez(tmp_path / "samples.npz", X=np.asarray(test.X, dtype=np.float64))
    script = tmp_path / "load.py"
    script.write_text(LOAD_AND_PREDICT)
    result = subprocess.run(
        [sys.executable, str(script), f"runs:/{outcome.run_id}/model", str(tmp_path / "samples.npz"), str(tmp_path / "out.json")],
        env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_store}, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(Path(tmp_path / "out.json").read_text())
    labels = np.asarray(loaded["labels"])
    assert json.loads(loaded["signature"]["inputs"])[0]["tensor-spec"]["shape"] == [-1, test.X.shape[1]]

    scenario = resolved.scenario.name
    if scenario == "selftaught_clustering":
        clusters = np.array([int(label.removeprefix("cluster ")) for label in labels])
        score = metrics.clustering_scores(test.y, clusters)["target_acc"]
    elif scenario == "zeroshot":
        classes = evaluation.classes
        names = np.array([classes.names[classes.labels.index(label)] for label in test.y])
        score = metrics.mean_per_class_accuracy(names, labels)
    else:
        score = float(np.mean(labels == np.asarray(class_names)[test.y]))
    assert score == pytest.approx(outcome.metrics["target_acc"], abs=1e-12)
    if scenario not in ("selftaught_clustering", "zeroshot"):  # per class too: the same labels, class by class
        logged = pd.read_csv(MlflowClient(tracking_uri=mlflow_store).download_artifacts(
            outcome.run_id, "per_class_target_acc.csv", str(tmp_path)), dtype={"class": str})
        truth = np.asarray(class_names)[test.y]
        for name, accuracy in zip(logged["class"], logged["target_acc"]):
            assert np.mean(labels[truth == name] == name) == pytest.approx(accuracy, abs=1e-6), name

