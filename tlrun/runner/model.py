"""The model a run logs (:mod:`tlrun.tracking.models`): its :class:`~tlrun.predictor.Predictor`, built from the
run's plan, its data and the fitted method, with an input example."""

from __future__ import annotations

from typing import Any

import numpy as np

from tlrun.data.base import UNKNOWN_CLASS
from tlrun.predictor import Inputs, Predictor, task_of
from tlrun.runner.preflight import Plan
from tlrun.runner.steps import LoadedData, SplitData

#: Rows in a model's input example.
EXAMPLE_ROWS = 3


def run_predictor(plan: Plan, loaded: LoadedData, data: SplitData, method: Any) -> tuple[Predictor, Any]:
    """The run's predictor and an input example (a few of the first domain's samples, as loaded)."""
    cfg = plan.cfg
    domain = loaded.domains()[0]  # as read, before any feature extraction: what the model takes
    if domain.is_images:
        inputs, example = Inputs("images", preprocess=str(cfg.dataset.get("preprocess", "none"))), list(domain.X[:EXAMPLE_ROWS])
    else:
        inputs = Inputs("rows", n_features=int(domain.X.shape[1]), preprocess=str(cfg.dataset.get("preprocess", "none")),
                        image_shape=tuple(domain.image_shape) if domain.image_shape else None, dtype=str(domain.X.dtype))
        example = np.asarray(domain.X[:EXAMPLE_ROWS], dtype=np.float64)
    task = task_of(cfg.scenario.name)
    evaluation = data.evaluation
    unknown = evaluation.unknown_label  # open-set DA: the known classes, then unknown
    predictor = Predictor(
        method, (*data.training.classes, *((UNKNOWN_CLASS,) if unknown is not None else ())),
        inputs, task=task, feature_extractor=data.feature_extractor,
        descriptions=evaluation.classes if task == "zeroshot" else None,
        default_classes=evaluation.classes.subset(evaluation.unseen).names if task == "zeroshot" else (),
        unknown_label=unknown,
    )
    return predictor, example
