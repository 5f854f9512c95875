"""The base of deep domain adaptation: one source batch and one target batch per step, and a transfer term.

Every deep DA method minimises, over the network ``G`` = classifier ∘ bottleneck ∘ backbone (and its own extra
networks),

    L = (1/n_s) Σ_i CE(G(x_i^s), y_i^s) + λ · w(p) · L_transfer(batch)

where ``L_transfer`` is what the method defines (:meth:`DomainAdaptation.transfer_loss`), ``λ`` is
``transfer_weight`` and ``w(p)`` the warm-up schedule over the training progress ``p ∈ [0, 1]``: ``none``
(w = 1) or ``dann`` (w = 2 / (1 + exp(−γ p)) − 1). Adversarial methods own a gradient reversal layer
(``self.reversal``); for them the warm-up drives its coefficient instead, so the discriminator always learns at
full strength while the features receive ``−λ w(p)`` times its gradient, as in DANN.

Source and target batches go through the backbone together (batch norm sees both domains), and the method
receives all intermediate outputs in a :class:`DomainBatch`. An epoch is one pass over the larger of the two
domains (the smaller one cycles), or ``iterations_per_epoch`` steps when that is set (both domains cycle, as
in the usual Office-31 protocol of a fixed number of iterations).

Domain generalisation (scenario ``dg``: no target sample trains) is the same objective with the source domains in
the target's place: the batches are source-only ``(x, y, d)``, ``d`` each sample's source domain, and the transfer
term aligns the source domains with each other (:meth:`DomainBatch.domain_groups`: a discrepancy averaged over the
pairs of source domains; a discriminator over the K source domains), as DomainBed's CORAL and DANN do. One method
class serves both scenarios; its config says whether it declares ``dg``.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from tlrun.errors import TlrunError
from tlrun.losses import GradientReversal, dann_schedule, mean_over_pairs
from tlrun.methods.base import RunContext
from tlrun.methods.deep import DeepMethod
from tlrun.methods.settings import LAYERS, check_discrepancy_alignment, check_domain_adaptation, layer_names
from tlrun.scenarios import TrainingData



@dataclass
class DomainBatch:
    """One training step's data and network outputs, for a source batch (labeled) and a target batch.

    ``*_inputs`` are the batches as loaded, ``*_hidden`` the backbone's outputs, ``*_features`` the bottleneck's
    (the representation the classifier reads), ``*_logits`` the classifier's.
    """

    source_inputs: torch.Tensor
    target_inputs: torch.Tensor
    source_labels: torch.Tensor
    source_hidden: torch.Tensor
    target_hidden: torch.Tensor
    source_features: torch.Tensor
    target_features: torch.Tensor
    source_logits: torch.Tensor
    target_logits: torch.Tensor
    #: ``semi_da``: the logits and labels of a batch of the few labeled target samples (``None`` in ``da``).
    labeled_target_logits: torch.Tensor | None = None
    labeled_target_labels: torch.Tensor | None = None
    #: Pooled sources, for a method that :attr:`~tlrun.methods.deep.DeepMethod.reads_source_domains`: each source
    #: sample's domain index (``None`` otherwise).
    source_domains: torch.Tensor | None = None

    @property
    def across_sources(self) -> bool:
        """Domain generalisation: no target batch, the transfer term aligns the source domains with each other."""
        return len(self.target_inputs) == 0

    def domain_groups(self, name: str) -> list[torch.Tensor]:
        """One representation (see :meth:`layer`) split into the domains the transfer term aligns: ``[source,
        target]``, or :attr:`across_sources` one group per source domain in the batch (in index order; a domain
        with fewer than two samples in the batch is left out: it has no covariance)."""
        if not self.across_sources:
            return list(self.layer(name))
        groups = [part.layer(name)[0] for part in self.per_source()]
        return [group for group in groups if len(group) > 1]

    def per_source(self) -> list["DomainBatch"]:
        """The batch split by source domain: one batch per source domain present (in index order) holding that
        domain's source samples and the whole target batch; ``[self]`` for one source (``source_domains`` None)."""
        if self.source_domains is None:
            return [self]
        parts = []
        for domain in torch.unique(self.source_domains):
            rows = self.source_domains == domain
            parts.append(replace(
                self, source_inputs=self.source_inputs[rows], source_labels=self.source_labels[rows],
                source_hidden=self.source_hidden[rows], source_features=self.source_features[rows],
                source_logits=self.source_logits[rows], source_domains=self.source_domains[rows],
            ))
        return parts

    def layer(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The (source, target) pair of one representation: ``backbone``, ``features``, ``logits`` or
        ``probabilities`` (softmax of the logits)."""
        if name == "backbone":
            return self.source_hidden, self.target_hidden
        if name == "features":
            return self.source_features, self.target_features
        if name == "logits":
            return self.source_logits, self.target_logits
        if name == "probabilities":
            return F.softmax(self.source_logits, dim=1), F.softmax(self.target_logits, dim=1)
        raise ValueError(f"unknown layer {name!r}; choose from {', '.join(LAYERS)}")


def frozen_call(module: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    """``module(*inputs)`` with its parameters detached: gradients reach the inputs but not the module.

    For two-player losses in one backward pass (a domain classifier that the features must confuse, a
    discriminator that the generator must fool): the player's own loss trains it on detached inputs, and the
    opponent's loss goes through this call.
    """
    parameters = {name: value.detach() for name, value in module.named_parameters()}
    return functional_call(module, parameters, inputs)


class DomainAdaptation(DeepMethod):
    """Deep DA: cross-entropy on the labeled source plus ``λ · w(p) · L_transfer`` (see the module docstring).

    Args:
        backbone: the feature network.
        transfer_weight: ``λ``, the trade-off of the transfer term.
        warmup: ``none`` or ``dann`` (``w(p) = 2 / (1 + exp(−γ p)) − 1``).
        warmup_gamma: ``γ`` of the ``dann`` warm-up.
        source_batches: with several sources, ``pooled`` (each batch drawn from the pooled sources, each source in
            proportion to its size) or ``per_source`` (``batch_size`` samples of every source in each batch, as
            the multi-source papers draw them; :class:`~tlrun.backbones.inputs.PerDomainBatches`). One source:
            the same batches either way.
        **kwargs: those of :class:`~tlrun.methods.deep.DeepMethod`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        transfer_weight: float = 1.0,
        warmup: str = "none",
        warmup_gamma: float = 10.0,
        source_batches: Literal["pooled", "per_source"] = "pooled",
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, **kwargs)
        check_domain_adaptation(
            type(self).__name__, transfer_weight=transfer_weight, warmup=warmup, warmup_gamma=warmup_gamma,
            source_batches=source_batches,
        )
        self.source_batches = source_batches
        self.transfer_weight = float(transfer_weight)
        self.warmup = warmup
        self.warmup_gamma = float(warmup_gamma)
        self.reversal: GradientReversal | None = None
        self._step_terms: dict[str, torch.Tensor] = {}

    @property
    def leaves_parameters_unused(self) -> bool:
        """A method with networks per source domain, on pooled batches: a batch may lack a source."""
        return self.reads_source_domains and self.source_batches == "pooled"

    # ------------------------------------------------------------------------------------- the objective

    @abstractmethod
    def transfer_loss(self, batch: DomainBatch) -> torch.Tensor:
        """``L_transfer`` of this method on one step's outputs (a scalar tensor)."""

    def note(self, **terms: torch.Tensor) -> None:
        """Record components of the step's loss (logged as per-epoch means beside ``transfer_loss``); a
        ``classification_loss`` noted here replaces the recorded cross-entropy (an objective with its own)."""
        self._step_terms.update(terms)

    def classification_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The first term of the objective: the mean cross-entropy of the labeled samples (PADA weighs it by class)."""
        return F.cross_entropy(logits, labels)

    def warmup_factor(self) -> float:
        """``w(p)`` at the current training progress."""
        return dann_schedule(self.progress(), self.warmup_gamma) if self.warmup == "dann" else 1.0

    def forward_domains(self, source_inputs: torch.Tensor, source_labels: torch.Tensor, target_inputs: torch.Tensor) -> DomainBatch:
        """Both batches through the network at once; the outputs split back by domain."""
        n = source_inputs.shape[0]
        hidden = self.backbone(torch.cat([source_inputs, target_inputs]))
        features = self.bottleneck(hidden)
        logits = self.classifier(features)
        return DomainBatch(
            source_inputs, target_inputs, source_labels,
            hidden[:n], hidden[n:], features[:n], features[n:], logits[:n], logits[n:],
        )

    @staticmethod
    def step_inputs(batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """A training batch's source inputs, source labels, source domain indices (``None`` unless the loader draws
        them) and target inputs (empty in ``dg``; a labeled target's labels are dropped)."""
        source_inputs, source_labels, *source_domains = batch["source"]
        target_inputs = batch.get("target", source_inputs[:0])  # dg: no target batch
        if isinstance(target_inputs, (list, tuple)):  # a labeled target (finetune): its labels are not used here
            target_inputs = target_inputs[0]
        return source_inputs, source_labels, source_domains[0] if source_domains else None, target_inputs

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """``CE`` on the labeled samples (the source; in ``semi_da`` also the labeled target batch, every sample
        weighted alike) plus the weighted transfer term."""
        source_inputs, source_labels, source_domains, target_inputs = self.step_inputs(batch)
        outputs = self.forward_domains(source_inputs, source_labels, target_inputs)
        outputs.source_domains = source_domains
        if "labeled_target" in batch:
            inputs, labels = batch["labeled_target"]
            outputs.labeled_target_logits, outputs.labeled_target_labels = self(inputs), labels
            classification = self.classification_loss(torch.cat([outputs.source_logits, outputs.labeled_target_logits]),
                                                      torch.cat([source_labels, labels]))
        else:
            classification = self.classification_loss(outputs.source_logits, source_labels)
        factor = self.warmup_factor()
        if self.reversal is not None:
            self.reversal.coefficient = factor
            weight = self.transfer_weight
        else:
            weight = self.transfer_weight * factor
        self._step_terms = {}
        loss = self.objective(outputs, classification, weight)
        self.record(loss, outputs.source_logits, source_labels, **{"classification_loss": classification, **self._step_terms})
        return loss

    def objective(self, batch: DomainBatch, classification: torch.Tensor, weight: float) -> torch.Tensor:
        """One step's loss from its classification term: ``classification + weight · L_transfer(batch)``, the transfer
        term recorded as ``transfer_loss`` (MDAN combines per-source terms instead)."""
        transfer = self.transfer_loss(batch)
        self.note(transfer_loss=transfer)
        return classification + weight * transfer

    # ------------------------------------------------------------------------------------------- data

    def fit(self, data: TrainingData, context: RunContext) -> None:
        """:meth:`DeepMethod.fit`, refusing ``dg`` with one source domain (nothing to align it with)."""
        if not len(data.target) and len(data.source_domains) < 2:
            raise TlrunError(
                f"{type(self).__name__} in dg aligns the source domains with each other, and this run has "
                f"{len(data.source_domains) or 1}: give it several, dataset.source=[a,b,...] (with trainer.select=lodo, "
                "one more: one is held out); one source trains with source_only (ERM)"
            )
        super().fit(data, context)

    def train_dataloaders(self, data: TrainingData) -> Any:
        """Source ``(x, y)`` and target ``x`` batches, drawn together (see the module docstring for the epoch), and
        in ``semi_da`` batches of the labeled target samples (``labeled_target``, cycling); in ``dg`` (no target
        sample) source ``(x, y, d)`` batches alone."""
        source = self.labeled(data, "source")
        across_sources = not len(data.target)
        return self.paired_loaders(
            self.make_loader(source.X, source.y, shuffle=True, drop_last=True,
                             domains=source.domains if self.reads_source_domains or across_sources else None,
                             batch_domains=source.domains if self.source_batches == "per_source" else None),
            None if across_sources else self.make_loader(data.target.X, shuffle=True, drop_last=True, seed_offset=1),
            labeled_target=self.labeled_target_loader(data),
        )


class DiscrepancyAlignment(DomainAdaptation):
    """Alignment by a discrepancy between the domains' representations, summed over the chosen layers::

        L_transfer = Σ_{l ∈ layers} D(h_l^s, h_l^t)

    Subclasses define the discrepancy ``D`` (:meth:`discrepancy`). ``layers`` names representations of
    :data:`LAYERS` (``features``: the bottleneck; ``logits``; ``probabilities``; ``backbone``).
    """

    def __init__(self, backbone: nn.Module, layers: Any = ("features",), **kwargs: Any) -> None:
        super().__init__(backbone, **kwargs)
        check_discrepancy_alignment(type(self).__name__, layers=layers)
        self.layers = layer_names(type(self).__name__, layers)

    @abstractmethod
    def discrepancy(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``D(h^s, h^t)`` for one layer's source and target batches."""

    def transfer_loss(self, batch: DomainBatch) -> torch.Tensor:
        """``Σ_l D(h_l^s, h_l^t)``; in ``dg`` ``Σ_l`` of ``D`` averaged over the pairs of source domains."""
        return torch.stack([mean_over_pairs(self.discrepancy, batch.domain_groups(name)) for name in self.layers]).sum()
