"""Conditional Domain Adversarial Network (CDAN, Long et al. 2018): DANN with a discriminator conditioned on the
classifier's predictions, and entropy-weighted samples (CDAN+E)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tlrun.losses import RandomizedMultilinearMap, conditional_adversarial_loss
from tlrun.methods.adaptation import DomainBatch
from tlrun.methods.dann import DANN
from tlrun.methods.settings import check_cdan
from tlrun.scenarios import TrainingData

#: Above this size of f ⊗ g the randomized multilinear map is used when ``randomized=auto`` (as in the paper).
MULTILINEAR_MAX_DIM = 4096


class CDAN(DANN):
    """DANN whose discriminator reads the multilinear map ``T(f, g) = f ⊗ g`` of the features ``f`` and the
    predicted class probabilities ``g`` (or its randomized approximation ``(R_f f) ⊙ (R_g g) / √m`` when
    ``d·C`` is large), so that it aligns the joint distribution of features and classes. With
    ``entropy_conditioning`` each sample's domain loss is weighted by ``1 + exp(−H(g))``, favouring confident
    predictions (see :func:`tlrun.losses.conditional_adversarial_loss`).

    Args:
        entropy_conditioning: CDAN+E (true) or CDAN (false).
        randomized: ``auto`` (randomized when ``d·C > 4096``), ``true`` or ``false``.
        randomized_dim: ``m``, the output size of the randomized map.
        **kwargs: those of :class:`~tlrun.methods.dann.DANN`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        entropy_conditioning: bool = True,
        randomized: bool | str = "auto",
        randomized_dim: int = 1024,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, **kwargs)
        check_cdan(
            type(self).__name__, entropy_conditioning=entropy_conditioning, randomized=randomized,
            randomized_dim=randomized_dim,
        )
        self.entropy_conditioning = bool(entropy_conditioning)
        self.randomized = randomized
        self.randomized_dim = int(randomized_dim)
        self.mapping: nn.Module | None = None

    def _randomize(self, num_classes: int) -> bool:
        if self.randomized == "auto":
            return self.feature_dim * num_classes > MULTILINEAR_MAX_DIM
        return bool(self.randomized)

    def discriminator_input_dim(self, data: TrainingData) -> int:
        if self._randomize(data.num_classes):
            return self.randomized_dim
        return self.feature_dim * data.num_classes

    def build_extra(self, data: TrainingData) -> None:
        super().build_extra(data)
        if self._randomize(data.num_classes):
            self.mapping = RandomizedMultilinearMap(self.feature_dim, data.num_classes, self.randomized_dim)

    def transfer_loss(self, batch: DomainBatch) -> torch.Tensor:
        return conditional_adversarial_loss(
            self.discriminator,
            batch.source_features,
            batch.target_features,
            F.softmax(batch.source_logits, dim=1),
            F.softmax(batch.target_logits, dim=1),
            grl=self.reversal,
            mapping=self.mapping,
            entropy_conditioning=self.entropy_conditioning,
        )
