"""Features of a domain from a frozen backbone, cached on disk.

:func:`extract_features` runs the backbone in eval mode without gradients over all samples of a domain and
returns an ``(n, out_features)`` float32 array. The result is stored under ``cache_dir`` (default
``~/.cache/tlrun/features``) in a file named by the sha256 of a key made of:

- the dataset's name and the domain's name;
- the sha256 of every data file the domain was read from (``Domain.checksums``) and of the samples themselves
  (the array's bytes, or the sequence of image paths), so that a different subset or order misses;
- the dataset's preprocessing and the input pipeline's (:func:`tlrun.backbones.inputs.describe`);
- the backbone's config and its weights (``none``, the ImageNet weights' URL, or the sha256 of a weights file).

The same key loads the stored array without running the network; any change in it misses. Files are written
to a temporary name and renamed, so an interrupted run never leaves a partial entry; an unreadable entry is
recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from tlrun.backbones import inputs as _inputs
from tlrun.data.base import Domain
from tlrun.progress import progress_bar

log = logging.getLogger(__name__)

#: Default folder of the feature cache.
DEFAULT_CACHE_DIR = Path("~/.cache/tlrun/features")
#: Bump when the file layout or the key changes.
CACHE_VERSION = 1


def _samples_digest(X: Any) -> str:
    digest = hashlib.sha256()
    if _inputs.is_paths(X):
        for path in X:
            digest.update(str(path).encode())
            digest.update(b"\0")
    else:
        array = np.ascontiguousarray(X)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _parameters_digest(module: torch.nn.Module) -> str:
    """The sha256 of a module's state (every tensor's name and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_key(
    backbone: Any,
    domain: Domain,
    *,
    dataset_name: str,
    preprocess: Any = "none",
) -> dict[str, Any]:
    """The key an extraction is stored under (a JSON-able dict; its sha256 names the file). Randomly initialised
    weights (``weights_id`` ``none``) are keyed by their digest: another seed's random network misses."""
    weights_id = backbone.weights_id() if hasattr(backbone, "weights_id") else "unknown"
    if weights_id in ("none", "unknown"):
        weights_id = f"{weights_id}:{_parameters_digest(backbone)}"
    return {
        "version": CACHE_VERSION,
        "dataset": dataset_name,
        "domain": domain.name,
        "checksums": dict(sorted((domain.checksums or {}).items())),
        "samples": _samples_digest(domain.X),
        "preprocess": preprocess,
        "inputs": _inputs.describe(backbone, domain.X, domain.image_shape),
        "backbone": {"class": f"{type(backbone).__module__}.{type(backbone).__qualname__}", **getattr(backbone, "config", {})},
        "weights": weights_id,
    }


def cache_path(key: Mapping[str, Any], cache_dir: str | Path | None = None) -> Path:
    """The file holding the features stored under ``key``."""
    folder = Path(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR).expanduser()
    name = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    return folder / f"{key.get('dataset', 'data')}-{key.get('domain', 'domain')}-{name[:32]}.npz"


def _load(path: Path, n: int) -> np.ndarray | None:
    try:
        with np.load(path, allow_pickle=False) as stored:
            features = stored["features"]
    except FileNotFoundError:
        return None
    except Exception as error:  # noqa: BLE001 - a damaged entry is recomputed
        log.warning("feature cache entry %s is unreadable (%s); recomputing it", path, error)
        return None
    if features.ndim != 2 or features.shape[0] != n:
        log.warning("feature cache entry %s has shape %s, expected %d rows; recomputing it", path, features.shape, n)
        return None
    return features


def _store(path: Path, features: np.ndarray, key: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, features=features, key=np.array(json.dumps(key, sort_keys=True, default=str)))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@torch.no_grad()
def run_backbone(
    backbone: torch.nn.Module,
    X: Any,
    *,
    image_shape: tuple[int, ...] | None = None,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    num_workers: int | str = "auto",
    progress: bool = True,
    description: str = "features",
) -> np.ndarray:
    """Run ``backbone`` frozen (eval mode, no gradients) over ``X`` in batches; no cache. Image files are read by
    worker processes (``num_workers=auto``, :func:`tlrun.backbones.inputs.loader_options`)."""
    dataset = _inputs.make_dataset(X, backbone=backbone, image_shape=image_shape)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, **_inputs.loader_options(num_workers, X, device)
    )
    was_training = backbone.training
    original_device = next(backbone.parameters(), torch.empty(0)).device
    backbone.eval().to(device)
    chunks: list[np.ndarray] = []
    try:
        with progress_bar(description, len(dataset), show=progress) as bar:
            for batch in loader:
                out = backbone(batch.to(device, non_blocking=True))
                chunks.append(out.detach().float().cpu().numpy())
                bar.update(len(batch))
    finally:
        backbone.train(was_training)
        backbone.to(original_device)
    out_features = int(getattr(backbone, "out_features", 0))
    if not chunks:
        return np.zeros((0, out_features), dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def build_backbone(backbone_cfg: Any, domain: Domain) -> torch.nn.Module:
    """Instantiate a backbone config (``conf/backbone/<name>.yaml``, metadata keys allowed) for ``domain``."""
    from tlrun.config import instantiate

    return instantiate(backbone_cfg, input_shape=_inputs.sample_shape(domain.X, domain.image_shape))


def extract_features(
    backbone: torch.nn.Module | None = None,
    domain: Domain | None = None,
    *,
    backbone_cfg: Any = None,
    dataset_name: str,
    preprocess: Any = "none",
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    num_workers: int | str = "auto",
    progress: bool = True,
) -> np.ndarray:
    """Features of every sample of ``domain`` (in order) from a frozen backbone, cached on disk.

    Args:
        backbone: a built :class:`~tlrun.backbones.base.Backbone` (its config and weights are part of the key);
        backbone_cfg: or its config (``cfg.backbone``), built here for ``domain`` (give exactly one of the two).
        domain: the loaded domain (samples, ``image_shape`` and file checksums).
        dataset_name: the dataset's name.
        preprocess: how the dataset preprocessed the samples (any JSON-able value, e.g. ``"zscore"``).
        cache_dir: the cache folder (default ``~/.cache/tlrun/features``).
        use_cache: ``False`` always runs the network and stores nothing.
        batch_size, device, num_workers: how the network runs.
        progress: show a progress bar (on stderr).

    Returns:
        ``(len(domain), out_features)`` float32 features.
    """
    if domain is None:
        raise TypeError("extract_features: domain is required")
    if (backbone is None) == (backbone_cfg is None):
        raise TypeError("extract_features: give exactly one of backbone (a module) and backbone_cfg (its config)")
    if backbone is None:
        backbone = build_backbone(backbone_cfg, domain)
    key = cache_key(backbone, domain, dataset_name=dataset_name, preprocess=preprocess)
    path = cache_path(key, cache_dir)
    if use_cache:
        cached = _load(path, len(domain))
        if cached is not None:
            log.info("features of %s/%s loaded from %s", dataset_name, domain.name, path)
            return cached
    features = run_backbone(
        backbone, domain.X, image_shape=domain.image_shape, batch_size=batch_size, device=device,
        num_workers=num_workers, progress=progress, description=f"{dataset_name}/{domain.name} features",
    )
    if use_cache:
        _store(path, features, key)
        log.info("features of %s/%s stored in %s", dataset_name, domain.name, path)
    return features
