"""DAN's multi-kernel MMD (Long et al. 2015): the median-centred bandwidth family, the equal-weight quadratic
estimate and the unbiased linear-time estimate over quad-tuples, by hand on tiny tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tlrun.backbones import MLP
from tlrun.losses.discrepancy import (
    median_squared_distance,
    mk_mmd,
    mk_mmd_linear_time,
    mk_mmd_quadratic,
    multi_kernel_bandwidths,
)
from tlrun.methods.dan import DAN


def column(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)[:, None]


def sample(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=generator, dtype=torch.float64) + shift


# --- the bandwidth family --------------------------------------------------------------------------------------


def test_median_squared_distance_by_hand():
    # pooled {0, 1, 3}: squared distances 1, 9, 4 -> median 4
    assert median_squared_distance(column(0, 1), column(3)).item() == 4.0
    # pooled {0, 1, 3, 7}: 1, 9, 49, 4, 36, 16 -> sorted 1 4 9 16 36 49, the two middle ones averaged: 12.5
    assert median_squared_distance(column(0, 1), column(3, 7)).item() == 12.5
    # 2-D: (0,0), (3,4), (0,1): squared distances 25, 1, 18 -> 18
    assert median_squared_distance(torch.tensor([[0.0, 0.0], [3.0, 4.0]]), torch.tensor([[0.0, 1.0]])).item() == 18


def test_dan_bandwidth_family_from_a_known_median():
    # median 4 (above): DAN's family 4 * 2^(u/2 - 8), u = 0..32: 2^-8 * 4 ... 2^8 * 4 in steps of 2^(1/2)
    h = multi_kernel_bandwidths(column(0, 1), column(3), 2.0**0.5, 33, None, center="median")
    assert h.shape == (33,)
    assert h[0].item() == pytest.approx(4 / 256, rel=1e-12)
    assert h[16].item() == pytest.approx(4.0, rel=1e-12)
    assert h[-1].item() == pytest.approx(4 * 256, rel=1e-12)
    assert h[1].item() == pytest.approx(4 / 256 * math.sqrt(2), rel=1e-12)
    np.testing.assert_allclose((h[1:] / h[:-1]).numpy(), math.sqrt(2), rtol=1e-12)
    # the mean centre: (1 + 9 + 4) / 3
    mean = multi_kernel_bandwidths(column(0, 1), column(3), 2.0, 1, None, center="mean")
    assert mean.item() == pytest.approx(14 / 3, rel=1e-12)
    with pytest.raises(ValueError, match="center must be mean or median"):
        multi_kernel_bandwidths(column(0, 1), column(3), 2.0, 3, None, center="mode")


# --- the linear-time estimate --------------------------------------------------------------------------------------

X, Y = column(0, 1, 0, 2), column(1, 2, 3, 3)
# quad-tuples (x1, x2, y1, y2) = (0, 1, 1, 2) and (0, 2, 3, 3); with k = exp(-d^2 / h):
#   g1 = k(0,1) + k(1,2) - k(0,2) - k(1,1) = 2e^{-1/h} - e^{-4/h} - 1
#   g2 = k(0,2) + k(3,3) - k(0,3) - k(2,3) = e^{-4/h} + 1 - e^{-9/h} - e^{-1/h}
#   MMD_l^2 = (2/4)(g1 + g2) = (e^{-1/h} - e^{-9/h}) / 2


def by_hand(h: float) -> float:
    return (math.exp(-1 / h) - math.exp(-9 / h)) / 2


def test_linear_time_estimate_on_4_plus_4_points_by_hand():
    assert mk_mmd_linear_time(X, Y, torch.tensor([1.0])).item() == pytest.approx(by_hand(1.0), rel=1e-12)
    # two kernels, weighted 1/2 each
    both = mk_mmd_linear_time(X, Y, torch.tensor([1.0, 2.0])).item()
    assert both == pytest.approx((by_hand(1.0) + by_hand(2.0)) / 2, rel=1e-12)
    # an odd extra row is left out, as are the larger batch's extra rows
    assert mk_mmd_linear_time(torch.cat([X, column(9)]), Y, torch.tensor([1.0])).item() == pytest.approx(by_hand(1.0))
    assert mk_mmd_linear_time(X, torch.cat([Y, column(5, 6)]), torch.tensor([1.0])).item() == pytest.approx(
        by_hand(1.0))
    # mk_mmd's linear estimator with a given bandwidth is the same
    assert mk_mmd(X, Y, kernel_num=1, bandwidth=1.0, estimator="linear").item() == pytest.approx(by_hand(1.0))
    with pytest.raises(ValueError, match="at least 2"):
        mk_mmd_linear_time(column(0), column(1), torch.tensor([1.0]))


def test_linear_time_estimate_is_unbiased_where_the_quadratic_one_is_not():
    """Same distribution: the linear estimates average to 0 (within 4 standard errors); the V-statistic is > 0."""
    h = torch.tensor([0.5, 2.0, 8.0], dtype=torch.float64)
    linear, quadratic = [], []
    for seed in range(200):
        source, target = sample(16, 3, 2 * seed), sample(16, 3, 2 * seed + 1)
        linear.append(mk_mmd_linear_time(source, target, h).item())
        quadratic.append(mk_mmd_quadratic(source, target, h).item())
    linear = np.array(linear)
    assert abs(linear.mean()) < 4 * linear.std() / np.sqrt(len(linear)), (linear.mean(), linear.std())
    assert (linear < 0).any()  # unbiased: it can be negative
    assert min(quadratic) > 0 and np.mean(quadratic) > 10 * linear.std() / np.sqrt(len(linear))
    # a mean shift makes both clearly positive
    shifted = [mk_mmd_linear_time(sample(16, 3, s), sample(16, 3, s + 500, shift=2.0), h).item() for s in range(50)]
    assert np.mean(shifted) > 10 * np.std(shifted) / np.sqrt(50)


# --- the quadratic estimate and DAN's defaults ------------------------------------------------------------------


def test_quadratic_estimate_matches_numpy_with_equal_weights():
    source, target = sample(4, 2, 0), sample(3, 2, 1, shift=1.0)
    pooled = np.concatenate([source.numpy(), target.numpy()])
    d2 = ((pooled[:, None, :] - pooled[None, :, :]) ** 2).sum(axis=2)
    gamma = np.median(d2[np.triu_indices(7, k=1)])  # 21 pairs: the 11th value
    bandwidths = [gamma * 2.0 ** (u / 2 - 8) for u in range(33)]
    K = sum(np.exp(-d2 / h) for h in bandwidths) / 33
    expected = K[:4, :4].mean() + K[4:, 4:].mean() - 2 * K[:4, 4:].mean()
    assert mk_mmd(source, target).item() == pytest.approx(expected, rel=1e-10)
    assert mk_mmd(source, source.clone()).item() == 0.0
    with pytest.raises(ValueError, match="estimator must be quadratic or linear"):
        mk_mmd(source, target, estimator="cubic")


def test_dan_defaults_are_the_paper_family_and_its_options_switch_the_estimate():
    source, target = sample(8, 5, 0), sample(8, 5, 1, shift=0.5)
    method = DAN(MLP(input_shape=(12,), hidden=[8]))
    assert (method.kernel_mul, method.kernel_num, method.bandwidth_center, method.estimator) == (
        2.0**0.5, 33, "median", "quadratic")
    gamma = median_squared_distance(source, target)
    family = gamma * 2.0 ** (torch.arange(33, dtype=torch.float64) / 2 - 8)
    assert method.discrepancy(source, target).item() == pytest.approx(
        mk_mmd_quadratic(source, target, family).item(), rel=1e-12)
    linear = DAN(MLP(input_shape=(12,), hidden=[8]), estimator="linear")
    assert linear.discrepancy(source, target).item() == pytest.approx(
        mk_mmd_linear_time(source, target, family).item(), rel=1e-12)
    for options, message in [(dict(estimator="lin"), "estimator must be quadratic or linear"),
                             (dict(bandwidth_center="avg"), "bandwidth_center must be median or mean")]:
        with pytest.raises(ValueError, match=message):
            DAN(MLP(input_shape=(12,), hidden=[8]), **options)
