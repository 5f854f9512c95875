"""STC, self-taught clustering: the objective never increases, it is the J of the paper computed by hand from the
joint tables, every final cluster is the KL-nearest one of the full (unreduced) updates, shared feature clusters
learned on the source help a target too small to cluster alone, and bad input is refused with a clear message."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score
from threadpoolctl import threadpool_limits

from tlrun.errors import TlrunError
from tlrun.methods.base import RunContext
from tlrun.methods.stc import SelfTaughtClustering
from tlrun.scenarios import TrainingData, Unlabeled

from tests.helpers import shared_data


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread):
    """k-means (scikit-learn's OpenMP) and torch on one thread: ten times faster here than fighting a busy core."""
    with threadpool_limits(1):
        yield


class Recorder:
    """A reporter that keeps what the method logs."""

    def __init__(self) -> None:
        self.metrics: list[tuple[int | None, dict[str, float]]] = []
        self.predictions: list[tuple[int, np.ndarray]] = []

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.append((step, dict(metrics)))

    def target_predictions(self, predictions: np.ndarray, step: int) -> None:
        self.predictions.append((step, np.asarray(predictions)))

    def log_figure(self, figure, artifact_file: str) -> None:
        pass

    def series(self, name: str) -> list[float]:
        return [metrics[name] for _, metrics in self.metrics if name in metrics]


def _training(target: np.ndarray, source: np.ndarray, num_classes: int) -> TrainingData:
    return TrainingData(
        source=Unlabeled(source), target=Unlabeled(target), num_classes=num_classes,
        classes=tuple(str(c) for c in range(num_classes)),
    )


def _fit(
    method: SelfTaughtClustering, target: np.ndarray, source: np.ndarray, num_classes: int = 3, seed: int = 0
) -> Recorder:
    recorder = Recorder()
    method.fit(_training(target, source, num_classes), RunContext(reporter=recorder, seed=seed))
    return recorder


def clustering_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Accuracy under the best one-to-one matching of clusters to classes."""
    counts = np.zeros((clusters.max() + 1, labels.max() + 1))
    np.add.at(counts, (clusters, labels), 1)
    rows, columns = linear_sum_assignment(-counts)
    return counts[rows, columns].sum() / len(labels)


def _documents(
    rng: np.random.Generator, topics: np.ndarray, n: int, length: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` bags of ``length`` words: a class per document, a word group per word drawn from the class's row of
    ``topics``, a word uniformly from the group's ``width`` words."""
    labels = rng.integers(len(topics), size=n)
    counts = np.zeros((n, topics.shape[1] * width))
    for row, label in enumerate(labels):
        groups = rng.choice(topics.shape[1], size=length, p=topics[label])
        np.add.at(counts[row], groups * width + rng.integers(width, size=length), 1)
    return counts, labels


def _shared_word_groups(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Six groups of 20 words. Target: 30 documents of 6 words, 3 classes, each 80 % on two groups (too few words
    to tell which words go together); source: 400 documents of 40 words, 6 other classes, each 90 % on one group.
    Returns the target counts, its classes and the source counts."""
    rng = np.random.default_rng(seed)
    target_topics = np.full((3, 6), 0.05)
    for label in range(3):
        target_topics[label, [2 * label, 2 * label + 1]] = 0.4
    source_topics = np.full((6, 6), 0.02)
    np.fill_diagonal(source_topics, 0.9)
    target, labels = _documents(rng, target_topics, 30, 6, 20)
    source, _ = _documents(rng, source_topics, 400, 40, 20)
    return target, labels, source


def _assert_never_increases(recorder: Recorder) -> None:
    objective = np.array(recorder.series("stc_objective"))
    assert len(objective) >= 2
    assert np.all(np.diff(objective) <= 1e-12), np.diff(objective).max()


@pytest.mark.parametrize("init", ["kmeans", "random"])
def test_objective_never_increases_on_random_counts(init):
    rng = np.random.default_rng(3)
    target = rng.poisson(rng.gamma(0.3, 2.0, size=(40, 30)))
    source = rng.poisson(rng.gamma(0.3, 2.0, size=(60, 30)))
    target[:, 0] += 1  # no all-zero sample
    source[:, 0] += 1
    method = SelfTaughtClustering(n_clusters=5, feature_clusters=6, source_clusters=4, lamb=0.7, init=init)
    recorder = _fit(method, target, source)
    _assert_never_increases(recorder)
    assert len(recorder.series("stc_objective")) > 2  # it did move
    assert np.array_equal(np.unique(method.target_assignment), np.arange(5))  # no cluster lost
    assert np.array_equal(np.unique(method.feature_assignment), np.arange(6))


def test_objective_never_increases_and_converges_on_shared_word_groups():
    target, _, source = _shared_word_groups(seed=1)
    method = SelfTaughtClustering(feature_clusters=6, source_clusters=6, iterations=200)
    recorder = _fit(method, target, source)
    _assert_never_increases(recorder)
    iterations = recorder.series("iterations_run")[0]
    assert iterations < 200  # stopped at a fixed point
    assert recorder.series("target_change")[-1] == 0.0
    steps = [step for step, _ in recorder.predictions]
    assert steps == list(range(iterations + 1))
    assert np.array_equal(recorder.predictions[-1][1], method.target_assignment)
    assert np.array_equal(method.predict(target), method.target_assignment)


def test_a_cluster_left_empty_gets_a_sample():
    # Two distinct samples, three copies each, in three clusters: the first step merges the copies into two
    # clusters, and the third receives a sample (a split, so J cannot rise).
    target = np.array([[5, 1, 0, 0]] * 3 + [[0, 0, 1, 5]] * 3)
    source = np.array([[4, 2, 0, 0], [0, 0, 2, 4], [3, 3, 0, 0], [0, 1, 1, 4]])
    method = SelfTaughtClustering(n_clusters=3, feature_clusters=2, source_clusters=2, init="random")
    recorder = _fit(method, target, source)
    _assert_never_increases(recorder)
    assert np.array_equal(np.unique(method.target_assignment), np.arange(3))
    assert recorder.series("iterations_run")[0] < method.iterations


def _mutual_information(joint: np.ndarray) -> float:
    rows, columns = joint.sum(1), joint.sum(0)
    return sum(
        joint[i, j] * np.log(joint[i, j] / (rows[i] * columns[j]))
        for i in range(joint.shape[0]) for j in range(joint.shape[1]) if joint[i, j] > 0
    )


def _aggregate(joint: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    table = np.zeros((rows.max() + 1, columns.max() + 1))
    for i in range(joint.shape[0]):
        for j in range(joint.shape[1]):
            table[rows[i], columns[j]] += joint[i, j]
    return table


def _approximation(joint: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Dhillon et al.'s ``p̃(x, z) = p(x̃, z̃) p(x | x̃) p(z | z̃)``."""
    table = _aggregate(joint, rows, columns)
    row_mass, column_mass = joint.sum(1), joint.sum(0)
    cluster_rows, cluster_columns = table.sum(1), table.sum(0)
    return np.array([
        [table[rows[i], columns[j]] * row_mass[i] / cluster_rows[rows[i]] * column_mass[j] / cluster_columns[columns[j]]
         for j in range(joint.shape[1])]
        for i in range(joint.shape[0])
    ])


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask]))) if np.all(q[mask] > 0) else np.inf


