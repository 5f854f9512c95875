"""Data problems found before a run opens: every missing piece in one message (``problems()``), unreadable or
inconsistent files as a DataError at load time, samples that the backbone cannot read, and corrupt images decoded
once and remembered."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from tlrun.config import load_option
from tlrun.data import images
from tlrun.data.base import DataError, Domain, ZeroShotDomains, join_problems
from tlrun.data.features import Features, OfficeCaltech10, count_non_finite
from tlrun.data.images import ImageFolder, Office31, verify_images
from tlrun.data.shapes import check_backbone_input
from tlrun.data.torchvision_digits import DigitDomains
from tlrun.data.zsl_xlsa import ZslXlsa


def _npz(path: Path, X, y, **more) -> Path:
    np.savez(path, X=np.asarray(X), y=np.asarray(y), **more)
    return path


def _pair(root: Path, source_dim: int = 4, target_dim: int = 4) -> None:
    rng = np.random.default_rng(0)
    _npz(root / "a.npz", rng.normal(size=(6, source_dim)), np.arange(6) % 2)
    _npz(root / "b.npz", rng.normal(size=(4, target_dim)), np.arange(4) % 2)


def _error(call) -> str:
    with pytest.raises(DataError) as info:
        call()
    return str(info.value)


# ------------------------------------------------------------------------------------- every problem at once


def test_join_problems_numbers_several_and_keeps_one_as_it_is():
    assert join_problems(["only this"]) == "only this"
    assert join_problems(["a", "b"]) == "2 problems: (1) a; (2) b"


def test_office31_without_root_tells_the_layout_and_the_unknown_domain_at_once():
    dataset = Office31(source="amzon")
    problems = dataset.problems()
    assert len(problems) == 2
    assert "has no domain 'amzon'" in problems[0] and "choose one of: amazon, dslr, webcam" in problems[0]
    assert "dataset.root is not set" in problems[1] and "images/<class>" in problems[1]
    assert _error(dataset.check).startswith("2 problems: (1) dataset 'office31'")


def test_office31_lists_every_missing_domain_folder(tmp_path):
    message = _error(Office31(root=str(tmp_path), source="amazon", target="dslr", checksum="md5:xyz").check)
    assert "2 problems" in message and "dataset.checksum 'md5:xyz'" in message
    assert str(tmp_path / "amazon" / "images") in message and str(tmp_path / "dslr" / "images") in message


def test_features_reports_missing_files_and_bad_options_together(tmp_path):
    _pair(tmp_path)
    dataset = Features(root=str(tmp_path), source="x", target="y", samples="cols", image_shape=[1, 2])
    problems = dataset.problems()
    assert len(problems) == 3, problems
    assert "'x' (expected x.npz" in problems[0] and "'y' (expected y.npz" in problems[0]
    assert "domains found there: a, b" in problems[0]
    assert "dataset.samples" in problems[1] and "dataset.image_shape" in problems[2]
    assert Features(root=str(tmp_path), source="a", target="b").problems() == []


def test_office_caltech10_reports_a_missing_folder_and_a_bad_preprocessing_together(tmp_path):
    problems = OfficeCaltech10(root=str(tmp_path / "nowhere"), preprocess="foo", source="imagenet").problems()
    assert len(problems) == 3, problems
    assert "no domain 'imagenet'" in problems[0] and "preprocessing 'foo'" in problems[1]
    assert "does not exist" in problems[2] and "https://" in problems[2]


def test_image_folder_without_root_and_with_missing_folders(tmp_path):
    problems = ImageFolder(source="train", target="test", augment="bogus").problems()
    assert "dataset.root is not set" in problems[0] and "<root>/<domain>/<class>/<image>" in problems[0]
    assert "dataset.augment 'bogus'" in problems[1]
    (tmp_path / "train").mkdir()
    (message,) = ImageFolder(root=str(tmp_path), source="train", target="test", target_test="val").problems()
    assert str(tmp_path / "test") in message and str(tmp_path / "val") in message
    assert message.endswith(f"Folders found in {tmp_path}: train")


def test_digit_domains_and_xlsa_report_every_problem(tmp_path):
    problems = DigitDomains(split="val", max_per_domain=3).problems()
    assert "dataset.split 'val'" in problems[0] and "dataset.root is not set" in problems[1]
    problems = ZslXlsa(root=str(tmp_path), preprocess="zscore", release="awa9").problems()
    assert "statistics over samples" in problems[0] and "dataset.release 'awa9'" in problems[1]


# ------------------------------------------------------------------------------------- shapes (item 5a)


def test_source_and_target_of_different_feature_sizes_name_both_files_and_sizes(tmp_path):
    _pair(tmp_path, source_dim=8, target_dim=5)
    message = _error(Features(root=str(tmp_path), source="a", target="b").load_pair)
    assert f"source a ({tmp_path / 'a.npz'}) has 8 features, target b ({tmp_path / 'b.npz'}) has 5 features" in message


def test_zero_shot_parts_of_different_feature_sizes():
    def part(name, d):
        return Domain(name, np.zeros((2, d)), np.array([0, 1]), ("a", "b"), files=(f"/data/{name}.mat",))

    message = _error(lambda: ZeroShotDomains(part("seen", 3), part("seen-test", 3), part("unseen", 4), (1,)))
    assert "test_unseen unseen (/data/unseen.mat) has 4 features" in message and "train seen" in message


# ------------------------------------------------------------------------------------- the backbone (item 5b)


def _rows(d: int, image_shape=None) -> Domain:
    return Domain("a", np.zeros((2, d)), np.array([0, 1]), ("x", "y"), image_shape=image_shape, files=("/d/a.npz",))


def _backbone(name: str, **settings):
    config = load_option("backbone", name)
    config.update(settings)
    return config


def test_feature_vectors_cannot_feed_an_image_backbone():
    for name in ("lenet", "resnet18"):
        message = _error(lambda: check_backbone_input(_backbone(name), _rows(64)))
        assert f"backbone={name} reads images" in message and "domain a (/d/a.npz)" in message
        assert "C x H x W = 64, e.g. [1, 8, 8]" in message and "backbone=mlp" in message
    for name in ("identity", "mlp"):
        check_backbone_input(_backbone(name), _rows(64))
    check_backbone_input({"_target_": "my.own.Net"}, _rows(64))


def test_resnet_needs_one_or_three_channels():
    message = _error(lambda: check_backbone_input(_backbone("resnet18"), _rows(128, (2, 8, 8))))
    assert "images of shape [2, 8, 8]" in message and "with 2 channels" in message and "backbone=lenet" in message
    check_backbone_input(_backbone("resnet18", image_size=None), _rows(3, (3, 1, 1)))


# (input shape, backbone.image_size) and whether LeNet reads it, as its max-pooling layers allow.
LENET_CASES = [
    ((1, 1, 8), None, False), ((1, 8, 1), None, False), ((1, 2, 2), None, True), ((1, 7, 7), None, True),
    ((1, 8, 3), None, True), ((3, 8, 8), None, True), ((1, 8, 8), 3, False), ((1, 8, 8), 4, True),
]


@pytest.mark.parametrize("shape,image_size,fits", LENET_CASES)
def test_lenet_size_rule_matches_the_network(shape, image_size, fits):
    import torch

    from tlrun.backbones.small import LeNet

    domain = _rows(int(np.prod(shape)), shape)
    if fits:
        check_backbone_input(_backbone("lenet", image_size=image_size), domain)
    else:
        message = _error(lambda: check_backbone_input(_backbone("lenet", image_size=image_size), domain))
        assert f"images of shape {list(shape)}" in message and "backbone=lenet needs images of at least" in message
    side = (image_size, image_size) if image_size else shape[1:]
    try:
        LeNet(shape, image_size=image_size)(torch.zeros(2, shape[0], *side))
        ran = True
    except RuntimeError:
        ran = False
    assert ran == fits


def test_lenet_on_image_files_resized_too_small():
    files = Domain("a", ("/d/a/x/1.jpg", "/d/a/y/2.jpg"), np.array([0, 1]), ("x", "y"))
    message = _error(lambda: check_backbone_input(_backbone("lenet", image_size=1), files))
    assert "resized to 1 x 1 (backbone.image_size)" in message and "set backbone.image_size to 4 or more" in message
    check_backbone_input(_backbone("lenet", image_size=8), files)
    check_backbone_input(_backbone("resnet18"), files)


# ------------------------------------------------------------------------------------- files read at load (item 7)


def test_truncated_and_corrupt_npz_archives(tmp_path):
    _pair(tmp_path)
    rng = np.random.default_rng(1)
    np.savez_compressed(tmp_path / "a.npz", X=rng.normal(size=(300, 40)), y=np.arange(300) % 2)
    data = bytearray((tmp_path / "a.npz").read_bytes())
    data[300:1500] = bytes(b ^ 0x55 for b in data[300:1500])  # the compressed X, central directory intact
    (tmp_path / "a.npz").write_bytes(bytes(data))
    message = _error(Features(root=str(tmp_path), source="a", target="b").load_pair)
    assert str(tmp_path / "a.npz") in message and "corrupt, truncated" in message and "numpy.savez" in message
    (tmp_path / "a.npz").write_bytes(bytes(data[: len(data) // 2]))
    assert "corrupt, truncated" in _error(Features(root=str(tmp_path), source="a", target="b").load_pair)


def test_a_npy_file_named_npz(tmp_path):
    _pair(tmp_path)
    with open(tmp_path / "a.npz", "wb") as handle:
        np.save(handle, np.ones((3, 2)))
    message = _error(Features(root=str(tmp_path), source="a", target="b").load_pair)
    assert "holds a single array (.npy format)" in message and str(tmp_path / "a.npz") in message


def test_only_the_arrays_used_are_read_from_an_archive(tmp_path):
    _pair(tmp_path)
    _npz(tmp_path / "a.npz", np.ones((2, 4)), [0, 1], meta=np.array([{"a": 1}], dtype=object))  # unreadable
    source, _ = Features(root=str(tmp_path), source="a", target="b").load_pair()
    assert source.X.shape == (2, 4)


def test_infinite_values_and_empty_arrays(tmp_path):
    _pair(tmp_path)
    _npz(tmp_path / "a.npz", [[1.0, np.inf], [-np.inf, 0.0]], [0, 1])
    dataset = Features(root=str(tmp_path), source="a", target="b")
    assert "contain 2 NaN or infinite values" in _error(dataset.load_pair)
    _npz(tmp_path / "a.npz", np.ones((0, 4)), np.ones(0))
    assert "no data (features of shape (0, 4))" in _error(Features(root=str(tmp_path), source="a", target="b").load_pair)


def test_count_non_finite_survives_an_overflowing_sum():
    assert count_non_finite(np.full((3, 4), 1e308)) == 0
    X = np.full((3, 4), 1e308)
    X[1, 2] = np.nan
    assert count_non_finite(X) == 1


@pytest.mark.parametrize(
    "labels,expected",
    [
        ([0.5, 1.0], "non-integer values"),
        ([np.nan, 1.0], "labels contain NaN"),
        ([[0, 1], [1, 0]], "labels must be a vector"),
    ],
)
def test_label_problems_in_npz(tmp_path, labels, expected):
    _pair(tmp_path)
    _npz(tmp_path / "a.npz", np.ones((2, 4)), labels)
    message = _error(Features(root=str(tmp_path), source="a", target="b").load_pair)
    assert str(tmp_path / "a.npz") in message and expected in message


@pytest.mark.parametrize("label", ["nan", "inf", ""])
def test_csv_rows_without_a_class(tmp_path, label):
    (tmp_path / "a.csv").write_text(f"1,2,0\n3,4,{label}\n5,6,1\n")
    message = _error(Features(root=str(tmp_path), source="a", target="a").load_pair)
    assert f"a.csv, line 2: the label (last column) '{label}' is no class" in message


def test_ragged_csv(tmp_path):
    (tmp_path / "a.csv").write_text("1,2,0\n3,1\n")
    assert "a.csv, line 2: 2 columns where the first row has 3" in _error(
        Features(root=str(tmp_path), source="a", target="a").load_pair
    )


def test_a_target_of_a_single_class(tmp_path):
    _npz(tmp_path / "a.npz", np.ones((3, 4)), [7, 7, 7])
    _npz(tmp_path / "b.npz", np.ones((2, 4)), [7, 7])
    message = _error(Features(root=str(tmp_path), source="a", target="b").load_pair)
    assert f"target b ({tmp_path / 'b.npz'}) holds a single class (7)" in message


def test_truncated_office_caltech_file_says_where_to_download_it_again(tmp_path):
    labels = (np.arange(12) % 10 + 1).reshape(-1, 1)
    for name in ("amazon_SURF_L10.mat", "webcam_SURF_L10.mat"):
        scipy.io.savemat(tmp_path / name, {"fts": np.ones((12, 800)), "labels": labels}, do_compression=True)
    data = (tmp_path / "webcam_SURF_L10.mat").read_bytes()
    (tmp_path / "webcam_SURF_L10.mat").write_bytes(data[: len(data) // 2])
    message = _error(OfficeCaltech10(root=str(tmp_path)).load_pair)
    assert str(tmp_path / "webcam_SURF_L10.mat") in message and "corrupt" in message
    assert "download it again from https://" in message


# ------------------------------------------------------------------------------------- image files, decoded once


def _tree(root: Path, count: int = 3) -> ImageFolder:
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        for i in range(count):
            pixels = rng.integers(0, 255, size=(16, 16, 3), dtype=np.uint8)
            (root / "train" / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / "train" / label / f"{i}.{'jpg' if i % 2 else 'png'}")
    return ImageFolder(root=str(root), source="train", target="train")


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def test_truncated_jpeg_and_png_are_named_together(tmp_path):
    dataset = _tree(tmp_path / "data")
    jpeg, png = tmp_path / "data" / "train" / "cat" / "1.jpg", tmp_path / "data" / "train" / "dog" / "0.png"
    _truncate(jpeg)
    _truncate(png)
    domain = dataset.load("train")
    message = _error(lambda: verify_images(domain, tmp_path / "cache"))
    assert message.startswith(f"2 images of domain train ({tmp_path / 'data' / 'train'}) cannot be read")
    assert str(jpeg) in message and str(png) in message and "delete them" in message


def test_images_are_decoded_once_and_remembered(tmp_path, monkeypatch):
    domain = _tree(tmp_path / "data").load("train")
    decoded = []
    real_open = images.open_image
    monkeypatch.setattr(images, "open_image", lambda path: decoded.append(path) or real_open(path))
    cache = tmp_path / "cache"
    verify_images(domain, cache)
    assert len(decoded) == 6 and len(list((cache / "verified_images").iterdir())) == 1
    verify_images(domain, cache)
    assert len(decoded) == 6  # nothing decoded again
    touched = Path(domain.X[0])
    os.utime(touched, ns=(1, 1))
    verify_images(domain, cache)
    assert len(decoded) == 6  # new time, same bytes: hashed, not decoded
    _truncate(touched)
    assert str(touched) in _error(lambda: verify_images(domain, cache))
    assert decoded[-1] == str(touched)


def test_an_unwritable_cache_still_checks(tmp_path):
    domain = _tree(tmp_path / "data").load("train")
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder would go")
    verify_images(domain, blocker)
    _truncate(Path(domain.X[-1]))
    assert domain.X[-1] in _error(lambda: verify_images(domain, blocker))


def test_arrays_have_no_images_to_verify(tmp_path):
    verify_images(_rows(4), tmp_path)
    assert not (tmp_path / "verified_images").exists()
