"""The label-free model-selection scores of tlrun.methods.components.selection against hand computations and their defining properties."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tlrun.errors import OracleRefused, TlrunError
from tlrun.run import run_job
from tlrun.methods.components.selection import (
    SCORE_HELP,
    SCORES,
    check_score,
    control_variate_risk,
    deep_embedded_validation,
    density_ratios,
    neg_entropy,
    soft_neighborhood_density,
    source_val_accuracy,
)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def snd_loop(p: np.ndarray, temperature: float) -> float:
    """SND written out sample by sample, as in the paper's definition."""
    unit = [row / math.sqrt(sum(v * v for v in row)) for row in p]
    total = 0.0
    for i in range(len(p)):
        similarities = {j: float(np.dot(unit[i], unit[j])) / temperature for j in range(len(p)) if j != i}
        normaliser = sum(math.exp(s) for s in similarities.values())
        total -= sum(math.exp(s) / normaliser * math.log(math.exp(s) / normaliser) for s in similarities.values())
    return total / len(p)


# --- source accuracy and entropy ---------------------------------------------------------------------------------


def test_source_val_accuracy_counts_the_argmax_hits():
    p = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]])
    assert source_val_accuracy(p, np.array([0, 1, 1, 0])) == 0.5
    with pytest.raises(ValueError, match="one label per row"):
        source_val_accuracy(p, np.array([0, 1]))


def test_neg_entropy_by_hand():
    p = np.array([[1.0, 0.0], [0.5, 0.5], [0.25, 0.75]])
    h = [0.0, math.log(2), -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))]
    assert neg_entropy(p) == pytest.approx(-sum(h) / 3, rel=1e-12)
    assert neg_entropy(np.eye(3)) == 0.0
    assert neg_entropy(np.full((4, 5), 0.2)) == pytest.approx(-math.log(5))


def test_probabilities_are_checked():
    with pytest.raises(ValueError, match="2-D"):
        neg_entropy(np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="not logits"):
        neg_entropy(np.array([[2.0, -1.0]]))
    with pytest.raises(ValueError, match="at least 2 samples"):
        soft_neighborhood_density(np.array([[0.5, 0.5]]))
    with pytest.raises(ValueError, match="temperature"):
        soft_neighborhood_density(np.eye(2), temperature=0.0)


# --- SND ---------------------------------------------------------------------------------------------------------


def test_snd_on_three_samples_by_hand():
    # p̂ = p; M = [[1, 1, 0], [1, 1, 0], [0, 0, 1]]. With τ = 1, samples 0 and 1 see their neighbours with
    # similarities (1, 0): softmax (e, 1)/(e + 1); sample 2 sees (0, 0): uniform, entropy log 2.
    p = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    a = math.e / (math.e + 1)
    h = -(a * math.log(a) + (1 - a) * math.log(1 - a))
    assert soft_neighborhood_density(p, temperature=1.0) == pytest.approx((2 * h + math.log(2)) / 3, rel=1e-12)


def test_snd_matches_a_plain_loop():
    p = softmax(np.random.default_rng(0).normal(size=(7, 4)))
    for temperature in (0.05, 0.5):
        assert soft_neighborhood_density(p, temperature) == pytest.approx(snd_loop(p, temperature), rel=1e-10)


def test_snd_is_higher_for_clustered_predictions_than_for_scattered_ones():
    rng = np.random.default_rng(0)
    classes = rng.integers(0, 3, size=60)
    clustered = softmax(8.0 * np.eye(3)[classes] + rng.normal(scale=0.3, size=(60, 3)))
    scattered = rng.dirichlet(np.ones(3), size=60)
    assert soft_neighborhood_density(clustered) > soft_neighborhood_density(scattered)


def test_snd_is_maximal_for_collapsed_predictions():
    collapsed = np.tile([0.7, 0.2, 0.1], (10, 1))
    assert soft_neighborhood_density(collapsed) == pytest.approx(math.log(9), rel=1e-12)


def test_snd_subsamples_large_inputs_reproducibly():
    p = softmax(np.random.default_rng(1).normal(size=(40, 3)))
    assert soft_neighborhood_density(p, max_samples=40) == soft_neighborhood_density(p)
    subsampled = soft_neighborhood_density(p, max_samples=10, seed=3)
    assert subsampled == soft_neighborhood_density(p, max_samples=10, seed=3)
    assert subsampled != soft_neighborhood_density(p)


# --- DEV ---------------------------------------------------------------------------------------------------------


