"""Scoring a fitted method on data it never saw labels of, and reporting the result.

``target_acc`` is measured on the scenario's target test set, ``source_acc`` on the held-out source split
(or, when the whole source trained, on the training source, tagged ``source_acc_split=train``). Both are
fractions in [0, 1]. The per-class target accuracy and the confusion matrix are logged as artifacts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tlrun.scenarios import EvaluationData, Labeled


@dataclass(frozen=True)
class Result:
    target_acc: float
    source_acc: float
    source_acc_split: str
    per_class_acc: dict[str, float]


def per_class_accuracy(labels: np.ndarray, predictions: np.ndarray, classes: tuple[str, ...]) -> dict[str, float]:
    """Recall of every class present in ``labels`` (classes absent from the test set are left out)."""
    return {
        name: float(np.mean(predictions[labels == k] == k))
        for k, name in enumerate(classes)
        if np.any(labels == k)
    }


def confusion_figure(labels: np.ndarray, predictions: np.ndarray, classes: tuple[str, ...], title: str) -> Any:
    """A row-normalised confusion-matrix heat map (rows: true class, columns: predicted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    counts = confusion_matrix(labels, predictions, labels=np.arange(len(classes)))
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.35 * len(classes) + 2)
    figure, axis = plt.subplots(figsize=(size + 1, size))
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


def evaluate(
    method: Any, evaluation: EvaluationData, source_train: Labeled, classes: tuple[str, ...], tracked: Any, step: int
) -> Result:
    """Score ``method`` on the evaluation data and log metrics and artifacts to ``tracked``."""
    import matplotlib.pyplot as plt

    test = evaluation.target_test
    target_pred = np.asarray(method.predict(test.X))
    target_acc = float(np.mean(target_pred == test.y))
    source, source_split = (
        (evaluation.source_val, "validation") if evaluation.source_val is not None else (source_train, "train")
    )
    source_acc = float(np.mean(np.asarray(method.predict(source.X)) == source.y))
    per_class = per_class_accuracy(test.y, target_pred, classes)

    tracked.log_metrics({"target_acc": target_acc, "source_acc": source_acc}, step)
    tracked.set_tags({"source_acc_split": source_split})
    tracked.log_text("class,target_acc,n\n" + "".join(
        f"{name},{acc:.6f},{int(np.sum(test.y == classes.index(name)))}\n" for name, acc in per_class.items()
    ), "per_class_target_acc.csv")
    figure = confusion_figure(test.y, target_pred, classes, f"target confusion (acc {100 * target_acc:.1f}%)")
    tracked.log_figure(figure, "confusion_matrix.png")
    plt.close(figure)
    return Result(target_acc, source_acc, source_split, per_class)


def print_summary(cfg: Any, result: Result, tracked: Any) -> None:
    """A short summary on the terminal, ending with the command that opens the MLflow UI on this store."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"tlrun: {cfg.method.name} on {cfg.dataset.name}", show_header=False)
    table.add_row("task", f"{cfg.dataset.get('source', '')} → {cfg.dataset.get('target', '')} ({cfg.scenario.name})")
    table.add_row("target_acc", f"{100 * result.target_acc:.2f} %")
    table.add_row(f"source_acc ({result.source_acc_split})", f"{100 * result.source_acc:.2f} %")
    table.add_row("MLflow run", f"{tracked.run_id} ({tracked.status})")
    console = Console()
    console.print(table)
    console.print("See it in the MLflow UI:")
    console.print(f"  mlflow ui --backend-store-uri {tracked.tracking_uri}", soft_wrap=True, highlight=False)
