"""Preprocessing formulas against hand computations."""

import numpy as np
import pytest

from tlrun.data import preprocess
from tlrun.data.base import DataError


def test_none_is_identity_and_keeps_dtype():
    X = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = preprocess.apply("none", X)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, X)


def test_l2_per_sample_and_zero_row():
    X = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])
    out = preprocess.apply("l2", X)
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0], [1.0, 0.0]])
    assert out.dtype == np.float64


def test_zscore_population_std_and_constant_feature():
    X = np.array([[1.0, 5.0, 0.1], [3.0, 5.0, 0.1], [5.0, 5.0, 0.1]])
    out = preprocess.apply("zscore", X)
    # column 0: mean 3, population std sqrt(8/3)
    sd = np.sqrt(8.0 / 3.0)
    np.testing.assert_allclose(out[:, 0], [-2 / sd, 0.0, 2 / sd])
    # constant columns (also a non-representable constant, 0.1) become exactly 0
    assert np.all(out[:, 1:] == 0.0)


def test_rowsum_zscore_matches_hand_computation():
    X = np.array([[1.0, 3.0], [2.0, 2.0], [0.0, 4.0]])
    # row sums all 4 -> S = [[.25,.75],[.5,.5],[0,1]]
    s0 = np.array([0.25, 0.5, 0.0])
    expected0 = (s0 - s0.mean()) / np.sqrt(np.mean((s0 - s0.mean()) ** 2))
    out = preprocess.apply("rowsum_zscore", X)
    np.testing.assert_allclose(out[:, 0], expected0)
    np.testing.assert_allclose(out[:, 1], -expected0)  # s1 = 1 - s0
    np.testing.assert_allclose(out.std(axis=0), 1.0)


def test_rowsum_zscore_zero_row_does_not_produce_nan():
    X = np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 3.0]])
    assert np.all(np.isfinite(preprocess.apply("rowsum_zscore", X)))


def test_integer_input_is_converted():
    X = np.array([[1, 3], [2, 2]], dtype=np.uint8)
    out = preprocess.apply("rowsum_zscore", X)
    assert out.dtype == np.float64


def test_unknown_name_lists_options():
    with pytest.raises(DataError) as info:
        preprocess.get("minmax")
    message = str(info.value)
    assert "minmax" in message
    for name in ("none", "l2", "zscore", "rowsum_zscore"):
        assert name in message
