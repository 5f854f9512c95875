"""JDA: joint distribution adaptation (Long, Wang, Ding, Sun & Yu, ICCV 2013).

JDA finds a ``k``-dimensional embedding in which both the marginal distributions of source and target and their
class-conditional distributions are close in MMD, while the embedded data keep their variance::

    min_A  tr(Aᵀ K (M_0 + Σ_c M_c) Kᵀ A) + λ ‖A‖²_F      s.t.   Aᵀ K H Kᵀ A = I

``M_0`` compares the domain means, ``M_c`` the means of class ``c`` (target classes from pseudo-labels). The
target has no labels, so JDA iterates: embed, train the classifier on the embedded source, pseudo-label the
target, rebuild ``M``; the first iteration has no pseudo-labels and is marginal-only (that is TCA,
:mod:`tlrun.methods.tca`). The solver and its speed-ups are in :mod:`tlrun.methods.subspace`.

The protocol of the authors' released code: each sample is L2-normalised (source and target
stacked), ``M`` is divided by its Frobenius norm, the eigenvectors are scaled to unit 2-norm, the embedded
samples are L2-normalised again, and the classifier (1-NN in the paper) runs from embedded source to embedded
target. With ``kernel="linear"``, ``dim=100``, ``lamb=1``, ``iterations=10`` on the SURF features of
Office+Caltech10 it reproduces the paper's Table 2 to the sample. One deliberate difference: a class that no
target sample is pseudo-labelled with adds nothing to ``M`` (the released code keeps a source-only term for it);
it changes none of the 12 published tasks.

The iterations stop early at a fixed point (pseudo-labels unchanged: every later iteration would repeat the
last one exactly); ``iterations_run`` is logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from tlrun.config import as_dicts
from tlrun.methods.base import Method, RunContext
from tlrun.methods.components.classifiers import DEFAULT_CLASSIFIER_OPTIONS, make_classifier, stacked_float64
from tlrun.methods.settings import check_jda, check_mmd_subspace_method
from tlrun.methods.subspace import (
    l2_normalize_rows,
    make_feature_map,
    mmd_factor,
    mmd_of,
    nystroem_landmarks,
    solve_mmd_subspace,
)
from tlrun.scenarios import Labeled, TrainingData


class MMDSubspaceMethod(Method):
    """The MMD subspace methods (TCA, JDA), transductive, with out-of-sample prediction: ``iterations`` rounds of
    embedding, training the classifier on the embedded source and pseudo-labelling the target.

    Args:
        kernel: ``linear`` (the ``n × n`` kernel form, solved exactly in its rank), ``primal`` (a projection of
            the inputs, ``d × d``) or ``rbf`` (``exp(−γ‖x − y‖²)``, ``n × n``).
        dim: ``k``, the dimension of the embedding. When the problem has fewer directions of non-zero centred
            variance (e.g. ``dim=100`` on 64 features), ``fit`` uses all of them and logs how many as the metric
            ``effective_dim``.
        lamb: ``λ``, the weight of the ``‖A‖²_F`` regulariser.
        gamma: ``γ`` of the ``rbf`` kernel (unused otherwise).
        approx: how the ``rbf`` kernel is computed: ``none`` (exactly, ``n × n``), ``nystroem`` (a Nyström map of
            ``rank`` landmarks drawn with the run's seed, ``n × rank``: ``O(n · rank²)``), or ``auto`` (exactly up
            to :data:`~tlrun.methods.settings.AUTO_EXACT_LIMIT` samples, source + target, by Nyström above, said
            on stderr). ``primal`` and ``linear`` are exact at linear cost and ignore it.
        rank: the number of Nyström landmarks (all samples when there are fewer: the exact kernel).
        iterations: ``T``, rounds of embedding and pseudo-labelling (1 = marginal only).
        classifier: the classifier on the embedding (see :mod:`tlrun.methods.components.classifiers`); it also
            gives the pseudo-labels.
        classifier_options: keyword arguments per classifier (e.g. ``{"logreg": {"C": 1.0}}``).

    Monitoring: ``reporter.log_metrics({"effective_dim": k_used}, step=0)``, the dimension actually used, and
    ``approx_rank`` (the landmarks) when the kernel is approximated; at
    every iteration ``t = 0 … T−1``: ``reporter.target_predictions(pseudo_labels, step=t)`` and
    ``reporter.log_metrics`` with ``mmd_input`` (``tr(Xᵀ M X)`` of the normalised inputs), ``mmd_embedding``
    (``tr(Zᵀ M Z)`` of the embedding the classifier sees, same ``M``), ``objective`` (``Σ φ_j`` of the ``k``
    eigenvalues) and ``pseudo_label_change`` (the fraction of target pseudo-labels that changed, from ``t = 1``).
    When no pseudo-label changes, the iterations have reached their fixed point (the next ``M`` would be the
    same) and ``fit`` stops early with the result the remaining iterations would repeat.
    """

    def __init__(
        self, kernel: str, dim: int, lamb: float, gamma: float, approx: str, rank: int, iterations: int,
        classifier: str, classifier_options: Mapping[str, Any] | None,
    ) -> None:
        check_mmd_subspace_method(
            type(self).__name__, kernel=kernel, dim=dim, lamb=lamb, gamma=gamma, approx=approx, rank=rank,
            classifier=classifier, classifier_options=classifier_options,
        )
        self.kernel = kernel
        self.dim = dim
        self.lamb = lamb
        self.gamma = gamma
        self.approx = approx
        self.rank = rank
        self.iterations = iterations
        self.classifier = classifier
        self.classifier_options = as_dicts(classifier_options)

    def _features(self, X: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``f(x)`` of the L2-normalised samples (the rows of ``F``)."""
        return self._map.transform(l2_normalize_rows(stacked_float64([X], self._device), in_place=True))

    def _embed(self, features: torch.Tensor) -> torch.Tensor:
        """The L2-normalised embedding ``Z = F B`` the classifier works on."""
        return l2_normalize_rows(features @ self._projection)

    def fit(self, data: TrainingData, context: RunContext) -> None:
        if not isinstance(data.source, Labeled):
            raise ValueError(f"{type(self).__name__} needs a labeled source")
        self._device = torch.device(context.device)
        source_labels = np.asarray(data.source.y, dtype=np.int64)
        n_target = len(data.target)
        normalized = l2_normalize_rows(stacked_float64([data.source.X, data.target.X], self._device), in_place=True)
        self._map = make_feature_map(self.kernel, normalized, self.gamma, self._landmarks(len(normalized), context),
                                     context.seed)
        features = self._map.transform(normalized)
        source_features, target_features = features[: len(source_labels)], features[len(source_labels) :]
        centered = self._map.centered_gram(features)

        dim = self.dim
        pseudo_labels: np.ndarray | None = None
        for step in range(self.iterations):
            factor = mmd_factor(source_labels, n_target, data.num_classes, pseudo_labels, self._device)
            solution = solve_mmd_subspace(features, factor, self.lamb, dim, centered, at_most=True)
            if step == 0:
                dim = solution.coefficients.shape[1]  # the rank of Fᵀ H F: the same at every iteration
                # dim is an upper bound (the papers' k = 100 exceeds the 64 pixels of the default digits): the
                # subspace takes every direction there is, recorded as effective_dim.
                context.reporter.log_metrics({"effective_dim": dim}, step=0)
            self._projection = solution.unit_norm()
            source_embedding, target_embedding = self._embed(source_features), self._embed(target_features)
            self._classifier = make_classifier(
                self.classifier, device=self._device, options=self.classifier_options, seed=context.seed,
                num_classes=data.num_classes,
            )
            self._classifier.fit(source_embedding, source_labels)
            new_labels = self._classifier.predict(target_embedding)

            metrics = {
                "mmd_input": mmd_of(normalized, factor),
                "mmd_embedding": mmd_of(torch.cat([source_embedding, target_embedding]), factor),
                "objective": float(solution.eigenvalues.sum()),
            }
            if pseudo_labels is not None:
                metrics["pseudo_label_change"] = float(np.mean(new_labels != pseudo_labels))
            context.reporter.log_metrics(metrics, step=step)
            context.reporter.target_predictions(new_labels, step=step)
            if pseudo_labels is not None and np.array_equal(new_labels, pseudo_labels):
                break  # a fixed point: the next M, hence every later iteration, would repeat this one exactly
            pseudo_labels = new_labels
        context.reporter.log_metrics({"iterations_run": step + 1}, step=step)
        self.fitted_target_labels = new_labels

    def _landmarks(self, n_samples: int, context: RunContext) -> int | None:
        """The Nyström landmarks for ``n_samples`` (``None``: the exact kernel), logged as ``approx_rank``."""
        landmarks = nystroem_landmarks(type(self).__name__, self.kernel, self.approx, self.rank, n_samples)
        if landmarks is not None:
            context.reporter.log_metrics({"approx_rank": landmarks}, step=0)
        return landmarks

    def predict(self, X: np.ndarray | tuple[str, ...]) -> np.ndarray:
        """Labels of new samples: embedded through the kernel against the training samples, then classified.

        For the training target samples this repeats the last iteration's computation, so it gives the
        transductive labels.
        """
        return self._classifier.predict(self._embed(self._features(X)))

    def predict_scores(self, X: np.ndarray | tuple[str, ...]) -> np.ndarray | None:
        return self._classifier.scores(self._embed(self._features(X)))


class JDA(MMDSubspaceMethod):
    """Joint distribution adaptation: :class:`MMDSubspaceMethod` over ``iterations`` rounds, the class-conditional
    MMD terms from the second on.

    Args:
        kernel, dim, lamb, gamma, approx, rank, iterations, classifier, classifier_options: as for
            :class:`MMDSubspaceMethod`.
    """

    def __init__(
        self,
        kernel: str = "linear",
        dim: int = 100,
        lamb: float = 1.0,
        gamma: float = 1.0,
        approx: str = "auto",
        rank: int = 1000,
        iterations: int = 10,
        classifier: str = "1nn",
        classifier_options: Mapping[str, Any] | None = DEFAULT_CLASSIFIER_OPTIONS,
    ) -> None:
        super().__init__(
            kernel=kernel, dim=dim, lamb=lamb, gamma=gamma, approx=approx, rank=rank, iterations=iterations,
            classifier=classifier, classifier_options=classifier_options,
        )
        check_jda(type(self).__name__, iterations=iterations)