def _assert_kl_nearest(method: SelfTaughtClustering, target: np.ndarray, source: np.ndarray) -> None:
    """At the fixed point, each sample's cluster minimises KL(p(Z | x) ‖ p̃(Z | x̃)) over the full features, with
    p̃(z | x̃) = p̃(x̃, z) / p(x̃), and each feature's minimises p(z) KL(p(X | z) ‖ p̃(X | z̃)) + λ q(z) KL(q(S | z) ‖
    q̃(S | z̃)): the paper's updates before any reduction to the cluster tables."""
    p, q = target / target.sum(), source / source.sum()
    x, s, z = method.target_assignment, method.source_assignment, method.feature_assignment
    p_tilde, q_tilde = _approximation(p, x, z), _approximation(q, s, z)
    for joint, approximation, rows in ((p, p_tilde, x), (q, q_tilde, s)):
        for i in range(len(joint)):
            kl = [
                _kl(joint[i] / joint[i].sum(), approximation[rows == c].sum(0) / approximation[rows == c].sum())
                for c in range(rows.max() + 1)
            ]
            assert kl[rows[i]] <= min(kl) + 1e-12
    def feature_term(joint: np.ndarray, approximation: np.ndarray, j: int, c: int) -> float:
        in_cluster = approximation[:, z == c]
        return joint[:, j].sum() * _kl(joint[:, j] / joint[:, j].sum(), in_cluster.sum(1) / in_cluster.sum())

    for j in range(p.shape[1]):
        cost = [
            feature_term(p, p_tilde, j, c) + method.lamb * feature_term(q, q_tilde, j, c) for c in range(z.max() + 1)
        ]
        assert cost[z[j]] <= min(cost) + 1e-12


