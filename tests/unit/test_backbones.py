"""Backbones: output shapes on rows and images, stages, weights files, ImageNet weights offline, input pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tlrun.backbones import MLP, Identity, LeNet, ResNet, WeightsError
from tlrun.backbones import inputs
from tlrun.backbones.resnet import imagenet_cache_file


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(
    ("make", "shape", "features", "stages"),
    [
        (lambda s: Identity(input_shape=s), (64,), 64, []),
        (lambda s: Identity(input_shape=s), (1, 8, 8), 64, []),
        (lambda s: MLP(input_shape=s, hidden=(32, 16)), (1, 8, 8), 16, ["block1", "block2"]),
        (lambda s: LeNet(input_shape=s), (1, 8, 8), 500, ["conv1", "conv2", "fc"]),
        (lambda s: LeNet(input_shape=s, features=64), (1, 28, 28), 64, ["conv1", "conv2", "fc"]),
        (lambda s: LeNet(input_shape=s, features=64), (3, 32, 32), 64, ["conv1", "conv2", "fc"]),
        (lambda s: ResNet(input_shape=s, arch="resnet18"), (1, 8, 8), 512, ["stem", "layer1", "layer2", "layer3", "layer4"]),
        (lambda s: ResNet(input_shape=s, arch="resnet50"), (3, 32, 32), 2048, ["stem", "layer1", "layer2", "layer3", "layer4"]),
    ],
)
def test_shapes_on_rows_and_images(make, shape, features, stages):
    torch.manual_seed(0)
    backbone = make(shape).eval()
    assert backbone.out_features == features
    assert [name for name, _ in backbone.stages()] == stages
    images = torch.rand(3, *shape)
    with torch.no_grad():
        from_images = backbone(images)
        from_rows = backbone(images.reshape(3, -1))
    assert from_images.shape == (3, features)
    torch.testing.assert_close(from_images, from_rows)
    # The stages hold every parameter, in order.
    staged = [p for _, module in backbone.stages() for p in module.parameters()]
    assert [id(p) for p in staged] == [id(p) for p in backbone.parameters()]


def test_weights_file_round_trip(tmp_path: Path):
    torch.manual_seed(0)
    trained = ResNet(input_shape=(3, 32, 32), arch="resnet18").eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = trained(x)

    plain = tmp_path / "plain.pt"
    torch.save(trained.state_dict(), plain)
    # A deep method's checkpoint: the backbone under "backbone.", a head beside it.
    checkpoint = tmp_path / "checkpoint.ckpt"
    state = {f"backbone.{k}": v for k, v in trained.state_dict().items()}
    state["head.weight"] = torch.zeros(10, 512)
    torch.save({"state_dict": state, "epoch": 3}, checkpoint)
    # A torchvision ResNet's state dict, classifier included.
    full = tmp_path / "torchvision.pth"
    torch.save({**trained.state_dict(), "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}, full)

    for path in (plain, checkpoint, full):
        loaded = ResNet(input_shape=(3, 32, 32), arch="resnet18", weights=str(path)).eval()
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), expected, rtol=0, atol=0)
        assert loaded.weights_id().startswith("sha256:")

    small = MLP(input_shape=(64,), hidden=(16,))
    mlp_file = tmp_path / "mlp.pt"
    torch.save(small.state_dict(), mlp_file)
    rows = torch.rand(4, 64)
    torch.testing.assert_close(MLP(input_shape=(64,), hidden=(16,), weights=str(mlp_file))(rows), small(rows))


def test_weights_file_errors(tmp_path: Path):
    mlp_file = tmp_path / "mlp.pt"
    torch.save(MLP(input_shape=(64,), hidden=(16,)).state_dict(), mlp_file)
    with pytest.raises(WeightsError, match=r"mismatched shapes: blocks\.0\.0\.weight"):
        MLP(input_shape=(64,), hidden=(32,), weights=str(mlp_file))
    with pytest.raises(WeightsError, match=r"missing keys: blocks\.1\.0\.bias"):
        MLP(input_shape=(64,), hidden=(16, 8), weights=str(mlp_file))
    with pytest.raises(WeightsError, match=r"unexpected keys: .*blocks\.0\.0\.bias"):
        LeNet(input_shape=(1, 8, 8), weights=str(mlp_file))
    with pytest.raises(WeightsError, match="does not exist"):
        MLP(input_shape=(64,), weights=str(tmp_path / "missing.pt"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="cannot read weights file"):
        MLP(input_shape=(64,), weights=str(junk))


def test_imagenet_weights_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url, dst, *args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    target = imagenet_cache_file("resnet18")
    with pytest.raises(WeightsError) as caught:
        ResNet(input_shape=(3, 32, 32), arch="resnet18", weights="imagenet")
    message = str(caught.value)
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert str(target) in message and "Temporary failure" in message

    # Placed in the cache by hand, the file is used without any download.
    torch.manual_seed(1)
    import torchvision

    reference = torchvision.models.resnet18(weights=None).eval()
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(reference.state_dict(), target)
    backbone = ResNet(input_shape=(3, 32, 32), arch="resnet18", weights="imagenet").eval()
    assert backbone.weights_id() == "imagenet:https://download.pytorch.org/models/resnet18-f37072fd.pth"
    x = torch.rand(2, 3, 32, 32)
    reference.fc = torch.nn.Identity()
    with torch.no_grad():
        torch.testing.assert_close(backbone(x), reference(x))


def test_inputs_for_files_and_pixel_rows(tmp_path: Path):
    from PIL import Image

    rgb = tmp_path / "rgb.png"
    gray = tmp_path / "gray.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(rgb)
    Image.fromarray(np.full((30, 20), 128, dtype=np.uint8)).save(gray)
    paths = (str(rgb), str(gray))
    assert inputs.sample_shape(paths, None) is None
    resnet = ResNet(input_shape=None, arch="resnet18", image_size=64)
    assert resnet.input_shape == (3, 64, 64)
    files = inputs.make_dataset(paths, np.array([0, 1]), backbone=resnet)
    x, y = files[1]
    assert x.shape == (3, 64, 64) and int(y) == 1
    # Grayscale is spread to 3 channels and normalised with ImageNet statistics (128/255 on every channel).
    expected = (128 / 255 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(x[:, 32, 32], expected, atol=0.02, rtol=0)

    lenet = LeNet(input_shape=(1, 16, 16))
    assert LeNet(input_shape=None, image_size=20).input_shape == (3, 20, 20)
    with pytest.raises(ValueError, match="image_size"):
        LeNet(input_shape=None)
    x = inputs.make_dataset(paths, backbone=lenet)[0]
    assert x.shape == (1, 16, 16) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG broken")
    from tlrun.data.base import DataError

    with pytest.raises(DataError, match="broken.png"):
        inputs.make_dataset((str(broken),), backbone=lenet)[0]

    rows = np.random.default_rng(0).random((5, 64)).astype(np.float32)
    resnet_rows = ResNet(input_shape=(1, 8, 8), arch="resnet18", image_size=32)
    assert inputs.make_dataset(rows, backbone=resnet_rows, image_shape=(1, 8, 8))[0].shape == (3, 32, 32)
    assert inputs.make_dataset(rows, backbone=LeNet(input_shape=(1, 8, 8)), image_shape=(1, 8, 8))[0].shape == (64,)
    assert inputs.sample_shape(rows, None) == (64,) and inputs.sample_shape(rows, (1, 8, 8)) == (1, 8, 8)
