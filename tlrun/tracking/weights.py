"""A run's trained weights: logged as ``model/state_dict.pt`` (by ``TrackedRun.log_model``), fetched back for
``backbone.weights=runs:/<run_id>/model`` (:func:`fetch_run_weights`)."""

from __future__ import annotations

from pathlib import Path

from tlrun.config import RUN_URI_PREFIX
from tlrun.errors import TlrunError
from tlrun.tracking.store import open_client

#: Where a run's trained weights are logged: ``<artifacts>/model/state_dict.pt``.
MODEL_ARTIFACT = "model"
MODEL_FILE = "state_dict.pt"


def fetch_run_weights(uri: str, tracking_uri: str, destination: Path) -> tuple[str, Path]:
    """Download the weights an earlier run logged: ``runs:/<run_id>/model`` (the folder) or
    ``runs:/<run_id>/model/state_dict.pt`` (the file). Returns ``(run_id, local state-dict file)``.

    Raises :class:`~tlrun.errors.TlrunError` naming the store when the run or its artifact does not exist.
    """
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    run_id, _, artifact_path = uri.removeprefix(RUN_URI_PREFIX).strip("/").partition("/")
    if not run_id or not artifact_path:
        raise TlrunError(f"backbone.weights={uri}: expected runs:/<run_id>/{MODEL_ARTIFACT} (or .../{MODEL_ARTIFACT}/{MODEL_FILE})")
    client = open_client(tracking_uri, create=False)
    try:
        client.get_run(run_id)
    except MlflowException:
        raise TlrunError(
            f"backbone.weights={uri}: the MLflow store {tracking_uri} has no run {run_id}. Copy the run id from the "
            "MLflow UI or from the end of the earlier run's output, and track into the same store (logger.tracking_uri)."
        ) from None
    try:
        folder = destination / run_id  # one folder per run: parallel jobs chaining from different runs
        folder.mkdir(parents=True, exist_ok=True)
        local = Path(download_artifacts(run_id=run_id, artifact_path=artifact_path, tracking_uri=tracking_uri,
                                        dst_path=str(folder)))
    except (MlflowException, OSError):
        raise TlrunError(
            f"backbone.weights={uri}: run {run_id} has no artifact {artifact_path!r}. Runs of deep methods log their "
            f"weights as {MODEL_ARTIFACT}/{MODEL_FILE} (unless save_model=false); closed-form methods have none."
        ) from None
    files = sorted(local.rglob("*.pt")) if local.is_dir() else [local]
    if len(files) != 1:
        raise TlrunError(f"backbone.weights={uri}: expected one .pt file in the artifact, found {len(files)}")
    return run_id, files[0]
