"""The search's one error."""

from __future__ import annotations

from tlrun.errors import TlrunError


class SearchError(TlrunError):
    """A search that cannot start or finish: a bad setting, search space or objective. The message says which."""
