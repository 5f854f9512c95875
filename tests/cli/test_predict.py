"""``tlrun predict`` and ``tlrun evaluate``: a run's logged model applied to new data from the command line, on a
``.npz``, a ``.csv`` and a folder of images; bad data is one line and opens no run."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from tests.helpers import QUICK, office31_tree
from tlrun import api
from tlrun.config import instantiate
from tlrun.runner.job import run_job

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLI = [sys.executable, "-c", "import sys; sys.argv=['tlrun', *sys.argv[1:]]; from tlrun.cli import main; main()"]


def _tlrun(tmp_path: Path, store: str, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *arguments, f"tracking_uri={store}"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})


def _run_count(store: str) -> int:
    client = MlflowClient(tracking_uri=store)
    return sum(len(client.search_runs([experiment.experiment_id])) for experiment in client.search_experiments())


#: The JDA run of each test session's store (the tests only read it).
_DIGITS_RUNS: dict[str, tuple] = {}


@pytest.fixture
def digits_run(compose, mlflow_store):
    """A JDA run on digits original → thick (one per session), and the target domain as the dataset read it."""
    if mlflow_store not in _DIGITS_RUNS:
        cfg = compose("method=jda", experiment="predict")
        _DIGITS_RUNS[mlflow_store] = (run_job(cfg), instantiate(cfg.dataset).load("thick"))
    return _DIGITS_RUNS[mlflow_store]


def test_predict_labels_npz_and_csv_rows_as_the_model_does(digits_run, mlflow_store, tmp_path):
    outcome, target = digits_run
    np.savez(tmp_path / "thick.npz", X=target.X, y=target.y)  # the whole target, labeled: the run's own evaluation
    np.savetxt(tmp_path / "few.csv", target.X[:7], delimiter=",")  # rows without labels

    done = _tlrun(tmp_path, mlflow_store, "predict", f"run={outcome.run_id}", "data=thick.npz", "out=thick.csv")
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(target)} samples labelled" in done.stdout and "written to thick.csv" in done.stdout
    written = pd.read_csv(tmp_path / "thick.csv", dtype={"label": str})
    assert list(written.columns) == ["id", "label"]  # 1-NN has no scores
    accuracy = float(np.mean(written["label"].to_numpy() == np.asarray(target.classes)[target.y]))
    assert accuracy == pytest.approx(outcome.metrics["target_acc"], abs=1e-12)

    done = _tlrun(tmp_path, mlflow_store, "predict", f"run={outcome.run_id}", "data=few.csv")
    assert done.returncode == 0, done.stderr[-2000:]
    written = pd.read_csv(tmp_path / "outputs" / "predict" / f"{outcome.run_id}-few.csv", dtype={"label": str})
    model = api.load(outcome.run_id, mlflow_store)
    assert written["label"].tolist() == model.predict(target.X[:7]).tolist()


def test_evaluate_logs_a_linked_run_with_the_data_as_its_input(digits_run, mlflow_store, tmp_path):
    outcome, target = digits_run
    np.savetxt(tmp_path / "labeled.csv", np.column_stack([target.X[:40], target.y[:40]]), delimiter=",", fmt="%.17g")
    done = _tlrun(tmp_path, mlflow_store, "evaluate", f"run={outcome.run_id}", "data=labeled.csv")
    assert done.returncode == 0, done.stderr[-2000:]
    client = MlflowClient(tracking_uri=mlflow_store)
    experiment = client.get_experiment_by_name("predict").experiment_id
    [linked] = client.search_runs([experiment], filter_string=f"tags.`lineage.model_run` = '{outcome.run_id}'")
    assert linked.info.status == "FINISHED" and linked.info.run_id in done.stdout
    assert linked.data.tags["method"] == "jda" and linked.data.tags["target"] == "labeled"
    expected = np.mean(api.load(outcome.run_id, mlflow_store).predict(target.X[:40]) == np.asarray(target.classes)[target.y[:40]])
    assert linked.data.metrics["target_acc"] == pytest.approx(expected)
    [data_input] = linked.inputs.dataset_inputs
    assert data_input.dataset.name == "labeled.csv" and data_input.tags[0].value == "evaluation"


def _tlrun_here(monkeypatch, capsys, tmp_path: Path, store: str, *arguments: str) -> tuple[int, str]:
    """``tlrun <arguments>`` through the console script's entry point, in this process: (exit code, stderr)."""
    from tlrun.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["tlrun", *arguments, f"tracking_uri={store}"])
    with pytest.raises(SystemExit) as exit_:
        main()
    return exit_.value.code, capsys.readouterr().err


