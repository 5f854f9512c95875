"""Feature-file datasets: generic Features and Office+Caltech10, on tiny generated files."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from tests.helpers import REPO
from tlrun.data.base import DataError, sha256_file
from tlrun.data.features import Features, OfficeCaltech10, OFFICE_CALTECH10_CLASSES

from tests.helpers import shared_data

SHARED = shared_data() / "office_caltech10_surf"


def _features(rng, n, d=4):
    return rng.normal(size=(n, d))


# ------------------------------------------------------------------------------------------- generic Features


def test_npz_square_matrix_is_samples_in_rows(tmp_path):
    X = np.arange(9.0).reshape(3, 3)
    np.savez(tmp_path / "a.npz", X=X, y=np.array([0, 1, 2]))
    np.testing.assert_array_equal(Features(root=str(tmp_path), source="a", target="a").load("a").X, X)


def test_npz_and_label_remapping_across_domains(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "a.npz", X=_features(rng, 6), y=np.array([10, 20, 30, 10, 20, 30]))
    np.savez(tmp_path / "b.npz", X=_features(rng, 4), y=np.array([30, 40, 40, 10]))
    ds = Features(root=str(tmp_path), source="a", target="b")
    ds.check()
    a, b = ds.load("a"), ds.load("b")
    assert a.classes == b.classes == ("10", "20", "30", "40")
    np.testing.assert_array_equal(a.y, [0, 1, 2, 0, 1, 2])
    np.testing.assert_array_equal(b.y, [2, 3, 3, 0])
    assert a.X.dtype == np.float64 and a.X.shape == (6, 4)
    assert a.checksums == {"a.npz": sha256_file(tmp_path / "a.npz")}
    assert set(ds.domains) == {"a", "b"}


def test_load_pair_reports_class_difference_both_ways(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "a.npz", X=_features(rng, 3), y=np.array([1, 2, 3]))
    np.savez(tmp_path / "b.npz", X=_features(rng, 3), y=np.array([2, 3, 4]))
    ds = Features(root=str(tmp_path), source="a", target="b")
    with pytest.raises(DataError) as info:
        ds.load_pair()
    message = str(info.value)
    assert "only in source: 1" in message and "only in target: 4" in message


def test_load_pair_same_classes(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "a.npz", X=_features(rng, 4), y=np.array(["cat", "dog", "cat", "dog"]))
    np.savez(tmp_path / "b.npz", X=_features(rng, 2), y=np.array(["dog", "cat"]))
    s, t = Features(root=str(tmp_path), source="a", target="b").load_pair()
    assert s.classes == ("cat", "dog")
    np.testing.assert_array_equal(t.y, [1, 0])


@pytest.mark.parametrize("orientation", ["rows", "columns"])
def test_mat_both_orientations_autodetected(tmp_path, orientation):
    rng = np.random.default_rng(1)
    X = _features(rng, 5, d=3)
    labels = np.array([[1], [2], [1], [2], [2]], dtype=np.float64)  # MATLAB-style column of doubles
    stored = X if orientation == "rows" else X.T
    scipy.io.savemat(tmp_path / "src.mat", {"fts": stored, "labels": labels})
    scipy.io.savemat(tmp_path / "tgt.mat", {"feas": X[:2].T, "gnd": labels[:2].T})  # columns, row label vector
    ds = Features(root=str(tmp_path), source="src", target="tgt")
    src = ds.load("src")
    np.testing.assert_allclose(src.X, X)
    np.testing.assert_array_equal(src.y, [0, 1, 0, 1, 1])
    np.testing.assert_allclose(ds.load("tgt").X, X[:2])


def test_mat_explicit_keys_and_orientation(tmp_path):
    rng = np.random.default_rng(2)
    X = _features(rng, 3, d=3)  # square: ambiguous
    scipy.io.savemat(tmp_path / "s.mat", {"A": X.T, "B": np.array([0, 1, 2])})
    scipy.io.savemat(tmp_path / "t.mat", {"A": X.T, "B": np.array([0, 1, 2])})
    with pytest.raises(DataError) as info:
        Features(root=str(tmp_path), source="s", target="t").load("s")
    assert "y_key" in str(info.value) and "s.mat" in str(info.value) and "A, B" in str(info.value)
    with pytest.raises(DataError) as info:
        Features(root=str(tmp_path), source="s", target="t", x_key="A", y_key="B").load("s")
    assert "dataset.samples" in str(info.value)
    ds = Features(root=str(tmp_path), source="s", target="t", x_key="A", y_key="B", samples="columns")
    np.testing.assert_allclose(ds.load("s").X, X)


def test_csv_with_and_without_header(tmp_path):
    (tmp_path / "h.csv").write_text("f1,f2,label\n1.0,2.0,cat\n3,4,dog\n")
    (tmp_path / "n.csv").write_text("5,6,dog\n7,8,cat\n\n")
    ds = Features(root=str(tmp_path), source="h", target="n")
    h, n = ds.load_pair()
    np.testing.assert_allclose(h.X, [[1, 2], [3, 4]])
    np.testing.assert_allclose(n.X, [[5, 6], [7, 8]])
    assert h.classes == ("cat", "dog")
    np.testing.assert_array_equal(n.y, [1, 0])


def test_csv_numeric_labels_and_bad_cell(tmp_path):
    (tmp_path / "a.csv").write_text("1,2,3\n4,5,1\n")
    (tmp_path / "b.csv").write_text("1,x,3\n4,5,1\n")
    assert Features(root=str(tmp_path), source="a", target="a", csv_header=False).load("a").classes == ("1", "3")
    with pytest.raises(DataError) as info:
        Features(root=str(tmp_path), source="a", target="b", csv_header=False).load("b")
    assert "b.csv" in str(info.value) and "'x'" in str(info.value)


def test_nan_values_rejected(tmp_path):
    X = np.ones((3, 2))
    X[1, 1] = np.nan
    np.savez(tmp_path / "a.npz", X=X, y=np.array([0, 1, 0]))
    np.savez(tmp_path / "b.npz", X=np.ones((2, 2)), y=np.array([0, 1]))
    with pytest.raises(DataError) as info:
        Features(root=str(tmp_path), source="a", target="b").load("a")
    assert "a.npz" in str(info.value) and "NaN" in str(info.value)


def test_wrong_shapes_rejected(tmp_path):
    np.savez(tmp_path / "a.npz", X=np.ones((3, 2)), y=np.array([0, 1, 0, 1]))
    np.savez(tmp_path / "b.npz", X=np.ones((2, 2)), y=np.array([0, 1]))
    with pytest.raises(DataError) as info:
        Features(root=str(tmp_path), source="a", target="b").load("a")
    assert "a.npz" in str(info.value) and "4 labels" in str(info.value)


def test_corrupt_files_rejected(tmp_path):
    (tmp_path / "a.npz").write_bytes(b"not a zip at all")
    (tmp_path / "b.mat").write_bytes(b"\x00garbage" * 20)
    ds = Features(root=str(tmp_path), source="a", target="b")
    for domain, name in (("a", "a.npz"), ("b", "b.mat")):
        with pytest.raises(DataError) as info:
            ds.load(domain)
        assert name in str(info.value) and "corrupt" in str(info.value)


def test_missing_root_and_domain_messages(tmp_path):
    with pytest.raises(DataError) as info:
        Features(root=str(tmp_path / "nowhere"), source="a", target="b").check()
    assert str(tmp_path / "nowhere") in str(info.value) and "<domain>.npz" in str(info.value)
    np.savez(tmp_path / "a.npz", X=np.ones((2, 2)), y=np.array([0, 1]))
    with pytest.raises(DataError) as info:
        Features(root=str(tmp_path), source="a", target="b").check()
    message = str(info.value)
    assert "'b'" in message and "b.npz" in message and "domains found there: a" in message


def test_duplicate_domain_files_rejected(tmp_path):
    np.savez(tmp_path / "a.npz", X=np.ones((2, 2)), y=np.array([0, 1]))
    (tmp_path / "a.csv").write_text("1,0\n")
    with pytest.raises(DataError) as info:
        Features(root=str(tmp_path), source="a", target="a").check()
    assert "a.csv" in str(info.value) and "a.npz" in str(info.value)


def test_bad_preprocess_and_val_fraction_fail_in_check(tmp_path):
    np.savez(tmp_path / "a.npz", X=np.ones((2, 2)), y=np.array([0, 1]))
    with pytest.raises(DataError, match="rowsum_zscore"):
        Features(root=str(tmp_path), source="a", target="a", preprocess="bogus").check()
    with pytest.raises(DataError, match="source_val_fraction"):
        Features(root=str(tmp_path), source="a", target="a", source_val_fraction=1.5).check()


def test_image_shape_makes_pixel_rows(tmp_path):
    rng = np.random.default_rng(4)
    X = rng.random((6, 256))
    np.savez(tmp_path / "a.npz", X=X, y=np.arange(6) % 2)
    ds = Features(root=str(tmp_path), source="a", target="a", image_shape=[1, 16, 16], augment="affine")
    ds.check()
    domain = ds.load("a")
    assert domain.image_shape == (1, 16, 16)
    np.testing.assert_array_equal(domain.X, X)
    assert Features(root=str(tmp_path), source="a", target="a").load("a").image_shape is None


def test_image_shape_must_match_the_feature_dimension(tmp_path):
    np.savez(tmp_path / "a.npz", X=np.ones((2, 256)), y=np.array([0, 1]))
    with pytest.raises(DataError) as info:
        Features(root=str(tmp_path), source="a", target="a", image_shape=[3, 8, 8]).load("a")
    message = str(info.value)
    assert "a.npz" in message and "192" in message and "256" in message
    with pytest.raises(DataError, match=r"\[C, H, W\]"):
        Features(root=str(tmp_path), source="a", target="a", image_shape=[16, 16]).check()


def test_augmenting_features_needs_an_image_shape(tmp_path):
    np.savez(tmp_path / "a.npz", X=np.ones((2, 4)), y=np.array([0, 1]))
    with pytest.raises(DataError) as info:
        Features(root=str(tmp_path), source="a", target="a", augment="crop_flip").check()
    assert "augment" in str(info.value) and "image shape" in str(info.value)


# ------------------------------------------------------------------------------------------- Office+Caltech10


def _write_office_caltech(root: Path, features: str, n: int = 12) -> None:
    rng = np.random.default_rng(3)
    names = {
        "surf": ("amazon_SURF_L10.mat", "Caltech10_SURF_L10.mat", "dslr_SURF_L10.mat", "webcam_SURF_L10.mat"),
        "decaf6": ("amazon_decaf.mat", "caltech_decaf.mat", "dslr_decaf.mat", "webcam_decaf.mat"),
    }[features]
    for name in names:
        labels = (np.arange(n) % 10 + 1).reshape(-1, 1)
        if features == "surf":
            scipy.io.savemat(root / name, {"fts": rng.integers(0, 5, size=(n, 800)).astype(np.uint8), "labels": labels})
        else:
            scipy.io.savemat(root / name, {"feas": rng.random((n, 4096)), "labels": labels.astype(float)})


@pytest.mark.parametrize("features,dim", [("surf", 800), ("decaf6", 4096)])
def test_office_caltech10_layouts(tmp_path, features, dim):
    _write_office_caltech(tmp_path, features)
    ds = OfficeCaltech10(root=str(tmp_path), source="caltech", target="dslr", features=features)
    ds.check()
    s, t = ds.load_pair()
    assert s.X.shape == (12, dim) and s.X.dtype == np.float64
    assert s.classes == OFFICE_CALTECH10_CLASSES
    np.testing.assert_array_equal(s.y[:10], np.arange(10))
    np.testing.assert_allclose(s.X.std(axis=0)[s.X.std(axis=0) > 0], 1.0)  # rowsum_zscore applied
    assert list(s.checksums) == ["Caltech10_SURF_L10.mat" if features == "surf" else "caltech_decaf.mat"]


def test_office_caltech10_missing_files_message(tmp_path):
    ds = OfficeCaltech10(root=str(tmp_path / "oc10"), source="amazon", target="webcam")
    with pytest.raises(DataError) as info:
        ds.check()
    message = str(info.value)
    assert str(tmp_path / "oc10") in message and "amazon_SURF_L10.mat" in message and "https://" in message
    with pytest.raises(DataError, match="choose one of"):
        OfficeCaltech10(root=str(tmp_path), source="amazon", target="imagenet").check()
    with pytest.raises(DataError, match="surf, decaf6"):
        OfficeCaltech10(root=str(tmp_path), features="sift").check()


def test_office_caltech10_wrong_labels(tmp_path):
    _write_office_caltech(tmp_path, "surf")
    scipy.io.savemat(tmp_path / "dslr_SURF_L10.mat", {"fts": np.ones((3, 800)), "labels": np.array([[0], [1], [2]])})
    with pytest.raises(DataError) as info:
        OfficeCaltech10(root=str(tmp_path), source="amazon", target="dslr").load("dslr")
    assert "dslr_SURF_L10.mat" in str(info.value) and "1..10" in str(info.value)


@pytest.mark.skipif(not SHARED.is_dir(), reason="benchmark data not present")
def test_office_caltech10_real_surf():
    ds = OfficeCaltech10(root=str(SHARED), source="amazon", target="webcam")
    ds.check()
    amazon = ds.load("amazon")
    assert amazon.X.shape == (958, 800) and amazon.X.dtype == np.float64
    assert amazon.checksums["amazon_SURF_L10.mat"].startswith("df32548b")
    assert sorted(np.unique(amazon.y)) == list(range(10))


@pytest.mark.skipif(not SHARED.is_dir(), reason="benchmark data not present")
def test_office_caltech10_real_surf_1nn_matches_jda_paper():
    """A->W 1-NN with the JDA preprocessing gives the paper's 29.83 %."""
    s, t = OfficeCaltech10(root=str(SHARED), source="amazon", target="webcam").load_pair()
    d2 = (t.X**2).sum(1)[:, None] - 2 * t.X @ s.X.T + (s.X**2).sum(1)[None, :]
    accuracy = 100 * np.mean(s.y[np.argmin(d2, axis=1)] == t.y)
    assert accuracy == pytest.approx(29.83, abs=0.01)


