"""k-means baselines of self-taught clustering: k-means on the unlabeled target, in its raw features
(``representation=none``) or in a representation learned from unlabeled data (the source by default).

With codes ``z_i = φ(x_i)`` of the target samples, k-means minimises ``Σ_i min_k ‖z_i − μ_k‖²`` over the
centroids ``μ_1..μ_K`` (Lloyd's algorithm from k-means++ seeds, ``n_init`` restarts, scikit-learn, seeded by the
run's seed); a sample's cluster is its nearest centroid, ``c(x) = argmin_k ‖φ(x) − μ_k‖``.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from tlrun.config import read_only
from tlrun.errors import TlrunError
from tlrun.methods.base import Method, RunContext
from tlrun.methods.components.representations import learn_and_encode, options_for
from tlrun.methods.settings import check_kmeans_clustering
from tlrun.scenarios import TrainingData


#: The ``representation_options`` default (conf/method/kmeans.yaml).
REPRESENTATION_OPTIONS = read_only({
    "sparse_coding": {"n_atoms": 32, "sparsity": 0.45, "patch_size": 3, "pool_grid": 3},
    "autoencoder": {"hidden": 128, "noise": 0.3, "sparsity": 0.02},
    "pca": {"dim": 30},
    "none": {},
})


class KMeansClustering(Method):
    """k-means on the target's codes under a representation learned from unlabeled data.

    Args:
        representation: an encoder of :mod:`tlrun.methods.components.representations` (``none``: k-means on the
            raw target).
        representation_options: keyword arguments per encoder (e.g. ``{"pca": {"dim": 20}}``).
        learn_representation_on: ``source`` (the self-taught baseline: the representation never sees the
            target) or ``source_and_target`` (both unlabeled sets pooled).
        n_clusters: the number of clusters; ``None``: the number of classes.
        n_init: k-means restarts (the lowest objective is kept).
        max_iter: Lloyd iterations per restart.

    ``fit`` reports the target's cluster ids through ``context.reporter.target_predictions`` and logs at
    ``step=0`` the k-means objective per sample (``kmeans_inertia``), the encoder's fitting time and, on the
    target, its relative reconstruction error and code statistics (see
    :func:`tlrun.methods.components.representations.encoding_metrics`).
    """

    def __init__(
        self,
        representation: str = "none",
        representation_options: Mapping[str, Mapping[str, Any]] | None = REPRESENTATION_OPTIONS,
        learn_representation_on: str = "source",
        n_clusters: int | None = None,
        n_init: int = 10,
        max_iter: int = 300,
    ) -> None:
        check_kmeans_clustering(
            type(self).__name__, representation=representation, representation_options=representation_options,
            learn_representation_on=learn_representation_on, n_clusters=n_clusters, n_init=n_init, max_iter=max_iter,
        )
        self.representation = representation
        self.representation_options = options_for(representation, representation_options, "representation_options")
        self.learn_representation_on = learn_representation_on
        self.n_clusters, self.n_init, self.max_iter = n_clusters, n_init, max_iter

    def fit(self, data: TrainingData, context: RunContext) -> None:
        from sklearn.cluster import KMeans

        target = np.asarray(data.target.X)
        unlabeled = np.asarray(data.source.X)
        if self.learn_representation_on == "source_and_target":
            unlabeled = np.concatenate([unlabeled, target])
        self._encoder, codes, metrics = learn_and_encode(
            self.representation, self.representation_options, unlabeled, target, data.image_shape, context.seed,
            context.device, context.reporter,
        )
        clusters = self.n_clusters or data.num_classes
        if clusters > len(target):
            raise TlrunError(f"kmeans: {clusters} clusters for {len(target)} target samples; lower method.n_clusters")
        self._kmeans = KMeans(n_clusters=clusters, n_init=self.n_init, max_iter=self.max_iter, random_state=context.seed)
        assignments = self._kmeans.fit_predict(codes)
        metrics["kmeans_inertia"] = float(self._kmeans.inertia_) / len(target)
        context.reporter.log_metrics(metrics, step=0)
        context.reporter.target_predictions(assignments.astype(np.int64), step=0)

    def predict(self, X: np.ndarray | tuple[str, ...]) -> np.ndarray:
        return self._kmeans.predict(self._encoder.transform(np.asarray(X))).astype(np.int64)
