"""The MMD subspace solver (tlrun.methods.subspace) against its definitions and a direct dense solve."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import scipy.linalg
import scipy.special
import torch

from tlrun.methods import subspace
from tlrun.methods.subspace import (
    DiagonalMinusRankOne,
    KernelMap,
    NystroemMap,
    ReducedLinearKernelMap,
    centered_gram,
    l2_normalize_rows,
    linear_kernel,
    make_feature_map,
    mmd_factor,
    mmd_of,
    count_eigenvalues_above,
    solve_mmd_subspace,
    solve_on_rational_subspace,
    zolotarev_poles,
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


class MetricsRecorder:
    """A reporter that keeps the ``(step, metrics)`` a method logs."""

    def __init__(self):
        self.metrics = []

    def log_metrics(self, metrics, step=None):
        self.metrics.append((step, metrics))

    def target_predictions(self, predictions, step):
        pass


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


def test_jda_with_dim_beyond_the_features_logs_the_dim_it_uses():
    from tlrun.methods.base import RunContext
    from tlrun.methods.jda import JDA
    from tlrun.scenarios import Labeled, TrainingData, Unlabeled

    X, source_labels, _ = shifted_domains(40, 30, 8, seed=2)
    data = TrainingData(Labeled(X[:40].numpy(), source_labels), Unlabeled(X[40:].numpy()), NUM_CLASSES, ("a", "b", "c"))
    reporter = MetricsRecorder()
    JDA(dim=100, iterations=3).fit(data, RunContext(reporter=reporter))
    assert (0, {"effective_dim": 8}) in reporter.metrics


def test_reduced_linear_centered_gram_is_diagonal_minus_rank_one():
    X, _, _ = shifted_domains(30, 20, 8, seed=4)
    feature_map = ReducedLinearKernelMap(X)
    features = feature_map.transform(X)
    structured = feature_map.centered_gram(features)
    assert isinstance(structured, DiagonalMinusRankOne)
    np.testing.assert_allclose(structured.dense().numpy(), centered_gram(features).numpy(), atol=1e-12)
    Y = torch.as_tensor(np.random.default_rng(0).normal(size=(8, 3)))
    np.testing.assert_allclose(structured.times(Y).numpy(), (structured.dense() @ Y).numpy(), atol=1e-12)


def reduced_problem(n_source: int, n_target: int, d: int, num_classes: int, seed: int):
    """Features, MMD factor (with pseudo-labels) and structured ``Fᵀ H F`` of the reduced linear kernel."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_classes, d)) * 3
    source_labels = rng.integers(0, num_classes, n_source)
    target_labels = rng.integers(0, num_classes, n_target)
    scales = np.geomspace(1.0, 0.05, d)  # a decaying spectrum, as in bag-of-words features
    source = (centers[source_labels] + rng.normal(size=(n_source, d))) * scales
    target = (centers[target_labels] + rng.normal(size=(n_target, d)) + 2.0) * scales
    X = l2_normalize_rows(torch.as_tensor(np.concatenate([source, target])))
    feature_map = ReducedLinearKernelMap(X)
    features = feature_map.transform(X)
    factor = mmd_factor(source_labels, n_target, num_classes, rng.integers(0, num_classes, n_target), "cpu")
    return features, factor, feature_map.centered_gram(features)


def assert_same_solution(fast, dense, features, centered, rtol=1e-10):
    """Same eigenvalues, same spanned subspace, same embedding (up to each column's sign), and the constraint."""
    np.testing.assert_allclose(fast.eigenvalues.numpy(), dense.eigenvalues.numpy(), rtol=rtol)
    fast_embedding, dense_embedding = features @ fast.unit_norm(), features @ dense.unit_norm()
    scale = dense_embedding.abs().max()
    np.testing.assert_allclose(
        align_signs(dense_embedding, fast_embedding).numpy() / scale, dense_embedding.numpy() / scale, atol=rtol
    )
    # the principal angles between the two coefficient subspaces are zero: all cosines 1
    fast_basis, dense_basis = torch.linalg.qr(fast.coefficients)[0], torch.linalg.qr(dense.coefficients)[0]
    np.testing.assert_allclose(torch.linalg.svdvals(fast_basis.T @ dense_basis).numpy(), 1.0, atol=rtol)
    B = fast.coefficients
    np.testing.assert_allclose((B.T @ centered.times(B)).numpy(), np.eye(B.shape[1]), atol=1e-9)


