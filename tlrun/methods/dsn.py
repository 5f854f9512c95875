"""Domain Separation Networks (DSN, Bousmalis et al. 2016): a shared encoder for what the domains have in
common, a private encoder per domain for what they do not, and a shared decoder that needs both."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tlrun.losses import DomainDiscriminator, GradientReversal, difference_loss, domain_adversarial_loss, scale_invariant_mse
from tlrun.methods.adaptation import DomainAdaptation, DomainBatch
from tlrun.scenarios import TrainingData

#: Images are reconstructed at most at this side length (average-pooled), to keep the decoder small.
RECONSTRUCTION_SIDE = 32


class DSN(DomainAdaptation):
    """Minimises ``CE + α L_recon + β L_difference + γ L_similarity`` where, with the shared code
    ``h_c = bottleneck(backbone(x))`` and the private codes ``h_p = E_p^d(x)`` of each domain ``d``:

    - ``L_recon = Σ_d L_si-mse(x^d, D(h_c^d + h_p^d))``: the scale-invariant MSE of the shared decoder's
      reconstruction (of the input, average-pooled to at most 32×32 for images);
    - ``L_difference = Σ_d ‖Ĥ_c^dᵀ Ĥ_p^d‖²_F``: shared and private codes kept orthogonal;
    - ``L_similarity``: the DANN domain loss on the shared codes, through gradient reversal (the DSN-DANN
      variant, the better of the paper's two).

    The private encoders have the backbone's architecture (copies of it, starting from its weights) followed
    by a layer to the code size. ``transfer_weight`` multiplies the whole sum.

    Args:
        reconstruction_weight: ``α``.
        difference_weight: ``β``.
        similarity_weight: ``γ``.
        decoder_hidden: width of the decoder's hidden layer.
        discriminator_hidden: width of the domain discriminator's hidden layers.
        **kwargs: those of :class:`~tlrun.methods.adaptation.DomainAdaptation`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        reconstruction_weight: float = 0.1,
        difference_weight: float = 0.05,
        similarity_weight: float = 0.25,
        decoder_hidden: int = 512,
        discriminator_hidden: int = 1024,
        warmup: str = "dann",
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, warmup=warmup, **kwargs)
        weights = (reconstruction_weight, difference_weight, similarity_weight)
        if any(not (math.isfinite(w) and w >= 0) for w in weights):
            raise ValueError(f"DSN: the loss weights must be numbers ≥ 0, got {weights}")
        if int(decoder_hidden) < 1 or int(discriminator_hidden) < 1:
            raise ValueError("DSN: decoder_hidden and discriminator_hidden must be positive")
        self.reconstruction_weight, self.difference_weight, self.similarity_weight = (float(w) for w in weights)
        self.decoder_hidden = int(decoder_hidden)
        self.discriminator_hidden = int(discriminator_hidden)
        self.reversal = GradientReversal()

    def _private_encoder(self) -> nn.Module:
        return nn.Sequential(
            copy.deepcopy(self.backbone), nn.Linear(int(self.backbone.out_features), self.feature_dim), nn.ReLU()
        )

    def reconstruction_target(self, x: torch.Tensor) -> torch.Tensor:
        """What the decoder reconstructs of a batch: images average-pooled to at most 32×32, flattened; feature
        rows as they are."""
        shape = tuple(self.backbone.input_shape)
        if x.dim() == 2 and len(shape) == 3 and x.shape[1] == math.prod(shape):
            x = x.reshape(x.shape[0], *shape)
        if x.dim() == 4:
            height, width = x.shape[2:]
            x = F.adaptive_avg_pool2d(x, (min(height, RECONSTRUCTION_SIDE), min(width, RECONSTRUCTION_SIDE)))
        return x.flatten(1)

    def build_extra(self, data: TrainingData) -> None:
        reconstruction_dim = self.reconstruction_target(self.example_batch(data.target.X)).shape[1]
        self.private_source = self._private_encoder()
        self.private_target = self._private_encoder()
        self.decoder = nn.Sequential(
            nn.Linear(self.feature_dim, self.decoder_hidden), nn.ReLU(), nn.Linear(self.decoder_hidden, reconstruction_dim)
        )
        self.discriminator = DomainDiscriminator(self.feature_dim, self.discriminator_hidden)

    def transfer_loss(self, batch: DomainBatch) -> torch.Tensor:
        reconstruction = batch.source_features.new_zeros(())
        difference = batch.source_features.new_zeros(())
        for inputs, shared, private_encoder in (
            (batch.source_inputs, batch.source_features, self.private_source),
            (batch.target_inputs, batch.target_features, self.private_target),
        ):
            private = private_encoder(inputs)
            reconstruction = reconstruction + scale_invariant_mse(
                self.decoder(shared + private), self.reconstruction_target(inputs)
            )
            difference = difference + difference_loss(shared, private)
        similarity = domain_adversarial_loss(
            self.discriminator, batch.source_features, batch.target_features, grl=self.reversal
        )
        self.note(reconstruction_loss=reconstruction, difference_loss=difference, similarity_loss=similarity)
        return (
            self.reconstruction_weight * reconstruction
            + self.difference_weight * difference
            + self.similarity_weight * similarity
        )
