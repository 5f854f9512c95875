"""Moment matching for multi-source domain adaptation (M3SDA, Peng et al., ICCV 2019): align every source's and the
target's feature moments, and every pair of sources' moments; optionally with a pair of classifiers per source and
M3SDA-β's classifier-discrepancy step."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from tlrun.losses import classifier_discrepancy, gradient_reversal, moment_distance
from tlrun.methods.adaptation import DomainAdaptation, DomainBatch
from tlrun.methods.settings import check_m3sda
from tlrun.scenarios import TrainingData


class SourceClassifierPairs(nn.Module):
    """Two linear classifiers per source domain, ``(C_i, C'_i)`` for ``i = 1 … N``. Called on features it gives the
    run's prediction, ``log((1/N) Σ_i softmax(C_i(f)))``: its softmax is the sources' mean class probabilities, every
    source weighted alike (as Dassl's reimplementation combines them)."""

    def __init__(self, in_features: int, num_classes: int, sources: int) -> None:
        super().__init__()
        self.first = nn.ModuleList(nn.Linear(in_features, num_classes) for _ in range(sources))
        self.second = nn.ModuleList(nn.Linear(in_features, num_classes) for _ in range(sources))

    @property
    def sources(self) -> int:
        return len(self.first)

    def pair(self, features: torch.Tensor, source: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The logits of source ``source``'s two classifiers."""
        return self.first[source](features), self.second[source](features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        probabilities = torch.stack([F.softmax(head(features), dim=1) for head in self.first]).mean(0)
        return probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny).log()


class M3SDA(DomainAdaptation):
    """Minimises ``CE + λ MD²(f^{s_1}, …, f^{s_N}; f^t)`` on the bottleneck features ``f``, with ``MD²`` the moment
    distance of :func:`tlrun.losses.moment_distance` (moments ``k = 1 … K``: each source to the target, and each pair
    of sources), computed on each step's batch split by source domain (the domains present in the batch).

    ``classifiers: shared``: one classifier trained on every source, ``CE`` its cross-entropy: the paper's
    moment-matching component alone. ``classifiers: per_source`` (the default): the paper's classifiers, a pair
    ``(C_i, C'_i)`` per source (:class:`SourceClassifierPairs`), ``CE = (1/N) Σ_i [CE(C_i) + CE(C'_i)]`` on source
    ``i``'s samples, and the target predicted by the mean of the ``C_i``'s probabilities. With it,
    ``discrepancy_weight`` ``β > 0`` adds M3SDA-β's step (MCD's), the term

        − β · (1/N) Σ_i d(C_i(R(f^t)), C'_i(R(f^t)))

    with ``d`` :func:`tlrun.losses.classifier_discrepancy` and ``R`` a gradient reversal whose coefficient is the
    warm-up ``w(p)``: the classifiers learn to maximise their pairs' disagreement on the target while the features
    learn to minimise it. The paper alternates three steps per batch (train everything on ``CE + λ MD²``; the
    classifiers alone on ``CE − d``; the features alone on ``d``); here they are one simultaneous step, the min-max
    solved by gradient reversal as DANN solves its own, so a step costs one backward pass.

    Each batch holds ``batch_size`` samples of every source, as the paper draws them (``source_batches``). With one
    source ``MD²`` is that source's moment distance to the target (a first- and second-moment alignment).

    Args:
        moments: ``K``, the highest moment matched (2: the paper's ``MD²``).
        transfer_weight: ``λ``, 0.3 by default with the ``dann`` warm-up: at 1 without warm-up the term shrank the
            features until the classifier could not learn (its Euclidean norms of batch moments have a floor set by
            the batch noise, which smaller features lower); chosen on a designated tuning task (see
            ``docs/defaults.md``).
        classifiers: ``per_source`` or ``shared`` (see above).
        discrepancy_weight: ``β`` of M3SDA-β's step (1, as MCD weighs it); 0 leaves it out (needs ``classifiers:
            per_source`` otherwise). ``classifiers`` and ``β``: chosen on the designated tuning task, where they
            edged the shared classifier by 0.2 points (``docs/defaults.md``).
        source_batches: ``per_source`` (the paper's, and the tuning task's choice) or ``pooled``; see
            :class:`~tlrun.methods.adaptation.DomainAdaptation`.
        **kwargs: those of :class:`~tlrun.methods.adaptation.DomainAdaptation`.
    """

    reads_source_domains = True

    def __init__(
        self, backbone: nn.Module, moments: int = 2, transfer_weight: float = 0.3, warmup: str = "dann",
        classifiers: Literal["shared", "per_source"] = "per_source", discrepancy_weight: float = 1.0,
        source_batches: str = "per_source", **kwargs: Any,
    ) -> None:
        super().__init__(backbone, transfer_weight=transfer_weight, warmup=warmup, source_batches=source_batches,
                         **kwargs)
        check_m3sda(type(self).__name__, moments=moments, classifiers=classifiers, discrepancy_weight=discrepancy_weight)
        self.moments = int(moments)
        self.classifiers = classifiers
        self.discrepancy_weight = float(discrepancy_weight)

    def build_extra(self, data: TrainingData) -> None:
        """``classifiers: per_source``: the classifier pairs, one per source domain, in the shared classifier's place."""
        if self.classifiers == "per_source":
            self.classifier = SourceClassifierPairs(self.feature_dim, self.num_classes, max(1, len(data.source_domains)))

    def transfer_loss(self, batch: DomainBatch) -> torch.Tensor:
        sources = [part.source_features for part in batch.per_source()]
        return moment_distance(sources, batch.target_features, moments=self.moments)

    def objective(self, batch: DomainBatch, classification: torch.Tensor, weight: float) -> torch.Tensor:
        """``shared``: ``classification + weight · MD²``. ``per_source``: the pairs' cross-entropy in its place, plus in
        ``semi_da`` the cross-entropy of the sources' mean prediction on the labeled target batch (a term of its own,
        where ``shared`` pools those samples with the source's; both recorded as ``classification_loss``), minus ``β``
        times the pairs' discrepancy on the reversed target features (recorded as ``classifier_discrepancy``)."""
        if self.classifiers == "shared":
            return super().objective(batch, classification, weight)
        heads = self.classifier
        pair_losses = []
        for part in batch.per_source():
            source = 0 if part.source_domains is None else int(part.source_domains[0])
            first, second = heads.pair(part.source_features, source)
            pair_losses.append(self.classification_loss(first, part.source_labels)
                               + self.classification_loss(second, part.source_labels))
        classification = torch.stack(pair_losses).mean()
        if batch.labeled_target_logits is not None:  # semi_da: the sources' mean prediction on the labeled target
            classification = classification + self.classification_loss(batch.labeled_target_logits,
                                                                       batch.labeled_target_labels)
        transfer = self.transfer_loss(batch)
        self.note(classification_loss=classification, transfer_loss=transfer)
        loss = classification + weight * transfer
        if self.discrepancy_weight:
            reversed_target = gradient_reversal(batch.target_features, self.warmup_factor())
            discrepancy = torch.stack([classifier_discrepancy(*heads.pair(reversed_target, source))
                                       for source in range(heads.sources)]).mean()
            self.note(classifier_discrepancy=discrepancy)
            loss = loss - self.discrepancy_weight * discrepancy
        return loss
