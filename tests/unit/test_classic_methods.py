"""The classic closed-form methods on small synthetic shifts with a known answer or property."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tlrun.losses.discrepancy import covariance
from tlrun.methods.base import NullReporter, RunContext
from tlrun.methods.components.classifiers import make_classifier
from tlrun.methods.coral import CORAL
from tlrun.methods.jda import JDA
from tlrun.methods.kmm import (
    KMM,
    DenseKernelBlocks,
    FactoredKernelBlocks,
    median_heuristic_gamma,
    project_box_sum,
    rows_of,
    solve_kmm,
)
from tlrun.methods.subspace import drawn_rows
from tlrun.methods.no_adaptation import NoAdaptation
from tlrun.methods.subspace import rbf_kernel
from tlrun.methods.tca import TCA
from tlrun.scenarios import Labeled, TrainingData, Unlabeled


class RecordingReporter(NullReporter):
    def __init__(self) -> None:
        self.metrics: list[tuple[int | None, dict[str, float]]] = []
        self.predictions: list[tuple[int, np.ndarray]] = []

    def log_metrics(self, metrics, step=None):
        self.metrics.append((step, metrics))

    def target_predictions(self, predictions, step):
        self.predictions.append((step, np.asarray(predictions)))


def shifted_task(seed: int = 0, shift: float = 6.0, n_source: int = 150, n_target: int = 120, d: int = 10):
    """Three Gaussian classes; the target is rescaled per feature and moved by ``shift`` along a random direction."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(3, d)) * 1.5
    source_labels, target_labels = rng.integers(0, 3, n_source), rng.integers(0, 3, n_target)
    source = centers[source_labels] + rng.normal(size=(n_source, d))
    direction = rng.normal(size=d)
    target = (centers[target_labels] + rng.normal(size=(n_target, d))) * rng.uniform(0.5, 2, size=d)
    target += shift * direction / np.linalg.norm(direction)
    data = TrainingData(Labeled(source, source_labels), Unlabeled(target), 3, ("a", "b", "c"))
    return data, target_labels


def target_accuracy(method, data, target_labels) -> float:
    method.fit(data, RunContext(reporter=NullReporter()))
    return float(np.mean(method.predict(data.target.X) == target_labels))


@pytest.mark.parametrize("make_method", [lambda: TCA(kernel="primal", dim=5), lambda: TCA(kernel="linear", dim=5),
                                         lambda: JDA(kernel="primal", dim=5), lambda: JDA(kernel="rbf", dim=5)])
def test_subspace_methods_improve_on_a_synthetic_shift(make_method):
    data, target_labels = shifted_task(seed=1)
    baseline = target_accuracy(NoAdaptation(), data, target_labels)
    assert target_accuracy(make_method(), data, target_labels) >= baseline + 0.1


@pytest.mark.parametrize("kernel", ["primal", "linear", "rbf"])
def test_jda_predicts_out_of_sample_as_it_labels_transductively(kernel):
    data, _ = shifted_task(seed=2, n_source=60, n_target=50)
    reporter = RecordingReporter()
    method = JDA(kernel=kernel, dim=4, iterations=5)
    method.fit(data, RunContext(reporter=reporter, device="cpu"))
    last_step, transductive = reporter.predictions[-1]
    np.testing.assert_array_equal(method.predict(data.target.X), transductive)
    np.testing.assert_array_equal(method.fitted_target_labels, transductive)  # what the runner scores
    assert method._projection.dtype == torch.float64 and method._projection.device.type == "cpu"
    steps = [step for step, _ in reporter.predictions]
    assert steps == list(range(last_step + 1)) and last_step <= 4
    assert all(0.0 <= metrics.get("pseudo_label_change", 0.0) <= 1.0 for _, metrics in reporter.metrics)
    # new samples go through the kernel against the training samples
    assert method.predict(data.target.X[:7]).shape == (7,)


def test_tca_is_one_marginal_only_jda_iteration():
    data, _ = shifted_task(seed=3, n_source=50, n_target=40)
    tca, jda = TCA(dim=3), JDA(dim=3, iterations=1)
    for method in (tca, jda):
        method.fit(data, RunContext(reporter=NullReporter()))
    np.testing.assert_array_equal(tca.predict(data.target.X), jda.predict(data.target.X))


