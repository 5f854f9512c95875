"""The feature cache: a second extraction with the same key runs no forward pass; any key change misses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import REPO
from tlrun.backbones import MLP, LeNet
from tlrun.backbones.extract import extract_features
from tlrun.data.base import Domain


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def counted(backbone: torch.nn.Module) -> list[int]:
    """Count the samples that go through ``backbone``'s forward."""
    seen: list[int] = []
    backbone.register_forward_hook(lambda module, args, out: seen.append(len(args[0])))
    return seen


def make_domain(name: str = "rotate", seed: int = 0, checksums: dict | None = None) -> Domain:
    rng = np.random.default_rng(seed)
    return Domain(
        name=name,
        X=rng.random((37, 64)).astype(np.float32),
        y=rng.integers(0, 10, 37),
        classes=tuple(str(k) for k in range(10)),
        image_shape=(1, 8, 8),
        checksums={"digits.npz": "ab" * 32} if checksums is None else checksums,
    )


def test_hit_then_misses(tmp_path: Path):
    torch.manual_seed(0)
    backbone = LeNet(input_shape=(1, 8, 8), features=32)
    seen = counted(backbone)
    domain = make_domain()
    extract = lambda bb, dom, **kw: extract_features(  # noqa: E731
        bb, dom, **{"dataset_name": "digits", "preprocess": "none", "cache_dir": tmp_path, "batch_size": 16,
                    "progress": False, **kw}
    )

    first = extract(backbone, domain)
    assert first.shape == (37, 32) and first.dtype == np.float32
    assert sum(seen) == 37 and backbone.training  # the mode is restored
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(first), backbone.eval()(torch.from_numpy(domain.X)))
    backbone.train()
    entries = sorted(tmp_path.iterdir())
    assert len(entries) == 1 and entries[0].suffix == ".npz"  # no temporary file left behind

    seen.clear()
    np.testing.assert_array_equal(extract(backbone, domain), first)
    assert seen == []

    # Every part of the key misses on its own.
    changes = [
        dict(dataset_name="digits2"),
        dict(preprocess="zscore"),
        dict(dom=make_domain(name="thick")),
        dict(dom=make_domain(checksums={"digits.npz": "cd" * 32})),
        dict(dom=make_domain(seed=1)),
        dict(bb=LeNet(input_shape=(1, 8, 8), features=16)),
        dict(bb=LeNet(input_shape=(1, 8, 8), features=32)),  # the same random init drawn again: other weights
    ]
    for number, change in enumerate(changes, start=2):
        bb, dom = change.pop("bb", backbone), change.pop("dom", domain)
        seen = counted(bb) if bb is not backbone else seen
        seen.clear()
        extract(bb, dom, **change)
        assert sum(seen) == 37, change
        assert len(list(tmp_path.iterdir())) == number

    # use_cache=False always computes and stores nothing.
    seen = counted(backbone)
    extract(backbone, domain, use_cache=False)
    assert sum(seen) == 37 and len(list(tmp_path.iterdir())) == len(changes) + 1


def test_weights_file_and_damaged_entry(tmp_path: Path):
    cache = tmp_path / "cache"
    domain = make_domain()
    files = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        files.append(tmp_path / f"mlp{seed}.pt")
        torch.save(MLP(input_shape=(64,), hidden=(8,)).state_dict(), files[-1])
    first = MLP(input_shape=(64,), hidden=(8,), weights=str(files[0]))
    same = MLP(input_shape=(64,), hidden=(8,), weights=str(files[0]))
    other = MLP(input_shape=(64,), hidden=(8,), weights=str(files[1]))
    kwargs = dict(dataset_name="digits", cache_dir=cache, progress=False)

    a = extract_features(first, domain, **kwargs)
    seen = counted(same)
    np.testing.assert_array_equal(extract_features(same, domain, **kwargs), a)
    assert seen == []  # same file contents: hit
    seen = counted(other)
    assert not np.array_equal(extract_features(other, domain, **kwargs), a)
    assert sum(seen) == 37  # other weights: miss

    # A damaged entry is recomputed (and rewritten).
    for entry in cache.iterdir():
        entry.write_bytes(b"truncated")
    seen = counted(first)
    np.testing.assert_array_equal(extract_features(first, domain, **kwargs), a)
    assert sum(seen) == 37
    seen.clear()
    extract_features(first, domain, **kwargs)
    assert seen == []


def test_image_files(tmp_path: Path):
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for k in range(5):
        path = tmp_path / "images" / f"{k}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    domain = Domain("amazon", tuple(paths), np.zeros(5, dtype=np.int64), ("a",), checksums={"amazon": "00" * 32})
    backbone = LeNet(input_shape=(3, 16, 16), features=8)
    seen = counted(backbone)
    features = extract_features(backbone, domain, dataset_name="office31", cache_dir=tmp_path / "cache", batch_size=2)
    assert features.shape == (5, 8) and seen == [2, 2, 1]
    np.testing.assert_array_equal(
        extract_features(backbone, domain, dataset_name="office31", cache_dir=tmp_path / "cache"), features
    )
    assert seen == [2, 2, 1]

    # The runner's form: the backbone's config (metadata included), built here for the domain (files: no
    # input_shape, the config's image_size).
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(REPO / "conf/backbone/lenet.yaml")
    cfg.image_size, cfg.features = 16, 8
    cache = tmp_path / "cfg-cache"
    torch.manual_seed(0)  # random weights: a run's seed draws them, and the same draw hits
    built = extract_features(backbone_cfg=cfg, domain=domain, dataset_name="office31", cache_dir=cache, progress=False)
    assert built.shape == (5, 8)
    (entry,) = cache.iterdir()
    stamp = entry.stat().st_mtime_ns
    torch.manual_seed(0)
    np.testing.assert_array_equal(
        extract_features(backbone_cfg=cfg, domain=domain, dataset_name="office31", cache_dir=cache), built
    )
    assert [e.stat().st_mtime_ns for e in cache.iterdir()] == [stamp]
