"""STC: self-taught clustering (Dai, Yang, Xue & Yu, ICML 2008).

A small unlabeled target X is clustered with the help of unlabeled auxiliary (source) data S by co-clustering
both over one *shared* clustering of the features Z. Each non-negative data matrix, divided by its total, is a
joint distribution: ``p(X, Z)`` for the target, ``q(S, Z)`` for the source. The target clusters X̃ (``k``), the
source clusters S̃ and the feature clusters Z̃ minimise the mutual information the two co-clusterings lose::

    J = [I(X; Z) − I(X̃; Z̃)] + λ [I(S; Z) − I(S̃; Z̃)]
      = KL(p(X, Z) ‖ p̃(X, Z)) + λ KL(q(S, Z) ‖ q̃(S, Z)),     p̃(x, z) = p(x̃, z̃) p(x | x̃) p(z | z̃)

(``q̃`` likewise; the equality is shown by Dhillon, Mallela & Modha, KDD 2003, for the information-theoretic
co-clustering that STC extends). ``J`` is minimised by alternating over the three clusterings; each step is
exact for its clustering with the other two and ``p̃``, ``q̃`` held, and ``p̃``, ``q̃`` are then recomputed::

    x̃(x) = argmin_x̃ KL(p(Z | x) ‖ p̃(Z | x̃))  = argmin_x̃ −Σ_z̃ p(x, z̃) log p(z̃ | x̃)       every target sample
    s̃(s) = argmin_s̃ KL(q(Z | s) ‖ q̃(Z | s̃))  = argmin_s̃ −Σ_z̃ q(s, z̃) log q(z̃ | s̃)       every source sample
    z̃(z) = argmin_z̃ p(z) KL(p(X | z) ‖ p̃(X | z̃)) + λ q(z) KL(q(S | z) ‖ q̃(S | z̃))
         = argmin_z̃ −Σ_x̃ p(x̃, z) log p(x̃ | z̃) − λ Σ_s̃ q(s̃, z) log q(s̃ | z̃)            every feature

(``p̃(z | x̃) = p(z | z̃) p(z̃ | x̃)`` and ``p̃(x | z̃) = p(x | x̃) p(x̃ | z̃)``: the terms the right-hand sides drop
do not depend on the cluster chosen, so each step works on ``k × |Z̃|`` tables). ``J`` never increases: a step lowers
``Σ p(x) KL(p(Z | x) ‖ p̃(Z | x̃))``, the KL divergence to a distribution of the co-clustering's product form, and
recomputing ``p̃`` from the new clusters gives the closest such distribution (Dhillon et al.'s argument). A
cluster left empty by a step receives the member that fits its own cluster worst, taken from a cluster of two or
more: a split, which cannot lower ``I(X̃; Z̃)`` (nor ``I(S̃; Z̃)``), so every cluster survives and ``J`` still does
not rise. Ties keep the current cluster, and the iterations stop at a fixed point: when an iteration changes none
of the three clusterings.

Initialisation (``init``): ``kmeans`` (default) clusters the row-normalised target ``p(Z | x)`` and source
``q(Z | s)`` with k-means (scikit-learn, 10 restarts, seeded by the run's seed), then the features by k-means on
their profiles over those clusters, ``[p(X̃ | z), λ q(S̃ | z)]`` (so that with ``λ = 0`` the source has no say at
all); ``random`` deals each set into balanced random clusters (seeded likewise).

The data must be non-negative (counts, histograms: SURF bag-of-words with ``dataset.preprocess=none``, the
digits' pixels) and every sample must have a positive total (an all-zero row has no ``p(Z | x)``); both are
refused otherwise. Features that are zero in both domains carry no information: they are dropped, and
:meth:`SelfTaughtClustering.predict` ignores them.
"""

from __future__ import annotations

import numpy as np
import torch

from tlrun.errors import TlrunError
from tlrun.methods.base import Method, RunContext
from tlrun.methods.settings import check_self_taught_clustering
from tlrun.scenarios import TrainingData


def _merge_rows(matrix: torch.Tensor, assignment: torch.Tensor, count: int) -> torch.Tensor:
    """Row sums per cluster: ``(count, columns)``."""
    merged = torch.zeros(count, matrix.shape[1], dtype=matrix.dtype, device=matrix.device)
    return merged.index_add_(0, assignment, matrix)


def _merge_columns(matrix: torch.Tensor, assignment: torch.Tensor, count: int) -> torch.Tensor:
    """Column sums per cluster: ``(rows, count)``."""
    merged = torch.zeros(matrix.shape[0], count, dtype=matrix.dtype, device=matrix.device)
    return merged.index_add_(1, assignment, matrix)