def test_objective_is_the_information_loss_computed_by_hand():
    target = np.array([
        [3, 0, 1, 0, 2], [2, 1, 0, 0, 3], [0, 4, 0, 2, 0], [0, 3, 1, 3, 0], [1, 0, 5, 0, 1], [0, 1, 4, 1, 0],
    ])
    source = np.array([
        [4, 0, 0, 1, 3], [0, 5, 1, 4, 0], [1, 0, 6, 0, 0], [3, 1, 0, 0, 4], [0, 2, 3, 2, 1], [0, 4, 0, 5, 1], [2, 0, 3, 0, 2],
    ])
    lamb = 0.5
    method = SelfTaughtClustering(n_clusters=3, feature_clusters=3, source_clusters=3, lamb=lamb, init="random")
    recorder = _fit(method, target, source, seed=2)
    assert recorder.series("iterations_run")[0] < method.iterations
    p, q = target / target.sum(), source / source.sum()
    x, s, z = method.target_assignment, method.source_assignment, method.feature_assignment
    target_loss = _mutual_information(p) - _mutual_information(_aggregate(p, x, z))
    source_loss = _mutual_information(q) - _mutual_information(_aggregate(q, s, z))
    assert target_loss == pytest.approx(_kl(p, _approximation(p, x, z)), abs=1e-12)  # the loss is KL(p ‖ p̃)
    assert source_loss == pytest.approx(_kl(q, _approximation(q, s, z)), abs=1e-12)
    assert recorder.series("stc_target_loss")[-1] == pytest.approx(target_loss, abs=1e-12)
    assert recorder.series("stc_source_loss")[-1] == pytest.approx(source_loss, abs=1e-12)
    assert recorder.series("stc_objective")[-1] == pytest.approx(target_loss + lamb * source_loss, abs=1e-12)
    _assert_kl_nearest(method, target, source)


@pytest.mark.parametrize("seed", range(12))
def test_final_clusters_are_kl_nearest_and_objective_never_increases_on_tiny_random_counts(seed):
    rng = np.random.default_rng(seed)
    target, source = rng.poisson(rng.gamma(0.5, 2.0, size=(10, 8))), rng.poisson(rng.gamma(0.5, 2.0, size=(14, 8)))
    target[:, 0] += 1
    source[:, 0] += 1
    lamb = (0.3, 3.0)[seed % 2]
    method = SelfTaughtClustering(n_clusters=3, feature_clusters=3, source_clusters=3, lamb=lamb, init="random")
    recorder = _fit(method, target, source, seed=seed)
    assert recorder.series("iterations_run")[0] < method.iterations
    _assert_never_increases(recorder)
    _assert_kl_nearest(method, target, source)


def test_without_lamb_the_source_has_no_say():
    target, _, source = _shared_word_groups(seed=0)
    other_source = np.random.default_rng(1).poisson(1.0, size=(50, target.shape[1])) + 1
    clusters = []
    for auxiliary in (source, other_source):
        method = SelfTaughtClustering(feature_clusters=6, lamb=0.0)
        recorder = _fit(method, target, auxiliary)
        clusters.append((method.target_assignment, method.feature_assignment, recorder.series("stc_target_loss")))
    assert np.array_equal(clusters[0][0], clusters[1][0]) and np.array_equal(clusters[0][1], clusters[1][1])
    assert clusters[0][2] == clusters[1][2]


def test_source_feature_clusters_beat_kmeans_on_a_small_noisy_target():
    stc, target_alone, kmeans = [], [], []
    for seed in range(4):
        target, labels, source = _shared_word_groups(seed)
        for lamb, scores in ((1.0, stc), (0.0, target_alone)):
            method = SelfTaughtClustering(feature_clusters=6, source_clusters=6, lamb=lamb)
            _fit(method, target, source, seed=seed)
            scores.append(clustering_accuracy(labels, method.target_assignment))
        kmeans.append(clustering_accuracy(labels, KMeans(3, n_init=10, random_state=seed).fit_predict(target)))
    assert np.mean(stc) > np.mean(kmeans) + 0.15, (stc, kmeans)
    assert np.mean(stc) > np.mean(target_alone) + 0.15, (stc, target_alone)  # the gain comes from the source


