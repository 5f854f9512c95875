"""``tlrun predict`` and ``tlrun evaluate``: a run's logged model applied to new data.

Usage (settings are ``key=value``, like ``tlrun ui``)::

    tlrun predict run=<run id> data=new_target.npz                 # writes outputs/predict/<run id>-new_target.csv
    tlrun predict run=<run id> data=photos/ out=labels.csv         # a folder of images (a model of image files)
    tlrun evaluate run=<run id> data=another_domain.csv            # labeled data: metrics in a new, linked run

Settings: ``run`` (required: the run id, as the MLflow UI and the end of a run show it), ``data`` (required: a file
``dataset=features`` reads: ``.npz``, ``.mat``, ``.csv``; or, for a model of image files, a folder of images or of
class folders), ``out`` (``predict``: the CSV to write), ``classes`` (zero-shot models: the class names to predict
among, e.g. ``classes=[cat,dog]``; default the run's unseen classes), ``tracking_uri`` (the store; default as for a
run), ``experiment`` (``evaluate``: where its run goes; default the evaluated run's experiment).

``predict`` writes one line per sample: ``id`` (the row number, or the image's path), ``label`` and, for methods
with scores, ``score`` (the label's probability or score); it prints how many samples each label got.
``evaluate`` needs labels in the data (a ``.csv``'s last column, the ``y``/``labels`` array, the class folders),
scores them as the run scored its target (``target_acc`` and ``target_mean_class_acc``; zero-shot: the mean
per-class accuracy; a clustering: ``target_acc`` after matching clusters to classes, ``nmi`` and ``ari``; a model of
open-set DA: the labels outside its known classes are ``unknown``, answered and scored as the run did, OS with
``target_os_star``, ``target_unk`` and ``target_h_score``) and logs
them into a new MLflow run tagged ``lineage.model_run=<run id>``, with the data as its dataset input.

Both check the data against the model first (the file exists, its rows have the model's number of features, a
folder for a model of image files) and answer a mismatch with one line naming what the model takes; nothing is
written and no run opens.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from tlrun.errors import TlrunError
from tlrun.tracking.arguments import key_value_settings

PREDICT_SETTINGS: dict[str, Any] = {"run": None, "data": None, "out": None, "classes": None, "tracking_uri": None}
EVALUATE_SETTINGS: dict[str, Any] = {"run": None, "data": None, "classes": None, "experiment": None, "tracking_uri": None}
#: The tag of an evaluation run naming the run whose model it evaluated.
MODEL_RUN_TAG = "lineage.model_run"


def _settings(command: str, arguments: list[str], defaults: dict[str, Any]) -> dict[str, Any]:
    if arguments[:1] in (["--help"], ["-h"], ["help"]):
        print(__doc__)
        raise SystemExit(0)
    settings = key_value_settings(command, arguments, defaults, as_typed=("run", "data", "out", "experiment"))
    missing = [key for key in ("run", "data") if not settings[key]]
    if missing:
        raise TlrunError(f"tlrun {command}: give {' and '.join(f'{key}=...' for key in missing)} "
                         f"(e.g. tlrun {command} run=<run id> data=path/to/samples.npz)")
    return settings


def _model_and_samples(settings: dict[str, Any]) -> tuple[Any, Any]:
    """The run's predictor and the data read for it: every check before any output."""
    from tlrun.data.samples import read_samples
    from tlrun.tracking.models import load_run_predictor

    predictor = load_run_predictor(str(settings["run"]), settings["tracking_uri"])
    samples = read_samples(settings["data"], predictor.inputs.kind, predictor.inputs.n_features)
    if predictor.task != "zeroshot" and settings["classes"]:
        raise TlrunError("classes= applies to zero-shot models only")
    return predictor, samples