def test_coral_maps_the_regularised_source_covariance_onto_the_targets():
    data, _ = shifted_task(seed=4, n_source=80, n_target=70, d=6)
    source, target = (torch.as_tensor(X) for X in (data.source.X, data.target.X))
    for coral in (CORAL(), CORAL(shrinkage="trace"), CORAL(shrinkage="absolute")):
        A = coral.alignment(source, target)
        np.testing.assert_allclose((A.T @ coral.estimate(source) @ A).numpy(), coral.estimate(target).numpy(), atol=1e-10)
    identity = torch.eye(6, dtype=torch.float64)
    C = covariance(source)
    torch.testing.assert_close(CORAL(shrinkage="absolute").estimate(source), C + identity)
    torch.testing.assert_close(CORAL(shrinkage="trace").estimate(source), C + torch.trace(C) / 6 * identity)
    reporter = RecordingReporter()
    CORAL(classifier="1nn").fit(data, RunContext(reporter=reporter))
    (_, metrics), = reporter.metrics
    assert metrics["coral_loss_after"] < 0.1 * metrics["coral_loss_before"]
    assert [step for step, _ in reporter.predictions] == [0]


def test_kmm_weights_follow_the_density_ratio():
    rng = np.random.default_rng(0)
    source = rng.normal(0.0, 1.0, size=(300, 1))
    target = rng.normal(0.5, 0.6, size=(200, 1))
    labels = (source[:, 0] > 0).astype(np.int64)
    data = TrainingData(Labeled(source, labels), Unlabeled(target), 2, ("neg", "pos"))
    reporter = RecordingReporter()
    method = KMM(gamma=1.0)
    method.fit(data, RunContext(reporter=reporter))
    (_, metrics), = reporter.metrics
    assert metrics["mmd_weighted"] < 0.1 * metrics["mmd_uniform"]
    assert 0.0 < metrics["effective_sample_fraction"] <= 1.0
    # p_t / p_s for N(0.5, 0.6²) over N(0, 1)
    x = source[:, 0]
    ratio = np.exp(-((x - 0.5) ** 2) / (2 * 0.36) + x**2 / 2) / 0.6
    assert np.corrcoef(np.argsort(np.argsort(method.weights)), np.argsort(np.argsort(ratio)))[0, 1] > 0.9


def test_kmm_solution_is_feasible_and_optimal():
    rng = np.random.default_rng(1)
    source, target = torch.as_tensor(rng.normal(size=(40, 2))), torch.as_tensor(rng.normal(1.0, 1.0, size=(30, 2)))
    K = rbf_kernel(source, source, 0.5)
    kappa = rbf_kernel(source, target, 0.5).sum(dim=1) * 40 / 30
    beta, _ = solve_kmm(DenseKernelBlocks(K, kappa, 0.0), upper=5.0, epsilon=0.1, max_iter=20000, tol=1e-12)
    assert float(beta.min()) >= 0 and float(beta.max()) <= 5.0 and abs(float(beta.sum()) - 40) <= 4.0 + 1e-9
    # optimality: a projected gradient step does not move the solution
    stepped = project_box_sum(beta - 0.01 * (K @ beta - kappa), 5.0, 36.0, 44.0)
    assert float(torch.linalg.vector_norm(stepped - beta)) < 1e-6


def kmm_task(n_source: int = 300, n_target: int = 200, seed: int = 0):
    """A 1-D covariate shift, source N(0, 1) and target N(0.5, 0.6²), with the density ratio ``p_t/p_s`` known."""
    rng = np.random.default_rng(seed)
    source = rng.normal(0.0, 1.0, size=(n_source, 1))
    target = rng.normal(0.5, 0.6, size=(n_target, 1))
    labels = (source[:, 0] > 0).astype(np.int64)
    x = source[:, 0]
    ratio = np.exp(-((x - 0.5) ** 2) / (2 * 0.36) + x**2 / 2) / 0.6
    return TrainingData(Labeled(source, labels), Unlabeled(target), 2, ("neg", "pos")), ratio


def fitted_kmm(data, **settings) -> tuple[KMM, dict[str, float]]:
    reporter = RecordingReporter()
    method = KMM(**settings)
    method.fit(data, RunContext(reporter=reporter, seed=3))
    (_, metrics), = reporter.metrics
    return method, metrics