@pytest.mark.parametrize(
    "n_source,n_target,d,num_classes,dim,seed",
    [(150, 120, 220, 3, 10, 0), (200, 90, 300, 5, 20, 1), (400, 350, 260, 4, 6, 2)],
)
def test_rational_subspace_solve_equals_the_dense_solve(n_source, n_target, d, num_classes, dim, seed):
    features, factor, centered = reduced_problem(n_source, n_target, d, num_classes, seed)
    mmd_side = (factor.T @ features).T
    fast = solve_on_rational_subspace(centered, mmd_side, 1.0, dim)
    assert fast is not None, "the fast path must accept this problem"
    dense = solve_mmd_subspace(features, factor, lamb=1.0, dim=dim, centered=centered.dense())
    assert_same_solution(fast, dense, features, centered)
    assert torch.equal(solve_mmd_subspace(features, factor, 1.0, dim, centered).coefficients, fast.coefficients)


def test_rational_subspace_solve_on_a_jda_shaped_problem():
    """Office+Caltech10's shape: q = 800 features, n ≈ 2000 samples, 10 classes (p = 11), k = 100."""
    features, factor, centered = reduced_problem(1123, 958, 800, 10, seed=3)
    mmd_side = (factor.T @ features).T
    fast = solve_on_rational_subspace(centered, mmd_side, 1.0, 100)
    assert fast is not None, "the fast path must accept this problem"
    dense = solve_mmd_subspace(features, factor, lamb=1.0, dim=100, centered=centered.dense())
    assert_same_solution(fast, dense, features, centered)


def test_too_few_poles_fall_back_to_the_dense_solve(monkeypatch):
    features, factor, centered = reduced_problem(150, 120, 220, 3, seed=0)
    monkeypatch.setattr(subspace, "ZOLOTAREV_TARGET", 1e-2)  # a few poles: the residual check fails
    assert solve_on_rational_subspace(centered, (factor.T @ features).T, 1.0, 10) is None
    fallback = solve_mmd_subspace(features, factor, lamb=1.0, dim=10, centered=centered)
    dense = solve_mmd_subspace(features, factor, lamb=1.0, dim=10, centered=centered.dense())
    assert torch.equal(fallback.coefficients, dense.coefficients)
    assert torch.equal(fallback.eigenvalues, dense.eigenvalues)


def test_a_tie_at_the_kth_eigenvalue_falls_back_to_the_dense_solve():
    """Two coordinates outside the span of ``P = [Q, v]`` with one value ``d`` give ``W`` the eigenvalue
    ``d/λ`` twice; placed as the ``k``-th and ``(k+1)``-th, the ``k`` wanted eigenvectors are not determined."""
    features, factor, centered = reduced_problem(150, 120, 220, 3, seed=0)
    mmd_side = (factor.T @ features).T
    k, lamb = 10, 1.0
    mu = 1 / solve_mmd_subspace(features, factor, lamb, dim=k, centered=centered.dense()).eigenvalues
    tied = float(mu[k - 2] + mu[k - 1]) / 2 * lamb  # between the (k−1)-th and k-th: the pair is k-th and (k+1)-th
    zeros = torch.zeros(2, dtype=torch.float64)
    with_tie = DiagonalMinusRankOne(
        torch.cat([centered.diagonal, torch.full((2,), tied, dtype=torch.float64)]),
        torch.cat([centered.column_sums, zeros]),
        centered.n,
    )
    padded_mmd_side = torch.cat([mmd_side, torch.zeros(2, mmd_side.shape[1], dtype=torch.float64)])
    assert count_eigenvalues_above(with_tie, padded_mmd_side, lamb, tied / lamb * (1 - 1e-9)) == k + 1
    assert count_eigenvalues_above(with_tie, padded_mmd_side, lamb, tied / lamb * (1 + 1e-9)) == k - 1
    assert solve_on_rational_subspace(with_tie, padded_mmd_side, lamb, k) is None
    # without the tie (one coordinate), the same problem passes
    single = DiagonalMinusRankOne(with_tie.diagonal[:-1], with_tie.column_sums[:-1], centered.n)
    assert solve_on_rational_subspace(single, padded_mmd_side[:-1], lamb, k) is not None


