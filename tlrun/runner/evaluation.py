"""Scoring a fitted method on data it never saw labels of, and reporting the result.

``target_acc`` is every run's headline number, measured on the scenario's target test set (the run's tag
``protocol`` says which: ``transductive``, the very target samples a ``da`` method adapted to, as the papers
measure; ``held_out``, samples no ``fit`` saw), beside ``target_mean_class_acc`` (the mean per-class accuracy,
VisDA's measure): the accuracy (``da``, ``finetune``, ``selftaught``; with ``scenario.target_test_fraction`` the
adapted part's is ``target_transductive_acc``); the mean per-class accuracy on the unseen classes (``zeroshot``, which
also logs GZSL's ``gzsl_seen_acc``, ``gzsl_unseen_acc`` and their harmonic mean ``gzsl_h``); the clustering
accuracy (``selftaught_clustering``, with ``nmi`` and ``ari``); in open-set DA (``dataset.source_classes``) OS, the
mean per-class accuracy over the known classes and the unknown one, beside ``target_os_star``, ``target_unk`` and
``target_h_score`` (:func:`tlrun.metrics.open_set_scores`; predictions from :func:`open_set_predictions`).
``source_acc`` is the accuracy on the held-out source split (tagged ``source_acc_split=validation``). Without one
there is no ``source_acc``: when the whole labeled source trained (``source_acc_split=train``) its accuracy would
measure the fit, not what the method learned (1 by construction for a 1-NN classifier), and an unlabeled source
(``none``) has no labels. All are fractions in [0, 1]. The per-class target accuracy and the confusion matrix are
logged as artifacts (after matching clusters to classes, for clustering).

While a method trains, it sends its predictions for the training target to an :class:`EvaluationReporter`, which
logs their accuracy without letting the method see it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from omegaconf import DictConfig

from tlrun import metrics
from tlrun.data.base import UNKNOWN_CLASS, source_label
from tlrun.errors import OracleRefused
from tlrun.predictor import task_of
from tlrun.scenarios import EvaluationData, Labeled, Unlabeled

# matplotlib, scikit-learn and rich are imported by the functions that draw, count and print: this module is
# imported before a run's checks.


@dataclass(frozen=True)
class Result:
    target_acc: float
    source_acc: float | None
    source_acc_split: str
    per_class_acc: dict[str, float]
    #: The scenario's own metrics (``gzsl_h``, ``nmi``...), logged beside ``target_acc``.
    extra: dict[str, float] = field(default_factory=dict)
    #: How the target was scored (:attr:`~tlrun.scenarios.EvaluationData.protocol`).
    protocol: str = "transductive"
    #: What ``target_acc`` measures where it is not the scenario's usual figure: ``open-set OS`` (open-set DA).
    measure: str | None = None


def per_class_accuracy(labels: np.ndarray, predictions: np.ndarray, classes: tuple[str, ...]) -> dict[str, float]:
    """Recall of every class present in ``labels`` (classes absent from the test set are left out)."""
    return {
        name: float(np.mean(predictions[labels == k] == k))
        for k, name in enumerate(classes)
        if np.any(labels == k)
    }


def confusion_figure(labels: np.ndarray, predictions: np.ndarray, classes: tuple[str, ...], title: str) -> Any:
    """A row-normalised confusion-matrix heat map (rows: true class, columns: predicted). ``labels`` and
    ``predictions`` are class indices into ``classes``. Built without pyplot (its import and global state)."""
    from matplotlib.figure import Figure

    k = len(classes)
    counts = np.bincount(np.asarray(labels) * k + np.asarray(predictions), minlength=k * k).reshape(k, k)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.35 * len(classes) + 2)
    figure = Figure(figsize=(size + 1, size))
    axis = figure.subplots()
    image = axis.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
    axis.set_yticks(range(len(classes)), classes, fontsize=7)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title)
    if len(classes) <= 15:
        for i in range(len(classes)):
            for j in range(len(classes)):
                if counts[i, j]:
                    axis.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                              color="white" if rates[i, j] > 0.5 else "black")
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    return figure


def _source_accuracy(method: Any, evaluation: EvaluationData, source_train: Labeled | Unlabeled) -> tuple[float | None, str]:
    """``source_acc`` on the held-out source split and ``validation``; else ``None`` and ``train`` (the labeled
    source all trained) or ``none`` (an unlabeled source)."""
    source = evaluation.source_val
    if source is None:
        return None, "train" if isinstance(source_train, Labeled) else "none"
    return float(np.mean(np.asarray(method.predict(source.X)) == source.y)), "validation"


def zeroshot_predictions(method: Any, evaluation: EvaluationData) -> tuple[np.ndarray, dict[str, float]]:
    """ZSL predictions of the unseen test samples (among the unseen classes) and the GZSL metrics (among every
    class, the seen classes' scores lowered by ``method.calibration``). A class's score does not depend on which
    other classes compete, so the unseen test samples are scored once, against every class."""
    classes, unseen_test = evaluation.classes, evaluation.target_test
    labels = np.asarray(classes.labels)
    is_unseen = np.isin(labels, evaluation.unseen)
    calibration = float(getattr(method, "calibration", 0.0))

    def gzsl_predictions(scores: np.ndarray) -> np.ndarray:
        return labels[(scores - calibration * ~is_unseen).argmax(axis=1)]

    unseen_scores = np.asarray(method.class_scores(unseen_test.X, classes), dtype=np.float64)
    zsl_predictions = labels[is_unseen][unseen_scores[:, is_unseen].argmax(axis=1)]
    extra = {"gzsl_unseen_acc": metrics.mean_per_class_accuracy(unseen_test.y, gzsl_predictions(unseen_scores))}
    if evaluation.seen_test is not None:
        seen_test = evaluation.seen_test
        seen_scores = np.asarray(method.class_scores(seen_test.X, classes), dtype=np.float64)
        extra["gzsl_seen_acc"] = metrics.mean_per_class_accuracy(seen_test.y, gzsl_predictions(seen_scores))
        extra["gzsl_h"] = metrics.harmonic_mean(extra["gzsl_seen_acc"], extra["gzsl_unseen_acc"])
    return zsl_predictions, extra


def open_set_predictions(method: Any, X: Any, unknown: int) -> np.ndarray:
    """Open-set labels of ``X`` (:func:`tlrun.metrics.open_set_labels` of the method's class probabilities): those of
    a method with an unknown output of its own (``predicts_unknown``, e.g. OSBP, whose label ``unknown`` is that
    output), else the argmax, ``unknown`` where the largest is below :data:`tlrun.metrics.UNKNOWN_THRESHOLD` (a
    label-free rule)."""
    probabilities = method.predict_scores(X)
    if probabilities is None:
        raise ValueError(f"{type(method).__name__} gives no class probabilities to tell unknown samples by")
    return metrics.open_set_labels(probabilities, unknown, getattr(method, "predicts_unknown", False))


def training_target_labels(method: Any, samples: Labeled) -> np.ndarray | None:
    """The labels the method's ``fit`` ended with for its training target (``fitted_target_labels``), which are
    ``samples`` (the caller knows), or ``None`` when it keeps none (or they do not match ``samples`` in number)."""
    fitted = getattr(method, "fitted_target_labels", None)
    return fitted if fitted is not None and len(fitted) == len(samples) else None


def evaluate(
    method: Any, evaluation: EvaluationData, source_train: Labeled | Unlabeled, classes: tuple[str, ...], tracked: Any,
    step: int,
) -> Result:
    """Score ``method`` on the evaluation data and log metrics and artifacts to ``tracked``."""
    test = evaluation.target_test
    extra: dict[str, float] = {}
    task = task_of(evaluation.scenario)
    if task == "zeroshot":
        predictions, extra = zeroshot_predictions(method, evaluation)
        classes = evaluation.classes.names
        what = "unseen classes, mean per-class acc"
    elif task == "cluster":
        # The test set is the clustered target itself: score the clusters the method found (``target_assignment``,
        # when it keeps them) rather than a re-assignment by ``predict``.
        fitted = getattr(method, "target_assignment", None)
        predictions = fitted if fitted is not None else method.predict(test.X)
        what = "clusters matched to classes"
    elif evaluation.unknown_label is not None:
        predictions = open_set_predictions(method, test.X, evaluation.unknown_label)
        classes = (*classes, UNKNOWN_CLASS)
        what = "OS, mean over known classes and unknown"
    else:
        predictions = training_target_labels(method, test) if evaluation.target_is_training_target else None
        predictions = method.predict(test.X) if predictions is None else predictions
        what = "acc"
    scores, target_pred = metrics.target_scores(task, test.y, predictions, evaluation.unknown_label)  # clusters renamed
    target_acc = scores.pop("target_acc")
    extra |= scores
    if evaluation.transductive is not None:  # part of the target held out: the adapted part scored too
        adapted, unknown = evaluation.transductive, evaluation.unknown_label
        labels = (training_target_labels(method, adapted) if unknown is None
                  else open_set_predictions(method, adapted.X, unknown))
        labels = method.predict(adapted.X) if labels is None else labels
        extra["target_transductive_acc"] = metrics.target_scores(task, adapted.y, labels, unknown)[0]["target_acc"]
    source_acc, source_split = _source_accuracy(method, evaluation, source_train)
    per_class = per_class_accuracy(test.y, target_pred, classes)

    tracked.log_metrics({"target_acc": target_acc, **extra} | ({} if source_acc is None else {"source_acc": source_acc}), step)
    tracked.set_tags({"source_acc_split": source_split})
    tracked.log_text("class,target_acc,n\n" + "".join(
        f"{name},{acc:.6f},{int(np.sum(test.y == classes.index(name)))}\n" for name, acc in per_class.items()
    ), "per_class_target_acc.csv")
    # Zero-shot plots the unseen classes only; a prediction outside the plotted classes (an unmatched cluster)
    # goes to a last column.
    shown = np.unique(test.y) if evaluation.scenario == "zeroshot" else np.arange(len(classes))
    column = np.full(len(classes) + 1, len(shown), dtype=np.int64)  # index -1: an unmatched cluster
    column[shown] = np.arange(len(shown))
    names = tuple(classes[k] for k in shown)
    if np.any(column[target_pred] == len(shown)):
        names += ("other",)
    figure = confusion_figure(column[test.y], column[target_pred], names, f"target confusion ({what} {100 * target_acc:.1f}%)")
    tracked.log_figure(figure, "confusion_matrix.png")
    measure = "open-set OS" if evaluation.unknown_label is not None else None
    return Result(target_acc, source_acc, source_split, per_class, extra, evaluation.protocol, measure)


def task_name(cfg: DictConfig) -> str:
    """``source->target`` (pooled sources ``a+b->target``), or ``source->unseen`` in ``zeroshot`` (whose target is the
    unseen classes)."""
    target = "unseen" if cfg.scenario.name == "zeroshot" else cfg.dataset.get("target", "")
    return f"{source_label(cfg.dataset.get('source'))}->{target}"


def print_summary(cfg: Any, result: Result, tracked: Any) -> None:
    """A short summary on the terminal, ending with the commands that open the MLflow UI on this store: ``tlrun ui``
    (light: one worker, job execution off) or MLflow's own ``mlflow ui``."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"tlrun: {cfg.method_info.name} on {cfg.dataset.name}", show_header=False)
    table.add_row("task", f"{task_name(cfg).replace('->', ' → ')} ({cfg.scenario.name})")
    scored = ", ".join(filter(None, (result.measure, result.protocol.replace("_", "-"))))
    table.add_row(f"target_acc ({scored})", f"{100 * result.target_acc:.2f} %")
    for name, value in result.extra.items():
        table.add_row(name, f"{100 * value:.2f} %")
    if result.source_acc is not None:
        table.add_row("source_acc (held-out)", f"{100 * result.source_acc:.2f} %")
    elif result.source_acc_split == "train":
        table.add_row("source_acc", "none: the whole source trained (dataset.source_val_fraction > 0 holds some out)")
    table.add_row("MLflow run", f"{tracked.run_id} ({tracked.status})")
    console = Console()
    console.print(table)
    console.print("See it in the MLflow UI:")
    console.print(f"  tlrun ui tracking_uri={tracked.tracking_uri}", soft_wrap=True, highlight=False)
    console.print(f"  (or: mlflow ui --backend-store-uri {tracked.tracking_uri})", soft_wrap=True, highlight=False)


def target_scorer(evaluation: EvaluationData) -> Callable[[np.ndarray], float] | None:
    """The accuracy of predictions for the training target, when it *is* the test target (``da``; cluster ids
    matched to classes in ``selftaught_clustering``; OS in open-set DA); ``None`` otherwise. The labels live only
    in this closure."""
    if not evaluation.target_is_training_target:
        return None
    labels, clusters = evaluation.target_test.y, evaluation.scenario == "selftaught_clustering"
    unknown = evaluation.unknown_label

    def score(predictions: np.ndarray) -> float:
        if clusters:
            return metrics.clustering_accuracy(labels, np.asarray(predictions))
        if unknown is not None:  # open-set: OS of the labels the method reports by the unknown rule (open_set_labels)
            return metrics.open_set_scores(labels, np.asarray(predictions), unknown)["target_acc"]
        return float(np.mean(np.asarray(predictions) == labels))

    return score


class EvaluationReporter:
    """The :class:`~tlrun.methods.base.Reporter` a method talks to: metrics into the run, predictions scored.

    Label-blind by construction: the reporter holds no labels, only a scorer (:func:`target_scorer`), and a method
    gets nothing back from :meth:`target_predictions`; the runner logs the accuracy as ``target_acc``. Only an
    oracle run (``trainer.select=oracle``, tagged ``selection.oracle=true``) may ask for the accuracy, to choose
    its epoch.
    """

    def __init__(self, tracked: Any, score: Callable[[np.ndarray], float] | None, oracle: bool = False,
                 oracle_val: Labeled | None = None) -> None:
        self.tracked = tracked
        self._score = score
        self._oracle = oracle
        self._oracle_val = oracle_val
        self.last_step = 0
        #: The latest reported ``(step, target_acc)``, written when the method is done (:meth:`write_held_target_acc`)
        #: unless the run's final evaluation measures the same step; earlier ones wait in ``_unwritten`` for the next
        #: :meth:`log_metrics`, so that an epoch costs the store one write.
        self._held_target_acc: tuple[int, float] | None = None
        self._unwritten: list[tuple[int, float]] = []

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log ``metrics`` at ``step``, with the target accuracies reported before the held one, in one write."""
        by_step: dict[int, dict[str, float]] = {}
        for earlier, accuracy in self._unwritten:
            by_step.setdefault(earlier, {})["target_acc"] = accuracy
        by_step.setdefault(step or 0, {}).update(metrics)
        self.tracked.log_metrics_at(by_step)
        self._unwritten = []
        self.last_step = max(self.last_step, step or 0)

    def target_predictions(self, predictions: np.ndarray, step: int) -> None:
        if self._score is not None:
            if self._held_target_acc is not None:
                self._unwritten.append(self._held_target_acc)
            self._held_target_acc = (step, self._score(predictions))
            self.last_step = max(self.last_step, step)

    def write_held_target_acc(self, unless_at: int | None = None) -> None:
        """Log the target accuracies not yet written, the held one unless it is of step ``unless_at`` (the step the
        runner's final evaluation logs its own at: the run's history keeps one value per step)."""
        held, self._held_target_acc = self._held_target_acc, None
        if held is not None and held[0] != unless_at:
            self._unwritten.append(held)
        if self._unwritten:
            self.log_metrics({}, self._unwritten[-1][0])

    def _refuse_unless_oracle(self) -> None:
        if not self._oracle:
            raise OracleRefused("target accuracy is read only by an oracle run (trainer.select=oracle)")

    def oracle_accuracy(self, predictions: np.ndarray) -> float | None:
        self._refuse_unless_oracle()
        return None if self._score is None else self._score(predictions)

    def held_out_oracle_accuracy(self, predict: Callable[[Any], np.ndarray]) -> float | None:
        self._refuse_unless_oracle()
        held = self._oracle_val
        return None if held is None else float(np.mean(np.asarray(predict(held.X)) == held.y))

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        self.tracked.log_figure(figure, artifact_file)