def _conditional(joint: torch.Tensor) -> torch.Tensor:
    """Each row divided by its sum (a row summing to zero stays zero)."""
    totals = joint.sum(1, keepdim=True)
    return torch.where(totals > 0, joint / torch.where(totals > 0, totals, 1.0), 0.0)


def _mutual_information(joint: torch.Tensor) -> float:
    """``I`` of a joint distribution table (entries summing to 1), in nats."""
    independent = joint.sum(1, keepdim=True) * joint.sum(0, keepdim=True)
    ratio = torch.where(joint > 0, joint / torch.where(independent > 0, independent, 1.0), 1.0)
    return float(torch.xlogy(joint, ratio).sum())


def _cross_entropy(weights: torch.Tensor, probabilities: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``−Σ_j w_ij log p_cj`` for every row ``i`` of ``weights`` and cluster ``c`` (row of ``probabilities``),
    leaving out the zero ``p_cj``, and the weight ``Σ_j w_ij [p_cj = 0]`` that cluster cannot explain (the exact
    cost is +∞ when it is positive)."""
    impossible = probabilities == 0
    log_p = torch.where(impossible, 0.0, probabilities.log())
    return -(weights @ log_p.T), weights @ impossible.to(weights.dtype).T


def _negative_entropy(weights: torch.Tensor) -> torch.Tensor:
    """``Σ_j w_ij log(w_ij / Σ_j w_ij)`` per row: added to the cross entropy of its cluster, a row's KL term."""
    return torch.xlogy(weights, _conditional(weights)).sum(1)


def _best_clusters(cost: torch.Tensor, unexplained: torch.Tensor, current: torch.Tensor | None) -> torch.Tensor:
    """The cheapest cluster per row among those that explain the most of its weight (in training, the clusters of
    finite cost: the current one always is); the current cluster wins ties."""
    feasible = unexplained == unexplained.min(1, keepdim=True).values
    cost = torch.where(feasible, cost, torch.inf)
    best = cost.argmin(1)
    if current is None:
        return best
    stay = cost.gather(1, current[:, None])[:, 0] <= cost.gather(1, best[:, None])[:, 0]
    return torch.where(stay, current, best)


def _fill_empty(assignment: torch.Tensor, count: int, misfit: torch.Tensor) -> torch.Tensor:
    """Give every empty cluster the member of a cluster of two or more with the largest ``misfit``."""
    sizes = torch.bincount(assignment, minlength=count)
    if bool((sizes > 0).all()):
        return assignment
    assignment, misfit = assignment.clone(), misfit.clone()
    for empty in torch.nonzero(sizes == 0)[:, 0].tolist():
        movable = sizes[assignment] >= 2
        chosen = int(torch.where(movable, misfit, -torch.inf).argmax())
        sizes[assignment[chosen]] -= 1
        sizes[empty] = 1
        assignment[chosen] = empty
        misfit[chosen] = -torch.inf
    return assignment


def _sample_step(
    joint: torch.Tensor, rows: torch.Tensor, count: int, features: torch.Tensor, feature_count: int
) -> torch.Tensor:
    """New sample clusters: ``argmin_x̃ −Σ_z̃ p(x, z̃) log p(z̃ | x̃)`` per sample, then the empty clusters filled."""
    merged = _merge_columns(joint, features, feature_count)  # p(x, z̃)
    cost, unexplained = _cross_entropy(merged, _conditional(_merge_rows(merged, rows, count)))
    new = _best_clusters(cost, unexplained, rows)
    return _fill_empty(new, count, cost.gather(1, new[:, None])[:, 0] + _negative_entropy(merged))


def _feature_step(
    tables: tuple[torch.Tensor, torch.Tensor], weights: tuple[float, float], features: torch.Tensor, feature_count: int
) -> torch.Tensor:
    """New feature clusters: ``argmin_z̃ Σ_d w_d (−Σ_r p_d(r, z) log p_d(r | z̃))`` over the domains' ``(r, z)``
    tables of sample clusters × features, then the empty clusters filled."""
    cost = unexplained = misfit = 0.0
    for table, weight in zip(tables, weights):
        by_feature = table.T  # p(z, x̃)
        by_cluster = _conditional(_merge_rows(by_feature, features, feature_count))  # p(x̃ | z̃)
        domain_cost, domain_unexplained = _cross_entropy(by_feature, by_cluster)
        cost = cost + weight * domain_cost
        unexplained = unexplained + weight * domain_unexplained
        misfit = misfit + weight * _negative_entropy(by_feature)
    new = _best_clusters(cost, unexplained, features)
    return _fill_empty(new, feature_count, cost.gather(1, new[:, None])[:, 0] + misfit)


def _information_loss(
    joint: torch.Tensor, information: float, rows: torch.Tensor, count: int, features: torch.Tensor, feature_count: int
) -> float:
    """``I(X; Z) − I(X̃; Z̃)``, given ``information = I(X; Z)``."""
    return information - _mutual_information(_merge_columns(_merge_rows(joint, rows, count), features, feature_count))


def _check_counts(X: np.ndarray, role: str) -> np.ndarray:
    """``X`` as a float64 ``(n, d)`` array of non-negative, finite values, every row with a positive total."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise TlrunError(f"STC needs the {role} as an (n, d) feature matrix, got an array of shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise TlrunError(f"STC: the {role} features contain NaN or infinite values")
    lowest = float(X.min()) if X.size else 0.0
    if lowest < 0:
        raise TlrunError(
            f"STC needs non-negative features (counts, histograms): the {role} has negative values (minimum "
            f"{lowest:g}). Use counts or histograms as they are, with dataset.preprocess=none (centring or z-scoring "
            "makes features negative): e.g. the SURF bag-of-words of office_caltech10; the digits' pixels are "
            "non-negative too"
        )
    empty = np.flatnonzero(X.sum(1) == 0)
    if len(empty):
        raise TlrunError(
            f"STC: {len(empty)} {role} sample(s) are all zero (rows {', '.join(map(str, empty[:5]))}"
            f"{', ...' if len(empty) > 5 else ''}), so they have no feature distribution to cluster; drop them"
        )
    return X


class SelfTaughtClustering(Method):
    """Self-taught clustering: co-cluster the target and the source over shared feature clusters (see the
    module docstring for the objective and the updates).

    Args:
        n_clusters: ``k``, the number of target clusters; ``None``: the dataset's number of classes.
        feature_clusters: ``|Z̃|``, the number of feature clusters shared by the two co-clusterings.
        source_clusters: ``|S̃|``, the number of source clusters; ``None``: the same as ``n_clusters``.
        lamb: ``λ``, the weight of the source co-clustering's loss (0: the target co-clustered alone, i.e.
            information-theoretic co-clustering).
        iterations: the most iterations (each updates X̃, S̃, then Z̃); ``fit`` stops earlier at a fixed point.
        init: ``kmeans`` or ``random`` (see the module docstring).

    Monitoring: at ``step=0`` (the initial clusters) and after every iteration ``t`` (``step=t``):
    ``reporter.log_metrics`` with ``stc_objective`` (``J``), ``stc_target_loss`` (``I(X; Z) − I(X̃; Z̃)``),
    ``stc_source_loss`` (``I(S; Z) − I(S̃; Z̃)``, before the ``λ`` weight) and, from ``t = 1``, ``target_change``
    (the fraction of target samples that changed cluster), and ``reporter.target_predictions`` with the target
    clusters; at the end ``iterations_run``. After ``fit``, ``target_assignment``, ``source_assignment`` and
    ``feature_assignment`` hold the clusters (int64 arrays; the features' over all input columns, ``-1`` for the
    dropped all-zero ones).
    """

    def __init__(
        self,
        n_clusters: int | None = None,
        feature_clusters: int = 20,
        source_clusters: int | None = None,
        lamb: float = 1.0,
        iterations: int = 100,
        init: str = "kmeans",
    ) -> None:
        check_self_taught_clustering(
            type(self).__name__, n_clusters=n_clusters, feature_clusters=feature_clusters,
            source_clusters=source_clusters, lamb=lamb, iterations=iterations, init=init,
        )
        self.n_clusters = n_clusters
        self.feature_clusters = feature_clusters
        self.source_clusters = source_clusters
        self.lamb = float(lamb)
        self.iterations = iterations
        self.init = init

    def _initial_clusters(
        self, P: torch.Tensor, Q: torch.Tensor, k: int, k_source: int, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The target, source and feature clusters the iterations start from (see ``init``)."""
        if self.init == "random":  # balanced: every cluster starts with members
            rng = np.random.default_rng(seed)
            return tuple(
                torch.as_tensor(rng.permutation(np.arange(n) % count), device=P.device)
                for n, count in ((len(P), k), (len(Q), k_source), (P.shape[1], self.feature_clusters))
            )
        from sklearn.cluster import KMeans

        def kmeans(points: torch.Tensor, count: int) -> torch.Tensor:
            labels = KMeans(count, n_init=10, random_state=seed).fit_predict(points.cpu().numpy())
            return torch.as_tensor(labels, dtype=torch.int64, device=P.device)

        target, source = kmeans(_conditional(P), k), kmeans(_conditional(Q), k_source)
        profiles = torch.cat(  # [p(X̃ | z), λ q(S̃ | z)]: with λ = 0 the source has no say at all
            [_conditional(_merge_rows(P, target, k).T), self.lamb * _conditional(_merge_rows(Q, source, k_source).T)], 1
        )
        return target, source, kmeans(profiles, self.feature_clusters)

    def fit(self, data: TrainingData, context: RunContext) -> None:
        target_X, source_X = _check_counts(data.target.X, "target"), _check_counts(data.source.X, "source")
        if target_X.shape[1] != source_X.shape[1]:
            raise TlrunError(
                f"STC needs the same features in both domains: the target has {target_X.shape[1]}, the source "
                f"{source_X.shape[1]}"
            )
        self._kept = np.flatnonzero((target_X.sum(0) + source_X.sum(0)) > 0)
        k = self.n_clusters if self.n_clusters is not None else data.num_classes
        k_source = self.source_clusters if self.source_clusters is not None else k
        for name, count, available, what in (
            ("n_clusters", k, len(target_X), "target samples"),
            ("source_clusters", k_source, len(source_X), "source samples"),
            ("feature_clusters", self.feature_clusters, len(self._kept), "features that are not all zero"),
        ):
            if count > available:
                raise TlrunError(f"STC: method.{name}={count} exceeds the {available} {what}; lower it")
        self._device = torch.device(context.device)
        P = torch.as_tensor(target_X[:, self._kept], device=self._device)
        Q = torch.as_tensor(source_X[:, self._kept], device=self._device)
        P, Q = P / P.sum(), Q / Q.sum()
        information_P, information_Q = _mutual_information(P), _mutual_information(Q)
        feature_count = self.feature_clusters
        target, source, features = self._initial_clusters(P, Q, k, k_source, context.seed)

        def report(
            step: int, target: torch.Tensor, source: torch.Tensor, features: torch.Tensor, previous: torch.Tensor | None
        ) -> None:
            target_loss = _information_loss(P, information_P, target, k, features, feature_count)
            source_loss = _information_loss(Q, information_Q, source, k_source, features, feature_count)
            metrics = {
                "stc_objective": target_loss + self.lamb * source_loss,
                "stc_target_loss": target_loss,
                "stc_source_loss": source_loss,
            }
            if previous is not None:
                metrics["target_change"] = float((target != previous).double().mean())
            context.reporter.log_metrics(metrics, step=step)
            context.reporter.target_predictions(target.cpu().numpy(), step=step)

        report(0, target, source, features, None)
        for step in range(1, self.iterations + 1):
            before = (target, source, features)
            target = _sample_step(P, target, k, features, feature_count)
            source = _sample_step(Q, source, k_source, features, feature_count)
            tables = (_merge_rows(P, target, k), _merge_rows(Q, source, k_source))  # p(x̃, z), q(s̃, z)
            features = _feature_step(tables, (1.0, self.lamb), features, feature_count)
            report(step, target, source, features, before[0])
            if all(torch.equal(now, then) for now, then in zip((target, source, features), before)):
                break
        context.reporter.log_metrics({"iterations_run": step}, step=step)

        self._profiles = _conditional(_merge_columns(_merge_rows(P, target, k), features, feature_count))  # p(z̃|x̃)
        self._features = features
        self.target_assignment = target.cpu().numpy()
        self.source_assignment = source.cpu().numpy()
        self.feature_assignment = np.full(target_X.shape[1], -1, dtype=np.int64)
        self.feature_assignment[self._kept] = features.cpu().numpy()

    def predict(self, X: np.ndarray | tuple[str, ...]) -> np.ndarray:
        """The target cluster of each row ``x``: ``argmin_x̃ KL(p(Z̃ | x) ‖ p(Z̃ | x̃))``, the target step's rule with
        the final clusters (at convergence it reproduces the training target's final clusters). Where every
        cluster gives zero probability to a feature cluster ``x`` uses (an infinite KL; never on the training
        target), the clusters leaving the least of ``x``'s mass unexplained compete on the rest of the KL."""
        counts = _check_counts(X, "samples to predict")[:, self._kept]
        unseen = np.flatnonzero(counts.sum(1) == 0)
        if len(unseen):
            raise TlrunError(
                f"STC: {len(unseen)} sample(s) have counts only on features that were zero throughout training "
                f"(rows {', '.join(map(str, unseen[:5]))}{', ...' if len(unseen) > 5 else ''}); they cannot be "
                "clustered"
            )
        merged = _merge_columns(torch.as_tensor(counts, device=self._device), self._features, self._profiles.shape[1])
        cost, unexplained = _cross_entropy(merged, self._profiles)
        return _best_clusters(cost, unexplained, None).cpu().numpy().astype(np.int64)
