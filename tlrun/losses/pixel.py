"""The pixel-level adaptation blocks of PixelDA (Bousmalis et al., "Unsupervised Pixel-Level Domain Adaptation
with Generative Adversarial Networks", CVPR 2017): a residual generator that maps a source image and a noise
vector to a target-like image, a convolutional discriminator with one logit per image, and their GAN losses.

Both networks take images ``(n, C, H, W)`` or flat rows ``(n, C·H·W)`` (as the feature datasets store them) and
the generator answers in the form it was given.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def check_image_shape(image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """``image_shape`` as a tuple of three positive ints ``(C, H, W)``, or a ``ValueError``."""
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"image_shape must be three positive sizes (C, H, W), got {tuple(image_shape)}")
    return shape  # type: ignore[return-value]


def as_images(x: torch.Tensor, image_shape: tuple[int, int, int]) -> tuple[torch.Tensor, bool]:
    """``x`` as ``(n, C, H, W)`` images and whether it came as flat rows ``(n, C·H·W)``."""
    C, H, W = image_shape
    if x.dim() == 2 and x.shape[1] == C * H * W:
        return x.reshape(x.shape[0], C, H, W), True
    if x.dim() == 4 and tuple(x.shape[1:]) == (C, H, W):
        return x, False
    raise ValueError(
        f"expected images of shape (n, {C}, {H}, {W}) or flat rows (n, {C * H * W}), got shape {tuple(x.shape)}"
    )


class ResidualBlock(nn.Module):
    """``x + BN(conv(ReLU(BN(conv(x)))))`` with 3×3 convolutions that keep the size and the channels."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class PixelGenerator(nn.Module):
    """PixelDA's residual generator ``G(x, z) = x + r(x, z)``::

        plane = reshape(Linear(z), 1 × H × W)                  (the noise as one extra channel)
        r = conv3×3_{channels→C}( blocks × ResidualBlock( ReLU(conv3×3_{C+1→channels}([x, plane])) ) )

    with ``x`` the source images ``(n, C, H, W)`` and ``z`` the noise ``(n, noise_dim)``; the output has the shape
    of ``x``. The last convolution starts with its weights scaled by 0.01 and a zero bias, so an untrained
    generator is close to the identity (and every layer still receives a gradient from the first step).
    """

    def __init__(
        self, image_shape: tuple[int, int, int], noise_dim: int = 10, channels: int = 64, blocks: int = 4
    ) -> None:
        super().__init__()
        self.image_shape = check_image_shape(image_shape)
        if noise_dim < 1 or channels < 1 or blocks < 0:
            raise ValueError(
                f"noise_dim and channels must be positive and blocks non-negative, "
                f"got {noise_dim}, {channels} and {blocks}"
            )
        C, H, W = self.image_shape
        self.noise_dim = noise_dim
        self.noise_to_plane = nn.Linear(noise_dim, H * W)
        self.head = nn.Sequential(nn.Conv2d(C + 1, channels, 3, padding=1), nn.ReLU())
        self.blocks = nn.Sequential(*(ResidualBlock(channels) for _ in range(blocks)))
        self.tail = nn.Conv2d(channels, C, 3, padding=1)
        with torch.no_grad():
            self.tail.weight.mul_(0.01)
            self.tail.bias.zero_()

    def forward(self, images: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        x, flat = as_images(images, self.image_shape)
        if noise.dim() != 2 or noise.shape != (x.shape[0], self.noise_dim):
            raise ValueError(
                f"noise must be ({x.shape[0]} × {self.noise_dim}), one row per image, got shape {tuple(noise.shape)}"
            )
        _, H, W = self.image_shape
        plane = self.noise_to_plane(noise).reshape(x.shape[0], 1, H, W)
        residual = self.tail(self.blocks(self.head(torch.cat([x, plane], dim=1))))
        out = x + residual
        return out.reshape(out.shape[0], -1) if flat else out


def downsamplings(size: int, until: int = 4) -> int:
    """How many stride-2 3×3 convolutions (padding 1: ``s → ⌈s/2⌉``) bring ``size`` down to ``until`` or less
    (at least one)."""
    count = 0
    while size > until:
        size = (size + 1) // 2
        count += 1
    return max(count, 1)


class PixelDiscriminator(nn.Module):
    """PixelDA's image discriminator ``D(x)``, ONE logit per image, of shape ``(n,)`` (``σ(D(x))`` = P(real
    target image)): stride-2 3×3 convolutions, each followed by LeakyReLU(0.2) and, after the first, batch norm,
    until the larger side is ≤ 4 (:func:`downsamplings`: 1 for 8×8, 3 for 28×28 or 32×32, 6 for 224×224); the
    channels double from ``channels`` at each step up to ``8 · channels``; then global average pooling and a
    linear layer to the logit.
    """

    def __init__(self, image_shape: tuple[int, int, int], channels: int = 64) -> None:
        super().__init__()
        self.image_shape = check_image_shape(image_shape)
        if channels < 1:
            raise ValueError(f"channels must be positive, got {channels}")
        C, H, W = self.image_shape
        layers: list[nn.Module] = []
        width = C
        for i in range(downsamplings(max(H, W))):
            out = channels * 2 ** min(i, 3)
            layers.append(nn.Conv2d(width, out, 3, stride=2, padding=1, bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.LeakyReLU(0.2))
            width = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x, _ = as_images(images, self.image_shape)
        pooled = self.features(x).mean(dim=(2, 3))
        return self.classifier(pooled).squeeze(1)


def check_logits(logits: torch.Tensor, name: str) -> None:
    if logits.dim() != 1 or logits.shape[0] < 1:
        raise ValueError(f"{name} must hold one logit per sample (shape (n,), n ≥ 1), got shape {tuple(logits.shape)}")


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's GAN loss, binary cross-entropy on logits (real label 1, generated label 0)::

        L_D = ½ [ −mean_i log σ(D(x_i^t)) − mean_j log(1 − σ(D(G(x_j^s, z_j)))) ]
    """
    check_logits(real_logits, "real_logits")
    check_logits(fake_logits, "fake_logits")
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return 0.5 * (real + fake)


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The non-saturating generator loss ``L_G = −mean_j log σ(D(G(x_j^s, z_j)))`` = BCE(fake, 1) on logits."""
    check_logits(fake_logits, "fake_logits")
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