@pytest.mark.parametrize("seed", [0, 1])
def test_eigenvalue_count_by_inertia_equals_the_dense_count(seed):
    features, factor, centered = reduced_problem(150, 120, 220, 3, seed=seed)
    mmd_side = (factor.T @ features).T
    inverse_sqrt = subspace.regularizer_inverse_sqrt(mmd_side, 1.0)
    whitened = inverse_sqrt(inverse_sqrt(centered.dense()).T)
    mu = torch.linalg.eigvalsh((whitened + whitened.T) / 2).flip(0)
    for index in (0, 5, 40, 150):
        sigma = float(mu[index] + mu[index + 1]) / 2
        assert count_eigenvalues_above(centered, mmd_side, 1.0, sigma) == index + 1


def test_jacobi_dn_equals_scipy():
    fractions = [0.05, 0.3, 0.5, 0.95]
    for parameter in (0.0, 0.3, 0.99, 1 - 1e-8):
        K = scipy.special.ellipk(parameter)
        expected = scipy.special.ellipj(np.array(fractions) * K, parameter)[2]
        np.testing.assert_allclose(subspace._jacobi_dn(fractions, parameter), expected, rtol=1e-12)


def test_zolotarev_poles_lie_in_the_wanted_interval():
    poles = zolotarev_poles(0.01, 0.05, 0.06, 40.0, 12)
    assert len(poles) == 12 and all(0.01 < pole < 0.05 for pole in poles)
    assert poles == sorted(poles)  # clustered towards β, next to the other interval
    assert poles[-1] - poles[-2] < poles[1] - poles[0]


def test_unknown_kernel_is_an_error():
    with pytest.raises(ValueError, match="primal, linear, rbf"):
        make_feature_map("polynomial", torch.zeros(3, 2, dtype=torch.float64), gamma=1.0)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_nystroem_with_every_sample_a_landmark_solves_the_exact_kernel_problem(gamma):
    X, source_labels, _ = shifted_domains(40, 30, 10, seed=2)
    factor = mmd_factor(source_labels, 30, NUM_CLASSES, np.arange(30) % NUM_CLASSES, "cpu")
    exact = make_feature_map("rbf", X, gamma).transform(X)
    exact_solution = solve_mmd_subspace(exact, factor, lamb=1.0, dim=5)
    nystroem_map = make_feature_map("rbf", X, gamma, landmarks=70, seed=0)
    assert isinstance(nystroem_map, NystroemMap)
    features = nystroem_map.transform(X)
    solution = solve_mmd_subspace(features, factor, lamb=1.0, dim=5, centered=nystroem_map.centered_gram(features))

    np.testing.assert_allclose(solution.eigenvalues.numpy(), exact_solution.eigenvalues.numpy(), rtol=1e-10)
    exact_embedding = exact @ exact_solution.unit_norm()
    embedding = features @ solution.unit_norm()
    np.testing.assert_allclose(align_signs(exact_embedding, embedding).numpy(), exact_embedding.numpy(), atol=1e-10)


def test_nystroem_landmarks_are_drawn_with_the_seed():
    X, _, _ = shifted_domains(40, 30, 10)
    first, again, other = (make_feature_map("rbf", X, 1.0, landmarks=10, seed=seed) for seed in (3, 3, 4))
    landmarks = [nystroem_map.features.landmarks for nystroem_map in (first, again, other)]
    assert torch.equal(landmarks[0], landmarks[1]) and not torch.equal(landmarks[0], landmarks[2])
    assert first.transform(X).shape[1] <= 10