def test_kmm_with_every_sample_a_landmark_solves_the_exact_problem():
    """Nyström features of all n samples give ``K`` exactly on them: the same strictly convex QP (``K`` well
    conditioned in 6 dimensions), the same weights."""
    rng = np.random.default_rng(0)
    source, target = rng.normal(size=(60, 6)), rng.normal(0.5, 0.8, size=(40, 6))
    data = TrainingData(Labeled(source, (source[:, 0] > 0).astype(np.int64)), Unlabeled(target), 2, ("neg", "pos"))
    exact, exact_metrics = fitted_kmm(data, gamma=0.2, approx="none", tol=1e-13, max_iter=100_000)
    factored, metrics = fitted_kmm(data, gamma=0.2, approx="nystroem", rank=100, tol=1e-13, max_iter=100_000)
    np.testing.assert_allclose(factored.weights, exact.weights, atol=1e-8)
    assert metrics["approx_rank"] == 100 and "approx_rank" not in exact_metrics
    for name in ("mmd_uniform", "mmd_weighted"):
        assert metrics[name] == pytest.approx(exact_metrics[name], rel=1e-9)


def test_kmm_on_few_landmarks_keeps_its_constraints_and_follows_the_density_ratio():
    data, ratio = kmm_task(3000, 2000)
    method, metrics = fitted_kmm(data, approx="nystroem", rank=30, bound=10.0)
    weights, n_s = method.weights, 3000
    epsilon = (n_s**0.5 - 1) / n_s**0.5
    assert weights.min() >= 0 and weights.max() <= 10.0 + 1e-12
    assert abs(weights.sum() - n_s) <= n_s * epsilon + 1e-6
    assert metrics["approx_rank"] == 30 and metrics["mmd_weighted"] < 0.1 * metrics["mmd_uniform"]
    assert np.corrcoef(np.argsort(np.argsort(weights)), np.argsort(np.argsort(ratio)))[0, 1] > 0.9


def test_kmm_nystroem_kernel_keeps_the_exact_diagonal():
    """Few landmarks: ``Φ Φᵀ`` falls short of ``k(x, x) = 1``; the corrected kernel's diagonal is 1 (its other entries
    Nyström's), so the QP still counts each sample's self-similarity."""
    rng = np.random.default_rng(6)
    source, target = torch.as_tensor(rng.normal(size=(40, 3))), torch.as_tensor(rng.normal(0.5, 1.0, size=(30, 3)))
    blocks, _ = KMM(approx="nystroem", rank=5, gamma=0.5).kernel_blocks(source, target, seed=0)
    implied = torch.stack([blocks.source_gram_times(column) for column in torch.eye(40, dtype=torch.float64)])
    torch.testing.assert_close(torch.diagonal(implied), torch.ones(40, dtype=torch.float64))
    low_rank = blocks.source_features @ blocks.source_features.T
    assert float(torch.diagonal(low_rank).min()) < 0.5  # the approximation alone falls short away from landmarks
    off_diagonal = ~torch.eye(40, dtype=torch.bool)
    torch.testing.assert_close(implied[off_diagonal], low_rank[off_diagonal])


def test_kmm_linear_kernel_in_factored_form_reaches_the_dense_optimum():
    """``K = X Xᵀ`` through ``X`` itself: the QP's optimal value equals the one on the dense ``K``."""
    rng = np.random.default_rng(4)
    source, target = torch.as_tensor(rng.normal(size=(60, 3))), torch.as_tensor(rng.normal(0.4, 1.0, size=(50, 3)))
    K = source @ source.T
    kappa = (source @ target.T).sum(dim=1) * 60 / 50
    factored = FactoredKernelBlocks(source, target)
    torch.testing.assert_close(factored.kappa, kappa)
    assert factored.target_mean == pytest.approx(float((target @ target.T).mean()))
    solve = lambda blocks: solve_kmm(blocks, upper=5.0, epsilon=0.1, max_iter=50_000, tol=1e-13)[0]  # noqa: E731
    objective = lambda beta: float(0.5 * beta @ K @ beta - kappa @ beta)  # noqa: E731
    assert objective(solve(factored)) == pytest.approx(objective(solve(DenseKernelBlocks(K, kappa, 0.0))), rel=1e-7)


