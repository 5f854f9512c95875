"""Shared fixtures: one MLflow store per test session (creating a sqlite store costs seconds), Hydra's compose API
on the package's config tree, and torch on one thread. Helpers that are not fixtures live in ``tests/helpers.py``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A sqlite tracking URI shared by every test of the session."""
    folder = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture
def compose(mlflow_store: str, tmp_path: Path):
    """Compose tlrun's config in-process, as ``tlrun <overrides>`` would, tracking into the session store."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from tlrun.config import config_dir, register_resolvers

    register_resolvers()

    def _compose(*overrides: str, experiment: str = "tests"):
        base = [f"logger.tracking_uri={mlflow_store}", f"logger.experiment={experiment}", f"cache_dir={tmp_path / 'cache'}"]
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return hydra_compose("config", overrides=base + list(overrides))

    return _compose


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test: small networks run faster so, and do not fight a busy second core."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
