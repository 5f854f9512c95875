"""Pixel-level domain adaptation (PixelDA, Bousmalis et al. 2017): a generator turns source images into
target-like images, and the classifier learns on those as well as on the source."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from tlrun.losses import PixelDiscriminator, PixelGenerator, discriminator_loss, generator_loss
from tlrun.losses.pixel import pairwise_mse
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

        L = CE(T(x^s), y^s) + λ [ CE(T(G(x^s, z)), y^s) + a · (L_G + L_d) + c · L_c ]

    the paper's ``min_{G,T} max_D α L_d + β L_t + γ L_c`` divided by ``β`` (its task loss ``L_t`` weighs the source
    and the generated images alike, and the base's ``CE(T(x^s))`` keeps weight 1), so ``a = α/β``
    (``adversarial_weight``) and ``c = γ/β`` (``content_weight``); ``λ`` is ``transfer_weight`` (1).

    - ``L_d = BCE(D(x^t), 1) + BCE(D(x̃), 0)`` on ``x̃ = G(x^s, z).detach()`` trains only the discriminator to tell
      real target images from generated ones (the paper's sum of the two log-likelihoods, as the authors' code);
    - ``L_G = BCE(D(x̃), 1)`` with ``D``'s weights frozen (the non-saturating form of ``G``'s side of the min-max,
      as the authors' code) and the task term train the generator to make target-like images that keep their class;
    - ``L_c`` (:func:`~tlrun.losses.pixel.pairwise_mse`) is the content-similarity loss, the pairwise mean squared
      error between ``x^s`` and ``G(x^s, z)``, over every pixel (the paper masks it to the rendered object's
      foreground, which only its LineMod data provide).

    ``z ~ U(−1, 1)^noise_dim``. Needs image inputs.

    The defaults are the authors' released hyperparameters (``hparams.py`` of ``pixel_domain_adaptation`` in
    tensorflow/models: every GAN and task weight 1, the similarity weight 0): ``a = 1``, ``c = 0``. The paper's
    digits runs (MNIST → USPS, MNIST → MNIST-M) optimise the objective without ``L_c``; it uses ``L_c`` on LineMod
    only. The flags its authors' release gives for the paper's MNIST → MNIST-M run (``research/domain_adaptation``'s
    README in tensorflow/models) weigh the generator's adversarial term by 0.0113 and its task loss by 0.0101, a
    ratio of 1.1, i.e. also ``a ≈ 1`` (the discriminator's own loss by 0.136; the paper's ``α`` and ``β`` themselves
    are not checked here).

    The generator ends in tanh mapped onto the pixel range of the inputs (:meth:`pixel_range`), as the paper's ends
    in tanh on images in [−1, 1]: generated images stay in the data's range. Its batch still passes the classifier
    without updating its batch-norm running statistics (:func:`running_statistics_kept`), which evaluation uses on
    real target images: an earlier unbounded generator reached ±50 against pixels in [0, 1], and statistics gathered
    from it made the evaluated network predict one class for every target image.

    Args:
        noise_dim: size of ``z``.
        generator_channels, generator_blocks: the generator's width and number of residual blocks.
        discriminator_channels: the discriminator's width.
        adversarial_weight: ``a = α/β``, the weight of the GAN losses against the task losses.
        content_weight: ``c = γ/β``, the weight of the content-similarity loss (0: not computed).
        **kwargs: those of :class:`~tlrun.methods.adaptation.DomainAdaptation`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        noise_dim: int = 10,
        generator_channels: int = 64,
        generator_blocks: int = 4,
        discriminator_channels: int = 64,
        adversarial_weight: float = 1.0,
        content_weight: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, **kwargs)
        check_pixelda(
            type(self).__name__, noise_dim=noise_dim, generator_channels=generator_channels,
            generator_blocks=generator_blocks, discriminator_channels=discriminator_channels,
            adversarial_weight=adversarial_weight, content_weight=content_weight,
        )
        self.noise_dim = int(noise_dim)
        self.generator_channels = int(generator_channels)
        self.generator_blocks = int(generator_blocks)
        self.discriminator_channels = int(discriminator_channels)
        self.adversarial_weight = float(adversarial_weight)
        self.content_weight = float(content_weight)

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

    def pixel_range(self, data: TrainingData, shape: tuple[int, int, int], size: int = 256) -> tuple[list[float], list[float]]:
        """Per channel, the ``(low, high)`` the generator's output is mapped onto: the range the loader gives the
        images in, ``[0, 1]`` pixels after the backbone's ``normalization`` ``(x − mean) / std`` (``[0, 1]`` for
        LeNet on digits, ``[−mean/std, (1 − mean)/std]`` for an ImageNet ResNet), widened to the smallest and
        largest value of the first ``size`` source and target images if these go beyond it (pixel features given
        in another range, e.g. standardised)."""
        C = shape[0]
        low, high = torch.zeros(C), torch.ones(C)
        norm = getattr(self.backbone, "normalization", None)
        if norm is not None:
            mean, std = (torch.as_tensor(v, dtype=torch.float32).flatten() for v in norm)
            if mean.numel() in (1, C) and std.numel() in (1, C):
                low, high = (low - mean) / std, (high - mean) / std
        for X in (data.source.X, data.target.X):
            images = self.example_batch(X, size=min(len(X), size)).reshape(-1, *shape)
            low = torch.minimum(low, images.amin(dim=(0, 2, 3)))
            high = torch.maximum(high, images.amax(dim=(0, 2, 3)))
        return low.tolist(), high.tolist()

    def build_extra(self, data: TrainingData) -> None:
        shape = self.image_shape(data)
        low, high = self.pixel_range(data, shape)
        self.generator = PixelGenerator(shape, self.noise_dim, self.generator_channels, self.generator_blocks, low, high)
        self.discriminator = PixelDiscriminator(shape, self.discriminator_channels)

    def transfer_loss(self, batch: DomainBatch) -> torch.Tensor:
        source = batch.source_inputs
        noise = torch.rand(source.shape[0], self.noise_dim, device=source.device) * 2 - 1
        generated = self.generator(source, noise)
        with running_statistics_kept(self.backbone, self.bottleneck):
            task = F.cross_entropy(self(generated), batch.source_labels)
        fool = generator_loss(frozen_call(self.discriminator, generated))
        # the paper's L_d sums the real and the generated terms; discriminator_loss averages them
        discriminate = 2 * discriminator_loss(self.discriminator(batch.target_inputs), self.discriminator(generated.detach()))
        loss = task + self.adversarial_weight * (fool + discriminate)
        terms = {"generated_task_loss": task, "generator_loss": fool, "discriminator_loss": discriminate}
        if self.content_weight > 0:
            terms["content_loss"] = content = pairwise_mse(generated, source)
            loss = loss + self.content_weight * content
        self.note(**terms)
        return loss