def predict(arguments: list[str]) -> int:
    """``tlrun predict key=value ...``; returns the exit code."""
    import pandas as pd

    settings = _settings("predict", arguments, PREDICT_SETTINGS)
    predictor, samples = _model_and_samples(settings)
    labels, scored = predictor.predict_with_scores(samples.X, classes=settings["classes"])
    table = pd.DataFrame({"id": samples.ids, "label": labels})
    if scored is not None:  # each label is its row's best score
        table["score"] = scored[1].max(axis=1)
    out = Path(settings["out"] or Path("outputs") / "predict" / f"{settings['run']}-{Path(settings['data']).stem}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    counts = ", ".join(f"{label}: {count}" for label, count in Counter(labels).most_common(8))
    print(f"tlrun: {len(labels)} samples labelled by run {settings['run']}'s model ({counts}"
          f"{', ...' if len(set(labels)) > 8 else ''}); written to {out}")
    return 0


def evaluation_metrics(predictor: Any, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The metrics of ``predictions`` against ``labels`` (text), as a run scores its target for the model's task
    (:func:`tlrun.metrics.target_scores`). An open-set model's (``predictor.unknown_label``): every label outside its
    known classes is ``unknown``, and data holding known and unknown samples get open-set DA's OS, OS*, UNK and
    H-score."""
    from tlrun import metrics
    from tlrun.data.base import UNKNOWN_CLASS

    if predictor.unknown_label is not None:
        known = set(predictor.classes[:predictor.unknown_label])
        labels = np.array([label if label in known else UNKNOWN_CLASS for label in labels], dtype=object)
    names = sorted(set(labels) | set(predictions))  # one id per text, labels and predictions alike
    ids = {name: k for k, name in enumerate(names)}
    present = set(labels)
    open_set = predictor.unknown_label is not None and UNKNOWN_CLASS in present and len(present) > 1
    return metrics.target_scores(predictor.task, np.array([ids[label] for label in labels]),
                                 np.array([ids[label] for label in predictions]),
                                 ids[UNKNOWN_CLASS] if open_set else None)[0]


def evaluate(arguments: list[str]) -> int:
    """``tlrun evaluate key=value ...``; returns the exit code."""
    from tlrun.tracking.records import DataInput
    from tlrun.tracking.store import open_client
    from tlrun.tracking.tracked_run import TrackedRun

    settings = _settings("evaluate", arguments, EVALUATE_SETTINGS)
    predictor, samples = _model_and_samples(settings)
    if samples.labels is None:
        raise TlrunError(f"data={settings['data']} has no labels (a .csv's last column, a y or labels array, class "
                         "folders); tlrun predict labels unlabeled data")
    run_id, data = str(settings["run"]), Path(settings["data"])
    if predictor.task == "classify":
        unknown = sorted(set(samples.labels) - set(predictor.classes))
        if unknown:
            counted = "errors" if predictor.unknown_label is None else "unknown (an open-set model's)"
            print(f"tlrun: {int(np.isin(samples.labels, unknown).sum())} samples have labels the model does not know "
                  f"({', '.join(unknown[:5])}{', ...' if len(unknown) > 5 else ''}): they count as {counted}",
                  file=sys.stderr)
    client = open_client(settings["tracking_uri"], create=False)
    evaluated = client.get_run(run_id)
    experiment = settings["experiment"] or client.get_experiment(evaluated.info.experiment_id).name
    source_tags = {key: value for key, value in evaluated.data.tags.items()
                   if key in ("method", "dataset", "scenario", "source", "backbone", "seed")}
    tags = source_tags | {MODEL_RUN_TAG: run_id, "target": data.stem, "protocol": "evaluation"}
    method = source_tags.get("method", "model")
    with TrackedRun(experiment=experiment, tracking_uri=settings["tracking_uri"], tags=tags,
                    run_name=f"evaluate {method} on {data.name}") as tracked:
        tracked.log_params({"evaluate.run": run_id, "evaluate.data": str(data.resolve())})
        tracked.log_inputs([DataInput(data.name, "evaluation", {data.name: samples.digest} if samples.digest else {},
                                      (str(data.resolve()),))])
        predictions = predictor.predict(samples.X, classes=settings["classes"])
        scores = evaluation_metrics(predictor, np.asarray(predictions), samples.labels)
        tracked.log_metrics(scores, step=0)
    shown = ", ".join(f"{key} {100 * value:.2f} %" for key, value in scores.items())
    print(f"tlrun: run {run_id}'s model on {data} ({len(predictions)} samples): {shown}; logged as run "
          f"{tracked.run_id} (tag {MODEL_RUN_TAG}={run_id})")
    return 0
