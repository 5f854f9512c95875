"""Self-taught learning and the k-means baselines: the encoders learned on unlabeled data (sparse codes are sparse
and reconstruct, the autoencoder learns, every encoder repeats itself per seed), the methods on the embedded
digits with an unlabeled source, and their configuration errors."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from tlrun.config import instantiate, load_option, method_metadata, option_node
from tlrun.data.digits import Digits
from tlrun.methods.base import NullReporter, RunContext
from tlrun.methods.components.representations import ENCODERS, make_encoder
from tlrun.methods.kmeans import KMeansClustering
from tlrun.methods.selftaught import SelfTaught
from tlrun.scenarios import Labeled, TrainingData, Unlabeled

IMAGE_SHAPE = (1, 8, 8)
#: Sparse coding made quicker for tests: the dictionary learns from 5,000 random patches.
QUICK_SPARSE_CODING = {"max_patches": 5000}
QUICK_OPTIONS = {
    "none": {},
    "pca": {"dim": 10},
    "sparse_coding": QUICK_SPARSE_CODING,
    "autoencoder": {"epochs": 10},
}


class RecordingReporter(NullReporter):
    def __init__(self) -> None:
        self.metrics: list[tuple[int | None, dict[str, float]]] = []
        self.predictions: list[tuple[int, np.ndarray]] = []

    def log_metrics(self, metrics, step=None):
        self.metrics.append((step, dict(metrics)))

    def target_predictions(self, predictions, step):
        self.predictions.append((step, np.asarray(predictions)))


@pytest.fixture(scope="module")
def digits():
    """The unlabeled source half (domain original) and the target half under ``original`` and ``thick``."""
    data = Digits()
    return {
        "source": data.load("original", half="source").X,
        "original": data.load("original", half="target"),
        "thick": data.load("thick", half="target"),
    }


def labeled_split(y: np.ndarray, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` labeled indices of every class drawn from ``seed``, and the rest (the test set)."""
    rng = np.random.default_rng(seed)
    labeled = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == label))[:per_class] for label in np.unique(y)]))
    return labeled, np.setdiff1d(np.arange(len(y)), labeled)


def selftaught_data(source: np.ndarray, target_X: np.ndarray, target_y: np.ndarray) -> TrainingData:
    return TrainingData(Unlabeled(source), Labeled(target_X, target_y), 10, tuple("0123456789"), image_shape=IMAGE_SHAPE)


def test_sparse_codes_are_sparse_and_reconstruct_better_than_the_mean(digits):
    target = digits["original"].X[:200]
    for options in ({}, {"patch_size": None, "n_atoms": 64}):  # 3×3 patches, pooled; whole rows
        encoder = make_encoder("sparse_coding", seed=0, image_shape=IMAGE_SHAPE, **QUICK_SPARSE_CODING, **options)
        codes = encoder.fit(digits["source"]).transform(target)
        assert codes.shape == (200, 32 * 9 if not options else 64) and codes.min() >= 0  # positive codes by default
        assert np.mean(codes == 0) > 0.3
        # 1.0 would be no better than the trivial reconstruction, the mean of the unlabeled data
        assert encoder.reconstruction_error(target) < 0.3
        assert make_encoder("pca", dim=2).fit(digits["source"]).reconstruction_error(target) > 0.5  # for contrast


def test_patches_of_non_square_multichannel_images():
    """(2, 5, 7) images: 3 × 3 patches hold 18 values at 3 × 5 positions, pooled over 2 × 2 regions."""
    rng = np.random.default_rng(0)
    images = rng.random((40, 2 * 5 * 7))
    encoder = make_encoder("sparse_coding", seed=0, image_shape=(2, 5, 7), n_atoms=6, pool_grid=2).fit(images)
    assert encoder.dictionary.shape == (6, 18)
    assert encoder.transform(images[:3]).shape == (3, 6 * 4)
    patch = encoder._patches(images[:1])[0, 1, 2]  # the patch at row 1, column 2
    np.testing.assert_array_equal(patch, images[0].reshape(2, 5, 7)[:, 1:4, 2:5].ravel())


def test_autoencoder_reconstruction_error_falls_with_training(digits, one_torch_thread):
    source, target = digits["source"], digits["original"].X[:200]
    untrained = make_encoder("autoencoder", seed=0, epochs=1).fit(source)
    trained = make_encoder("autoencoder", seed=0, epochs=30).fit(source)
    assert len(trained.losses) == 30 and trained.losses[-1] < 0.5 * trained.losses[0]
    assert trained.reconstruction_error(target) < 0.6 * untrained.reconstruction_error(target)
    plain = make_encoder("autoencoder", seed=0, epochs=30, noise=0.0, sparsity=0.0, activation="sigmoid").fit(source)
    assert plain.reconstruction_error(target) < trained.reconstruction_error(target) < 1.0


