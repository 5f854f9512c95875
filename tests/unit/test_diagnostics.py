"""The domain-gap diagnostics of tlrun.methods.components.diagnostics: the proxy A-distance, the embedding figure (by
principal components or t-SNE) and the ``diagnostics`` setting."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from tlrun.errors import TlrunError
from tlrun.methods.components.diagnostics import (EMBEDDING_PCA_DIMS, EMBEDDING_POINTS, diagnostics_embedding,
                                                   embedding_figure, principal_components, proxy_a_distance)


def gaussian(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)) + shift


def points_per_domain(axis) -> list[int]:
    return [len(collection.get_offsets()) for collection in axis.collections]


# --- proxy A-distance --------------------------------------------------------------------------------------------


def test_pad_is_near_0_for_one_distribution_and_near_2_for_separated_ones():
    assert proxy_a_distance(gaussian(200, 5, 0), gaussian(200, 5, 1)) < 0.3
    assert proxy_a_distance(gaussian(200, 5, 0), gaussian(150, 5, 1, shift=3.0)) > 1.9


def test_pad_is_deterministic_under_a_seed_and_caps_the_samples():
    source, target = gaussian(120, 4, 0), gaussian(90, 4, 1, shift=0.4)
    assert proxy_a_distance(source, target, seed=3) == proxy_a_distance(source, target, seed=3)
    assert proxy_a_distance(source, target, seed=3, max_samples=30) == proxy_a_distance(
        source, target, seed=3, max_samples=30
    )


def test_pad_works_on_tiny_inputs_and_checks_them():
    assert 0.0 <= proxy_a_distance(gaussian(5, 3, 0), gaussian(5, 3, 1, shift=2.0)) <= 2.0
    with pytest.raises(ValueError, match="at least 2 samples"):
        proxy_a_distance(gaussian(1, 3, 0), gaussian(5, 3, 1))
    with pytest.raises(ValueError, match="differ in size"):
        proxy_a_distance(gaussian(5, 3, 0), gaussian(5, 4, 1))


# --- embedding figure --------------------------------------------------------------------------------------------


def test_embedding_figure_has_one_panel_per_pair_and_every_point():
    after = (gaussian(30, 6, 0), gaussian(20, 6, 1, shift=1.0))
    figure = embedding_figure(after)
    assert isinstance(figure, Figure)
    assert len(figure.axes) == 1
    assert points_per_domain(figure.axes[0]) == [30, 20]
    assert figure.axes[0].get_title() == "after adaptation"
    assert [text.get_text() for text in figure.axes[0].get_legend().get_texts()] == ["source (30)", "target (20)"]

    before = (gaussian(25, 6, 2), gaussian(25, 6, 3, shift=3.0))
    figure = embedding_figure(after, before, titles=("raw", "adapted"))
    assert [axis.get_title() for axis in figure.axes] == ["raw", "adapted"]
    assert [points_per_domain(axis) for axis in figure.axes] == [[25, 25], [30, 20]]
    colors = [tuple(collection.get_facecolor()[0][:3]) for collection in figure.axes[0].collections]
    assert colors[0] != colors[1]


def test_embedding_figure_subsamples_to_max_points_in_all():
    figure = embedding_figure((gaussian(40, 5, 0), gaussian(8, 5, 1)), max_points=30, seed=1)
    assert points_per_domain(figure.axes[0]) == [15, 8]


def test_large_features_reach_tsne_subsampled_balanced_and_reduced_by_pca(monkeypatch):
    from sklearn.manifold import TSNE

    embedded = []

    def recorded(self, X):
        embedded.append(X.shape)
        return np.zeros((len(X), 2))

    monkeypatch.setattr(TSNE, "fit_transform", recorded)
    big = (gaussian(20_000, 256, 0), gaussian(20_000, 256, 1, shift=1.0))
    figure = embedding_figure(big, big, embedding="tsne")
    assert embedded == [(EMBEDDING_POINTS, EMBEDDING_PCA_DIMS)] * 2 and EMBEDDING_POINTS <= 2000
    assert [points_per_domain(axis) for axis in figure.axes] == [[EMBEDDING_POINTS // 2] * 2] * 2


@pytest.mark.parametrize("d", [1, 2])
def test_embedding_figure_plots_low_dimensional_features_directly(d):
    source, target = gaussian(5, d, 0), gaussian(5, d, 1, shift=2.0)
    axis = embedding_figure((source, target)).axes[0]
    heights = target[:, 1] if d == 2 else np.zeros(5)
    np.testing.assert_allclose(axis.collections[0].get_offsets()[:, 0], source[:, 0])
    np.testing.assert_allclose(axis.collections[1].get_offsets(), np.column_stack([target[:, 0], heights]))


@pytest.mark.parametrize("embedding", ["pca", "tsne"])
def test_embedding_figure_works_on_tiny_inputs(tmp_path, embedding):
    figure = embedding_figure((gaussian(5, 4, 0), gaussian(5, 4, 1)), (gaussian(2, 4, 2), gaussian(1, 4, 3)),
                              embedding=embedding)
    assert [points_per_domain(axis) for axis in figure.axes] == [[2, 1], [5, 5]]
    assert figure.axes[0].get_xlabel() == ("t-SNE 1" if embedding == "tsne" else "principal component 1")
    figure.savefig(tmp_path / "embedding.png")
    assert (tmp_path / "embedding.png").stat().st_size > 0


def test_the_default_map_is_the_first_two_principal_components_as_scikit_learn_finds_them():
    from sklearn.decomposition import PCA

    source, target = gaussian(40, 6, 0) * [5, 3, 1, 1, 1, 1], gaussian(30, 6, 1, shift=2.0)
    axis = embedding_figure((source, target)).axes[0]
    drawn = np.concatenate([collection.get_offsets() for collection in axis.collections])
    reference = PCA(2).fit_transform(np.concatenate([source, target]))
    np.testing.assert_allclose(np.abs(drawn), np.abs(reference), atol=1e-8)  # each component up to its sign
    # sklearn's variances divide by n - 1
    np.testing.assert_allclose(principal_components(source, 6).var(axis=0), PCA(6).fit(source).explained_variance_ * 39 / 40)


@pytest.mark.parametrize("setting,embedding", [(True, "pca"), (False, None), (None, None), ("pca", "pca"),
                                               ("tsne", "tsne")])
def test_the_diagnostics_setting_names_the_figures_map(setting, embedding):
    assert diagnostics_embedding(setting) == embedding


def test_an_unknown_diagnostics_setting_is_refused_with_the_choices():
    with pytest.raises(TlrunError, match="true, false or one of pca, tsne"):
        diagnostics_embedding("umap")


def test_a_bad_diagnostics_setting_opens_no_run(compose, mlflow_store):
    from mlflow.tracking import MlflowClient

    from tlrun.run import run

    with pytest.raises(TlrunError, match="diagnostics must be"):
        run(compose("method=no_adaptation", "diagnostics=umap", experiment="diagnostics-bad"))
    assert MlflowClient(tracking_uri=mlflow_store).get_experiment_by_name("diagnostics-bad") is None


@pytest.mark.parametrize("setting,embedding", [(True, "pca"), (False, None), ("tsne", "tsne")])
def test_a_run_context_reads_the_setting_as_written(setting, embedding):
    from tlrun.methods.base import NullReporter, RunContext

    assert RunContext(reporter=NullReporter(), diagnostics=setting).diagnostics == embedding
