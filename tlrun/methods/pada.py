"""Partial Adversarial Domain Adaptation (PADA, Cao et al., ECCV 2018): DANN for a target that holds only some of
the source's classes, the source classes the target lacks weighed down."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from tlrun.losses import domain_adversarial_loss, pada_class_weights
from tlrun.methods.adaptation import DomainBatch
from tlrun.methods.dann import DANN
from tlrun.scenarios import TrainingData


class PADA(DANN):
    """DANN whose source terms weigh every source sample by the weight ``γ_y`` of its class::

        min_G max_D (1/n_s) Σ_i γ_{y_i} CE(G(x_i), y_i) − λ L_d^γ(D, G)

    where ``L_d^γ`` is DANN's domain loss with the source side weighted by ``γ_{y_i}``
    (:func:`~tlrun.losses.domain_adversarial_loss`) and ``γ`` the average of the network's class probabilities over
    the training target, normalised by its largest entry (:func:`~tlrun.losses.pada_class_weights`): classes the
    target lacks get little probability, so their source samples are neither fitted as hard nor aligned with the
    target. ``γ`` starts at 1 (DANN) and is re-estimated from the whole training target, without labels, at the
    start of every epoch after the first (the authors' code re-estimates it every 500 iterations). The settings
    are DANN's; the class weights are logged per epoch as ``class_weight.<k>``.
    """

    def build_extra(self, data: TrainingData) -> None:
        super().build_extra(data)
        # Not saved: re-estimated at the start of every epoch but the first, so a resumed run estimates it again.
        self.register_buffer("class_weights", torch.ones(int(data.num_classes)), persistent=False)

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        if self.current_epoch > 0 and self._data is not None:
            probabilities, _ = self._outputs(self._data.target.X)
            self.class_weights = pada_class_weights(torch.from_numpy(probabilities)).to(self.class_weights.device)

    def classification_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (self.class_weights[labels] * F.cross_entropy(logits, labels, reduction="none")).mean()

    def transfer_loss(self, batch: DomainBatch) -> torch.Tensor:
        self.note(**{f"class_weight.{k}": weight for k, weight in enumerate(self.class_weights)})
        return domain_adversarial_loss(self.discriminator, batch.source_features, batch.target_features,
                                       grl=self.reversal, source_weights=self.class_weights[batch.source_labels])
