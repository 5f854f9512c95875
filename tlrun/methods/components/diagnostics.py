"""How far apart two domains are in a feature space, and a picture of it.

:func:`proxy_a_distance` measures the gap with a domain classifier (0: indistinguishable, 2: perfectly separable);
:func:`embedding_figure` draws a 2-D map of the source and target features, before and after adaptation: their
first two principal components (``pca``, the default: milliseconds) or a t-SNE embedding (``tsne``: about a second
per panel, the picture the DA papers show). Both take numpy arrays of shape ``(n, d)``, one row per sample, and
subsample large inputs with a seeded generator, so their cost is bounded whatever the data's size: at most
``max_samples`` rows per domain for the proxy A-distance, ``max_points`` per panel, reduced to
``EMBEDDING_PCA_DIMS`` principal components before t-SNE.

Imports numpy (and tlrun's error type) only at module level: scikit-learn and matplotlib are imported by the functions that use them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tlrun.errors import TlrunError

SOURCE_COLOR = "tab:blue"
TARGET_COLOR = "tab:orange"
PAD_C_GRID = (0.01, 0.1, 1.0, 10.0)
#: Points one t-SNE panel embeds at most, half from each domain (t-SNE's cost grows as n log n).
EMBEDDING_POINTS = 1000
#: Features wider than this are reduced to this many principal components before t-SNE.
EMBEDDING_PCA_DIMS = 50
#: t-SNE's gradient-descent iterations: scikit-learn's default 1000 reached a KL divergence within 4 % of 500's on
#: DANN's digits features (0.682 vs 0.706 before training, 0.558 vs 0.576 after) at twice the cost.
TSNE_ITERATIONS = 500
#: The 2-D maps :func:`embedding_figure` draws, and what the ``diagnostics`` setting names them.
EMBEDDINGS = ("pca", "tsne")
#: How each map names its axes.
AXIS_NAMES = {"pca": "principal component", "tsne": "t-SNE"}


def diagnostics_embedding(setting: Any) -> str | None:
    """The run's ``diagnostics`` setting read: ``None`` for ``false`` (no diagnostics), else the map the figure draws
    (``true``: ``pca``; or ``pca``, ``tsne`` by name)."""
    if setting is None or setting is False:
        return None
    if setting is True:
        return "pca"
    if str(setting) in EMBEDDINGS:
        return str(setting)
    raise TlrunError(f"diagnostics must be true, false or one of {', '.join(EMBEDDINGS)} (the figure's map), got "
                     f"{setting!r}")


def check_feature_pair(
    source: Any, target: Any, min_samples: int = 1, names: tuple[str, str] = ("source", "target")
) -> tuple[np.ndarray, np.ndarray]:
    """The two feature arrays as float64; a ``ValueError`` (naming them by ``names``) unless both are 2-D,
    finite, share their feature size and hold ``min_samples`` rows or more."""
    arrays = []
    for name, features in zip(names, (source, target)):
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"{name} features must be 2-D (samples × features), got shape {x.shape}")
        if x.shape[0] < min_samples:
            raise ValueError(f"{name} features need at least {min_samples} samples, got {x.shape[0]}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name} features contain NaN or infinite values")
        arrays.append(x)
    if arrays[0].shape[1] != arrays[1].shape[1]:
        raise ValueError(
            f"{names[0]} and {names[1]} features differ in size: "
            f"{arrays[0].shape[1]} vs {arrays[1].shape[1]} features"
        )
    return arrays[0], arrays[1]


def subsample_rows(x: np.ndarray, max_rows: int, rng: np.random.Generator) -> np.ndarray:
    """``x`` itself when it has at most ``max_rows`` rows, else ``max_rows`` of them drawn without replacement."""
    if max_rows < 1:
        raise ValueError(f"the number of samples kept must be at least 1, got {max_rows}")
    if len(x) <= max_rows:
        return x
    return x[np.sort(rng.choice(len(x), size=max_rows, replace=False))]


def proxy_a_distance(source_features: Any, target_features: Any, seed: int = 0, *, max_samples: int = 2000) -> float:
    """The proxy A-distance (Ben-David et al. 2007; Ganin et al. 2016)::

        PAD = 2 (1 − 2ε), clipped to [0, 2]

    with ``ε`` the test error of a linear classifier telling source from target. Both domains are first balanced
    to ``n = min(n_s, n_t, max_samples)`` samples each (seeded subsampling), then split half/half, stratified,
    into train and test. The classifier is a linear SVM (``LinearSVC``) on standardized features, its ``C``
    chosen from ``PAD_C_GRID`` by stratified cross-validation on the train half (Ganin et al. pick it by test
    error, which is optimistic); with fewer than 2 train samples per domain, ``C = 1``. Needs 2 samples per domain.
    """
    from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    source, target = check_feature_pair(source_features, target_features, min_samples=2)
    rng = np.random.default_rng(seed)
    n = min(len(source), len(target), max_samples)
    X = np.concatenate([subsample_rows(source, n, rng), subsample_rows(target, n, rng)])
    y = np.repeat([0, 1], n)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.5, stratify=y, random_state=seed)

    classifier = make_pipeline(StandardScaler(), LinearSVC(C=1.0, max_iter=10_000))
    folds = min(3, int(np.bincount(y_train).min()))
    if folds >= 2:
        classifier = GridSearchCV(
            classifier,
            {"linearsvc__C": list(PAD_C_GRID)},
            cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
        )
    classifier.fit(X_train, y_train)
    error = float(np.mean(classifier.predict(X_test) != y_test))
    return float(np.clip(2.0 * (1.0 - 2.0 * error), 0.0, 2.0))


def principal_components(X: np.ndarray, k: int) -> np.ndarray:
    """The rows of ``X`` projected on their first ``k`` principal components (centred; by SVD, no scikit-learn
    import), each component's sign fixed so that its largest loading is positive."""
    centred = X - X.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    components = components[:k]
    components *= np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])[:, None]
    return centred @ components.T


