"""The model every run logs: an MLflow model (a LoggedModel, flavour ``pyfunc``) wrapping tlrun's
:class:`~tlrun.predictor.Predictor`, and reading it back.

``mlflow.pyfunc.load_model("runs:/<run id>/model").predict(X)`` labels new samples as the run labelled its target:
``X`` is rows ``(n, features)`` (an array or a DataFrame of numbers) or, for runs on image files, the files' paths
(a list, or a DataFrame whose first column holds them). It returns the labels (class names; ``cluster k`` for clusterings);
``params={"output": "scores"}`` returns a DataFrame of per-class scores instead (one column per class), for methods
that have scores. A zero-shot model takes ``params={"classes": [...]}``: the names, among the classes it describes,
to predict among (by default the run's unseen classes). The model carries a signature, an input example and its pip
requirements. Deep runs add the weights as ``state_dict.pt`` inside the model, for ``backbone.weights=runs:/<run
id>/model``.

Files inside the model: ``artifacts/predictor.pt`` (the pickled predictor, see :mod:`tlrun.predictor`) and, for
deep methods, ``artifacts/state_dict.pt``.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any, Iterator

import mlflow.pyfunc
import numpy as np

from tlrun import __version__
from tlrun.errors import TlrunError
from tlrun.predictor import Predictor, load_predictor

#: The name of the model every run logs (its URI: ``runs:/<run id>/model``).
MODEL_NAME = "model"
PREDICTOR_FILE = "predictor.pt"
#: The plain state dict of a deep run's network, inside the model (``backbone.weights=runs:/<run id>/model``).
WEIGHTS_FILE = "state_dict.pt"
#: The ``output`` param of the pyfunc model: labels (default) or per-class scores.
OUTPUTS = ("labels", "scores")


class TlrunModel(mlflow.pyfunc.PythonModel):
    """The pyfunc face of a :class:`~tlrun.predictor.Predictor` (see the module's docstring)."""

    #: MLflow would validate inputs by ``predict``'s type hints (and warns when there are none); the signature does.
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        self.predictor = load_predictor(context.artifacts["predictor"])

    def predict(self, context, model_input, params=None):
        import pandas as pd

        params = params or {}
        output = params.get("output", "labels")
        if output not in OUTPUTS:
            raise TlrunError(f"output={output!r}: one of {', '.join(OUTPUTS)}")
        classes = params.get("classes") or None
        samples = _samples(model_input, self.predictor.inputs.kind)
        if output == "labels":
            return np.asarray(self.predictor.predict(samples, classes=classes), dtype=str)
        scored = self.predictor.scores(samples, classes=classes)
        if scored is None:
            raise TlrunError(f"{type(self.predictor.method).__name__} has no scores (a 1-NN classifier or a "
                             "clustering); ask for output=labels")
        names, values = scored
        return pd.DataFrame(values, columns=list(names))


def _samples(model_input: Any, kind: str) -> Any:
    """The pyfunc input as the predictor takes it: paths for image models, a float array for rows."""
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        if kind == "images":
            return model_input.iloc[:, 0].astype(str).tolist()
        return model_input.to_numpy(dtype=np.float64)
    if kind == "images":
        return [str(path) for path in np.ravel(np.asarray(model_input, dtype=object))]
    return np.asarray(model_input, dtype=np.float64)


def _signature(predictor: Predictor) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    if predictor.inputs.kind == "images":
        inputs = Schema([ColSpec("string")])  # unnamed: a list of paths, or a DataFrame's first column
    else:
        inputs = Schema([TensorSpec(np.dtype(np.float64), (-1, int(predictor.inputs.n_features)))])
    params = [ParamSpec("output", "string", "labels")]
    if predictor.task == "zeroshot":
        params.append(ParamSpec("classes", "string", list(predictor.default_classes), shape=(-1,)))
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec("string")]), params=ParamSchema(params))


def pip_requirements() -> list[str]:
    """What loading the model needs: tlrun at this version (which brings torch, scikit-learn and MLflow)."""
    return [f"tlrun=={__version__}"]


@contextlib.contextmanager
def _logging_into(tracking_uri: str, run_id: str) -> Iterator[None]:
    """MLflow's model logging reads the store and the experiment from its global settings: for the block, the store
    ``tracking_uri`` and the experiment of run ``run_id`` (else the LoggedModel would land in the default one)."""
    import os

    import mlflow
    from mlflow.tracking import MlflowClient

    previous = (mlflow.get_tracking_uri() if mlflow.tracking.is_tracking_uri_set() else None,
                os.environ.get(EXPERIMENT_ENV))
    mlflow.set_tracking_uri(tracking_uri)
    os.environ[EXPERIMENT_ENV] = MlflowClient(tracking_uri).get_run(run_id).info.experiment_id
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous[0] or "")
        if previous[1] is None:
            os.environ.pop(EXPERIMENT_ENV, None)
        else:
            os.environ[EXPERIMENT_ENV] = previous[1]


