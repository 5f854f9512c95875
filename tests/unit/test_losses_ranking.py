"""Zero-shot building blocks: the hinge ranking loss and ESZSL's closed form, against hand computations."""

from __future__ import annotations

import pytest
import torch

from tlrun.losses import compatibility, eszsl_weights, hinge_ranking_loss


def test_hinge_ranking_loss_is_zero_when_every_margin_is_met():
    scores = torch.tensor([[3.0, 1.0, 0.5], [0.0, 2.0, 0.9]])
    assert hinge_ranking_loss(scores, torch.tensor([0, 1]), margin=1.0).item() == 0.0
    # a margin of 1.2 is not met by the second sample (2.0 - 0.9 = 1.1): loss (1.2 - 1.1) / 2
    assert hinge_ranking_loss(scores, torch.tensor([0, 1]), margin=1.2).item() == pytest.approx(0.05)


def test_hinge_ranking_loss_gradient_raises_the_true_class_and_lowers_the_worst_other():
    scores = torch.tensor([[0.2, 0.5, 0.4], [2.0, 0.0, 0.1]], requires_grad=True)
    loss = hinge_ranking_loss(scores, torch.tensor([0, 0]), margin=1.0)
    assert loss.item() == pytest.approx((1.0 - 0.2 + 0.5) / 2)  # only the first sample violates
    loss.backward()
    expected = torch.tensor([[-0.5, 0.5, 0.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(scores.grad, expected)


def test_compatibility_and_input_checks():
    f, g = torch.randn(4, 3), torch.randn(5, 3)
    assert torch.allclose(compatibility(f, g), f @ g.T)
    with pytest.raises(ValueError, match="must share d"):
        compatibility(f, torch.randn(5, 2))
    with pytest.raises(ValueError, match="C >= 2"):
        hinge_ranking_loss(torch.randn(3, 1), torch.zeros(3, dtype=torch.long))


def test_eszsl_is_the_closed_form_minimiser_of_its_objective():
    generator = torch.Generator().manual_seed(0)
    n, d, z, a = 30, 6, 4, 5
    features = torch.randn(n, d, generator=generator, dtype=torch.float64)
    labels = torch.arange(n) % z
    signatures = torch.randn(z, a, generator=generator, dtype=torch.float64)
    gamma, lamb = 0.7, 0.3
    V = eszsl_weights(features, labels, signatures, gamma=gamma, lamb=lamb)
    # the same matrix by a direct solve of the formula with explicit inverses
    X, S = features.T, signatures.T
    Y = -torch.ones(n, z, dtype=torch.float64)
    Y[torch.arange(n), labels] = 1.0
    direct = torch.linalg.inv(X @ X.T + gamma * torch.eye(d, dtype=torch.float64)) @ X @ Y @ S.T @ torch.linalg.inv(
        S @ S.T + lamb * torch.eye(a, dtype=torch.float64)
    )
    assert torch.allclose(V, direct, atol=1e-10)
    # ... and it is a stationary point of the objective (which is convex): the gradient vanishes there
    V = V.clone().requires_grad_(True)
    objective = ((X.T @ V @ S - Y) ** 2).sum() + gamma * ((V @ S) ** 2).sum() + lamb * ((X.T @ V) ** 2).sum() \
        + gamma * lamb * (V**2).sum()
    objective.backward()
    assert V.grad.abs().max().item() < 1e-8
