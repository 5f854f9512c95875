"""The end-of-run scores: ``source_acc`` is measured on held-out source samples only, and the summary says so."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf
from sklearn.neighbors import KNeighborsClassifier

from tlrun.runner.evaluation import evaluate, print_summary
from tlrun.scenarios import EvaluationData, Labeled, Unlabeled


class Tracked:
    """What ``evaluate`` and ``print_summary`` use of an MLflow run, kept in memory."""

    run_id, status, tracking_uri = "r1", "FINISHED", "sqlite:///mlflow.db"

    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}
        self.tags: dict[str, str] = {}

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.update(metrics)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)

    def log_text(self, text: str, artifact_file: str) -> None:
        pass

    def log_figure(self, figure, artifact_file: str) -> None:
        pass


def blobs(n: int, seed: int) -> Labeled:
    """Two overlapping classes: a memorising classifier fits them all, and errs on new samples."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    return Labeled(rng.normal(size=(n, 3)) + y[:, None], y)


CFG = OmegaConf.create({"method_info": {"name": "1nn"}, "dataset": {"name": "blobs", "source": "a", "target": "b"},
                        "scenario": {"name": "da"}})


@pytest.mark.parametrize("held_out", [True, False])
def test_source_acc_is_a_held_out_figure_or_none_even_for_a_memorising_1nn(capsys, held_out):
    source, target, source_val = blobs(60, 0), blobs(40, 1), blobs(40, 2)
    method = KNeighborsClassifier(1).fit(source.X, source.y)
    assert method.score(source.X, source.y) == 1.0  # true by construction: no figure to show
    evaluation = EvaluationData(target, source_val if held_out else None, target_is_training_target=True)
    tracked = Tracked()
    result = evaluate(method, evaluation, source, ("0", "1"), tracked, step=0)
    print_summary(CFG, result, tracked)
    summary = capsys.readouterr().out
    if held_out:
        assert result.source_acc == tracked.metrics["source_acc"] == method.score(source_val.X, source_val.y) < 1.0
        assert tracked.tags["source_acc_split"] == "validation" and "source_acc (held-out)" in summary
    else:
        assert result.source_acc is None and "source_acc" not in tracked.metrics
        assert tracked.tags["source_acc_split"] == "train"
        assert "100.00" not in summary and "the whole source trained" in summary


def test_an_unlabeled_source_has_no_source_acc_and_no_summary_line(capsys):
    target = blobs(40, 1)
    method = KNeighborsClassifier(1).fit(target.X, target.y)
    tracked = Tracked()
    result = evaluate(method, EvaluationData(target, None, True), Unlabeled(target.X), ("0", "1"), tracked, step=0)
    print_summary(CFG, result, tracked)
    assert "source_acc" not in tracked.metrics and tracked.tags["source_acc_split"] == "none"
    assert "source_acc" not in capsys.readouterr().out
