"""Training-time augmentation policies of the input pipeline, on pixel rows and image files."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchvision.transforms  # noqa: F401  (imported once here, not inside the first test)
from omegaconf import OmegaConf
from PIL import Image

from tlrun.backbones import inputs
from tlrun.config import group_options, instantiate, option_node
from tlrun.backbones.small import LeNet, MLP
from tlrun.data.base import AUGMENTATIONS, DataError
from tlrun.data.digits import Digits
from tlrun.data.features import OfficeCaltech10

SHAPE = (1, 12, 12)


def _rows(n: int = 3) -> np.ndarray:
    """Asymmetric images (a bright bar and a gradient), so that flips, crops and rotations all change them."""
    images = np.zeros((n, *SHAPE), dtype=np.float32)
    images[:, 0, 3:9, 2:5] = 1.0
    images[:, 0] += np.linspace(0.0, 0.5, SHAPE[2], dtype=np.float32)
    return images.reshape(n, -1).clip(0.0, 1.0)


def _image_file(tmp_path: Path) -> str:
    pixels = np.zeros((24, 32, 3), dtype=np.uint8)
    pixels[4:20, 3:10] = (250, 40, 10)
    pixels[:, :, 2] = np.linspace(0, 255, 32, dtype=np.uint8)
    path = tmp_path / "object.png"
    Image.fromarray(pixels).save(path)
    return str(path)


def _datasets(tmp_path: Path, augment: str) -> list:
    """A pixel-row dataset for a LeNet (flat rows out) and an image-file dataset for a 16-pixel LeNet."""
    rows = inputs.make_dataset(
        _rows(), np.arange(3), backbone=LeNet(input_shape=SHAPE), image_shape=SHAPE, augment=augment
    )
    files = inputs.make_dataset(
        [_image_file(tmp_path)], backbone=LeNet(input_shape=None, image_size=16), augment=augment
    )
    return [rows, files]


def _draws(dataset, count: int = 6) -> list[torch.Tensor]:
    return [(item[0] if isinstance(item, tuple) else item) for item in (dataset[0] for _ in range(count))]


@pytest.mark.parametrize("augment", ["crop_flip", "affine"])
def test_policies_vary_between_draws_and_keep_the_form(tmp_path, augment):
    for augmented, plain in zip(_datasets(tmp_path, augment), _datasets(tmp_path, "none")):
        reference = plain[0][0] if isinstance(plain[0], tuple) else plain[0]
        draws = _draws(augmented)
        for x in draws:
            assert x.shape == reference.shape and x.dtype == torch.float32
            assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        assert any(not torch.equal(a, b) for a, b in zip(draws, draws[1:])), "every draw was the same"
        assert any(not torch.equal(x, reference) for x in draws)


def test_none_is_deterministic(tmp_path):
    for dataset in _datasets(tmp_path, "none"):
        draws = _draws(dataset, 3)
        assert all(torch.equal(draws[0], x) for x in draws)


@pytest.mark.parametrize("augment", ["crop_flip", "affine"])
def test_reproducible_under_a_seed(tmp_path, augment):
    for dataset in _datasets(tmp_path, augment):
        torch.manual_seed(7)
        first = _draws(dataset, 4)
        torch.manual_seed(7)
        second = _draws(dataset, 4)
        assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_pixel_rows_for_a_resizing_backbone_are_augmented_then_resized():
    backbone = SimpleNamespace(image_size=20, in_channels=3, normalization=((0.5,) * 3, (0.25,) * 3))
    plain = inputs.make_dataset(_rows(), backbone=backbone, image_shape=SHAPE)[0]
    draws = _draws(inputs.make_dataset(_rows(), backbone=backbone, image_shape=SHAPE, augment="affine"))
    assert plain.shape == (3, 20, 20) and all(x.shape == plain.shape for x in draws)
    assert any(not torch.equal(x, plain) for x in draws)


def test_crop_flip_on_rows_is_a_padded_crop_and_flip():
    """Every crop_flip draw equals the image shifted by at most size/8 (zero fill), possibly mirrored."""
    image = torch.from_numpy(_rows(1)).view(SHAPE)
    pad = SHAPE[1] // 8
    padded = torch.nn.functional.pad(image, (pad, pad, pad, pad))
    candidates = [
        view
        for dy in range(2 * pad + 1)
        for dx in range(2 * pad + 1)
        for crop in [padded[:, dy : dy + SHAPE[1], dx : dx + SHAPE[2]]]
        for view in (crop, crop.flip(-1))
    ]
    dataset = inputs.make_dataset(_rows(1), backbone=LeNet(input_shape=SHAPE), image_shape=SHAPE, augment="crop_flip")
    torch.manual_seed(0)
    for x in _draws(dataset, 8):
        assert any(torch.equal(x.view(SHAPE), c) for c in candidates)


def test_feature_rows_cannot_be_augmented():
    features = np.random.default_rng(0).random((4, 5)).astype(np.float32)
    with pytest.raises(ValueError, match="needs images"):
        inputs.make_dataset(features, backbone=MLP(input_shape=(5,)), augment="affine")
    assert inputs.make_dataset(features, backbone=MLP(input_shape=(5,)), augment="none")[0].shape == (5,)


def test_unknown_policy_lists_the_options(tmp_path):
    for X, kwargs in ((_rows(), {"image_shape": SHAPE}), ([_image_file(tmp_path)], {})):
        with pytest.raises(ValueError) as info:
            inputs.make_dataset(X, backbone=LeNet(input_shape=SHAPE), augment="mixup", **kwargs)
        assert "mixup" in str(info.value) and all(name in str(info.value) for name in AUGMENTATIONS)


def test_dataset_check_validates_augment(tmp_path):
    Digits(augment="affine").check()
    with pytest.raises(DataError, match="crop_flip, affine"):
        Digits(augment="rotate").check()
    with pytest.raises(DataError, match="needs images"):
        OfficeCaltech10(root=str(tmp_path), augment="crop_flip").check()


def test_every_dataset_config_names_its_policy():
    expected = {
        "digits": "none", "features": "none", "mnist_usps_svhn": "none", "office_caltech10": "none",
        "office31": "crop_flip", "office_home": "crop_flip", "image_folder": "crop_flip", "zsl_xlsa": "none",
    }
    assert set(group_options("dataset")) == set(expected)
    for name, policy in expected.items():
        config = OmegaConf.create(option_node("dataset", name))
        assert config.augment == policy, name
        if name in ("features", "image_folder"):
            config.source, config.target = "a", "b"  # required on the command line
        if name in ("image_folder", "zsl_xlsa"):
            config.root = "/data/images"
        assert instantiate(config).augment == policy, name
