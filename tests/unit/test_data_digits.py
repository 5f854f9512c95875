"""The embedded digits dataset: determinism, disjoint halves, and a real domain gap."""

import numpy as np
import pytest

from tlrun.data.base import DataError
from tlrun.data.digits import SHIFTS, Digits, halves


def test_shapes_types_and_range():
    ds = Digits()
    ds.check()
    s, t = ds.load_pair()
    assert (s.name, t.name) == ("original", "thick")
    for domain in (s, t):
        assert domain.X.dtype == np.float32 and domain.X.shape[1] == 64
        assert domain.image_shape == (1, 8, 8)
        assert domain.X.min() >= 0.0 and domain.X.max() <= 1.0
        assert domain.classes == tuple(str(k) for k in range(10))
    assert len(s) + len(t) == 1797
    assert "digits.csv.gz" in s.checksums


def test_halves_are_disjoint_and_stratified():
    y = np.repeat(np.arange(10), 20)
    a, b = halves(y)
    assert not set(a) & set(b) and len(a) + len(b) == len(y)
    assert np.all(np.bincount(y[a]) == 10)


def test_source_and_target_hold_different_images():
    s, t = Digits(source="original", target="original").load_pair()
    rows = {row.tobytes() for row in s.X}
    assert sum(row.tobytes() in rows for row in t.X) < 5  # only coincidental duplicates of tiny images


@pytest.mark.parametrize("domain", sorted(SHIFTS))
def test_every_shift_is_deterministic(domain):
    first = Digits(target=domain).load(domain)
    second = Digits(target=domain, source_val_fraction=0.5).load(domain)
    np.testing.assert_array_equal(first.X, second.X)
    np.testing.assert_array_equal(first.y, second.y)


def test_shifts_change_the_images():
    base = Digits().load("original", half="target").X
    for domain in SHIFTS:
        if domain != "original":
            assert not np.allclose(Digits(target=domain).load(domain).X, base), domain


def test_image_shape_is_fixed_at_8x8():
    Digits(image_shape=[1, 8, 8]).check()
    with pytest.raises(DataError, match=r"fixed at \[1, 8, 8\].*dataset=features"):
        Digits(image_shape=[1, 16, 16]).check()


def test_unknown_domain_lists_choices():
    with pytest.raises(DataError) as info:
        Digits(target="mnist").check()
    assert "mnist" in str(info.value) and "thick" in str(info.value) and "rotate" in str(info.value)


def test_default_target_has_a_gap_of_at_least_15_points():
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    s, t = Digits().load_pair()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(s))
    held, train = order[: len(s) // 5], order[len(s) // 5 :]
    for model in (LogisticRegression(max_iter=2000), KNeighborsClassifier(n_neighbors=1)):
        model.fit(s.X[train], s.y[train])
        held_out = np.mean(model.predict(s.X[held]) == s.y[held])
        target = np.mean(model.predict(t.X) == t.y)
        assert held_out - target >= 0.15, (type(model).__name__, held_out, target)
        assert target > 0.3  # far above chance: adaptation has something to work with