@pytest.mark.parametrize("name", ENCODERS)
def test_encoders_are_deterministic_per_seed(name, digits, one_torch_thread):
    source, target = digits["source"][:300], digits["original"].X[:50]

    def codes(seed: int) -> np.ndarray:
        encoder = make_encoder(name, seed=seed, image_shape=IMAGE_SHAPE, **QUICK_OPTIONS[name])
        return encoder.fit(source).transform(target)

    np.testing.assert_array_equal(codes(0), codes(0))
    if name in ("sparse_coding", "autoencoder"):  # random initialisation and minibatches
        assert not np.array_equal(codes(0), codes(1))


def test_source_labels_are_never_needed(digits):
    """The source is Unlabeled (no label field); labels given anyway change nothing."""
    target = digits["original"]
    labeled, test = labeled_split(target.y, 2, seed=0)
    source = digits["source"][:300]
    predictions = []
    for source_split in (Unlabeled(source), Labeled(source, np.zeros(len(source), dtype=np.int64))):
        data = TrainingData(source_split, Labeled(target.X[labeled], target.y[labeled]), 10, tuple("0123456789"),
                            image_shape=IMAGE_SHAPE)
        method = SelfTaught(encoder="pca", encoder_options={"pca": {"dim": 10}})
        method.fit(data, RunContext(reporter=NullReporter()))
        predictions.append(method.predict(target.X[test]))
    np.testing.assert_array_equal(*predictions)
    assert not hasattr(Unlabeled(source), "y")


def test_selftaught_logs_its_encoder(digits, one_torch_thread):
    target = digits["original"]
    labeled, _ = labeled_split(target.y, 1, seed=0)
    reporter = RecordingReporter()
    method = SelfTaught(encoder="autoencoder", encoder_options={"autoencoder": {"epochs": 3}})
    method.fit(selftaught_data(digits["source"], target.X[labeled], target.y[labeled]), RunContext(reporter=reporter))
    assert [step for step, metrics in reporter.metrics if "encoder_loss" in metrics] == [0, 1, 2]
    final = reporter.metrics[-1][1]
    assert {"encoder_fit_s", "target_reconstruction_error", "target_code_dim", "target_code_zero_fraction"} <= set(final)
    assert final["target_code_dim"] == 128 and 0 < final["target_reconstruction_error"] < 1
    assert method.predict(target.X[:5]).dtype == np.int64


def mean_accuracy(encoder: str, options: dict, digits, domain: str, seeds: tuple[int, ...], test_size: int) -> float:
    """SelfTaught's mean accuracy over ``seeds`` with one label per class, on ``test_size`` of the other samples."""
    target = digits[domain]
    scores = []
    for seed in seeds:
        labeled, test = labeled_split(target.y, 1, seed)
        test = np.random.default_rng(seed).permutation(test)[:test_size]
        method = SelfTaught(encoder=encoder, encoder_options={encoder: options})
        data = selftaught_data(digits["source"], target.X[labeled], target.y[labeled])
        method.fit(data, RunContext(reporter=NullReporter(), seed=seed))
        scores.append(np.mean(method.predict(target.X[test]) == target.y[test]))
    return float(np.mean(scores))


def test_sparse_codes_beat_raw_pixels_with_one_label_per_class(digits):
    """The benchmark's claim in small: 300 test digits, 3 seeds (the benchmark: 5 points or more)."""
    raw = mean_accuracy("none", {}, digits, "original", seeds=(0, 1, 2), test_size=300)
    coded = mean_accuracy("sparse_coding", QUICK_SPARSE_CODING, digits, "original", seeds=(0, 1, 2), test_size=300)
    assert coded > raw + 0.04, (coded, raw)


@pytest.mark.slow
@pytest.mark.parametrize("domain", ["original", "thick"])
def test_sparse_codes_beat_raw_pixels_on_the_whole_target(domain, digits):
    """The default sparse coding (the dictionary learns from every source patch), the whole rest of the target."""
    raw = mean_accuracy("none", {}, digits, domain, seeds=(0, 1, 2, 3, 4), test_size=10_000)
    coded = mean_accuracy("sparse_coding", {}, digits, domain, seeds=(0, 1, 2, 3, 4), test_size=10_000)
    assert coded > raw + 0.02, (coded, raw)