def shifted_jda_task(n_source: int, n_target: int, d: int, seed: int):
    """Three Gaussian classes in ``d`` dimensions; the target rescaled per feature and moved (a real shift)."""
    from tlrun.scenarios import Labeled, TrainingData, Unlabeled

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(3, d)) * 1.5
    source_labels, target_labels = rng.integers(0, 3, n_source), rng.integers(0, 3, n_target)
    source = centers[source_labels] + rng.normal(size=(n_source, d))
    target = (centers[target_labels] + rng.normal(size=(n_target, d))) * rng.uniform(0.5, 2, size=d) + 1.5
    return TrainingData(Labeled(source, source_labels), Unlabeled(target), 3, ("a", "b", "c")), target_labels


@pytest.mark.parametrize("seed", [0, 1])
def test_jda_with_nystroem_matches_the_exact_rbf_kernel(seed):
    """Every sample a landmark: the exact kernel's labels; 50 landmarks for 700 samples: within 3 points."""
    from tlrun.methods.base import NullReporter, RunContext
    from tlrun.methods.jda import JDA

    data, target_labels = shifted_jda_task(400, 300, 10, seed)

    def labels(approx, rank):
        method = JDA(kernel="rbf", dim=10, approx=approx, rank=rank)
        method.fit(data, RunContext(reporter=NullReporter(), seed=seed))
        return method.predict(data.target.X)

    exact = labels("none", 1000)
    np.testing.assert_array_equal(labels("nystroem", 700), exact)
    accuracy = lambda predictions: float(np.mean(predictions == target_labels))  # noqa: E731
    assert abs(accuracy(labels("nystroem", 50)) - accuracy(exact)) <= 0.03


@pytest.mark.parametrize("n_source,approximated", [(5000, False), (5001, True)])
def test_auto_approximates_the_rbf_kernel_above_the_limit_and_says_so(n_source, approximated, capsys):
    from tlrun.methods.settings import AUTO_EXACT_LIMIT
    from tlrun.methods.tca import TCA
    from tlrun.methods.base import RunContext

    assert AUTO_EXACT_LIMIT == 10_000
    data, _ = shifted_jda_task(n_source, 5000, 3, seed=0)
    method, reporter = TCA(kernel="rbf", dim=2, rank=20), MetricsRecorder()
    if not approximated:  # the exact 10,000 × 10,000 kernel would take minutes: stop once the map is chosen
        method._landmarks(n_source + 5000, RunContext(reporter=reporter))
    else:
        method.fit(data, RunContext(reporter=reporter))
        assert isinstance(method._map, NystroemMap)
    assert any("approx_rank" in metrics for _, metrics in reporter.metrics) == approximated
    assert ("a Nyström map of 20 landmarks" in capsys.readouterr().err) == approximated


@pytest.mark.parametrize("settings, error", [({"approx": "rff"}, "choose one of: none, nystroem, auto"),
                                             ({"rank": 0}, "rank .* must be >= 1")])
def test_a_bad_approximation_setting_is_an_error(settings, error):
    from tlrun.methods.tca import TCA

    with pytest.raises(ValueError, match=error):
        TCA(kernel="rbf", **settings)


def test_nystroem_features_by_blocks_equal_the_whole_computation(monkeypatch):
    """Blocks of 7 rows: φ(X), φ(X) P and ΦᵀΦ as computed at once; the map built from the Gram (more samples than
    landmarks) equals the one built from Φ itself."""
    X, _, _ = shifted_domains(30, 20, 10, seed=4)
    features = subspace.NystroemFeatures(X[:12], partial(subspace.rbf_kernel, gamma=0.3))
    whole = features.kernel(X, features.landmarks) @ features.whitening
    projection = torch.randn(whole.shape[1], 3, dtype=torch.float64)
    monkeypatch.setattr(subspace, "NYSTROEM_BLOCK", 7)
    torch.testing.assert_close(features(X), whole)
    torch.testing.assert_close(features(X, projection), whole @ projection)
    torch.testing.assert_close(features.gram(X), whole.T @ whole)
    from_gram = subspace.NystroemMap(X, features.kernel, 12, torch.Generator().manual_seed(0))
    from_rows = subspace.ReducedLinearKernelMap(from_gram.features(X))
    torch.testing.assert_close(from_gram.reduced.squared_singular, from_rows.squared_singular)
    torch.testing.assert_close(from_gram.transform(X), from_rows.transform(from_gram.features(X)))
