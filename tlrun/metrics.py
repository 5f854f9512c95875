"""Scores of the zero-shot and clustering scenarios, from evaluation labels only.

- :func:`mean_per_class_accuracy`: the zero-shot protocol's top-1 accuracy (Xian et al., 2018), the mean over
  classes of each class's accuracy, ``(1/|C|) Σ_c |{i : y_i = c, ŷ_i = c}| / |{i : y_i = c}|``, so that large
  classes do not dominate.
- :func:`harmonic_mean`: GZSL's ``H = 2 · acc_seen · acc_unseen / (acc_seen + acc_unseen)``.
- :func:`clustering_accuracy`: ``max_π (1/n) Σ_i [y_i = π(c_i)]`` over one-to-one maps ``π`` from clusters to
  classes (the Hungarian algorithm on the contingency table).
- NMI and ARI come from scikit-learn (:func:`clustering_scores`).
- :func:`open_set_scores`: open-set DA's OS* (the mean accuracy over the ``K`` known classes), UNK (the accuracy on
  the unknown samples), OS (the mean over all ``K + 1`` classes) and the H-score ``2 · OS* · UNK / (OS* + UNK)``
  (Fu et al., ECCV 2020; Bucci et al., ECCV 2020); :func:`unknown_by_confidence` is the label-free rule that lets
  a method without an unknown output answer "unknown" (:func:`open_set_labels`).
- :func:`target_scores`: what a run (and ``tlrun evaluate``) logs of its target predictions, per kind of task.

Imports numpy only at module level.
"""

from __future__ import annotations

import numpy as np