def test_predict_ignores_features_never_seen_and_defaults_follow_the_data():
    target, _, source = _shared_word_groups(seed=0)
    target, source = np.hstack([target, np.zeros((len(target), 2))]), np.hstack([source, np.zeros((len(source), 2))])
    method = SelfTaughtClustering(feature_clusters=6)
    _fit(method, target, source, num_classes=3)
    assert np.all(method.feature_assignment[-2:] == -1)
    assert np.array_equal(np.unique(method.target_assignment), np.arange(3))  # n_clusters = num_classes
    assert np.array_equal(np.unique(method.source_assignment), np.arange(3))  # source_clusters = n_clusters
    shifted = target.copy()
    shifted[:, -2:] = 7.0  # counts on features that were zero in training change nothing
    assert np.array_equal(method.predict(shifted), method.predict(target))
    assert method.predict(target).dtype == np.int64


@pytest.mark.parametrize("side", ["target", "source"])
def test_negative_features_are_refused_with_what_to_do(side):
    target, _, source = _shared_word_groups(seed=0)
    arrays = {"target": target, "source": source}
    arrays[side] = arrays[side] - 0.5
    message = rf"non-negative features \(counts, histograms\).*{side}.*minimum -0\.5.*dataset\.preprocess=none"
    with pytest.raises(TlrunError, match=message):
        _fit(SelfTaughtClustering(feature_clusters=6), arrays["target"], arrays["source"])


def test_all_zero_samples_and_too_many_clusters_are_refused():
    target, _, source = _shared_word_groups(seed=0)
    empty = target.copy()
    empty[[3, 7]] = 0
    with pytest.raises(TlrunError, match=r"2 target sample\(s\) are all zero \(rows 3, 7\)"):
        _fit(SelfTaughtClustering(feature_clusters=6), empty, source)
    with pytest.raises(TlrunError, match=r"method.n_clusters=31 exceeds the 30 target samples"):
        _fit(SelfTaughtClustering(n_clusters=31, feature_clusters=6), target, source)
    with pytest.raises(TlrunError, match=r"method.feature_clusters=200 exceeds the 120 features"):
        _fit(SelfTaughtClustering(feature_clusters=200), target, source)
    method = SelfTaughtClustering(feature_clusters=6)
    _fit(method, target, source)
    with pytest.raises(TlrunError, match="non-negative"):
        method.predict(-target)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"n_clusters": 1}, "n_clusters must be an integer >= 2 or None"),
        ({"n_clusters": 2.5}, "n_clusters must be"),
        ({"n_clusters": True}, "n_clusters must be"),
        ({"feature_clusters": 1}, "feature_clusters must be an integer >= 2"),
        ({"feature_clusters": None}, "feature_clusters must be"),
        ({"source_clusters": 0}, "source_clusters must be an integer >= 2 or None"),
        ({"lamb": -0.1}, "lamb must be a finite number >= 0"),
        ({"lamb": float("nan")}, "lamb must be"),
        ({"lamb": "1"}, "lamb must be"),
        ({"iterations": 0}, "iterations must be an integer >= 1"),
        ({"init": "spectral"}, "init must be one of kmeans, random"),
    ],
)
def test_bad_hyperparameters_raise_value_error(arguments, message):
    with pytest.raises(ValueError, match=message):
        SelfTaughtClustering(**arguments)


SURF = shared_data() / "office_caltech10_surf"


@pytest.mark.skipif(not SURF.is_dir(), reason="Office+Caltech10 SURF features not in ../shared/data")
def test_stc_beats_kmeans_on_office_caltech_dslr_helped_by_amazon():
    from tlrun.data.features import OfficeCaltech10

    dataset = OfficeCaltech10(root=str(SURF), source="amazon", target="dslr", features="surf", preprocess="none")
    source, target = dataset.load("amazon"), dataset.load("dslr")
    scores: dict[str, list[tuple[float, float]]] = {"stc": [], "kmeans": []}
    for seed in range(3):
        method = SelfTaughtClustering()  # the defaults: λ = 1, 20 feature clusters
        _fit(method, target.X, source.X, num_classes=10, seed=seed)
        for name, clusters in (
            ("stc", method.target_assignment),
            ("kmeans", KMeans(10, n_init=10, random_state=seed).fit_predict(target.X)),
        ):
            scores[name].append((clustering_accuracy(target.y, clusters), normalized_mutual_info_score(target.y, clusters)))
    (stc_accuracy, stc_nmi), (kmeans_accuracy, kmeans_nmi) = np.mean(scores["stc"], 0), np.mean(scores["kmeans"], 0)
    assert stc_accuracy > kmeans_accuracy + 0.03 and stc_nmi > kmeans_nmi + 0.03, scores
