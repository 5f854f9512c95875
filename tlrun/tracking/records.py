"""How values become an MLflow run's params and tags: flattened keys, characters MLflow accepts, MLflow's limits,
and the code's commit (a lineage tag)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any, Iterable

#: MLflow's limits (mlflow.utils.validation): values longer than this are cut, batches split.
MAX_PARAM_VALUE = 6000
MAX_BATCH = 100


def flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    """A nested dict/list config as ``{"a.b.c": "value"}`` (lists are kept whole, as their text)."""
    if isinstance(tree, dict):
        flat: dict[str, str] = {}
        for key, value in tree.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: str(tree)[:MAX_PARAM_VALUE]}


def safe_key(name: str) -> str:
    """``name`` with the characters MLflow refuses in keys (all but ``\\w - . space : /``) replaced by ``_``."""
    return re.sub(r"[^\w\-. :/]", "_", name)


def batched(items: list, size: int = MAX_BATCH) -> Iterable[list]:
    """``items`` in slices MLflow accepts in one ``log_batch``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def git_commit(path: Path) -> str | None:
    """The commit of the git checkout holding ``path`` (with ``-dirty`` when it has changes), if any."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")