def test_rows_of_a_pair_are_the_rows_of_the_stacked_pair():
    source, target = torch.arange(12.0).reshape(6, 2), -torch.arange(8.0).reshape(4, 2)
    indices = torch.tensor([7, 0, 5, 6, 2])
    torch.testing.assert_close(rows_of(source, target, indices), torch.cat([source, target])[indices])


def test_kmm_auto_approximates_above_the_limit_and_samples_the_median():
    from tlrun.methods.settings import AUTO_EXACT_LIMIT

    rng = np.random.default_rng(5)
    X = torch.as_tensor(rng.normal(size=(6000, 4)))
    sample = rows_of(X[:4000], X[4000:], drawn_rows(2000, 6000, torch.Generator().manual_seed(1)))
    assert median_heuristic_gamma(sample) == pytest.approx(median_heuristic_gamma(X), rel=0.03)
    source, target = X[:5001], torch.as_tensor(rng.normal(0.3, 1.0, size=(AUTO_EXACT_LIMIT - 5000, 4)))
    method = KMM(rank=20)
    blocks, metrics = method.kernel_blocks(source, target, seed=0)
    assert isinstance(blocks, FactoredKernelBlocks) and metrics == {"approx_rank": 20.0}
    blocks, metrics = method.kernel_blocks(source[:-1], target, seed=0)
    assert isinstance(blocks, DenseKernelBlocks) and metrics == {}


@pytest.mark.parametrize("low,high", [(0.0, 3.0), (9.0, 12.0), (0.0, 100.0)])
def test_box_sum_projection_is_exact(low, high):
    v = torch.as_tensor(np.random.default_rng(2).normal(1.0, 2.0, size=25))
    projected = project_box_sum(v, 1.5, low, high)
    total = float(projected.sum())
    assert float(projected.min()) >= 0 and float(projected.max()) <= 1.5 and low - 1e-12 <= total <= high + 1e-12
    # KKT: projected = clip(v − ν, 0, 1.5) for one ν, whose sign matches the active bound
    free = (projected > 0) & (projected < 1.5)
    nu = (v - projected)[free]
    np.testing.assert_allclose(nu.numpy(), float(nu[0]), atol=1e-12)
    if abs(total - high) < 1e-9:
        assert float(nu[0]) > 0
    elif abs(total - low) < 1e-9:
        assert float(nu[0]) < 0
    else:
        assert float(nu[0]) == 0


def test_nearest_neighbor_breaks_ties_towards_the_lowest_index():
    train = np.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0]])
    classifier = make_classifier("1nn").fit(train, np.array([2, 0, 1]))
    np.testing.assert_array_equal(classifier.predict(np.array([[0.0, 0.0], [2.0, 0.0]])), [2, 2])


def test_unknown_names_and_unweightable_classifiers_are_errors():
    with pytest.raises(ValueError, match="1nn, logreg, linear_svm"):
        make_classifier("random_forest")
    with pytest.raises(ValueError, match="primal, linear, rbf"):
        JDA(kernel="sigmoid")
    with pytest.raises(ValueError, match="1nn, logreg, linear_svm"):
        TCA(classifier="knn")
    with pytest.raises(ValueError, match="cannot weight samples"):
        KMM(classifier="1nn")
    with pytest.raises(ValueError, match="weight"):
        make_classifier("1nn").fit(np.zeros((2, 1)), np.array([0, 1]), sample_weight=np.ones(2))


@pytest.mark.parametrize("name, absent", [("logreg", 0.0), ("linear_svm", -np.inf)])
def test_classifier_scores_have_a_column_per_label_and_their_argmax_is_the_prediction(name, absent):
    """Labels 0 and 2 of 4 fitted (two classes: the SVM's one decision value as two columns): columns 1 and 3 score
    what no class can be below, and each row's best column is the predicted label."""
    X = np.random.default_rng(0).normal(size=(30, 4))
    classifier = make_classifier(name, num_classes=4).fit(X, np.array([0, 2] * 15))
    scores = classifier.scores(X)
    assert scores.shape == (30, 4) and np.all(scores[:, [1, 3]] == absent)
    np.testing.assert_array_equal(scores.argmax(axis=1), classifier.predict(X))
    assert make_classifier("1nn").fit(X, np.zeros(30, dtype=np.int64)).scores(X) is None


