"""A run's trained weights: the plain state dict ``state_dict.pt`` inside the model a deep run logs
(:mod:`tlrun.tracking.models`; runs logged before it kept it as the run artifact ``model/state_dict.pt``), fetched
back for ``backbone.weights=runs:/<run_id>/model`` (:func:`fetch_run_weights`)."""

from __future__ import annotations

from pathlib import Path

from tlrun.config import RUN_URI_PREFIX
from tlrun.errors import TlrunError

#: Where a run's trained weights are: the file ``state_dict.pt`` of its model ``model``.
MODEL_ARTIFACT = "model"
MODEL_FILE = "state_dict.pt"


def fetch_run_weights(uri: str, tracking_uri: str, destination: Path) -> tuple[str, Path]:
    """Download the weights an earlier run logged: ``runs:/<run_id>/model`` (or ``runs:/<run_id>/model/state_dict.pt``,
    the same file named). Returns ``(run_id, local state-dict file)``.

    Raises :class:`~tlrun.errors.TlrunError` naming the store when the run or its weights do not exist.
    """
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    from tlrun.tracking.models import RunNotFound, download_model

    run_id, _, artifact_path = uri.removeprefix(RUN_URI_PREFIX).strip("/").partition("/")
    if artifact_path not in (MODEL_ARTIFACT, f"{MODEL_ARTIFACT}/{MODEL_FILE}"):
        raise TlrunError(f"backbone.weights={uri}: expected runs:/<run_id>/{MODEL_ARTIFACT} (or .../{MODEL_ARTIFACT}/{MODEL_FILE})")
    folder = destination / run_id  # one folder per run: parallel jobs chaining from different runs
    folder.mkdir(parents=True, exist_ok=True)
    try:
        local = download_model(run_id, tracking_uri, folder)
    except RunNotFound:
        raise TlrunError(f"backbone.weights={uri}: the MLflow store {tracking_uri} has no run {run_id}. Copy the run id "
                         "from the MLflow UI or from the end of the earlier run's output, and track into the same "
                         "store (logger.tracking_uri).") from None
    except TlrunError:
        try:  # a run logged before tlrun logged models: the run artifact model/state_dict.pt
            local = Path(download_artifacts(run_id=run_id, artifact_path=MODEL_ARTIFACT, tracking_uri=tracking_uri,
                                            dst_path=str(folder)))
        except (MlflowException, OSError):
            local = folder
    files = sorted(local.rglob(MODEL_FILE))
    if len(files) != 1:
        raise TlrunError(
            f"backbone.weights={uri}: run {run_id} has no network weights ({MODEL_FILE} in its model): deep methods "
            "log them with their model (unless save_model=false); closed-form methods have none."
        )
    return run_id, files[0]
