"""Simultaneous Deep Transfer across domains and tasks (SDT, Tzeng et al. 2015): domain confusion towards a
uniform domain classifier, plus the transfer of class correlations through soft labels."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tlrun.losses import DomainDiscriminator, SoftLabelBank, domain_adversarial_loss, domain_confusion_loss, soft_label_loss
from tlrun.methods.adaptation import DomainAdaptation, DomainBatch, frozen_call
from tlrun.methods.settings import check_sdt
from tlrun.scenarios import TrainingData


class SDT(DomainAdaptation):
    """Two players and a soft-label term, trained in one backward pass::

        L_transfer = L_D(θ_D; f.detach()) + L_conf(f; θ_D frozen) + ν L_soft

    - ``L_D``: the domain classifier's cross-entropy (source 1, target 0) on detached features: it learns to
      tell the domains apart, and only it;
    - ``L_conf = −(1/n) Σ_i ½ [log q_i + log(1 − q_i)]``: the cross-entropy of its prediction ``q`` against the
      uniform domain distribution, minimised by the features only (the classifier's parameters are frozen in
      this term): the features make the domains indistinguishable;
    - ``L_soft = −(1/m) Σ_i Σ_k l^{(y_i)}_k log softmax(z_i^t / τ)_k``: target predictions at temperature
      ``τ`` pulled towards the per-class mean soft label ``l^{(y)}`` of the source. In ``semi_da``, as in the
      paper, ``i`` runs over the few labeled target samples with their labels ``y_i`` (which also join the
      classification loss). In ``da`` (a variant: no target label exists) ``y_i`` are the pseudo-labels of target
      samples predicted with probability at least ``pseudo_label_threshold``. One difference from the paper
      remains in both: ``l^{(y)}`` is an exponential moving average of the softened outputs, over source batches,
      of the network being trained on the source, not the averages of a separately pre-trained source network.

    Args:
        discriminator_hidden: width of the domain classifier's hidden layers.
        temperature: ``τ`` of the soft labels.
        soft_label_weight: ``ν``.
        pseudo_label_threshold: confidence needed for a target sample to enter ``L_soft``.
        lr: 0.001 by default, as :class:`~tlrun.methods.dann.DANN` (a two-player game).
        **kwargs: those of :class:`~tlrun.methods.adaptation.DomainAdaptation`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        discriminator_hidden: int = 1024,
        temperature: float = 2.0,
        soft_label_weight: float = 0.1,
        pseudo_label_threshold: float = 0.9,
        lr: float = 1e-3,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, lr=lr, **kwargs)
        check_sdt(
            type(self).__name__, discriminator_hidden=discriminator_hidden, temperature=temperature,
            soft_label_weight=soft_label_weight, pseudo_label_threshold=pseudo_label_threshold,
        )
        self.discriminator_hidden = int(discriminator_hidden)
        self.temperature = float(temperature)
        self.soft_label_weight = float(soft_label_weight)
        self.pseudo_label_threshold = float(pseudo_label_threshold)
        self.discriminator: nn.Module | None = None
        self.soft_labels: SoftLabelBank | None = None

    def build_extra(self, data: TrainingData) -> None:
        self.discriminator = DomainDiscriminator(self.feature_dim, self.discriminator_hidden)
        self.soft_labels = SoftLabelBank(data.num_classes, temperature=self.temperature)

    def transfer_loss(self, batch: DomainBatch) -> torch.Tensor:
        source, target = batch.source_features, batch.target_features
        discriminator = domain_adversarial_loss(self.discriminator, source.detach(), target.detach())
        confusion = domain_confusion_loss(frozen_call(self.discriminator, torch.cat([source, target])))
        self.soft_labels.update(batch.source_logits.detach(), batch.source_labels)
        if batch.labeled_target_logits is not None:  # semi_da: the labeled target samples, as published
            soft = soft_label_loss(batch.labeled_target_logits, batch.labeled_target_labels, self.soft_labels.soft_labels,
                                   self.temperature)
        else:  # da: confident pseudo-labels stand in for the labels
            confidence, pseudo_labels = F.softmax(batch.target_logits.detach(), dim=1).max(dim=1)
            confident = confidence >= self.pseudo_label_threshold
            soft = (soft_label_loss(batch.target_logits[confident], pseudo_labels[confident], self.soft_labels.soft_labels,
                                    self.temperature) if confident.any() else batch.target_logits.new_zeros(()))
        self.note(discriminator_loss=discriminator, confusion_loss=confusion, soft_label_loss=soft)
        return discriminator + confusion + self.soft_label_weight * soft