def test_classifier_options_are_per_classifier():
    options = {"linear_svm": {"C": 1e-4}, "logreg": {"C": 2.0}}
    assert make_classifier("logreg", options=options).estimator.C == 2.0
    assert make_classifier("linear_svm", options=options).estimator.C == 1e-4
    with pytest.raises(ValueError, match="maps classifier names"):
        make_classifier("logreg", options={"C": 1.0})


@pytest.mark.parametrize("n,d", [(50, 10), (30, 80), (200, 3)])
def test_coral_ledoit_wolf_estimate_equals_scikit_learns_on_the_standardised_features(n, d):
    """The reference: scikit-learn's Ledoit–Wolf of the standardised features, rescaled (skada's CORAL estimate),
    a constant feature included."""
    from sklearn.covariance import ledoit_wolf
    from sklearn.preprocessing import StandardScaler

    from tlrun.methods.coral import ledoit_wolf_covariance

    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, d)) * rng.uniform(0.01, 5.0, size=d)
    X[:, 0] = 0.3
    scaler = StandardScaler().fit(X)
    reference = scaler.scale_[:, None] * ledoit_wolf(scaler.transform(X))[0] * scaler.scale_[None, :]
    np.testing.assert_allclose(ledoit_wolf_covariance(torch.as_tensor(X)).numpy(), reference, atol=1e-12)


def test_coral_centers_each_domain_with_its_own_mean():
    """With ``center`` the classifier sees the source and the target each minus its own mean: a pure mean shift of
    the target leaves the predictions unchanged; without it, the shift moves them."""
    data, _ = shifted_task(seed=5, n_source=80, n_target=70, d=6)
    shifted = TrainingData(data.source, Unlabeled(data.target.X + 50.0), data.num_classes, data.classes)
    for center, same in ((True, True), (False, False)):
        predictions = []
        for task in (data, shifted):
            coral = CORAL(center=center, classifier="logreg")
            coral.fit(task, RunContext(reporter=NullReporter()))
            predictions.append(coral.predict(task.target.X))
        assert np.array_equal(*predictions) == same


def test_coral_trace_shrinkage_does_not_depend_on_the_features_unit():
    """Scaling every feature by c leaves the re-coloured source scaled by c (trace shrinkage), so a scale-invariant
    classifier predicts the same; the paper's absolute + I does not: on features of tiny variance it re-colours
    nothing (the transform is nearly the identity)."""
    import torch

    from tlrun.methods.coral import CORAL

    generator = torch.Generator().manual_seed(0)
    source = torch.randn(200, 5, generator=generator, dtype=torch.float64) @ torch.diag(torch.tensor([3.0, 1, 1, 1, 0.2], dtype=torch.float64))
    target = torch.randn(150, 5, generator=generator, dtype=torch.float64) + 1
    trace = CORAL(shrinkage="trace")
    lw = CORAL()
    for scale in (1e-3, 1e3):  # Ledoit–Wolf works on the correlation scale: unit-free too
        torch.testing.assert_close(source * scale @ lw.alignment(source * scale, target * scale),
                                   scale * (source @ lw.alignment(source, target)))
    for scale in (1e-3, 1.0, 1e3):
        scaled = source * scale @ trace.alignment(source * scale, target * scale)
        torch.testing.assert_close(scaled, scale * (source @ trace.alignment(source, target)))
    tiny = 1e-3
    absolute = CORAL(shrinkage="absolute").alignment(source * tiny, target * tiny)
    torch.testing.assert_close(absolute, torch.eye(5, dtype=torch.float64), atol=1e-4, rtol=0)
    standardised = source / source.std(dim=0)
    target_standardised = target / target.std(dim=0)
    # trace and absolute agree when the mean variance is 1
    mean_variance = float(torch.trace(torch.cov(standardised.T)) / 5)
    assert mean_variance == pytest.approx(1.0)
    torch.testing.assert_close(CORAL(shrinkage="trace").alignment(standardised, target_standardised),
                               CORAL(shrinkage="absolute", regularization=mean_variance).alignment(standardised, target_standardised))