def mean_per_class_accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    """The mean over the classes present in ``labels`` of the fraction of their samples predicted right (scikit-learn's
    balanced accuracy, without importing ``sklearn.metrics``: a quarter of a second at every run's end)."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.shape != predictions.shape or labels.size == 0:
        raise ValueError(f"mean_per_class_accuracy: {labels.shape} labels and {predictions.shape} predictions")
    _, class_of_sample = np.unique(labels, return_inverse=True)
    right = np.bincount(class_of_sample, weights=(predictions == labels).astype(np.float64))
    return float(np.mean(right / np.bincount(class_of_sample)))


#: A method without an unknown output answers "unknown" where its largest class probability is below this: 0.5,
#: the boundary OSBP trains its unknown probability to (Saito et al., ECCV 2018), on the maximum softmax probability,
#: the baseline score of Hendrycks & Gimpel (ICLR 2017). Fixed before any run; never tuned on target labels.
UNKNOWN_THRESHOLD = 0.5


def unknown_by_confidence(probabilities: np.ndarray, unknown: int, threshold: float = UNKNOWN_THRESHOLD) -> np.ndarray:
    """The argmax class of each row of ``probabilities`` ``(n, K)``, or ``unknown`` where its probability is below
    ``threshold``."""
    probabilities = np.asarray(probabilities)
    return np.where(probabilities.max(axis=1) < threshold, unknown, probabilities.argmax(axis=1)).astype(np.int64)


def open_set_labels(probabilities: np.ndarray, unknown: int, own_output: bool = False) -> np.ndarray:
    """Open-set DA's labels of class probabilities: the argmax of the ``K + 1`` columns of a method with an unknown
    output of its own (``own_output``, e.g. OSBP: the last column, label ``unknown``), else
    :func:`unknown_by_confidence` over the ``K`` known classes. A run's final scoring, its per-epoch ``target_acc``
    and oracle selection, and its logged model all answer these."""
    if own_output:
        return np.asarray(probabilities).argmax(axis=1).astype(np.int64)
    return unknown_by_confidence(probabilities, unknown)


def open_set_scores(labels: np.ndarray, predictions: np.ndarray, unknown: int) -> dict[str, float]:
    """Open-set DA's metrics of ``predictions`` (labels ``0..K-1`` the known classes, ``unknown`` = ``K``), each
    class's accuracy ``acc_c = |{i : y_i = c, ŷ_i = c}| / |{i : y_i = c}|`` over the classes present in ``labels``:

    - ``target_os_star``: OS* = mean of ``acc_c`` over the known classes (a known sample called unknown is wrong);
    - ``target_unk``: UNK = ``acc_K``, the share of unknown samples called unknown;
    - ``target_h_score``: ``H = 2 · OS* · UNK / (OS* + UNK)`` (Fu et al., ECCV 2020; Bucci et al., ECCV 2020);
    - ``target_acc``: OS = mean of ``acc_c`` over all classes, ``(K · OS* + UNK) / (K + 1)`` when every class is
      present (OSBP's measure).
    """
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    accuracy = {int(c): float(np.mean(predictions[labels == c] == c)) for c in np.unique(labels)}
    if unknown not in accuracy or len(accuracy) < 2:
        raise ValueError(f"open_set_scores: the labels need unknown samples (label {unknown}) and known ones")
    os_star = float(np.mean([value for c, value in accuracy.items() if c != unknown]))
    unk = accuracy[unknown]
    return {"target_acc": float(np.mean(list(accuracy.values()))), "target_os_star": os_star, "target_unk": unk,
            "target_h_score": harmonic_mean(os_star, unk)}


def harmonic_mean(seen: float, unseen: float) -> float:
    """``2 s u / (s + u)`` (0 when both are 0)."""
    return 0.0 if seen + unseen == 0 else 2.0 * seen * unseen / (seen + unseen)


def match_clusters(labels: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Cluster ids renamed to the labels of the best one-to-one matching (most samples agreeing); the samples
    of a cluster left unmatched (more clusters than labels) get ``-1``."""
    from scipy.optimize import linear_sum_assignment

    labels, clusters = np.asarray(labels), np.asarray(clusters)
    if labels.shape != clusters.shape or labels.size == 0:
        raise ValueError(f"match_clusters: {labels.shape} labels and {clusters.shape} cluster ids")
    label_ids, label_index = np.unique(labels, return_inverse=True)
    cluster_ids, cluster_index = np.unique(clusters, return_inverse=True)
    counts = np.zeros((len(cluster_ids), len(label_ids)), dtype=np.int64)
    np.add.at(counts, (cluster_index, label_index), 1)
    rows, columns = linear_sum_assignment(counts, maximize=True)
    renamed = np.full(len(cluster_ids), -1, dtype=np.int64)
    renamed[rows] = label_ids[columns]
    return renamed[cluster_index]


def clustering_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Accuracy under the best one-to-one matching of cluster ids to labels (:func:`match_clusters`)."""
    return float(np.mean(match_clusters(labels, clusters) == np.asarray(labels)))


def clustering_scores(labels: np.ndarray, clusters: np.ndarray) -> dict[str, float]:
    """``target_acc`` (:func:`clustering_accuracy`), ``nmi`` (arithmetic normalisation) and ``ari``."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    return {
        "target_acc": clustering_accuracy(labels, clusters),
        "nmi": float(normalized_mutual_info_score(labels, clusters)),
        "ari": float(adjusted_rand_score(labels, clusters)),
    }


def target_scores(task: str, labels: np.ndarray, predictions: np.ndarray, unknown: int | None = None
                  ) -> tuple[dict[str, float], np.ndarray]:
    """The target metrics of ``predictions`` for a ``task`` (see :data:`tlrun.predictor.TASKS`), and the predictions
    as classes: ``target_acc`` is the accuracy (``classify``), the mean per-class accuracy (``zeroshot``), or the
    clustering accuracy with ``nmi`` and ``ari`` (``cluster``, whose clusters are then renamed to their matched
    classes); ``target_mean_class_acc`` is the mean per-class accuracy of the predictions as classes. Open-set DA
    (``unknown``, the unknown class's label): OS and the other scores of :func:`open_set_scores`."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if unknown is not None:
        scores = open_set_scores(labels, predictions, unknown)
    elif task == "cluster":
        scores = clustering_scores(labels, predictions)
        predictions = match_clusters(labels, predictions)
    elif task == "zeroshot":
        scores = {"target_acc": mean_per_class_accuracy(labels, predictions)}
    else:
        scores = {"target_acc": float(np.mean(predictions == labels))}
    return scores | {"target_mean_class_acc": mean_per_class_accuracy(labels, predictions)}, predictions
