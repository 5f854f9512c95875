"""Moment matching for multi-source domain adaptation (M3SDA, Peng et al., ICCV 2019): align every source's and the
target's feature moments, and every pair of sources' moments."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tlrun.losses import moment_distance
from tlrun.methods.adaptation import DomainAdaptation, DomainBatch
from tlrun.methods.settings import check_m3sda


class M3SDA(DomainAdaptation):
    """Minimises ``CE + λ MD²(f^{s_1}, …, f^{s_N}; f^t)`` on the bottleneck features ``f``, with ``MD²`` the moment
    distance of :func:`tlrun.losses.moment_distance` (moments ``k = 1 … K``: each source to the target, and each pair
    of sources), computed on each step's batch split by source domain (the domains present in the pooled batch).

    This is the paper's moment-matching component with one classifier shared by all sources, not its full method:
    M3SDA trains one classifier per source and predicts the target by their weighted combination, and M3SDA-β adds
    an MCD-style discrepancy between two classifiers per source; neither is done here. Each batch holds
    ``batch_size`` samples of every source, as the paper draws them (``source_batches``). With one source ``MD²`` is
    that source's moment distance to the target (a first- and second-moment alignment).

    Args:
        moments: ``K``, the highest moment matched (2: the paper's ``MD²``).
        transfer_weight: ``λ``, 0.3 by default with the ``dann`` warm-up: at 1 without warm-up the term shrank the
            features until the classifier could not learn (its Euclidean norms of batch moments have a floor set by
            the batch noise, which smaller features lower); chosen on a designated tuning task (see
            ``docs/defaults.md``).
        source_batches: ``per_source`` (the paper's, and the tuning task's choice) or ``pooled``; see
            :class:`~tlrun.methods.adaptation.DomainAdaptation`.
        **kwargs: those of :class:`~tlrun.methods.adaptation.DomainAdaptation`.
    """

    reads_source_domains = True

    def __init__(
        self, backbone: nn.Module, moments: int = 2, transfer_weight: float = 0.3, warmup: str = "dann",
        source_batches: str = "per_source", **kwargs: Any,
    ) -> None:
        super().__init__(backbone, transfer_weight=transfer_weight, warmup=warmup, source_batches=source_batches,
                         **kwargs)
        check_m3sda(type(self).__name__, moments=moments)
        self.moments = int(moments)

    def transfer_loss(self, batch: DomainBatch) -> torch.Tensor:
        sources = [part.source_features for part in batch.per_source()]
        return moment_distance(sources, batch.target_features, moments=self.moments)
