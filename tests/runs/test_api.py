"""The Python API (``tlrun.api``): the example of ``docs/python.md`` runs as written; ``run`` composes as the command
line does (same checks, same errors); ``fit`` is a scikit-learn-style estimator; a zero-shot model takes other and
new class descriptions at predict time."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tests.helpers import REPO
from tlrun import api
from tlrun.errors import TlrunError
from tlrun.scenarios import ClassDescriptions

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _doc_example() -> str:
    text = (REPO / "docs" / "python.md").read_text()
    block = re.search(r"<!-- example:start -->\n```python\n(.*?)```\n<!-- example:end -->", text, re.S)
    assert block, "docs/python.md lost its example block"
    return block.group(1)


def test_the_python_page_example_runs_as_written(mlflow_store, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store)
    monkeypatch.chdir(tmp_path)
    exec(compile(_doc_example(), "docs/python.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "identity da" in printed and "rows of 64 values (1x8x8 images)" in printed


def test_run_composes_as_the_command_line_does(mlflow_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert api.overrides("jda", "seed=1", method__lamb=0.5, **{"dataset.target": "rotate", "diagnostics": False,
                                                              "method.layers": ["a", "b"], "backbone.weights": None}) == [
        "method=jda", "seed=1", "method.lamb=0.5", "dataset.target=rotate", "diagnostics=false", "method.layers=[a,b]",
        "backbone.weights=null"]
    with pytest.raises(TlrunError, match="unknown method 'jdx' \\(did you mean jda\\?\\)"):
        api.run("jdx")
    with pytest.raises(TlrunError, match="did you mean method.lamb"):
        api.run("jda", **{"method.lam": 0.1})
    result = api.run("coral", **{"logger.tracking_uri": mlflow_store, "logger.experiment": "api"})
    assert result.tracking_uri == mlflow_store and result.config.method_info.name == "coral"
    assert 0.0 <= result.metrics["target_acc"] <= 1.0 and result.model.task == "classify"


def test_fit_is_an_estimator_on_arrays_with_the_method_configs_defaults():
    rng = np.random.default_rng(0)
    source = np.vstack([rng.normal(0, 1, (40, 5)), rng.normal(4, 1, (40, 5))])
    target = source + np.array([2.0, 0, 0, 0, 0])  # a shifted copy
    labels = np.array(["cat"] * 40 + ["dog"] * 40)
    model = api.fit("jda", source, labels, target, dim=3)
    assert model.method.dim == 3 and model.method.lamb == 1.0  # the option given, the config's default for the rest
    assert np.mean(model.predict(target) == labels) > 0.9
    with pytest.raises(TlrunError, match="api.fit takes the closed-form DA methods"):
        api.fit("dann", source, labels, target)
    with pytest.raises(TlrunError, match="must be \\(n, d\\) with the same d"):
        api.fit("coral", source, labels, target[:, :3])
    with pytest.raises(TlrunError, match="this model takes rows of 5 values, got an array of shape"):
        model.predict(target[:, :4])


def test_a_zero_shot_model_predicts_among_described_classes_old_and_new(mlflow_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = api.run("eszsl", **{"logger.tracking_uri": mlflow_store, "logger.experiment": "api-zsl"})
    model = result.model
    unseen = model.default_classes
    samples = np.random.default_rng(0).uniform(0, 1, (6, 64))
    assert set(model.predict(samples)) <= set(unseen)
    assert set(model.predict(samples, classes=["0", "9"])) <= {"0", "9"}
    names, scores = model.scores(samples, classes=["0", "9"])
    assert names == ("0", "9") and scores.shape == (6, 2)
    # New descriptions: two made-up classes whose attributes copy those of 0 and 9 score exactly as 0 and 9 do.
    known = model.descriptions.subset([model.descriptions.labels[model.descriptions.names.index(n)] for n in ("0", "9")])
    invented = ClassDescriptions(labels=(100, 101), names=("zero-like", "nine-like"), attributes=known.attributes)
    assert model.scores(samples, classes=invented)[1] == pytest.approx(scores)
    with pytest.raises(TlrunError, match="the model describes these classes"):
        model.predict(samples, classes=["eleven"])