@pytest.mark.parametrize("arguments, message", [
    (("data=wrong.csv",), "rows of 10 columns, but this model takes rows of 64 values"),
    (("data=nowhere.npz",), "data=nowhere.npz: no such file or folder"),
    (("data=folder",), "is a folder; this model takes rows of 64 values"),
    (("data=unlabeled.npz", "run=0123abcd"), "has no such run"),
])
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_data_the_model_cannot_take_is_one_line_and_opens_no_run(digits_run, mlflow_store, tmp_path, monkeypatch,
                                                                   capsys, command, arguments, message):
    outcome, target = digits_run
    np.savetxt(tmp_path / "wrong.csv", target.X[:5, :10], delimiter=",")
    np.savez(tmp_path / "unlabeled.npz", X=target.X[:5])
    (tmp_path / "folder").mkdir()
    runs = _run_count(mlflow_store)
    code, stderr = _tlrun_here(monkeypatch, capsys, tmp_path, mlflow_store, command, f"run={outcome.run_id}", *arguments)
    assert code == 2 and stderr.strip().splitlines()[-1].startswith("tlrun: error: ") and message in stderr
    assert "Traceback" not in stderr and _run_count(mlflow_store) == runs
    assert not (tmp_path / "outputs" / "predict").exists()


def test_evaluate_needs_labels(digits_run, mlflow_store, tmp_path, monkeypatch, capsys):
    outcome, target = digits_run
    np.savez(tmp_path / "unlabeled.npz", X=target.X[:5])
    runs = _run_count(mlflow_store)
    code, stderr = _tlrun_here(monkeypatch, capsys, tmp_path, mlflow_store, "evaluate", f"run={outcome.run_id}",
                               "data=unlabeled.npz")
    assert code == 2 and "has no labels" in stderr and _run_count(mlflow_store) == runs


@pytest.mark.parametrize("method", [("method=jda", "method.dim=4", "method.iterations=2", "backbone=resnet18"),
                                    ("method=source_only", QUICK, "backbone=lenet")])
def test_a_model_of_image_files_labels_a_folder_through_the_runs_preprocessing(compose, mlflow_store, tmp_path, method):
    """Closed-form (features from the frozen ResNet inside the model) and deep (the network itself): the class
    folders of the target domain, labelled from the command line, score what the run scored; the pyfunc model takes
    the paths as a list, tlrun's loader the decoded pixels as well."""
    root = office31_tree(tmp_path / "office31")
    outcome = run_job(compose(*method, "dataset=office31", f"dataset.root={root}", "dataset.target=webcam",
                              "backbone.image_size=32", experiment="predict-images"))
    done = _tlrun(tmp_path, mlflow_store, "evaluate", f"run={outcome.run_id}", f"data={root / 'webcam' / 'images'}")
    assert done.returncode == 0, done.stderr[-2000:]
    client = MlflowClient(tracking_uri=mlflow_store)
    experiment = client.get_experiment_by_name("predict-images").experiment_id
    [linked] = client.search_runs([experiment], filter_string=f"tags.`lineage.model_run` = '{outcome.run_id}'")
    assert linked.data.metrics["target_acc"] == pytest.approx(outcome.metrics["target_acc"], abs=1e-12)

    done = _tlrun(tmp_path, mlflow_store, "predict", f"run={outcome.run_id}", f"data={root / 'webcam' / 'images' / 'mug'}")
    assert done.returncode == 0, done.stderr[-2000:]
    written = pd.read_csv(next((tmp_path / "outputs" / "predict").glob("*.csv")))
    assert len(written) == 4 and all(Path(path).parent.name == "mug" for path in written["id"])
    with mlflow_tracking(mlflow_store):  # the pyfunc model takes the paths as a list
        labels = mlflow.pyfunc.load_model(f"runs:/{outcome.run_id}/model").predict(written["id"].tolist())
    assert list(labels) == written["label"].astype(str).tolist()
    model = api.load(outcome.run_id, mlflow_store)
    pixels = np.stack([np.asarray(Image.open(path).convert("RGB")) for path in written["id"]])  # decoded images
    assert model.predict(pixels).tolist() == list(labels)
    scored = model.scores(written["id"].tolist())  # the deep model's probabilities; 1-NN has none
    assert ("score" in written) == (scored is not None) == (method[0] == "method=source_only")
    if scored is not None:
        names, probabilities = scored
        assert written["score"].to_numpy() == pytest.approx(probabilities.max(axis=1), abs=1e-6)
        assert list(labels) == [names[k] for k in probabilities.argmax(axis=1)]


