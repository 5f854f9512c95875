"""The end-of-run scores: ``source_acc`` is measured on held-out source samples only, and the summary says so."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf
from sklearn.neighbors import KNeighborsClassifier

from tlrun.runner.evaluation import EvaluationReporter, Result, evaluate, print_summary
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


def test_the_summary_names_open_set_da_s_measure_beside_the_protocol(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # one line per row
    class Scored:  # 3 known classes; the last sample's largest probability is under 0.5: unknown
        def predict_scores(self, X):
            return np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.4, 0.3, 0.3]])

    target = Labeled(np.zeros((3, 2)), np.array([0, 1, 3]))
    evaluation = EvaluationData(target, None, target_is_training_target=True, unknown_label=3)
    tracked = Tracked()
    result = evaluate(Scored(), evaluation, blobs(6, 0), ("a", "b", "c"), tracked, step=0)
    assert result.target_acc == tracked.metrics["target_acc"] == 1.0 and tracked.metrics["target_unk"] == 1.0
    print_summary(CFG, result, tracked)
    assert "target_acc (open-set OS, transductive)" in capsys.readouterr().out
    print_summary(CFG, Result(0.5, None, "train", {}), tracked)  # a closed-set task: the protocol alone
    assert "target_acc (transductive)" in capsys.readouterr().out


class CountingMethod:
    """A method whose ``fit`` kept its training target's labels, and that counts the samples it predicts."""

    def __init__(self, fitted_target_labels: np.ndarray | None) -> None:
        self.fitted_target_labels = fitted_target_labels
        self.predicted = 0

    def predict(self, X: np.ndarray) -> np.ndarray:
        self.predicted += len(X)
        return np.zeros(len(X), dtype=np.int64)


@pytest.mark.parametrize("aligned", [True, False])
def test_the_training_target_is_scored_from_the_labels_fit_kept_without_predicting_it_again(aligned):
    """Transductive: ``fitted_target_labels`` are the target's labels (one classifier pass, in ``fit``); held out,
    the test samples are predicted and the kept labels score the adapted part (``target_transductive_acc``)."""
    target, adapted = blobs(40, 1), blobs(30, 3)
    kept = np.ones(40 if aligned else 30, dtype=np.int64)
    method = CountingMethod(kept)
    evaluation = EvaluationData(target, None, target_is_training_target=aligned,
                                transductive=None if aligned else adapted)
    tracked = Tracked()
    result = evaluate(method, evaluation, target, ("0", "1"), tracked, step=0)
    if aligned:
        assert method.predicted == 0 and result.target_acc == np.mean(target.y == 1)
    else:
        assert method.predicted == 40 and result.target_acc == np.mean(target.y == 0)
        assert tracked.metrics["target_transductive_acc"] == np.mean(adapted.y == 1)
    without = CountingMethod(None)
    evaluate(without, EvaluationData(target, None, target_is_training_target=True), target, ("0", "1"), Tracked(), 0)
    assert without.predicted == 40


def test_the_reporter_writes_an_epoch_with_the_previous_target_accuracy_in_one_write():
    writes: list[dict[int, dict[str, float]]] = []

    class Store:
        def log_metrics_at(self, metrics_by_step):
            writes.append(metrics_by_step)

    reporter = EvaluationReporter(Store(), score=lambda predictions: float(np.mean(predictions)))
    for epoch in (1, 2, 3):  # as a deep method's epoch end: the target predicted, then the epoch's metrics logged
        reporter.target_predictions(np.full(4, epoch / 10), step=epoch)
        reporter.log_metrics({"train_loss": 1.0 / epoch}, step=epoch)
    assert writes == [{1: {"train_loss": 1.0}}, {1: {"target_acc": 0.1}, 2: {"train_loss": 0.5}},
                      {2: {"target_acc": 0.2}, 3: {"train_loss": 1 / 3}}]
    reporter.write_held_target_acc(unless_at=3)  # the final evaluation logs step 3's own: nothing is left
    assert len(writes) == 3
    reporter.target_predictions(np.full(4, 0.4), step=4)
    reporter.write_held_target_acc(unless_at=5)
    assert writes[-1] == {4: {"target_acc": 0.4}}


def test_the_confusion_figure_counts_true_classes_in_rows_and_predictions_in_columns():
    from sklearn.metrics import confusion_matrix

    from tlrun.runner.evaluation import confusion_figure

    labels, predictions = np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2])
    figure = confusion_figure(labels, predictions, ("a", "b", "c"), "title")
    shown = {(int(round(text.get_position()[1])), int(round(text.get_position()[0]))): int(text.get_text())
             for text in figure.axes[0].texts}
    expected = confusion_matrix(labels, predictions)
    assert shown == {(i, j): int(expected[i, j]) for i in range(3) for j in range(3) if expected[i, j]}
    rates = figure.axes[0].images[0].get_array()
    np.testing.assert_allclose(rates, expected / expected.sum(axis=1, keepdims=True))
