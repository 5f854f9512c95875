"""Moment matching for multi-source domain adaptation (M3SDA, Peng et al., ICCV 2019): align every source's and the
target's feature moments, and every pair of sources' moments; with a pair of classifiers per source and M3SDA-β's
alternating classifier-discrepancy steps (those of MCD)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from tlrun.losses import classifier_discrepancy, moment_distance
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
    ``discrepancy_weight`` ``β > 0`` makes each batch M3SDA-β's three steps (MCD's), with ``G`` the feature
    extractor (backbone and bottleneck), ``C`` every classifier and ``d̄(f) = (1/N) Σ_i d(C_i(f), C'_i(f))`` the
    pairs' mean discrepancy (:func:`tlrun.losses.classifier_discrepancy`) on target features ``f``:

    A. ``G`` and ``C`` descend ``CE + λ MD²`` (in ``semi_da`` with the labeled target batch's cross-entropy);
    B. ``C`` alone descends ``CE − β d̄(f^t)`` (the features' parameters held fixed): the pairs learn to disagree
       on the target while still classifying the sources;
    C. ``G`` alone descends ``β d̄(f^t)``, ``generator_steps`` times on the same target batch: the features move the
       target where the pairs agree.

    Each step is a step of the run's optimizer with the gradient of the networks it holds fixed dropped (so that their
    momentum and weight decay pass them by too), so a batch costs ``2 + generator_steps`` forward-backward passes and
    optimizer steps, against one for ``β = 0``; the learning-rate schedule steps once per batch.
    The paper's per-source weights of the ensemble are replaced by equal weights, as Dassl's reimplementation does.

    Each batch holds ``batch_size`` samples of every source, as the paper draws them (``source_batches``). With one
    source ``MD²`` is that source's moment distance to the target (a first- and second-moment alignment).

    Args:
        moments: ``K``, the highest moment matched (2: the paper's ``MD²``).
        transfer_weight: ``λ``, 0.3 by default with the ``dann`` warm-up: at 1 without warm-up the term shrank the
            features until the classifier could not learn (its Euclidean norms of batch moments have a floor set by
            the batch noise, which smaller features lower); chosen on a designated tuning task (see
            ``docs/defaults.md``).
        classifiers: ``per_source`` or ``shared`` (see above).
        discrepancy_weight: ``β`` of M3SDA-β's steps B and C; 0 leaves them out (needs ``classifiers: per_source``
            otherwise). ``classifiers`` and ``β``: chosen on the designated tuning task (``docs/defaults.md``).
        generator_steps: how many times step C repeats per batch (4: MCD's digits setting, and Dassl's M3SDA's).
        source_batches: ``per_source`` (the paper's, and the tuning task's choice) or ``pooled``; see
            :class:`~tlrun.methods.adaptation.DomainAdaptation`.
        **kwargs: those of :class:`~tlrun.methods.adaptation.DomainAdaptation`.
    """

    reads_source_domains = True

    def __init__(
        self, backbone: nn.Module, moments: int = 2, transfer_weight: float = 0.3, warmup: str = "dann",
        classifiers: Literal["shared", "per_source"] = "per_source", discrepancy_weight: float = 1.0,
        generator_steps: int = 4, source_batches: str = "per_source", **kwargs: Any,
    ) -> None:
        super().__init__(backbone, transfer_weight=transfer_weight, warmup=warmup, source_batches=source_batches,
                         **kwargs)
        check_m3sda(type(self).__name__, moments=moments, classifiers=classifiers, discrepancy_weight=discrepancy_weight,
                    generator_steps=generator_steps)
        self.moments = int(moments)
        self.classifiers = classifiers
        self.discrepancy_weight = float(discrepancy_weight)
        self.generator_steps = int(generator_steps)

    @property
    def automatic_optimization(self) -> bool:
        """One optimizer step per batch (Lightning's); with ``β > 0`` the three steps are taken by hand."""
        return not self.discrepancy_weight

    @property
    def optimizer_steps_per_batch(self) -> int:
        """Steps A and B, then C ``generator_steps`` times."""
        return 1 if self.automatic_optimization else 2 + self.generator_steps

    def build_extra(self, data: TrainingData) -> None:
        """``classifiers: per_source``: the classifier pairs, one per source domain, in the shared classifier's place."""
        if self.classifiers == "per_source":
            self.classifier = SourceClassifierPairs(self.feature_dim, self.num_classes, max(1, len(data.source_domains)))

    def transfer_loss(self, batch: DomainBatch) -> torch.Tensor:
        sources = [part.source_features for part in batch.per_source()]
        return moment_distance(sources, batch.target_features, moments=self.moments)

    def pairs_cross_entropy(self, features: torch.Tensor, labels: torch.Tensor,
                            domains: torch.Tensor | None) -> torch.Tensor:
        """``(1/N) Σ_i [CE(C_i) + CE(C'_i)]``, each pair on its own source's samples (the sources present; the domain
        index picks the pair, ``None``: one source)."""
        if domains is None:
            domains = torch.zeros_like(labels)
        losses = []
        for source in torch.unique(domains):
            rows = domains == source
            first, second = self.classifier.pair(features[rows], int(source))
            losses.append(self.classification_loss(first, labels[rows]) + self.classification_loss(second, labels[rows]))
        return torch.stack(losses).mean()

    def pairs_discrepancy(self, target_features: torch.Tensor) -> torch.Tensor:
        """``d̄(f^t)``: the mean over the sources of their pair's discrepancy on the target features."""
        heads = self.classifier
        return torch.stack([classifier_discrepancy(*heads.pair(target_features, source))
                            for source in range(heads.sources)]).mean()

    def objective(self, batch: DomainBatch, classification: torch.Tensor, weight: float) -> torch.Tensor:
        """``shared``: ``classification + weight · MD²``. ``per_source`` (step A): the pairs' cross-entropy in the
        place of ``classification``, plus in ``semi_da`` the cross-entropy of the sources' mean prediction on the
        labeled target batch (a term of its own, where ``shared`` pools those samples with the source's; both
        recorded as ``classification_loss``)."""
        if self.classifiers == "shared":
            return super().objective(batch, classification, weight)
        classification = self.pairs_cross_entropy(batch.source_features, batch.source_labels, batch.source_domains)
        if batch.labeled_target_logits is not None:  # semi_da: the sources' mean prediction on the labeled target
            classification = classification + self.classification_loss(batch.labeled_target_logits,
                                                                       batch.labeled_target_labels)
        transfer = self.transfer_loss(batch)
        self.note(classification_loss=classification, transfer_loss=transfer)
        return classification + weight * transfer

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """``β = 0``: the objective, optimised by Lightning. ``β > 0``: steps A, B and C (see the class), then one step
        of the learning-rate schedule; the pairs' discrepancy on the target before step B is recorded as
        ``classifier_discrepancy``."""
        if self.automatic_optimization:
            return super().training_step(batch, batch_idx)
        heads = set(self.classifier.parameters())
        extractor = [parameter for parameter in self.parameters() if parameter not in heads]
        loss = super().training_step(batch, batch_idx)
        self.descend(loss)
        source_inputs, source_labels, source_domains, target_inputs = self.step_inputs(batch)
        # Under DDP (this process draws a shard) every parameter must take part in each backward pass: there the
        # features keep their graph (their gradient is computed, then dropped); in one process they have none.
        with torch.set_grad_enabled(self._shard is not None):
            features = self.features(torch.cat([source_inputs, target_inputs]))
        source_features, target_features = features[:len(source_inputs)], features[len(source_inputs):]
        discrepancy = self.pairs_discrepancy(target_features)
        self.record_terms(classifier_discrepancy=discrepancy)
        self.descend(self.pairs_cross_entropy(source_features, source_labels, source_domains)
                     - self.discrepancy_weight * discrepancy, fixed=extractor)
        for _ in range(self.generator_steps):
            self.descend(self.discrepancy_weight * self.pairs_discrepancy(self.features(target_inputs)),
                         fixed=list(heads))
        self.lr_schedulers().step()
        return loss

    def descend(self, loss: torch.Tensor, fixed: list[nn.Parameter] = ()) -> None:
        """One step of the run's optimizer on ``loss``'s gradient, the ``fixed`` parameters left as they are: their
        gradient is dropped, so that the step (its momentum and weight decay too) passes them by."""
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(loss)
        for parameter in fixed:
            parameter.grad = None
        optimizer.step()
