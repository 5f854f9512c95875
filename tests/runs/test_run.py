"""End-to-end runs composed in-process through Hydra's compose API, tracked in the session's MLflow store."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from hydra.errors import MissingConfigException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import (MLFLOW_DATASET_CONTEXT, MLFLOW_GIT_COMMIT, MLFLOW_SOURCE_NAME,
                                      MLFLOW_SOURCE_TYPE, MLFLOW_USER)

from tests.helpers import REPO, office31_tree
from tlrun.config import load_option
from tlrun.data.base import DataError
from tlrun.errors import TlrunError
from tlrun.run import run, run_job
from tlrun.runner.preflight import check_random_features, preflight
from tlrun.scenarios import ScenarioError


def _runs(store: str, experiment: str):
    client = MlflowClient(tracking_uri=store)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return client, []
    return client, client.search_runs([found.experiment_id], order_by=["attributes.start_time DESC"])


def test_default_run_is_tracked(compose, mlflow_store, tmp_path):
    target_acc = run(compose(experiment="e2e-default"))
    client, runs = _runs(mlflow_store, "e2e-default")
    assert len(runs) == 1
    record = runs[0]
    assert record.info.status == "FINISHED"
    params, metrics, tags = record.data.params, record.data.metrics, record.data.tags
    assert params["method_info.name"] == "jda" and params["dataset.name"] == "digits"
    assert params["scenario.name"] == "da"  # scenario=auto resolved to the method's natural one
    assert params["seed"] == "0" and params["method.dim"] == "100"
    assert 0.0 <= metrics["target_acc"] <= 1.0 and metrics["target_acc"] == pytest.approx(target_acc)
    assert 0.0 <= metrics["source_acc"] <= 1.0
    assert tags["method"] == "jda" and tags["scenario"] == "da" and tags["dataset"] == "digits"
    assert {"version.torch", "version.sklearn", "version.tlrun", "source", "target"} <= set(tags)
    # JDA reports the target accuracy at every iteration; the final evaluation's is its last step's only value.
    history = client.get_metric_history(record.info.run_id, "target_acc")
    assert len({m.step for m in history}) >= 10 and len(history) == len({m.step for m in history})
    assert max(history, key=lambda m: m.step).value == pytest.approx(target_acc)
    assert not {"cache_dir", "logger.tracking_uri", "logger.experiment", "threads", "method_info.summary"} & set(params)
    artifacts = {a.path for a in client.list_artifacts(record.info.run_id)}
    assert {"config.yaml", "confusion_matrix.png", "per_class_target_acc.csv"} <= artifacts


def checkout_commit() -> str | None:
    """``git rev-parse HEAD`` of the repository under test (``None`` outside a checkout)."""
    found = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else None


def test_a_command_line_run_follows_mlflow_s_conventions(mlflow_store, tmp_path):
    """System tags (the UI's Source, User and Version columns), each domain as a dataset input whose digest is its
    checksum tag, the command line as ``hydra/overrides.yaml``, no bookkeeping params, one ``target_acc`` per step."""
    overrides = ["method=source_only", "backbone=mlp", "method.epochs=2", "diagnostics=false",
                 "logger.experiment=e2e-conventions", f"cache_dir={tmp_path / 'cache'}"]
    entry = "import sys; sys.argv = ['tlrun', *sys.argv[1:]]; from tlrun.cli import main; main()"
    result = subprocess.run([sys.executable, "-c", entry, *overrides, f"hydra.run.dir={tmp_path / 'run'}"],
                            cwd=tmp_path, env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_store},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    client, (record,) = _runs(mlflow_store, "e2e-conventions")
    run_id, tags = record.info.run_id, record.data.tags
    assert tags[MLFLOW_SOURCE_TYPE] == "LOCAL" and tags[MLFLOW_SOURCE_NAME] and tags[MLFLOW_USER]
    commit = checkout_commit()
    if commit is not None:
        assert tags[MLFLOW_GIT_COMMIT] == commit
    inputs = {item.dataset.name: item for item in record.inputs.dataset_inputs}
    assert {name: [tag.value for tag in item.tags if tag.key == MLFLOW_DATASET_CONTEXT]
            for name, item in inputs.items()} == {"digits/original": ["source"], "digits/thick": ["target"]}
    checksum = tags["data.sha256.digits.csv.gz"]
    assert {item.dataset.digest for item in inputs.values()} == {checksum[:36]}
    assert checksum in inputs["digits/original"].dataset.profile
    overrides_file = client.download_artifacts(run_id, "hydra/overrides.yaml", str(tmp_path))
    assert yaml.safe_load(open(overrides_file)) == overrides
    assert not {"cache_dir", "logger.tracking_uri", "logger.experiment", "threads", "method_info.summary",
                "method_info.kind", "method_info.scenarios", "dataset.scenarios"} & set(record.data.params)
    history = client.get_metric_history(run_id, "target_acc")
    assert sorted(m.step for m in history) == [1, 2]


def test_same_seed_same_metrics(compose):
    overrides = ("method=source_only", "backbone=mlp", "method.epochs=2")
    first = run(compose(*overrides, "seed=3", experiment="e2e-seed"))
    second = run(compose(*overrides, "seed=3", experiment="e2e-seed"))
    assert first == second


def test_method_that_does_not_fit_fails_before_any_work(compose, mlflow_store):
    _, before = _runs(mlflow_store, "e2e-errors")
    with pytest.raises(ScenarioError, match="scenario=da"):
        run(compose("method=jda", "scenario=finetune", experiment="e2e-errors"))
    _, after = _runs(mlflow_store, "e2e-errors")
    assert len(after) == len(before)  # no MLflow run was opened


def test_unknown_method_lists_the_options(compose):
    with pytest.raises(MissingConfigException) as error:
        compose("method=nope")
    assert "jda" in str(error.value) and "source_only" in str(error.value)


def test_missing_dataset_says_where_to_put_it(compose, tmp_path):
    with pytest.raises(DataError) as error:
        run(compose("dataset=office_caltech10", f"dataset.root={tmp_path / 'absent'}", experiment="e2e-errors"))
    assert str(tmp_path / "absent") in str(error.value)


def test_a_corrupt_file_is_refused_before_a_run_opens(compose, mlflow_store, tmp_path):
    root = tmp_path / "features"
    root.mkdir()
    rng = np.random.default_rng(0)
    np.savez(root / "a.npz", X=rng.normal(size=(20, 5)), y=np.arange(20) % 2)
    (root / "b.npz").write_bytes(b"this is not a zip archive")
    with pytest.raises(DataError, match="b.npz"):
        run(compose("dataset=features", f"dataset.root={root}", "dataset.source=a", "dataset.target=b",
                    experiment="e2e-corrupt"))
    assert MlflowClient(tracking_uri=mlflow_store).get_experiment_by_name("e2e-corrupt") is None


def test_recipe_composes_into_the_papers_twelve_tasks(compose):
    cfg = compose("+experiment=jda_office_caltech_surf", "dataset.root=/data", "task=webcam-dslr")
    assert cfg.dataset.source == "webcam" and cfg.dataset.target == "dslr"
    assert cfg.method_info.name == "jda" and cfg.dataset.preprocess == "rowsum_zscore"
    recipe = load_option("experiment", "jda_office_caltech_surf")
    assert recipe.hydra.mode == "MULTIRUN"
    tasks = [tuple(task.split("-")) for task in recipe.hydra.sweeper.params.task.split(",")]
    domains = ("amazon", "caltech", "dslr", "webcam")
    assert sorted(tasks) == sorted((s, t) for s in domains for t in domains if s != t)


def test_closed_form_on_images_extracts_features_once(compose, mlflow_store, tmp_path, monkeypatch):
    from tlrun.backbones import extract
    from tlrun.runner.model import EXAMPLE_ROWS

    office31_tree(tmp_path / "office31")
    overrides = ("method=jda", "method.dim=4", "method.iterations=2", "dataset=office31",
                 f"dataset.root={tmp_path / 'office31'}", "backbone=resnet18", "backbone.image_size=32")
    run(compose(*overrides, experiment="e2e-images"))
    cached = [p for p in (tmp_path / "cache" / "features").rglob("*") if p.is_file()]
    assert len(cached) == 2, "the source's and the target's features were not cached"
    stamps = [p.stat().st_mtime_ns for p in cached]
    run_backbone, passes = extract.run_backbone, []
    monkeypatch.setattr(extract, "run_backbone",
                        lambda backbone, X, **kwargs: passes.append(len(X)) or run_backbone(backbone, X, **kwargs))
    build_backbone, built = extract.build_backbone, []
    monkeypatch.setattr(extract, "build_backbone", lambda *args: built.append(build_backbone(*args)) or built[-1])
    run(compose(*overrides, experiment="e2e-images"))  # served from the cache
    # The network runs only over the logged model's input example (its round-trip check), never over a domain.
    assert set(passes) == {EXAMPLE_ROWS} and [p.stat().st_mtime_ns for p in cached] == stamps
    assert len(built) == 1  # one frozen backbone keys both domains' caches and reads the logged model's inputs
    _, runs = _runs(mlflow_store, "e2e-images")
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]
    assert runs[0].data.tags["backbone"] == "resnet18"
    assert any(key.startswith("data.sha256.") for key in runs[0].data.tags)


def test_images_need_an_image_backbone(compose, tmp_path):
    office31_tree(tmp_path / "office31")
    with pytest.raises(TlrunError, match="backbone=resnet18"):
        run(compose("dataset=office31", f"dataset.root={tmp_path / 'office31'}", experiment="e2e-errors"))


def test_images_need_a_named_backbone_when_auto_cannot_read_them(compose, tmp_path):
    office31_tree(tmp_path / "office31")
    with pytest.raises(TlrunError, match=r"what backbone=auto chose.*backbone=resnet50 backbone.weights=imagenet"):
        run(compose("method=dann", "dataset=office31", f"dataset.root={tmp_path / 'office31'}", experiment="e2e-errors"))


def test_backbone_auto_gives_deep_methods_a_cnn_on_image_rows_only(compose, tmp_path, capsys):
    """Flat 16×16 images as features: a deep method reads them with LeNet, a closed-form one as they are (never
    through an untrained CNN); without image_shape both read the rows as vectors; a named backbone is kept."""
    rng = np.random.default_rng(0)
    for domain in ("mnist", "usps"):
        np.savez(tmp_path / f"{domain}.npz", X=rng.random((20, 256)), y=np.arange(20) % 2)
    features = ("dataset=features", f"dataset.root={tmp_path}", "dataset.source=mnist", "dataset.target=usps")
    images = (*features, "dataset.image_shape=[1,16,16]")
    chosen = {
        (method, shape is not None): preflight(compose(f"method={method}", *(images if shape else features))).cfg.backbone.name
        for method in ("dann", "source_only", "jda") for shape in (None, "16")
    }
    assert chosen == {("dann", True): "lenet", ("source_only", True): "lenet", ("jda", True): "identity",
                      ("dann", False): "identity", ("source_only", False): "identity", ("jda", False): "identity"}
    assert preflight(compose("method=dann")).cfg.backbone.name == "lenet"  # the embedded digits: 8 x 8 images
    assert preflight(compose("method=jda")).cfg.backbone.name == "identity"  # ... read as 64 pixels by closed forms
    assert preflight(compose("method=finetune")).cfg.backbone.name == "lenet"  # the family's own default
    capsys.readouterr()
    assert preflight(compose("method=dann", *images, "backbone=identity")).cfg.backbone.name == "identity"
    assert "serves a CNN (e.g. backbone=lenet)" in capsys.readouterr().err
    for method in ("jda", "zsl_attribute"):  # they read the digits' pixels as they are by design: no note
        assert preflight(compose(f"method={method}")).cfg.backbone.name == "identity"
    assert "serves a CNN" not in capsys.readouterr().err


def test_features_dataset_with_the_primal_form(compose, mlflow_store, tmp_path):
    """The paper's setting for raw pixels / deep features: primal JDA, lambda = 0.1, l2 preprocessing."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 20)) * 3
    for domain, offset in (("mnist", 0.0), ("usps", 1.5)):
        y = np.repeat(np.arange(3), 30)
        X = centres[y] + rng.normal(size=(90, 20)) + offset * rng.normal(size=20)
        np.savez(tmp_path / f"{domain}.npz", X=X, y=y + 1)
    target_acc = run(compose("method=jda", "dataset=features", f"dataset.root={tmp_path}", "dataset.source=mnist",
                             "dataset.target=usps", "dataset.preprocess=l2", "method.kernel=primal",
                             "method.lamb=0.1", "method.dim=10", experiment="e2e-features"))
    _, runs = _runs(mlflow_store, "e2e-features")
    assert runs[0].info.status == "FINISHED" and runs[0].data.params["method.kernel"] == "primal"
    assert target_acc > 0.9


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("method.dim=0",), "method: dim must be >= 1"),
        (("method.kernel=foo",), "unknown kernel 'foo'"),
        (("method=kmm", "method.classifier=1nn"), "cannot weight samples"),
        (("seed=abc",), "seed must be an integer"),
        (("dataset=features",), "set dataset.source, dataset.target"),
        (("dataset=office_caltech10",), "dataset.root is not set"),
        (("method=no_adaptation", "scenario=finetune", "scenario.target_label_fraction=0.1"), "exactly one of"),
        (("backbone=resnet18", "backbone.weights=/no/such/file.pt"), "no such file"),
    ],
)
def test_configuration_errors_open_no_run(compose, mlflow_store, overrides, message):
    _, before = _runs(mlflow_store, "e2e-config-errors")
    with pytest.raises(TlrunError, match=message):
        run(compose(*overrides, experiment="e2e-config-errors"))
    _, after = _runs(mlflow_store, "e2e-config-errors")
    assert len(after) == len(before)


