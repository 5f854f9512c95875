"""TCA: transfer component analysis (Pan, Tsang, Kwok & Yang, IEEE TNN 2011).

TCA learns the embedding that brings the *marginal* distributions of source and target together in MMD while
keeping the data's variance::

    min_A  tr(Aᵀ K M_0 Kᵀ A) + λ ‖A‖²_F      s.t.   Aᵀ K H Kᵀ A = I

with ``M_0 = e_0 e_0ᵀ`` (``e_0`` is ``1/n_s`` on the source, ``−1/n_t`` on the target). That is JDA without the
class-conditional terms, i.e. a single JDA iteration (no pseudo-labels yet), with the same normalisations; the
classifier then runs on the embedding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tlrun.methods.components.classifiers import DEFAULT_CLASSIFIER_OPTIONS
from tlrun.methods.jda import MMDSubspaceMethod


class TCA(MMDSubspaceMethod):
    """Transfer component analysis: :class:`~tlrun.methods.jda.MMDSubspaceMethod` with its marginal-only
    iteration alone.

    Args:
        kernel, dim, lamb, gamma, approx, rank, classifier, classifier_options: as for
            :class:`~tlrun.methods.jda.MMDSubspaceMethod`.
    """

    def __init__(
        self,
        kernel: str = "linear",
        dim: int = 100,
        lamb: float = 1.0,
        gamma: float = 1.0,
        approx: str = "auto",
        rank: int = 1000,
        classifier: str = "1nn",
        classifier_options: Mapping[str, Any] | None = DEFAULT_CLASSIFIER_OPTIONS,
    ) -> None:
        super().__init__(
            kernel=kernel,
            dim=dim,
            lamb=lamb,
            gamma=gamma,
            approx=approx,
            rank=rank,
            iterations=1,
            classifier=classifier,
            classifier_options=classifier_options,
        )
