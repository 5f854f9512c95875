"""PixelDA against the paper: a generator bounded to the data's pixel range, the objective's weights, and the
content-similarity loss (masked pairwise mean squared error)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from tlrun.backbones import MLP
from tlrun.config import instantiate
from tlrun.losses.pixel import PixelGenerator, pairwise_mse, squash
from tlrun.methods.pixelda import PixelDA
from tlrun.scenarios import Labeled, TrainingData, Unlabeled

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- the generator stays in the pixel range --------------------------------------------------------------------


@pytest.mark.parametrize(("low", "high"), [(0.0, 1.0), (-1.0, 1.0), ([-2.1, -2.0, -1.8], [2.2, 2.4, 2.6])])
def test_generated_pixels_stay_in_the_data_range_whatever_the_weights_and_the_noise(low, high):
    torch.manual_seed(0)
    generator = PixelGenerator((3, 6, 6), noise_dim=4, channels=8, blocks=2, low=low, high=high)
    with torch.no_grad():  # weights far beyond any training: the last layer's input reaches thousands
        for parameter in generator.parameters():
            parameter.normal_(0.0, 30.0)
    images, noise = torch.randn(16, 3, 6, 6) * 50, torch.randn(16, 4) * 100
    out = generator(images, noise)
    lows = torch.as_tensor(low, dtype=torch.float32).expand(3).reshape(1, 3, 1, 1)
    highs = torch.as_tensor(high, dtype=torch.float32).expand(3).reshape(1, 3, 1, 1)
    assert torch.isfinite(out).all()
    assert (out >= lows).all() and (out <= highs).all()
    # and the range is used, not merely respected: saturated pixels reach both ends
    assert torch.isclose(out.amin(dim=(0, 2, 3)), lows.flatten(), atol=1e-3).all()
    assert torch.isclose(out.amax(dim=(0, 2, 3)), highs.flatten(), atol=1e-3).all()


def test_squash_is_the_tanh_mapped_onto_the_range():
    u = torch.tensor([-30.0, -1.0, 0.0, 0.5, 30.0])
    expected = 2.0 + 4.0 * (np.tanh(u.numpy()) + 1) / 2  # onto [2, 6]
    torch.testing.assert_close(squash(u, torch.tensor(2.0), torch.tensor(6.0)), torch.as_tensor(expected))
    assert squash(torch.tensor(0.0), torch.tensor(2.0), torch.tensor(6.0)).item() == pytest.approx(4.0)


def test_the_generator_learns_from_a_downstream_loss_and_rejects_a_bad_range():
    torch.manual_seed(0)
    generator = PixelGenerator((1, 8, 8), noise_dim=5, channels=8, blocks=2, low=0.0, high=1.0)
    images, noise = torch.rand(4, 1, 8, 8), torch.rand(4, 5) * 2 - 1
    fake = generator(images, noise)
    torch.testing.assert_close(generator(images.reshape(4, -1), noise), fake.reshape(4, -1))
    fake.pow(2).mean().backward()
    for name, parameter in generator.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    with pytest.raises(ValueError, match="low < high"):
        PixelGenerator((1, 8, 8), low=1.0, high=0.0)
    with pytest.raises(ValueError, match="one per channel"):
        PixelGenerator((3, 8, 8), low=[0.0, 0.0], high=1.0)


# --- the content-similarity loss ---------------------------------------------------------------------------------


def test_pairwise_mse_by_hand():
    # one image of k = 4 pixels: d = x − G = [1, 2, 0, −1], mask [1, 1, 0, 1]
    source = torch.tensor([[1.0, 2.0, 5.0, 0.0]])
    generated = torch.tensor([[0.0, 0.0, 5.0, 1.0]])
    mask = torch.tensor([1.0, 1.0, 0.0, 1.0])
    # (1/4)(1 + 4 + 0 + 1) − (1/16)(1 + 2 − 1)² = 1.5 − 0.25
    assert pairwise_mse(generated, source, mask).item() == pytest.approx(1.25)
    # no mask: (1/4)·6 − (1/16)·2² = 1.25 too (the masked pixel has d = 0); a masked-out difference is ignored
    assert pairwise_mse(generated, source).item() == pytest.approx(1.25)
    moved = generated.clone()
    moved[0, 2] = -7.0
    assert pairwise_mse(moved, source, mask).item() == pytest.approx(1.25)
    assert pairwise_mse(moved, source).item() == pytest.approx((6 + 144) / 4 - (2 + 12) ** 2 / 16)
    # the batch mean of the per-image values; a second image d = [2, 2, 2, 2]: 4 − 4 = 0 (a constant change is free)
    batch_source = torch.cat([source, torch.full((1, 4), 3.0)])
    batch_generated = torch.cat([generated, torch.full((1, 4), 1.0)])
    assert pairwise_mse(batch_generated, batch_source).item() == pytest.approx((1.25 + 0.0) / 2)


def test_pairwise_mse_ignores_a_constant_shift_and_divides_by_every_pixel_under_a_mask():
    torch.manual_seed(0)
    source = torch.rand(3, 2, 4, 4)
    mask = (torch.rand(1, 2, 4, 4) > 0.5).float()
    assert pairwise_mse(source + 0.7, source).item() == pytest.approx(0.0, abs=1e-6)
    # k counts every pixel, masked or not (the paper's definition): shifting the p = |m|/k masked pixels by c
    # costs c²·p − c²·p² = c² p (1 − p), the same with the mask or without it (d is 0 off the mask)
    p = mask.mean().item()
    for m in (mask, None):
        assert pairwise_mse(source + 0.7 * mask, source, m).item() == pytest.approx(0.49 * p * (1 - p), rel=1e-5)
    # off the mask a difference is ignored
    assert pairwise_mse(source + 5.0 * (1 - mask), source, mask).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="one shape"):
        pairwise_mse(source[:2], source)


# --- the method ------------------------------------------------------------------------------------------------


def _data(low: float = 0.0, high: float = 1.0, n: int = 16) -> TrainingData:
    rng = np.random.default_rng(0)
    X = (low + (high - low) * rng.random((n, 64))).astype(np.float32)
    return TrainingData(Labeled(X, np.arange(n) % 4), Unlabeled(X[::-1].copy()), 4, tuple("abcd"), (1, 8, 8))


def _built(compose, data: TrainingData, *overrides: str) -> PixelDA:
    torch.manual_seed(0)
    method = instantiate(compose("method=pixelda", *overrides).method, backbone=MLP(input_shape=(1, 8, 8), hidden=[32]))
    method._image_shape = data.image_shape
    method.num_classes = 4
    method.bottleneck, method.classifier = method.build_head(4)
    method.build_extra(data)
    return method


def test_the_generator_is_bounded_to_the_loaders_pixel_range(compose):
    method = _built(compose, _data())
    assert method.generator.low.flatten().tolist() == [0.0] and method.generator.high.flatten().tolist() == [1.0]
    wide = _built(compose, _data(-3.0, 2.0))  # pixel features in another range: the range widens to the data's
    assert -3.0 <= wide.generator.low.item() < -2.5 and 1.5 < wide.generator.high.item() <= 2.0
    method.backbone.normalization = ((0.5,), (0.25,))  # what the loader applies: (x − 0.5) / 0.25
    assert method.pixel_range(_data(), (1, 8, 8)) == ([-2.0], [2.0])


def test_the_objective_weights_each_term_as_configured(compose):
    data = _data()
    source = torch.as_tensor(data.source.X)
    target = torch.as_tensor(data.target.X) * 0.5 + 0.3
    labels = torch.as_tensor(data.source.y)

    def terms(*overrides: str) -> tuple[float, dict[str, float]]:
        method = _built(compose, data, *overrides)
        method.train()
        noted: dict[str, float] = {}
        method.note = lambda **values: noted.update({k: float(v.detach()) for k, v in values.items()})
        batch = method.forward_domains(source, labels, target)
        torch.manual_seed(1)  # the same noise z in every call
        return float(method.transfer_loss(batch).detach()), noted

    plain, parts = terms()
    assert "content_loss" not in parts  # content_weight 0: not computed
    assert plain == pytest.approx(parts["generated_task_loss"] + parts["generator_loss"] + parts["discriminator_loss"], rel=1e-5)
    weighted, again = terms("method.adversarial_weight=0.25", "method.content_weight=3.0")
    assert again["generated_task_loss"] == pytest.approx(parts["generated_task_loss"], rel=1e-5)
    assert weighted == pytest.approx(
        again["generated_task_loss"] + 0.25 * (again["generator_loss"] + again["discriminator_loss"]) + 3.0 * again["content_loss"],
        rel=1e-5,
    )
    assert again["content_loss"] > 0


class Fixed(torch.nn.Module):
    """A stand-in generator that always gives the same batch."""

    def __init__(self, images: torch.Tensor) -> None:
        super().__init__()
        self.images = images

    def forward(self, images: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.images


def test_the_discriminator_term_is_the_papers_sum_of_both_log_likelihoods(compose):
    data = _data()
    method = _built(compose, data)
    method.train()
    generator_noise = torch.rand(16, method.noise_dim) * 2 - 1
    source, target = torch.as_tensor(data.source.X), torch.as_tensor(data.target.X)
    with torch.no_grad():
        generated = method.generator(source, generator_noise)
        real, fake = method.discriminator(target), method.discriminator(generated)
    expected = F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + F.binary_cross_entropy_with_logits(
        fake, torch.zeros_like(fake)
    )
    noted: dict[str, float] = {}
    method.note = lambda **values: noted.update({k: float(v.detach()) for k, v in values.items()})
    method.generator = Fixed(generated)  # the same generated batch inside transfer_loss
    batch = method.forward_domains(source, torch.as_tensor(data.source.y), target)
    method.transfer_loss(batch)
    assert noted["discriminator_loss"] == pytest.approx(expected.item(), rel=1e-5)
