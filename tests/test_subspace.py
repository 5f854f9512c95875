"""The MMD subspace solver (tlrun.methods.subspace) against its definitions and a direct dense solve."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from tlrun.methods.subspace import (
    KernelMap,
    ReducedLinearKernelMap,
    centered_gram,
    l2_normalize_rows,
    linear_kernel,
    make_feature_map,
    mmd_factor,
    mmd_of,
    solve_mmd_subspace,
)

NUM_CLASSES = 3


def shifted_domains(n_source: int, n_target: int, d: int, seed: int = 0):
    """L2-normalised stacked samples of two domains (the target shifted), and the source labels."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(NUM_CLASSES, d)) * 3
    source_labels = rng.integers(0, NUM_CLASSES, n_source)
    target_labels = rng.integers(0, NUM_CLASSES, n_target)
    source = centers[source_labels] + rng.normal(size=(n_source, d))
    target = centers[target_labels] + rng.normal(size=(n_target, d)) + 2.0
    stacked = l2_normalize_rows(torch.as_tensor(np.concatenate([source, target])))
    return stacked, source_labels, target_labels


def align_signs(reference: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``other`` with each column's sign flipped to agree with ``reference``."""
    signs = torch.sign((reference * other).sum(dim=0))
    return other * signs


def dense_mmd_matrix(source_labels: np.ndarray, target_labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``M`` entry by entry, as the JDA paper defines it (marginal weighted by C as in the authors' code),
    divided by ``‖M‖_F``: ``(M_c)_ij`` is ``1/(n_s^c)²`` for two source samples of class ``c``,
    ``1/(n_t^c)²`` for two target samples pseudo-labelled ``c``, ``−1/(n_s^c n_t^c)`` for one of each."""
    n_s, n_t = len(source_labels), len(target_labels)
    domains = ["s"] * n_s + ["t"] * n_t
    labels = np.concatenate([source_labels, target_labels])
    sizes = {("s", None): n_s, ("t", None): n_t}
    for c in range(num_classes):
        sizes["s", c], sizes["t", c] = np.sum(source_labels == c), np.sum(target_labels == c)
    M = np.zeros((n_s + n_t, n_s + n_t))
    for i, (domain_i, label_i) in enumerate(zip(domains, labels)):
        for j, (domain_j, label_j) in enumerate(zip(domains, labels)):
            sign = 1.0 if domain_i == domain_j else -1.0
            M[i, j] = num_classes * sign / (sizes[domain_i, None] * sizes[domain_j, None])
            if label_i == label_j and sizes["s", label_i] and sizes["t", label_i]:
                M[i, j] += sign / (sizes[domain_i, label_i] * sizes[domain_j, label_j])
    return M / np.linalg.norm(M)


@pytest.mark.parametrize("with_pseudo_labels", [False, True])
def test_rank_one_factor_equals_dense_mmd_matrix(with_pseudo_labels):
    rng = np.random.default_rng(1)
    source_labels = rng.integers(0, 4, 9)
    target_labels = np.array([0, 0, 1, 3, 3, 1, 0]) if with_pseudo_labels else None  # class 2 unused
    factor = mmd_factor(source_labels, 7, 4, target_labels, "cpu")
    if with_pseudo_labels:
        expected = dense_mmd_matrix(source_labels, target_labels, 4)
    else:
        marginal = np.concatenate([np.full(9, 1 / 9), np.full(7, -1 / 7)])
        expected = np.outer(marginal, marginal) / np.linalg.norm(np.outer(marginal, marginal))
    np.testing.assert_allclose((factor @ factor.T).numpy(), expected, atol=1e-14)
    assert factor.shape[1] == (4 if with_pseudo_labels else 1)  # marginal + the 3 classes in both domains


@pytest.mark.parametrize("kernel", ["primal", "linear", "rbf"])
def test_eigenvectors_satisfy_the_constraint_before_rescaling(kernel):
    X, source_labels, _ = shifted_domains(30, 25, 12)
    features = make_feature_map(kernel, X, gamma=0.5).transform(X)
    factor = mmd_factor(source_labels, 25, NUM_CLASSES, None, "cpu")
    solution = solve_mmd_subspace(features, factor, lamb=0.7, dim=6)
    B = solution.coefficients
    np.testing.assert_allclose((B.T @ centered_gram(features) @ B).numpy(), np.eye(6), atol=1e-9)
    assert torch.all(solution.eigenvalues[1:] >= solution.eigenvalues[:-1])
    # φ_j = b_jᵀ Fᵀ M F b_j + λ‖b_j‖² under the constraint
    objective = ((factor.T @ features @ B) ** 2).sum(dim=0) + 0.7 * (B**2).sum(dim=0)
    np.testing.assert_allclose(objective.numpy(), solution.eigenvalues.numpy(), rtol=1e-9)
    np.testing.assert_allclose(torch.linalg.vector_norm(solution.unit_norm(), dim=0).numpy(), 1.0, rtol=1e-12)


def test_agrees_with_dense_scipy_generalized_eigh():
    X, source_labels, _ = shifted_domains(20, 15, 6, seed=3)
    pseudo = np.random.default_rng(0).integers(0, NUM_CLASSES, 15)
    features = KernelMap(X, linear_kernel).transform(X)  # the n × n kernel form
    factor = mmd_factor(source_labels, 15, NUM_CLASSES, pseudo, "cpu")
    solution = solve_mmd_subspace(features, factor, lamb=1.0, dim=4)

    K, n = features.numpy(), len(X)
    M = (factor @ factor.T).numpy()
    H = np.eye(n) - np.ones((n, n)) / n
    # (K M K + λI) a = φ K H K a; K H K is singular, so solve the swapped pencil for μ = 1/φ.
    mu, vectors = scipy.linalg.eigh(K @ H @ K, K @ M @ K + np.eye(n))
    reference = torch.as_tensor(vectors[:, ::-1][:, :4].copy())
    reference = reference / torch.linalg.vector_norm(reference, dim=0)
    np.testing.assert_allclose(solution.eigenvalues.numpy(), 1 / mu[::-1][:4], rtol=1e-8)
    np.testing.assert_allclose(align_signs(reference, solution.unit_norm()).numpy(), reference.numpy(), atol=1e-8)


@pytest.mark.parametrize("n_source,n_target,d", [(30, 20, 8), (6, 5, 40)])
def test_rank_reduction_equals_the_full_kernel_solve(n_source, n_target, d):
    X, source_labels, _ = shifted_domains(n_source, n_target, d, seed=5)
    pseudo = np.arange(n_target) % NUM_CLASSES
    factor = mmd_factor(source_labels, n_target, NUM_CLASSES, pseudo, "cpu")
    dim = 4

    full = KernelMap(X, linear_kernel).transform(X)
    full_solution = solve_mmd_subspace(full, factor, lamb=1.0, dim=dim)
    reduced = ReducedLinearKernelMap(X).transform(X)
    assert reduced.shape[1] == min(n_source + n_target, d)
    reduced_solution = solve_mmd_subspace(reduced, factor, lamb=1.0, dim=dim)

    np.testing.assert_allclose(reduced_solution.eigenvalues.numpy(), full_solution.eigenvalues.numpy(), rtol=1e-8)
    # the embeddings Z = F B with unit-norm coefficients, up to each column's sign
    full_embedding = full @ full_solution.unit_norm()
    reduced_embedding = reduced @ reduced_solution.unit_norm()
    np.testing.assert_allclose(
        align_signs(full_embedding, reduced_embedding).numpy(), full_embedding.numpy(), atol=1e-8
    )


def test_projection_reduces_the_mmd_between_domains():
    X, source_labels, _ = shifted_domains(60, 50, 10, seed=7)
    features = make_feature_map("primal", X, gamma=1.0).transform(X)
    factor = mmd_factor(source_labels, 50, NUM_CLASSES, None, "cpu")
    solution = solve_mmd_subspace(features, factor, lamb=1.0, dim=3)
    embedding = l2_normalize_rows(features @ solution.unit_norm())
    assert mmd_of(embedding, factor) < 0.1 * mmd_of(X, factor)


def test_dim_beyond_the_rank_is_an_error():
    X, source_labels, _ = shifted_domains(4, 3, 10)
    features = make_feature_map("linear", X, gamma=1.0).transform(X)
    factor = mmd_factor(source_labels, 3, NUM_CLASSES, None, "cpu")
    with pytest.raises(ValueError, match="dim"):
        solve_mmd_subspace(features, factor, lamb=1.0, dim=7)


@pytest.mark.parametrize("dim", [7, 100])  # beyond the rank (6: 7 samples, centred), then beyond q = 7 too
def test_dim_beyond_the_rank_at_most_uses_every_direction(dim):
    X, source_labels, _ = shifted_domains(4, 3, 10)
    features = make_feature_map("linear", X, gamma=1.0).transform(X)
    factor = mmd_factor(source_labels, 3, NUM_CLASSES, None, "cpu")
    clamped = solve_mmd_subspace(features, factor, lamb=1.0, dim=dim, at_most=True)
    exact = solve_mmd_subspace(features, factor, lamb=1.0, dim=6)
    np.testing.assert_allclose(clamped.eigenvalues.numpy(), exact.eigenvalues.numpy(), rtol=1e-12)
    np.testing.assert_allclose(clamped.coefficients.numpy(), exact.coefficients.numpy(), atol=1e-12)


def test_jda_with_dim_beyond_the_features_says_so_and_logs_the_dim_it_uses(caplog):
    from tlrun.methods.base import RunContext
    from tlrun.methods.jda import JDA
    from tlrun.scenarios import Labeled, TrainingData, Unlabeled

    class Recorder:
        def __init__(self):
            self.metrics = []

        def log_metrics(self, metrics, step=None):
            self.metrics.append((step, metrics))

        def target_predictions(self, predictions, step):
            pass

    X, source_labels, _ = shifted_domains(40, 30, 8, seed=2)
    data = TrainingData(Labeled(X[:40].numpy(), source_labels), Unlabeled(X[40:].numpy()), NUM_CLASSES, ("a", "b", "c"))
    reporter = Recorder()
    with caplog.at_level("INFO", logger="tlrun.methods.jda"):
        JDA(dim=100, iterations=3).fit(data, RunContext(reporter=reporter))
    assert "method.dim=100 exceeds the 8 directions" in caplog.text and "using dim=8" in caplog.text
    assert (0, {"effective_dim": 8}) in reporter.metrics


def test_reduced_linear_centered_gram_is_diagonal_minus_rank_one():
    X, _, _ = shifted_domains(30, 20, 8, seed=4)
    feature_map = ReducedLinearKernelMap(X)
    features = feature_map.transform(X)
    np.testing.assert_allclose(
        feature_map.centered_gram(features).numpy(), centered_gram(features).numpy(), atol=1e-12
    )


def test_unknown_kernel_is_an_error():
    with pytest.raises(ValueError, match="primal, linear, rbf"):
        make_feature_map("polynomial", torch.zeros(3, 2, dtype=torch.float64), gamma=1.0)
