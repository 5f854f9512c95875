"""Self-taught learning (Raina, Battle, Lee, Packer & Ng, ICML 2007): a representation learned on unlabeled data
that need not share the target's classes or distribution, then a classifier on the codes of a few labeled target
samples.

1. Learn an encoder ``φ`` on the unlabeled source ``{x_s}`` (sparse coding by default; see
   :mod:`tlrun.methods.components.representations` for the objectives).
2. Encode the labeled target, ``z_i = φ(x_i)``, and train the classifier on ``{(z_i, y_i)}``.
3. Predict ``ŷ(x) = classifier(φ(x))``.

``encoder=none`` (``φ(x) = x``) is the raw-features baseline: the same classifier on the same labeled samples.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from tlrun.config import as_dicts, read_only
from tlrun.methods.base import Method, RunContext
from tlrun.methods.components.classifiers import DEFAULT_CLASSIFIER_OPTIONS, make_classifier
from tlrun.methods.components.representations import learn_and_encode, options_for
from tlrun.methods.settings import check_self_taught
from tlrun.scenarios import Labeled, TrainingData


#: The ``encoder_options`` default (conf/method/selftaught.yaml), chosen on the embedded digits.
ENCODER_OPTIONS = read_only({
    "sparse_coding": {"n_atoms": 32, "sparsity": 0.45, "positive": True, "patch_size": 3, "pool_grid": 3},
    "autoencoder": {"hidden": 128, "activation": "relu", "noise": 0.3, "sparsity": 0.02, "epochs": 100, "lr": 0.01},
    "pca": {"dim": 30},
    "none": {},
})


class SelfTaught(Method):
    """An encoder learned on the unlabeled source, then a classifier on the codes of the labeled target.

    Args:
        encoder: ``sparse_coding`` (Raina et al.), ``autoencoder``, ``pca`` or ``none`` (raw features, the baseline).
        encoder_options: keyword arguments per encoder (e.g. ``{"sparse_coding": {"n_atoms": 64}}``); only the
            chosen encoder's entry is used.
        classifier: the classifier on the codes (see :mod:`tlrun.methods.components.classifiers`); a linear SVM,
            as in the paper.
        classifier_options: keyword arguments per classifier (e.g. ``{"linear_svm": {"C": 1.0}}``).

    ``fit`` logs at ``step=0`` the encoder's fitting time (``encoder_fit_s``), and on the labeled target its
    relative reconstruction error, code size and fraction of zero codes (``target_reconstruction_error``,
    ``target_code_dim``, ``target_code_zero_fraction``); the autoencoder's loss per epoch as ``encoder_loss``.
    """

    def __init__(
        self,
        encoder: str = "sparse_coding",
        encoder_options: Mapping[str, Mapping[str, Any]] | None = ENCODER_OPTIONS,
        classifier: str = "linear_svm",
        classifier_options: Mapping[str, Mapping[str, Any]] | None = DEFAULT_CLASSIFIER_OPTIONS,
    ) -> None:
        check_self_taught(
            type(self).__name__, encoder=encoder, encoder_options=encoder_options, classifier=classifier,
            classifier_options=classifier_options,
        )
        self.encoder = encoder
        self.encoder_options = options_for(encoder, encoder_options, "encoder_options")
        self.classifier = classifier
        self.classifier_options = as_dicts(classifier_options)

    def fit(self, data: TrainingData, context: RunContext) -> None:
        if not isinstance(data.target, Labeled):
            raise ValueError(f"{type(self).__name__} needs labeled target samples (scenario selftaught)")
        self._encoder, codes, metrics = learn_and_encode(
            self.encoder, self.encoder_options, data.source.X, data.target.X, data.image_shape, context.seed,
            context.device, context.reporter,
        )
        self._classifier = make_classifier(
            self.classifier, device=context.device, options=self.classifier_options, seed=context.seed,
            num_classes=data.num_classes,
        )
        self._classifier.fit(codes, np.asarray(data.target.y))
        context.reporter.log_metrics(metrics, step=0)

    def predict(self, X: np.ndarray | tuple[str, ...]) -> np.ndarray:
        return self._classifier.predict(self._encoder.transform(np.asarray(X)))

    def predict_scores(self, X: np.ndarray | tuple[str, ...]) -> np.ndarray | None:
        return self._classifier.scores(self._encoder.transform(np.asarray(X)))
