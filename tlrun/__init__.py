"""tlrun: a command-line experiment runner for transfer learning (Hydra + PyTorch Lightning + MLflow)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tlrun")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
