"""The pixel-level adaptation blocks of PixelDA (Bousmalis et al., "Unsupervised Pixel-Level Domain Adaptation
with Generative Adversarial Networks", CVPR 2017): a residual generator that maps a source image and a noise
vector to a target-like image (its tanh output mapped onto the images' pixel range), a convolutional discriminator
with one logit per image, their GAN losses, and the content-similarity loss (masked pairwise mean squared error).

Both networks take images ``(n, C, H, W)`` or flat rows ``(n, C·H·W)`` (as the feature datasets store them) and
the generator answers in the form it was given.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def channel_bounds(value: float | Sequence[float], channels: int, name: str) -> torch.Tensor:
    """``value`` (one number, or one per channel) as a ``(1, channels, 1, 1)`` tensor of finite floats."""
    bounds = torch.as_tensor(value, dtype=torch.float32).flatten()
    if bounds.numel() == 1:
        bounds = bounds.expand(channels)
    if bounds.numel() != channels or not torch.isfinite(bounds).all():
        raise ValueError(f"{name} must be one finite number or one per channel ({channels}), got {value}")
    return bounds.clone().reshape(1, channels, 1, 1)


def squash(u: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """``low + (high − low) · (tanh(u) + 1) / 2``: the paper's tanh output layer, mapped from ``(−1, 1)`` onto the
    pixel range ``[low, high]`` (broadcast per channel); never outside it, whatever ``u`` (computed as a
    :func:`torch.lerp`, exact at both ends where ``low + (high − low) · 1`` could round past ``high``)."""
    return torch.lerp(low.expand_as(u), high.expand_as(u), (torch.tanh(u) + 1) / 2)


class PixelGenerator(nn.Module):
    """PixelDA's residual generator ``G(x, z)`` (the paper's Figure 2, and the authors' ``resnet_generator``)::

        plane = reshape(Linear(z), 1 × H × W)                  (the noise as one extra channel)
        u = conv3×3_{channels→C}( blocks × ResidualBlock( ReLU(conv3×3_{C+1→channels}([x, plane])) ) )
        G(x, z) = low + (high − low) · (tanh(u) + 1) / 2

    with ``x`` the source images ``(n, C, H, W)`` and ``z`` the noise ``(n, noise_dim)``; the output has the shape
    of ``x``. The paper ends ``G`` in tanh on images scaled to ``[−1, 1]``; here the tanh is mapped onto the range
    the images actually have, ``[low, high]`` (one number, or one per channel), so generated pixels can never leave
    it (an unbounded last layer once produced pixels of ±50 against data in ``[0, 1]``). As in the paper there is no
    skip connection from ``x`` to the output: an untrained generator gives images near the middle of the range.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        noise_dim: int = 10,
        channels: int = 64,
        blocks: int = 4,
        low: float | Sequence[float] = -1.0,
        high: float | Sequence[float] = 1.0,
    ) -> None:
        super().__init__()
        self.image_shape = check_image_shape(image_shape)
        if noise_dim < 1 or channels < 1 or blocks < 0:
            raise ValueError(
                f"noise_dim and channels must be positive and blocks non-negative, "
                f"got {noise_dim}, {channels} and {blocks}"
            )
        C, H, W = self.image_shape
        lows, highs = channel_bounds(low, C, "low"), channel_bounds(high, C, "high")
        if not (lows < highs).all():
            raise ValueError(f"the pixel range needs low < high in every channel, got low={low}, high={high}")
        self.register_buffer("low", lows)
        self.register_buffer("high", highs)
        self.noise_dim = noise_dim
        self.noise_to_plane = nn.Linear(noise_dim, H * W)
        self.head = nn.Sequential(nn.Conv2d(C + 1, channels, 3, padding=1), nn.ReLU())
        self.blocks = nn.Sequential(*(ResidualBlock(channels) for _ in range(blocks)))
        self.tail = nn.Conv2d(channels, C, 3, padding=1)

    def forward(self, images: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        x, flat = as_images(images, self.image_shape)
        if noise.dim() != 2 or noise.shape != (x.shape[0], self.noise_dim):
            raise ValueError(
                f"noise must be ({x.shape[0]} × {self.noise_dim}), one row per image, got shape {tuple(noise.shape)}"
            )
        _, H, W = self.image_shape
        plane = self.noise_to_plane(noise).reshape(x.shape[0], 1, H, W)
        u = self.tail(self.blocks(self.head(torch.cat([x, plane], dim=1))))
        out = squash(u, self.low, self.high)
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


def pairwise_mse(generated: torch.Tensor, source: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """PixelDA's content-similarity loss, the masked pairwise mean squared error (PMSE, the paper's ``L_c``)::

        d_i = x_i − G(x_i, z_i)                      (flattened: k = C·H·W values per image)
        L_c = mean_i [ (1/k) ‖d_i ∘ m_i‖² − (1/k²) (d_iᵀ m_i)² ]

    It penalises differences between pairs of pixels rather than between a pixel and its source value, so a
    constant change of the masked pixels costs nothing: ``G`` may change the overall colour or brightness of the
    object but should keep its shape. ``source`` ``x`` and ``generated`` ``G(x, z)`` are ``(n, ...)`` of one shape
    (images or flat rows); ``mask`` ``m`` (0/1, the foreground; the paper's LineMod masks come from the rendering's
    depth) has the shape of one image or of the batch; ``None`` means every pixel (``m = 1``, plain PMSE).
    """
    if generated.shape != source.shape or generated.dim() < 2:
        raise ValueError(
            f"generated and source images must be (n, ...) of one shape, got {tuple(generated.shape)} and {tuple(source.shape)}"
        )
    d = (source - generated).reshape(source.shape[0], -1)
    k = d.shape[1]
    m = torch.ones_like(d) if mask is None else torch.broadcast_to(mask.to(d.dtype), source.shape).reshape(d.shape)
    return ((d * m).pow(2).sum(1) / k - (d * m).sum(1).pow(2) / k**2).mean()
