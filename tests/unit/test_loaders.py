"""How deep methods read their samples: worker processes for image files only (``num_workers=auto``), an explicit
count kept, pinned memory on a CUDA device, and what a worker count changes in a seeded run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tlrun.backbones import MLP, LeNet
from tlrun.backbones.inputs import AUTO_WORKERS_MAX, loader_options
from tlrun.config import instantiate
from tlrun.data.images import ImageFolder

PATHS = ("a.jpg", "b.jpg")
ROWS = np.zeros((4, 3), dtype=np.float32)


def test_auto_gives_workers_to_image_files_only():
    assert loader_options("auto", ROWS, "cpu", cores=4)["num_workers"] == 0
    assert loader_options("auto", PATHS, "cpu", cores=4)["num_workers"] == 3  # the cores but the main process's
    assert loader_options("auto", PATHS, "cpu", cores=64)["num_workers"] == AUTO_WORKERS_MAX
    assert loader_options("auto", PATHS, "cpu", cores=1)["num_workers"] == 0  # one core: no process to spare
    assert loader_options(2, ROWS, "cpu", cores=1) == {"num_workers": 2, "persistent_workers": True, "pin_memory": False}
    assert loader_options(0, PATHS, "cpu", cores=4) == {"num_workers": 0, "persistent_workers": False, "pin_memory": False}


@pytest.mark.parametrize("device, pinned", [("cpu", False), ("cuda", True), (torch.device("cuda", 1), True)])
def test_memory_is_pinned_for_a_cuda_device_only(device, pinned):
    assert loader_options("auto", ROWS, device)["pin_memory"] is pinned


def _image_domain(root: Path):
    """A tiny ImageFolder tree (two classes of 4 JPEGs), loaded: its samples are file paths."""
    from PIL import Image

    for c, label in enumerate(("cat", "dog")):
        folder = root / "photos" / label
        folder.mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (20, 16), (200 * c, 30 * i, 90)).save(folder / f"{i}.jpg")
    return ImageFolder(root=str(root), source="photos", target="photos").load("photos")


def test_a_deep_method_loads_image_files_with_workers_and_arrays_without(compose, tmp_path, monkeypatch):
    monkeypatch.setattr("tlrun.backbones.inputs.run_cores", lambda: 4)
    domain = _image_domain(tmp_path / "images")
    files = instantiate(compose("method=source_only").method, backbone=LeNet(input_shape=(3, 16, 16), features=8))
    assert files.num_workers == "auto"
    loader = files.make_loader(domain.X, domain.y, shuffle=True)
    assert loader.num_workers == 3 and loader.persistent_workers and not loader.pin_memory  # a CPU network
    assert next(iter(loader))[0].shape == (8, 3, 16, 16)

    rows = instantiate(compose("method=source_only").method, backbone=MLP(input_shape=(3,), hidden=[4]))
    assert rows.make_loader(ROWS, shuffle=False).num_workers == 0
    explicit = instantiate(compose("method=source_only", "method.num_workers=1").method,
                           backbone=MLP(input_shape=(3,), hidden=[4]))
    assert explicit.make_loader(ROWS, shuffle=False).num_workers == 1


def test_num_workers_is_auto_or_a_count(compose):
    from tlrun.config import constructor_arguments
    from tlrun.methods.settings import SettingTypeError, check_settings

    method = compose("method=dann").method
    settings = constructor_arguments(method)
    check_settings(method._target_, settings | {"num_workers": "auto"})
    check_settings(method._target_, settings | {"num_workers": 3})
    with pytest.raises(SettingTypeError, match="method.num_workers=many"):
        check_settings(method._target_, settings | {"num_workers": "many"})
    with pytest.raises(ValueError, match="num_workers must be auto or a number"):
        check_settings(method._target_, settings | {"num_workers": -1})


def _augmented_epoch(compose, num_workers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One shuffled, augmented (crop_flip) epoch of 12 pixel rows, the run's seed applied as ``fit`` applies it."""
    method = instantiate(compose("method=source_only", f"method.num_workers={num_workers}", "method.batch_size=4").method,
                         backbone=MLP(input_shape=(1, 8, 8), hidden=[4]))
    method._image_shape, method._augment = (1, 8, 8), "crop_flip"
    X = np.arange(12 * 64, dtype=np.float32).reshape(12, 64)
    torch.manual_seed(0)
    batches = list(method.make_loader(X, np.arange(12), shuffle=True))
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def test_a_worker_count_repeats_its_augmentations_and_another_count_draws_others(compose):
    """The order comes from the loader's seeded generator whatever the workers; the augmentations from the main
    process's torch seed (0 workers) or from each worker's seed (drawn from that generator, plus its index)."""
    epochs = {workers: _augmented_epoch(compose, workers) for workers in (0, 1, 2)}
    for workers, (images, labels) in epochs.items():
        again_images, again_labels = _augmented_epoch(compose, workers)
        assert torch.equal(again_images, images) and torch.equal(again_labels, labels)
        assert torch.equal(labels, epochs[0][1])  # the same order
    assert not torch.equal(epochs[0][0], epochs[1][0]) and not torch.equal(epochs[1][0], epochs[2][0])