def test_a_closed_form_method_on_images_is_not_given_random_features_by_default(compose, capsys):

    cfg = compose("method=jda", "dataset=office31", "dataset.root=x", "backbone=resnet18")
    with pytest.raises(TlrunError, match=r"random weights .*backbone.weights=imagenet.*backbone.weights=none on the command line"):
        check_random_features(cfg, holds_images=True, weights_given=False)
    check_random_features(cfg, holds_images=True, weights_given=True)  # on purpose: no word
    assert capsys.readouterr().err == ""
    check_random_features(cfg, holds_images=True, weights_given=None)  # composed in Python: a warning
    assert "tlrun: warning: method jda does not train its backbone" in capsys.readouterr().err
    for fine in (compose("method=dann", "dataset=office31", "dataset.root=x", "backbone=resnet18"),  # trains it
                 compose("method=jda", "dataset=office31", "dataset.root=x", "backbone=resnet18", "backbone.weights=imagenet")):
        check_random_features(fine, holds_images=True, weights_given=False)
    check_random_features(cfg, holds_images=False, weights_given=False)  # features are read as they are


def test_every_run_records_its_protocol_and_mean_class_accuracy(compose, mlflow_store):
    client = MlflowClient(tracking_uri=mlflow_store)
    whole = client.get_run(run_job(compose("method=no_adaptation", experiment="protocol")).run_id)
    assert whole.data.tags["protocol"] == "transductive"
    assert 0 < whole.data.metrics["target_mean_class_acc"] <= 1 and "target_transductive_acc" not in whole.data.metrics
    held = client.get_run(run_job(compose("method=no_adaptation", "scenario.target_test_fraction=0.3",
                                          experiment="protocol")).run_id)
    assert held.data.tags["protocol"] == "held_out"
    assert {"target_acc", "target_mean_class_acc", "target_transductive_acc"} <= set(held.data.metrics)
    held_out, target = int(held.data.params["data.n_target_test"]), int(whole.data.params["data.n_target_test"])
    assert abs(held_out - 0.3 * target) <= 10  # 0.3 of each of the 10 classes, rounded
    assert int(held.data.params["data.n_target_train"]) == target - held_out
