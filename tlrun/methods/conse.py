"""ConSE: zero-shot learning by convex combination of semantic embeddings (Norouzi et al., ICLR 2014).

A classifier of the seen classes, ``p(y | x)``, is trained as usual: :class:`~tlrun.methods.source_only.SourceOnly`
(backbone → bottleneck → linear softmax, cross-entropy) on the seen classes, with the deep base's training recipe. A sample is then embedded in the space of the class
descriptions by the convex combination of the seen classes' embeddings, weighted by its ``T`` largest
probabilities (:func:`~tlrun.losses.ranking.conse_embedding`)::

    f(x) = (1/Z) Σ_{t=1..T} p(ŷ_t | x) s(ŷ_t),   Z = Σ_{t=1..T} p(ŷ_t | x)

and scored against every candidate class by cosine similarity, ``F(x, y) = cos(f(x), s(y))``: ZSL predicts the
unseen class whose embedding is nearest, GZSL compares every class (and ``calibration`` is subtracted from the
seen classes' scores, calibrated stacking). Training minimises only the classifier's cross-entropy on the seen
classes; no embedding is learned::

    L = −(1/n) Σ_n log p(y_n | x_n)

Where it differs from the paper: ``s(y)`` is the class signature of :class:`~tlrun.methods.base.ZeroShotMethod`
(the attribute vector, centred on the seen classes' mean when ``center_signatures``, scaled to unit length)
where the paper uses word2vec vectors of the class names (unit length, not centred), and the seen-class
classifier is trained here (by default an MLP on the given features) where the paper took an ImageNet CNN as
it was.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tlrun.losses.ranking import conse_embedding
from tlrun.methods.base import RunContext, ZeroShotMethod
from tlrun.methods.settings import check_conse
from tlrun.methods.source_only import SourceOnly
from tlrun.scenarios import ClassDescriptions, TrainingData


class ConSE(SourceOnly, ZeroShotMethod):
    """A seen-class softmax classifier whose top-``T`` probabilities mix the seen classes' embeddings (see the
    module docstring).

    Args:
        backbone, and every :class:`~tlrun.methods.deep.DeepMethod` argument (its defaults: the classifier is
            trained as every deep method's, ``conf/method_base/deep.yaml``).
        top: ``T``, how many of the largest seen-class probabilities weigh their classes' embeddings (the paper's
            10; fewer seen classes than ``T``: all of them).
        center_signatures: subtract the seen classes' mean class vector before scaling to unit length.
        calibration: GZSL calibrated stacking constant (subtracted from the seen classes' scores).
    """

    def __init__(
        self, backbone: nn.Module, top: int = 10, center_signatures: bool = True, calibration: float = 0.0, **deep: Any,
    ) -> None:
        super().__init__(backbone, **deep)
        check_conse(type(self).__name__, top=top, center_signatures=center_signatures, calibration=calibration)
        self.top = int(top)
        self.keep_signature_settings(center_signatures, calibration)

    def fit(self, data: TrainingData, context: RunContext) -> None:
        self.fit_signatures(data)
        super().fit(data, context)

    def class_scores(self, X: np.ndarray | tuple[str, ...], classes: ClassDescriptions) -> np.ndarray:
        """``cos(f(x), s(y))`` for every sample and every class of ``classes``."""
        if self.classifier is None or self._seen_signatures is None:
            raise RuntimeError(f"{type(self).__name__}.class_scores called before fit")
        probabilities, _ = self._outputs(X)
        embedded = conse_embedding(
            torch.as_tensor(probabilities, dtype=torch.float64), torch.as_tensor(self._seen_signatures), self.top
        )
        candidates = torch.as_tensor(self.signatures(classes), dtype=torch.float64)
        return F.cosine_similarity(embedded[:, None, :], candidates[None, :, :], dim=2, eps=1e-12).numpy()
