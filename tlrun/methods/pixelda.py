"""Pixel-level domain adaptation (PixelDA, Bousmalis et al. 2017): a generator turns source images into
target-like images, and the classifier learns on those as well as on the source."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from tlrun.losses import PixelDiscriminator, PixelGenerator, discriminator_loss, generator_loss
from tlrun.methods.adaptation import DomainAdaptation, DomainBatch, frozen_call
from tlrun.methods.settings import check_pixelda
from tlrun.scenarios import TrainingData


@contextmanager
def running_statistics_kept(*modules: nn.Module) -> Iterator[None]:
    """Batch norm inside ``modules`` normalises by the batch as usual but leaves its running statistics as they are
    (momentum 0 for the duration): what passes through meanwhile does not shape what evaluation normalises by."""
    norms = [layer for module in modules for layer in module.modules() if isinstance(layer, nn.modules.batchnorm._BatchNorm)]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    try:
        yield
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum


class PixelDA(DomainAdaptation):
    """Trains the generator ``G(x^s, z)``, the pixel discriminator ``D`` and the classifier ``T`` in one
    backward pass::

        L_transfer = CE(T(G(x^s, z)), y^s) + L_G(D(G(x^s, z)); θ_D frozen) + L_D(D(x^t), D(G(x^s, z).detach()))

    ``L_D = ½[BCE(D(x^t), 1) + BCE(D(x̃), 0)]`` trains the discriminator to tell real target images from
    generated ones; ``L_G = BCE(D(x̃), 1)`` (the non-saturating GAN loss) and the task loss train the generator
    to make target-like images that keep their class; the classifier learns from source and generated
    images (``CE(T(x^s))`` is the base's classification term). ``z ~ U(−1, 1)^noise_dim``. Needs image inputs.

    The generated batch passes the classifier without updating its batch-norm running statistics
    (:func:`running_statistics_kept`), which evaluation uses on real target images: the generator's output is
    unbounded (on 16 × 16 digits it reached ±50 against pixels in [0, 1]), and statistics gathered from it made the
    evaluated network predict one class for every target image (9.7 %, while the source trained to 100 %).

    Args:
        noise_dim: size of ``z``.
        generator_channels, generator_blocks: the generator's width and number of residual blocks.
        discriminator_channels: the discriminator's width.
        **kwargs: those of :class:`~tlrun.methods.adaptation.DomainAdaptation`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        noise_dim: int = 10,
        generator_channels: int = 64,
        generator_blocks: int = 4,
        discriminator_channels: int = 64,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, **kwargs)
        check_pixelda(
            type(self).__name__, noise_dim=noise_dim, generator_channels=generator_channels,
            generator_blocks=generator_blocks, discriminator_channels=discriminator_channels,
        )
        self.noise_dim = int(noise_dim)
        self.generator_channels = int(generator_channels)
        self.generator_blocks = int(generator_blocks)
        self.discriminator_channels = int(discriminator_channels)

    def image_shape(self, data: TrainingData) -> tuple[int, int, int]:
        """The (C, H, W) of the images the training loader yields (pixel rows are viewed as their images)."""
        sample = self.example_batch(data.target.X, size=1)
        if sample.dim() == 4:
            return tuple(sample.shape[1:])
        shape = tuple(getattr(self.backbone, "input_shape", ()))
        if len(shape) == 3:
            return shape
        raise ValueError(
            "PixelDA generates images, but this dataset gives feature vectors; use an image dataset (digits, "
            "mnist_usps_svhn, office31...) or set dataset.image_shape for flat pixel features"
        )

    def build_extra(self, data: TrainingData) -> None:
        shape = self.image_shape(data)
        self.generator = PixelGenerator(shape, self.noise_dim, self.generator_channels, self.generator_blocks)
        self.discriminator = PixelDiscriminator(shape, self.discriminator_channels)

    def transfer_loss(self, batch: DomainBatch) -> torch.Tensor:
        source = batch.source_inputs
        noise = torch.rand(source.shape[0], self.noise_dim, device=source.device) * 2 - 1
        generated = self.generator(source, noise)
        with running_statistics_kept(self.backbone, self.bottleneck):
            task = F.cross_entropy(self(generated), batch.source_labels)
        fool = generator_loss(frozen_call(self.discriminator, generated))
        discriminate = discriminator_loss(self.discriminator(batch.target_inputs), self.discriminator(generated.detach()))
        self.note(generated_task_loss=task, generator_loss=fool, discriminator_loss=discriminate)
        return task + fool + discriminate