# ------------------------------------------------------------------------------------------- no torch in check()

CHECK_SCRIPT = """
import sys
from tlrun.data.features import Features, OfficeCaltech10
from tlrun.data.digits import Digits
from tlrun.data.images import ImageFolder, Office31, OfficeHome
from tlrun.data.torchvision_digits import DigitDomains
from tlrun.data.zsl_xlsa import ZslXlsa
from tlrun.data.base import DataError
from tlrun.data.shapes import check_backbone_input
datasets = (
    OfficeCaltech10(root={root!r}), Features(root={root!r}, source='a', target='b'), Office31(root={root!r}),
    OfficeHome(root={root!r}), DigitDomains(root={root!r}, target='svhn'), DigitDomains(), Digits(augment='affine'),
    ImageFolder(root={root!r}), ZslXlsa(root={root!r}),
)
for ds in datasets:
    try:
        ds.check()
    except DataError:
        pass
try:
    check_backbone_input({{'_target_': 'tlrun.backbones.small.LeNet', 'name': 'lenet'}}, Digits().load('thick'))
except DataError:
    pass
bad = [m for m in ('torch', 'torchvision', 'lightning', 'pytorch_lightning') if m in sys.modules]
print('LOADED', bad)
"""


def test_check_does_not_import_torch(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", CHECK_SCRIPT.format(root=str(tmp_path))],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout


def test_mat_v73_explained(tmp_path):
    (tmp_path / "a.mat").write_bytes(b"MATLAB 7.3 MAT-file, Platform: GLNXA64" + b"\0" * 200)
    with pytest.raises(DataError) as info:
        Features(root=str(tmp_path), source="a", target="a").load("a")
    assert "a.mat" in str(info.value) and "-v7" in str(info.value)


def test_office_caltech10_pools_several_sources(tmp_path):
    _write_office_caltech(tmp_path, "surf")
    pooled, target = OfficeCaltech10(root=str(tmp_path), source=["amazon", "caltech"], target="dslr").load_pair()
    assert pooled.domain_names == ("amazon", "caltech") and pooled.X.shape == (24, 800) and len(target) == 12
    np.testing.assert_array_equal(pooled.domain_index, np.repeat([0, 1], 12))
    assert list(pooled.checksums) == ["amazon_SURF_L10.mat", "Caltech10_SURF_L10.mat"]