@contextlib.contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """MLflow's notes while it logs a model (it validates the input example, warns that a Python object is
    pickled: ours is a class of this module, pickled by reference) say nothing a tlrun user can act on."""
    import logging

    loggers = [logging.getLogger(name) for name in ("mlflow.pyfunc", "mlflow.models")]
    levels = [each.level for each in loggers]
    for each in loggers:
        each.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for each, level in zip(loggers, levels):
            each.setLevel(level)


#: The environment variable MLflow reads its current experiment from.
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_ID"


def log_run_model(run_id: str, tracking_uri: str, predictor: Predictor, input_example: Any,
                  weights: dict[str, Any] | None = None) -> str:
    """Log ``predictor`` as the run's model ``model`` (with ``weights``, a deep network's state dict, as
    ``state_dict.pt``), after checking that the saved predictor labels ``input_example`` as the fitted one does;
    returns the LoggedModel's id."""
    import torch
    from mlflow.models import Model

    with tempfile.TemporaryDirectory() as scratch:
        artifacts = {"predictor": str(predictor.save(Path(scratch) / PREDICTOR_FILE))}
        _check_round_trip(predictor, artifacts["predictor"], input_example)
        if weights is not None:
            artifacts["weights"] = str(Path(scratch) / WEIGHTS_FILE)
            torch.save({key: value.detach().cpu() for key, value in weights.items()}, artifacts["weights"])
        with _logging_into(tracking_uri, run_id), _quiet_mlflow():
            info = Model.log(None, name=MODEL_NAME, flavor=mlflow.pyfunc, run_id=run_id, python_model=TlrunModel(),
                             artifacts=artifacts, signature=_signature(predictor), input_example=input_example,
                             pip_requirements=pip_requirements())
    return info.model_id


def _check_round_trip(predictor: Predictor, file: str, example: Any) -> None:
    """The saved predictor, read back, labels ``example`` as the fitted one does; else a :class:`TlrunError` (a
    model that would not reproduce its run is not logged as if it did)."""
    expected, reloaded = predictor.predict(example), load_predictor(file).predict(example)
    if not np.array_equal(expected, reloaded):
        raise TlrunError(f"{type(predictor.method).__name__}: the saved model labels its input example "
                         f"{list(reloaded)} where the fitted method says {list(expected)}; it was not logged")


class RunNotFound(TlrunError):
    """The store has no run of that id."""


def download_model(run_id: str, tracking_uri: str, destination: Path) -> Path:
    """The folder of run ``run_id``'s model (the LoggedModel named ``model`` whose source is the run), downloaded
    into ``destination``; a :class:`~tlrun.errors.TlrunError` naming the store when the run or its model does not
    exist. (Found through the store's client: MLflow's own ``runs:/`` resolution reads its global tracking URI.)"""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    from tlrun.tracking.store import open_client

    client = open_client(tracking_uri, create=False)
    try:
        experiment_id = client.get_run(run_id).info.experiment_id
    except MlflowException:
        raise RunNotFound(f"run {run_id}: the MLflow store {tracking_uri} has no such run (copy the id from the MLflow "
                         "UI or the end of the run's output; set tracking_uri to the store it was tracked in)") from None
    models = client.search_logged_models(experiment_ids=[experiment_id], filter_string=f"name = '{MODEL_NAME}'")
    model = next((each for each in models if each.source_run_id == run_id), None)
    if model is None:
        raise TlrunError(f"run {run_id} logged no model (it ended before its model was logged, ran with "
                         "save_model=false, or predates tlrun's logged models)")
    return Path(download_artifacts(artifact_uri=model.artifact_location, tracking_uri=tracking_uri,
                                   dst_path=str(destination)))


def load_run_predictor(run_id: str, tracking_uri: str, device: str = "cpu") -> Predictor:
    """Run ``run_id``'s predictor (:func:`download_model`, then :func:`~tlrun.predictor.load_predictor`)."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = download_model(run_id, tracking_uri, Path(scratch))
        files = sorted(folder.rglob(PREDICTOR_FILE))
        if not files:
            raise TlrunError(f"run {run_id}'s model has no {PREDICTOR_FILE}: it was not logged by tlrun")
        return load_predictor(files[0], device)
