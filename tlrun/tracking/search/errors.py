"""The search's one error, and the check that optuna (the ``search`` extra) is installed."""

from __future__ import annotations

import importlib

from tlrun.errors import TlrunError


class SearchError(TlrunError):
    """A search that cannot start or finish: a bad setting, search space or objective. The message says which."""


def require_optuna() -> None:
    """:class:`SearchError` naming the ``search`` extra where optuna cannot be imported."""
    try:
        importlib.import_module("optuna")
    except ImportError as error:
        raise SearchError(
            f"hydra/sweeper=optuna needs optuna, which cannot be imported ({error}); it comes with tlrun's search "
            'extra: pip install "tlrun[search]" (in a clone: pip install -e ".[search]")'
        ) from None
