"""Domain-Adversarial Neural Network (DANN, Ganin et al. 2016): features that a domain discriminator cannot
tell apart, learned through a gradient reversal layer."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tlrun.losses import DomainDiscriminator, GradientReversal, domain_adversarial_loss, multi_domain_adversarial_loss
from tlrun.methods.adaptation import DomainAdaptation, DomainBatch
from tlrun.methods.settings import check_dann
from tlrun.scenarios import TrainingData


class DANN(DomainAdaptation):
    """The saddle point ``min_{G} max_{D} CE(G) − λ L_d(D, G)``, found in one backward pass: the discriminator
    ``D`` minimises the domain cross-entropy ``L_d`` (:func:`tlrun.losses.domain_adversarial_loss`) of the
    features ``f`` seen through the gradient reversal layer ``R``, so the features receive ``−w(p)`` times
    its gradient (``w`` the ``dann`` warm-up, by default). In ``dg`` (no target sample) ``D`` tells the K source
    domains apart (:func:`tlrun.losses.multi_domain_adversarial_loss`), as DomainBed's DANN.

    Args:
        discriminator_hidden: width of the discriminator's two hidden layers (1024 in the paper).
        lr: 0.001 by default: with a feature extractor trained from scratch at the discriminator's speed (0.01) the
            game oscillates; the Office-31 protocol's 0.01 keeps a pretrained backbone at 0.001 (0.1×).
        **kwargs: those of :class:`~tlrun.methods.adaptation.DomainAdaptation`.
    """

    def __init__(
        self, backbone: nn.Module, discriminator_hidden: int = 1024, warmup: str = "dann", lr: float = 1e-3, **kwargs: Any
    ) -> None:
        super().__init__(backbone, warmup=warmup, lr=lr, **kwargs)
        check_dann(type(self).__name__, discriminator_hidden=discriminator_hidden)
        self.discriminator_hidden = int(discriminator_hidden)
        self.reversal = GradientReversal()
        self.discriminator: nn.Module | None = None

    def discriminator_input_dim(self, data: TrainingData) -> int:
        """Size of what the discriminator reads: the features."""
        return self.feature_dim

    def build_extra(self, data: TrainingData) -> None:
        """The discriminator: source vs. target, or in ``dg`` (no target sample) over the K source domains."""
        domains = 2 if len(data.target) else max(2, len(data.source_domains))
        self.discriminator = DomainDiscriminator(self.discriminator_input_dim(data), self.discriminator_hidden, domains)

    def transfer_loss(self, batch: DomainBatch) -> torch.Tensor:
        if batch.across_sources:  # dg: which source domain each sample comes from, hidden from the K-way discriminator
            return multi_domain_adversarial_loss(self.discriminator, batch.source_features, batch.source_domains,
                                                 grl=self.reversal)
        return domain_adversarial_loss(self.discriminator, batch.source_features, batch.target_features, grl=self.reversal)