def test_kmeans_without_representation_is_sklearn_kmeans(digits):
    from sklearn.cluster import KMeans

    target = digits["original"].X[:300]
    data = TrainingData(Unlabeled(digits["source"]), Unlabeled(target), 10, tuple("0123456789"), image_shape=IMAGE_SHAPE)
    reporter = RecordingReporter()
    method = KMeansClustering(n_init=3)
    method.fit(data, RunContext(reporter=reporter, seed=4))
    expected = KMeans(n_clusters=10, n_init=3, random_state=4).fit(target)
    [(step, assignments)] = reporter.predictions
    assert step == 0
    np.testing.assert_array_equal(assignments, expected.labels_)
    np.testing.assert_array_equal(method.predict(digits["thick"].X), expected.predict(digits["thick"].X))
    assert reporter.metrics[0][1]["kmeans_inertia"] == pytest.approx(expected.inertia_ / len(target))


@pytest.mark.parametrize("learn_on", ["source", "source_and_target"])
def test_kmeans_on_a_representation_learned_from_unlabeled_data(learn_on, digits):
    target = digits["thick"]
    data = TrainingData(Unlabeled(digits["source"]), Unlabeled(target.X), 10, tuple("0123456789"), image_shape=IMAGE_SHAPE)
    reporter = RecordingReporter()
    method = KMeansClustering(representation="pca", representation_options={"pca": {"dim": 20}}, n_clusters=12,
                              learn_representation_on=learn_on, n_init=2)
    method.fit(data, RunContext(reporter=reporter))
    [(_, assignments)] = reporter.predictions
    assert assignments.shape == (len(target.X),) and set(assignments) == set(range(12))
    np.testing.assert_array_equal(method.predict(target.X), assignments)  # nearest centroid in the representation
    assert reporter.metrics[0][1]["target_code_dim"] == 20


def test_configs_build_the_methods():
    selftaught = instantiate(OmegaConf.create(option_node("method", "selftaught")))
    assert isinstance(selftaught, SelfTaught) and selftaught.encoder == "sparse_coding"
    assert selftaught.encoder_options["n_atoms"] == 32
    kmeans = instantiate(load_option("method", "kmeans").method)
    assert isinstance(kmeans, KMeansClustering) and kmeans.representation == "none"
    assert method_metadata("selftaught")["scenarios"] == ["selftaught"]
    assert method_metadata("kmeans")["scenarios"] == ["selftaught_clustering"]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: make_encoder("ica"), "unknown encoder 'ica'; choose one of: none, pca, sparse_coding, autoencoder"),
        (lambda: make_encoder("pca", dims=3), "encoder 'pca' has no option 'dims'; its options: dim"),
        (lambda: make_encoder("none", dim=3), "takes no options"),
        (lambda: make_encoder("pca", dim=0), "dim must be an integer >= 1"),
        (lambda: make_encoder("sparse_coding", sparsity=0), "sparsity must be > 0"),
        (lambda: make_encoder("sparse_coding", patch_size=9, image_shape=IMAGE_SHAPE), "fewer than pool_grid"),
        (lambda: make_encoder("autoencoder", activation="tanh"), "unknown activation 'tanh'; choose one of: sigmoid, relu"),
        (lambda: make_encoder("autoencoder", noise=1.0), "noise must be in [0, 1)"),
        (lambda: SelfTaught(encoder="sparse"), "unknown encoder 'sparse'"),
        (lambda: SelfTaught(encoder_options={"sparse": {}}), "'sparse' is not one of: none, pca"),
        (lambda: SelfTaught(encoder_options={"sparse_coding": {"atoms": 3}}), "no option 'atoms'"),
        (lambda: SelfTaught(classifier="svm"), "unknown classifier 'svm'"),
        (lambda: KMeansClustering(representation="pca", representation_options={"pca": {"dim": -1}}), "dim must be"),
        (lambda: KMeansClustering(learn_representation_on="target"), "choose one of: source, source_and_target"),
        (lambda: KMeansClustering(n_clusters=1), "n_clusters must be an integer >= 2"),
        (lambda: KMeansClustering(n_init=0), "n_init must be an integer >= 1"),
    ],
)
def test_bad_options_raise_value_error(build, message):
    with pytest.raises(ValueError) as error:
        build()
    assert message in str(error.value)


def test_pca_dim_larger_than_the_data_is_refused():
    with pytest.raises(ValueError, match="exceeds min"):
        make_encoder("pca", dim=20).fit(np.zeros((10, 64)))
