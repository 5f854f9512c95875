"""MNIST, USPS and SVHN through torchvision's dataset classes, on tiny files written in their exact formats."""

import bz2
import hashlib
import struct
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import sklearn.utils  # noqa: F401  (these three imported at collection, not inside the first test using them)
import torchvision.datasets
import torchvision.transforms.functional  # noqa: F401
from omegaconf import OmegaConf

from tlrun.config import instantiate, option_node
from tlrun.data.base import DataError, sha256_file
from tlrun.data.digits import DIGIT_CLASSES
from tlrun.data.torchvision_digits import RELEASES, DigitDomains

LABELS = np.repeat(np.arange(10), 2)  # two images per digit


def _idx(path: Path, array: np.ndarray) -> None:
    """An idx-ubyte file (MNIST's format): magic 0x0000080<ndim> and the sizes as big-endian uint32, then bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _mnist_images(labels: np.ndarray) -> np.ndarray:
    """Image i is constant 10·label + i (so that images can be told apart after subsampling)."""
    return (10 * labels + np.arange(len(labels)))[:, None, None] * np.ones((1, 28, 28), dtype=np.uint8)


def _write_mnist(root: Path) -> None:
    raw = root / "MNIST" / "raw"
    for prefix, labels in (("train", LABELS), ("t10k", np.arange(10))):
        _idx(raw / f"{prefix}-images-idx3-ubyte", _mnist_images(labels))
        _idx(raw / f"{prefix}-labels-idx1-ubyte", labels)


def _write_usps(root: Path, name: str = "usps.bz2", value: float = 0.5) -> None:
    """libsvm text, bz2-compressed: ``<label 1..10> 1:<v> ... 256:<v>``, pixels in [-1, 1]."""
    pixels = " ".join(f"{k}:{value}" for k in range(1, 257))
    lines = "".join(f"{label + 1} {pixels}\n" for label in LABELS)
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(bz2.compress(lines.encode()))


def _write_svhn(root: Path, monkeypatch: pytest.MonkeyPatch, colour=(200, 100, 50)) -> None:
    """``train_32x32.mat``: X (32, 32, 3, N) uint8, y (N, 1) with 10 for the digit 0; torchvision is told its md5."""
    X = np.empty((32, 32, 3, len(LABELS)), dtype=np.uint8)
    X[...] = np.asarray(colour, dtype=np.uint8)[None, None, :, None]
    y = np.where(LABELS == 0, 10, LABELS).reshape(-1, 1).astype(np.uint8)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "train_32x32.mat"
    scipy.io.savemat(path, {"X": X, "y": y})
    url, name, _ = torchvision.datasets.SVHN.split_list["train"]
    monkeypatch.setitem(torchvision.datasets.SVHN.split_list, "train", [url, name, hashlib.md5(path.read_bytes()).hexdigest()])


def test_mnist_native_shape(tmp_path):
    _write_mnist(tmp_path)
    ds = DigitDomains(root=str(tmp_path), source="mnist", target="mnist")
    ds.check()
    domain = ds.load("mnist")
    assert domain.X.shape == (20, 784) and domain.X.dtype == np.float32 and domain.image_shape == (1, 28, 28)
    np.testing.assert_array_equal(domain.y, LABELS)
    np.testing.assert_allclose(domain.X[:, 0], _mnist_images(LABELS)[:, 0, 0] / 255.0, rtol=1e-6)
    assert domain.classes == DIGIT_CLASSES
    raw = tmp_path / "MNIST" / "raw"
    assert domain.checksums == {
        name: sha256_file(raw / name) for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
    }
    test_split = DigitDomains(root=str(tmp_path), source="mnist", target="mnist", split="test").load("mnist")
    np.testing.assert_array_equal(test_split.y, np.arange(10))


def test_usps_resized_and_labels_shifted(tmp_path):
    _write_usps(tmp_path, value=0.5)  # pixel (0.5 + 1) / 2 · 255 = 191 as torchvision stores it
    domain = DigitDomains(root=str(tmp_path), source="usps", target="usps").load("usps")
    assert domain.X.shape == (20, 784) and domain.image_shape == (1, 28, 28)
    np.testing.assert_array_equal(domain.y, LABELS)  # libsvm label k + 1 is the digit k
    np.testing.assert_allclose(domain.X, 191 / 255.0, atol=1e-5)  # a constant image stays constant when resized
    assert list(domain.checksums) == ["usps.bz2"]


def test_svhn_gray_and_label_ten_is_zero(tmp_path, monkeypatch):
    _write_svhn(tmp_path, monkeypatch, colour=(200, 100, 50))
    domain = DigitDomains(root=str(tmp_path), source="mnist", target="svhn").load("svhn")
    np.testing.assert_array_equal(domain.y, LABELS)
    assert domain.X.shape == (20, 784)
    gray = (0.2989 * 200 + 0.587 * 100 + 0.114 * 50) / 255.0
    np.testing.assert_allclose(domain.X, gray, atol=1e-4)
    assert domain.checksums == {"train_32x32.mat": sha256_file(tmp_path / "train_32x32.mat")}


def test_rgb_shape_repeats_gray_and_keeps_colour(tmp_path, monkeypatch):
    _write_mnist(tmp_path)
    _write_svhn(tmp_path, monkeypatch, colour=(255, 0, 0))
    ds = DigitDomains(root=str(tmp_path), source="mnist", target="svhn", image_shape=[3, 32, 32])
    mnist, svhn = ds.load_pair()
    assert mnist.image_shape == svhn.image_shape == (3, 32, 32) and mnist.X.shape == (20, 3 * 32 * 32)
    channels = mnist.X.reshape(20, 3, 32, 32)
    np.testing.assert_array_equal(channels[:, 0], channels[:, 2])
    np.testing.assert_allclose(svhn.X.reshape(20, 3, 32, 32)[:, :, 5, 5], [[1.0, 0.0, 0.0]] * 20)


def test_stratified_subsample_is_fixed(tmp_path):
    _write_mnist(tmp_path)
    ds = DigitDomains(root=str(tmp_path), source="mnist", target="mnist", max_per_domain=10)
    first, second = ds.load("mnist"), ds.load("mnist")
    np.testing.assert_array_equal(np.sort(first.y), np.arange(10))  # one image of each digit
    np.testing.assert_array_equal(first.X, second.X)
    assert len(DigitDomains(root=str(tmp_path), max_per_domain=100).load("mnist")) == 20


def test_missing_files_message(tmp_path):
    ds = DigitDomains(root=str(tmp_path / "digits"), source="mnist", target="usps")
    with pytest.raises(DataError) as info:
        ds.check()
    message = str(info.value)
    assert str(tmp_path / "digits" / "MNIST" / "raw" / "train-images-idx3-ubyte") in message
    assert str(tmp_path / "digits" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte") in message
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz" in message
    assert "dataset.download=true" in message and "gunzip" in message
    _write_mnist(tmp_path / "digits")
    with pytest.raises(DataError) as info:
        ds.check()
    assert str(tmp_path / "digits" / "usps.bz2") in str(info.value) and "libsvmtools" in str(info.value)


def test_bad_options(tmp_path):
    with pytest.raises(DataError, match="dataset.root"):
        instantiate(OmegaConf.create(option_node("dataset", "mnist_usps_svhn"))).check()
    for options, expected in (
        ({"split": "extra"}, "train, test"),
        ({"image_shape": [2, 28, 28]}, "1 or 3 channels"),
        ({"image_shape": [28, 28]}, r"\[C, H, W\]"),
        ({"max_per_domain": 5}, "max_per_domain"),
        ({"target": "kmnist"}, "mnist, usps, svhn"),
    ):
        with pytest.raises(DataError, match=expected):
            DigitDomains(root=str(tmp_path), **options).check()


@pytest.mark.parametrize("domain", ["mnist", "usps", "svhn"])
def test_download_without_network_is_a_clear_error(tmp_path, monkeypatch, domain):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    ds = DigitDomains(root=str(tmp_path), source=domain, target=domain, download=True)
    with pytest.raises(DataError) as info:
        ds.check()
    message = str(info.value)
    assert f"downloading {domain} failed" in message and "no network in tests" in message
    for name in RELEASES[domain].files["train"]:
        assert str(tmp_path / name) in message
    assert RELEASES[domain].urls["train"][0] in message


def test_corrupt_file(tmp_path):
    (tmp_path / "usps.bz2").write_bytes(b"not bz2 at all")
    with pytest.raises(DataError) as info:
        DigitDomains(root=str(tmp_path), source="usps", target="usps").load("usps")
    assert "usps.bz2" in str(info.value) and "corrupt" in str(info.value)


def test_releases_match_torchvision():
    """The file names and addresses check() reports (without importing torchvision) are torchvision's."""
    mnist = torchvision.datasets.MNIST
    assert RELEASES["mnist"].urls["train"] == tuple(mnist.mirrors[0] + name for name, _ in mnist.resources[:2])
    assert RELEASES["mnist"].urls["test"] == tuple(mnist.mirrors[0] + name for name, _ in mnist.resources[2:])
    assert {Path(name).name + ".gz" for names in RELEASES["mnist"].files.values() for name in names} == {
        name for name, _ in mnist.resources
    }
    for domain, cls in (("usps", torchvision.datasets.USPS), ("svhn", torchvision.datasets.SVHN)):
        for split in ("train", "test"):
            url, filename, _ = cls.split_list[split]
            assert RELEASES[domain].files[split] == (filename,) and RELEASES[domain].urls[split] == (url,)


def test_two_sources_are_pooled_with_their_domain_index(tmp_path):
    _write_mnist(tmp_path)
    _write_usps(tmp_path)
    pooled, target = DigitDomains(root=str(tmp_path), source=["mnist", "usps"], target="mnist").load_pair()
    assert pooled.name == "mnist+usps" and pooled.domain_names == ("mnist", "usps")
    np.testing.assert_array_equal(pooled.domain_index, np.repeat([0, 1], len(LABELS)))
    np.testing.assert_array_equal(pooled.y, np.concatenate([LABELS, LABELS]))
    np.testing.assert_allclose(pooled.X[len(LABELS):], 0.75, atol=0.01)  # usps's pixels (0.5 in -1..1), as bytes
    assert set(pooled.checksums) >= {"train-images-idx3-ubyte", "usps.bz2"} and len(target) == len(LABELS)