def test_an_open_set_model_answers_unknown_as_its_run_scored_it(compose, mlflow_store, tmp_path, monkeypatch, capsys):
    """A dann run on an open-set task carved from the digits (known 0-5): its logged model, through ``tlrun predict``
    and ``tlrun evaluate`` on the whole target (digits 6-9 among it), answers ``unknown`` by the run's rule, so that
    the evaluation's OS, OS*, UNK and H-score are the run's own."""
    cfg = compose("method=dann", "dataset.source_classes=[0,1,2,3,4,5]", QUICK, experiment="predict-open-set")
    outcome = run_job(cfg)
    target = instantiate(cfg.dataset).load("thick")
    np.savez(tmp_path / "thick.npz", X=target.X, y=np.asarray(target.classes)[target.y])
    code, _ = _tlrun_here(monkeypatch, capsys, tmp_path, mlflow_store, "predict", f"run={outcome.run_id}",
                          "data=thick.npz", "out=thick.csv")
    written = pd.read_csv(tmp_path / "thick.csv", dtype={"label": str})
    model = api.load(outcome.run_id, mlflow_store)
    assert code == 0 and model.classes == ("0", "1", "2", "3", "4", "5", "unknown")
    assert "unknown" in set(written["label"]) and written["label"].tolist() == model.predict(target.X).tolist()
    code, _ = _tlrun_here(monkeypatch, capsys, tmp_path, mlflow_store, "evaluate", f"run={outcome.run_id}",
                          "data=thick.npz")
    client = MlflowClient(tracking_uri=mlflow_store)
    experiment = client.get_experiment_by_name("predict-open-set").experiment_id
    [linked] = client.search_runs([experiment], filter_string=f"tags.`lineage.model_run` = '{outcome.run_id}'")
    for key in ("target_acc", "target_os_star", "target_unk", "target_h_score"):
        assert linked.data.metrics[key] == pytest.approx(outcome.metrics[key], abs=1e-9), key


@contextlib.contextmanager
def mlflow_tracking(store: str):
    """MLflow's global tracking URI (which ``runs:/`` URIs read) set to ``store`` for the block."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(store)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def test_evaluate_scores_each_task_as_a_run_scores_its_target():
    """Text labels: a zero-shot model's ``target_acc`` is the mean per-class accuracy, a classifier's the accuracy,
    a clustering's the accuracy after matching clusters to classes (with NMI and ARI), an open-set model's OS with
    every label outside its known classes unknown."""
    from types import SimpleNamespace

    from tlrun.tracking.apply import evaluation_metrics

    labels = np.array(["a", "a", "a", "b"])
    guesses = np.array(["a", "b", "b", "b"])
    assert evaluation_metrics(SimpleNamespace(task="classify", unknown_label=None), guesses, labels) == pytest.approx(
        {"target_acc": 0.5, "target_mean_class_acc": (1 / 3 + 1) / 2})
    zeroshot = SimpleNamespace(task="zeroshot", unknown_label=None)
    assert evaluation_metrics(zeroshot, guesses, labels)["target_acc"] == pytest.approx(2 / 3)
    clusters = np.array(["cluster 1", "cluster 1", "cluster 1", "cluster 0"])
    scores = evaluation_metrics(SimpleNamespace(task="cluster", unknown_label=None), clusters, labels)
    assert scores["target_acc"] == scores["target_mean_class_acc"] == scores["nmi"] == scores["ari"] == 1.0
    open_set = SimpleNamespace(task="classify", unknown_label=2, classes=("a", "b", "unknown"))  # c, d: unknown
    scores = evaluation_metrics(open_set, np.array(["a", "unknown", "unknown", "b"]), np.array(["a", "b", "c", "d"]))
    assert scores == pytest.approx({"target_acc": 0.5, "target_os_star": 0.5, "target_unk": 0.5, "target_h_score": 0.5,
                                    "target_mean_class_acc": 0.5})