def embedding_coordinates(source: np.ndarray, target: np.ndarray, seed: int, embedding: str = "pca") -> tuple[np.ndarray, str]:
    """2-D coordinates of the pooled rows (source first) and how they were made: ``features``, ``pca`` or ``tsne``.

    Features with ``d ≤ 2`` are plotted as they are (``d = 1`` on a line at height 0). Otherwise ``pca`` projects the
    pooled rows on their first two principal components (:func:`principal_components`), and ``tsne`` reduces them
    to ``EMBEDDING_PCA_DIMS`` principal components when wider, then embeds them by t-SNE (``init="pca"``, seeded,
    ``TSNE_ITERATIONS`` iterations) with the perplexity clipped to ``min(30, (n − 1) / 3)`` so that tiny inputs work.
    t-SNE runs on one OpenMP thread: on 2 busy cores, two spinning threads took 2 to 4 times as long.
    """
    if embedding not in EMBEDDINGS:
        raise ValueError(f"embedding must be one of {', '.join(EMBEDDINGS)}, got {embedding!r}")
    pooled = np.concatenate([source, target]).astype(np.float64)
    if pooled.shape[1] <= 2:
        return np.column_stack([pooled, np.zeros((len(pooled), 2 - pooled.shape[1]))]), "features"
    if embedding == "pca":
        return principal_components(pooled, 2), "pca"
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    if pooled.shape[1] > EMBEDDING_PCA_DIMS:
        pooled = PCA(min(EMBEDDING_PCA_DIMS, len(pooled)), random_state=seed).fit_transform(pooled)
    perplexity = min(30.0, (len(pooled) - 1) / 3)
    tsne = TSNE(n_components=2, init="pca", perplexity=perplexity, max_iter=TSNE_ITERATIONS, random_state=seed)
    with threadpool_limits(1, user_api="openmp"):
        return tsne.fit_transform(pooled), "tsne"


def embedding_figure(
    after: tuple[Any, Any],
    before: tuple[Any, Any] | None = None,
    *,
    seed: int = 0,
    max_points: int = EMBEDDING_POINTS,
    titles: tuple[str, str] = ("before adaptation", "after adaptation"),
    embedding: str = "pca",
) -> Any:
    """A ``matplotlib.figure.Figure`` with one scatter panel per ``(source, target)`` feature pair.

    Panels: ``before`` (when given, titled ``titles[0]``) then ``after`` (``titles[1]``). Each domain is
    subsampled (seeded) to ``max_points // 2`` rows, so a panel shows at most ``max_points``, the pair is mapped
    to 2-D by ``embedding`` (``pca`` or ``tsne``, :func:`embedding_coordinates`; features with ``d ≤ 2`` are plotted
    directly), and source and target are drawn in two colours with a legend.
    Built without pyplot's global state, so it is safe under the Agg backend and needs no ``plt.close``.
    """
    from matplotlib.figure import Figure

    panels = ([(before, titles[0])] if before is not None else []) + [(after, titles[1])]
    figure = Figure(figsize=(5.0 * len(panels), 5.0), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    rng = np.random.default_rng(seed)
    for axis, ((source_features, target_features), title) in zip(axes, panels):
        source, target = check_feature_pair(source_features, target_features)
        source, target = (subsample_rows(x, max_points // 2, rng) for x in (source, target))
        coordinates, drawn_by = embedding_coordinates(source, target, seed, embedding)
        for points, color, label in (
            (coordinates[: len(source)], SOURCE_COLOR, f"source ({len(source)})"),
            (coordinates[len(source) :], TARGET_COLOR, f"target ({len(target)})"),
        ):
            axis.scatter(points[:, 0], points[:, 1], s=8, alpha=0.6, color=color, label=label, linewidths=0)
        axis.set_title(title)
        if drawn_by != "features":
            axis.set_xlabel(f"{AXIS_NAMES[drawn_by]} 1")
            axis.set_ylabel(f"{AXIS_NAMES[drawn_by]} 2")
            axis.set_xticks([])
            axis.set_yticks([])
        elif source.shape[1] == 2:
            axis.set_xlabel("feature 1")
            axis.set_ylabel("feature 2")
        else:
            axis.set_xlabel("feature")
            axis.set_yticks([])
        axis.legend(loc="best", markerscale=2)
    return figure