def test_control_variate_risk_by_hand():
    rng = np.random.default_rng(0)
    w, loss = rng.uniform(0.5, 2.0, size=9), rng.uniform(0.0, 3.0, size=9)
    weighted = w * loss
    eta = -np.cov(weighted, w)[0, 1] / np.var(w, ddof=1)
    assert control_variate_risk(w, loss) == pytest.approx(weighted.mean() + eta * w.mean() - eta, rel=1e-12)
    # a constant loss c is recovered exactly whatever the weights (L = c·w, so η = −c)
    assert control_variate_risk(w, np.full(9, 0.7)) == pytest.approx(0.7, rel=1e-12)
    # constant weights: Var(w) = 0, η = 0, the weighted mean loss
    assert control_variate_risk(np.full(9, 2.0), loss) == pytest.approx(2.0 * loss.mean(), rel=1e-12)
    with pytest.raises(ValueError, match="same length"):
        control_variate_risk(w, loss[:3])


def test_dev_is_the_mean_validation_loss_when_the_domains_agree():
    rng = np.random.default_rng(0)
    source, target, validation = rng.normal(size=(1000, 3)), rng.normal(size=(800, 3)), rng.normal(size=(300, 3))
    losses = rng.exponential(size=300)
    weights = density_ratios(source, target, validation)
    assert weights.shape == (300,)
    assert np.mean(weights) == pytest.approx(1.0, abs=0.05)
    assert np.mean(np.abs(weights - 1.0)) < 0.2
    assert -deep_embedded_validation(source, target, validation, losses) == pytest.approx(losses.mean(), rel=0.03)


def test_dev_weighs_the_losses_of_target_like_samples_more():
    rng = np.random.default_rng(0)
    source, validation = rng.normal(size=(300, 2)), rng.normal(size=(150, 2))
    target = rng.normal(size=(300, 2)) + [1.5, 0.0]
    target_like = (validation[:, 0] > 0.5).astype(float)
    weights = density_ratios(source, target, validation)
    assert weights[target_like == 1].mean() > 3 * weights[target_like == 0].mean()
    assert -deep_embedded_validation(source, target, validation, target_like) > target_like.mean() + 0.2
    assert -deep_embedded_validation(source, target, validation, 1 - target_like) < (1 - target_like).mean() - 0.2


def test_dev_checks_its_inputs():
    source, target = np.zeros((4, 2)), np.ones((4, 2))
    with pytest.raises(ValueError, match="validation and source-train features differ in size"):
        deep_embedded_validation(source, target, np.zeros((3, 5)), np.zeros(3))
    with pytest.raises(ValueError, match="one loss per validation sample"):
        deep_embedded_validation(source, target, np.zeros((3, 2)), np.zeros(4))


# --- score names -------------------------------------------------------------------------------------------------


def test_scores_have_help_and_the_oracle_says_so():
    assert set(SCORE_HELP) == set(SCORES)
    assert "ORACLE" in SCORE_HELP["oracle"]
    assert all(check_score(name) == name for name in SCORES)


def test_check_score_names_the_options():
    with pytest.raises(TlrunError, match="unknown selection score 'accuracy'.*last, source_val, target_val, dev, snd"):
        check_score("accuracy")


def _peeking(method_class, monkeypatch):
    """Make ``method_class.fit`` try to read target accuracy first; returns what it got."""
    seen = {}
    original = method_class.fit

    def fit(self, data, context):
        predictions = np.zeros(len(data.target), dtype=np.int64)
        seen["returned"] = context.reporter.target_predictions(predictions, step=0)
        try:
            seen["oracle"] = context.reporter.oracle_accuracy(predictions)
        except OracleRefused as refused:
            seen["refused"] = str(refused)
        seen["holds"] = [v for v in vars(context.reporter).values() if isinstance(v, np.ndarray)]
        return original(self, data, context)

    monkeypatch.setattr(method_class, "fit", fit)
    return seen


@pytest.mark.parametrize("overrides", [("method=no_adaptation",), ("method=source_only", "method.epochs=1", "diagnostics=false")])
def test_a_method_gets_no_target_accuracy_unless_the_run_is_an_oracle_run(compose, monkeypatch, overrides):
    """Label-blind by construction, closed-form and deep: the reporter returns nothing and refuses the accuracy."""
    from tlrun.methods.deep import DeepMethod
    from tlrun.methods.no_adaptation import SourceClassifier

    seen = _peeking(DeepMethod if "source_only" in overrides[0] else SourceClassifier, monkeypatch)
    run_job(compose(*overrides, experiment="label-blind"))
    assert seen["returned"] is None and "oracle run" in seen["refused"] and "oracle" not in seen and not seen["holds"]


def test_an_oracle_run_may_read_target_accuracy_and_is_tagged(compose, monkeypatch, mlflow_store):
    from mlflow.tracking import MlflowClient

    from tlrun.methods.deep import DeepMethod

    seen = _peeking(DeepMethod, monkeypatch)
    outcome = run_job(compose("method=source_only", "method.epochs=1", "diagnostics=false", "trainer.select=oracle",
                              experiment="label-blind"))
    assert 0.0 <= seen["oracle"] <= 1.0
    assert MlflowClient(tracking_uri=mlflow_store).get_run(outcome.run_id).data.tags["selection.oracle"] == "true"
