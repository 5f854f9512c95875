"""The loss building blocks of tlrun.losses against closed forms (numpy, by hand) and their defining properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tlrun.losses import (
    DomainDiscriminator,
    GradientReversal,
    cmd,
    coral_loss,
    dann_schedule,
    domain_adversarial_loss,
    gaussian_kernel_matrix,
    mmd_linear,
    mmd_multi_kernel,
    mmd_multi_layer,
)


def sample(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=generator, dtype=torch.float64) + shift


# --- MMD ------------------------------------------------------------------------------------------------------


def test_mmd_linear_is_the_squared_distance_of_the_means():
    source, target = sample(7, 3, 0), sample(5, 3, 1, shift=0.3)
    expected = np.sum((source.numpy().mean(axis=0) - target.numpy().mean(axis=0)) ** 2)
    assert mmd_linear(source, target).item() == pytest.approx(expected, rel=1e-12)


def test_gaussian_kernel_matrix_sums_the_kernels():
    X, Y = sample(4, 2, 0), sample(3, 2, 1)
    d2 = ((X.numpy()[:, None, :] - Y.numpy()[None, :, :]) ** 2).sum(axis=2)
    expected = np.exp(-d2 / 0.5) + np.exp(-d2 / 2.0)
    np.testing.assert_allclose(gaussian_kernel_matrix(X, Y, [0.5, 2.0]).numpy(), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="positive"):
        gaussian_kernel_matrix(X, Y, [1.0, 0.0])


def test_mmd_multi_kernel_matches_a_hand_computation():
    source, target = sample(4, 2, 0), sample(3, 2, 1, shift=1.0)
    pooled = np.concatenate([source.numpy(), target.numpy()])
    d2 = ((pooled[:, None, :] - pooled[None, :, :]) ** 2).sum(axis=2)
    n = len(pooled)
    center = d2.sum() / (n * n - n)
    bandwidths = [center * 2.0**u for u in (-1, 0, 1)]
    K = sum(np.exp(-d2 / h) for h in bandwidths)
    expected = K[:4, :4].mean() + K[4:, 4:].mean() - 2 * K[:4, 4:].mean()
    value = mmd_multi_kernel(source, target, kernel_mul=2.0, kernel_num=3)
    assert value.item() == pytest.approx(expected, rel=1e-10)


def test_mmd_multi_kernel_of_identical_batches_is_exactly_zero_and_symmetric():
    x = sample(16, 4, 0)
    assert mmd_multi_kernel(x, x.clone()).item() == 0.0
    source, target = sample(10, 4, 1), sample(13, 4, 2, shift=0.5)
    assert mmd_multi_kernel(source, target).item() == pytest.approx(mmd_multi_kernel(target, source).item(), rel=1e-12)


@pytest.mark.parametrize("loss", [mmd_linear, mmd_multi_kernel], ids=["linear", "multi_kernel"])
def test_mmd_is_small_for_one_distribution_and_grows_with_a_mean_shift(loss):
    source = sample(300, 5, 0)
    values = [loss(source, sample(300, 5, 1, shift=shift)).item() for shift in (0.0, 0.25, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in zip(values, values[1:])), values
    assert values[0] < 0.05 * values[3], values  # shift 0 vs shift 1
    assert values[0] < 0.1


def test_mmd_multi_layer_sums_the_layers():
    pairs = [(sample(8, 3, 0), sample(6, 3, 1, shift=1.0)), (sample(8, 5, 2), sample(6, 5, 3, shift=-0.5))]
    expected = sum(mmd_multi_kernel(s, t, kernel_num=3).item() for s, t in pairs)
    assert mmd_multi_layer(pairs, kernel_num=3).item() == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="at least one"):
        mmd_multi_layer([])


def test_mmd_sends_gradient_into_both_batches():
    source = sample(8, 3, 0).requires_grad_()
    target = sample(8, 3, 1, shift=1.0).requires_grad_()
    mmd_multi_kernel(source, target).backward()
    assert source.grad.abs().sum() > 0 and target.grad.abs().sum() > 0


# --- CORAL ----------------------------------------------------------------------------------------------------


def test_coral_loss_matches_numpy_covariances():
    source, target = sample(20, 4, 0), sample(15, 4, 1) * torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64)
    C_s, C_t = np.cov(source.numpy(), rowvar=False), np.cov(target.numpy(), rowvar=False)
    expected = np.sum((C_s - C_t) ** 2) / (4 * 4**2)
    assert coral_loss(source, target).item() == pytest.approx(expected, rel=1e-12)


def test_coral_loss_is_zero_for_identical_covariances():
    source = sample(20, 3, 0)
    # a translate has the same covariance
    assert coral_loss(source, source + 5.0).item() == pytest.approx(0.0, abs=1e-12)


# --- CMD ------------------------------------------------------------------------------------------------------


def test_cmd_first_term_is_the_distance_of_the_means():
    source, target = sample(10, 3, 0), sample(12, 3, 1, shift=0.7)
    distance = np.linalg.norm(source.numpy().mean(axis=0) - target.numpy().mean(axis=0))
    assert cmd(source, target, moments=1).item() == pytest.approx(distance, rel=1e-12)
    assert cmd(source, target, moments=1, bounds=(-1.0, 1.0)).item() == pytest.approx(distance / 2, rel=1e-12)


def test_cmd_with_three_moments_matches_numpy():
    source, target = sample(10, 3, 0), sample(12, 3, 1, shift=0.7) ** 2
    X, Y = source.numpy(), target.numpy()
    a, b = -2.0, 3.0
    span = abs(b - a)
    expected = np.linalg.norm(X.mean(axis=0) - Y.mean(axis=0)) / span
    for k in (2, 3):
        c_x = ((X - X.mean(axis=0)) ** k).mean(axis=0)
        c_y = ((Y - Y.mean(axis=0)) ** k).mean(axis=0)
        expected += np.linalg.norm(c_x - c_y) / span**k
    assert cmd(source, target, moments=3, bounds=(a, b)).item() == pytest.approx(expected, rel=1e-12)


# --- input checks ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", [mmd_linear, mmd_multi_kernel, coral_loss, cmd])
def test_losses_reject_mismatched_feature_sizes(loss):
    with pytest.raises(ValueError, match="differ in size"):
        loss(sample(5, 3, 0), sample(5, 4, 1))
    with pytest.raises(ValueError, match="2-D"):
        loss(sample(5, 3, 0)[0], sample(5, 3, 1))


def test_coral_needs_two_samples():
    with pytest.raises(ValueError, match="at least 2 samples"):
        coral_loss(sample(1, 3, 0), sample(5, 3, 1))


def test_cmd_rejects_bad_arguments():
    with pytest.raises(ValueError, match="moments"):
        cmd(sample(5, 3, 0), sample(5, 3, 1), moments=0)
    with pytest.raises(ValueError, match="bounds"):
        cmd(sample(5, 3, 0), sample(5, 3, 1), bounds=(1.0, 1.0))


# --- adversarial ----------------------------------------------------------------------------------------------


def test_gradient_reversal_is_identity_forward_and_scales_the_gradient_by_minus_lambda():
    grl = GradientReversal(coefficient=0.5)
    x = sample(4, 3, 0).requires_grad_()
    y = grl(x)
    assert torch.equal(y, x)
    (y * torch.arange(3, dtype=torch.float64)).sum().backward()
    expected = -0.5 * torch.arange(3, dtype=torch.float64).expand(4, 3)
    torch.testing.assert_close(x.grad, expected, rtol=0, atol=0)

    x.grad = None
    grl.coefficient = 2.0
    grl(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, -2.0), rtol=0, atol=0)


def test_domain_discriminator_has_one_output_per_sample():
    discriminator = DomainDiscriminator(6, hidden=8)
    assert discriminator.net[-1].out_features == 1
    assert discriminator(sample(5, 6, 0).float()).shape == (5,)
    with pytest.raises(ValueError, match="6"):
        discriminator(torch.zeros(5, 4))


def test_domain_adversarial_loss_is_the_binary_cross_entropy_with_source_one():
    torch.manual_seed(0)
    discriminator = DomainDiscriminator(3, hidden=4).double().eval()
    source, target = sample(4, 3, 0), sample(5, 3, 1, shift=1.0)
    p_s = torch.sigmoid(discriminator(source)).detach().numpy()
    p_t = torch.sigmoid(discriminator(target)).detach().numpy()
    expected = -(np.log(p_s).sum() + np.log(1 - p_t).sum()) / 9
    value = domain_adversarial_loss(discriminator, source, target, GradientReversal(1.0))
    assert value.item() == pytest.approx(expected, rel=1e-10)


def test_domain_adversarial_loss_reverses_the_gradient_into_the_features_only():
    torch.manual_seed(0)
    discriminator = DomainDiscriminator(3, hidden=16).double()

    def gradients(grl):
        source = sample(6, 3, 0).requires_grad_()
        target = sample(6, 3, 1, shift=1.0).requires_grad_()
        discriminator.zero_grad()
        domain_adversarial_loss(discriminator, source, target, grl).backward()
        weights = discriminator.net[0].weight.grad.clone()
        return source.grad, target.grad, weights

    plain_s, plain_t, plain_w = gradients(None)
    reversed_s, reversed_t, reversed_w = gradients(GradientReversal(0.5))
    assert plain_s.abs().sum() > 0 and plain_t.abs().sum() > 0
    torch.testing.assert_close(reversed_s, -0.5 * plain_s)
    torch.testing.assert_close(reversed_t, -0.5 * plain_t)
    torch.testing.assert_close(reversed_w, plain_w)  # the discriminator itself still learns to separate


def test_domain_adversarial_loss_rejects_a_multi_output_discriminator():
    with pytest.raises(ValueError, match="one logit per sample"):
        domain_adversarial_loss(torch.nn.Linear(3, 2), torch.zeros(2, 3), torch.zeros(2, 3))


def test_dann_schedule():
    assert dann_schedule(0.0) == 0.0
    values = [dann_schedule(p) for p in np.linspace(0, 1, 21)]
    assert all(a < b for a, b in zip(values, values[1:]))
    assert dann_schedule(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert dann_schedule(1.0) > 0.999
    assert dann_schedule(0.5, gamma=2.0) == pytest.approx(2 / (1 + math.exp(-1)) - 1)
    with pytest.raises(ValueError, match="progress"):
        dann_schedule(1.5)
