"""DSN's difference loss as DSN uses it (centred columns, averaged squares: the authors' code), and why."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tlrun.losses import difference_loss


def test_centred_mean_difference_loss_matches_the_authors_formula():
    generator = torch.Generator().manual_seed(0)
    shared = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    private = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    c = shared.numpy() - shared.numpy().mean(0)
    p = private.numpy() - private.numpy().mean(0)
    c = c / (np.linalg.norm(c, axis=1, keepdims=True) + 1e-6)
    p = p / (np.linalg.norm(p, axis=1, keepdims=True) + 1e-6)
    expected = np.mean((c.T @ p) ** 2)
    value = difference_loss(shared, private, center=True, reduction="mean")
    assert value.item() == pytest.approx(expected, rel=1e-12)
    summed = difference_loss(shared, private, center=True, reduction="sum")
    assert summed.item() == pytest.approx(expected * 12, rel=1e-12)
    with pytest.raises(ValueError, match="reduction"):
        difference_loss(shared, private, reduction="max")


def test_uncentred_loss_on_relu_codes_is_lowered_by_killing_codes():
    """Non-negative codes: the uncentred sum is ≥ the number of non-zero rows, so zeroing half the shared codes
    lowers it (the seed-2 collapse that made DSN centre its codes)."""
    generator = torch.Generator().manual_seed(1)
    shared = torch.rand(8, 5, generator=generator, dtype=torch.float64)
    private = torch.rand(8, 5, generator=generator, dtype=torch.float64)
    assert difference_loss(shared, private).item() >= 8 - 1e-6
    killed = shared.clone()
    killed[4:] = 0
    assert difference_loss(killed, private).item() < 0.6 * difference_loss(shared, private).item()
