"""How values become an MLflow run's params, tags and dataset inputs: flattened keys, characters MLflow accepts,
MLflow's limits, the keys left out of the params, the code's commit and MLflow's system tags (lineage), the data a
run read."""

from __future__ import annotations

import getpass
import hashlib
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

#: MLflow's limits (mlflow.utils.validation): values longer than this are cut, batches split.
MAX_PARAM_VALUE = 6000
MAX_BATCH = 100
#: MLflow's limit on a dataset input's digest (mlflow.utils.validation.MAX_DATASET_DIGEST_SIZE).
MAX_DIGEST = 36

#: Config keys left out of a run's params: bookkeeping that is no setting a user compares, and that would clutter
#: the MLflow UI's diff of runs (where data is cached, which store and experiment, the thread count, which is the
#: run's tag ``threads``, and the method's description). The run's ``config.yaml`` artifact still holds them.
UNCOMPARED_PARAMS = ("cache_dir", "logger.tracking_uri", "logger.experiment", "threads", "method_info.summary",
                     "method_info.kind", "method_info.scenarios", "dataset.scenarios")


def flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    """A nested dict/list config as ``{"a.b.c": "value"}`` (lists are kept whole, as their text)."""
    if isinstance(tree, dict):
        flat: dict[str, str] = {}
        for key, value in tree.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: str(tree)[:MAX_PARAM_VALUE]}


def run_params(config: dict[str, Any]) -> dict[str, str]:
    """A resolved config as a run's params: flattened, less :data:`UNCOMPARED_PARAMS`."""
    return {key: value for key, value in flatten(config).items() if key not in UNCOMPARED_PARAMS}


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


def tlrun_commit() -> str | None:
    """The commit of the checkout tlrun runs from (``-dirty`` when it has changes), if it runs from one."""
    return git_commit(Path(__file__).resolve().parent)


def source_tags() -> dict[str, str]:
    """A new run's lineage tags: MLflow's system tags (the command, a local run, the OS user and, from a git
    checkout, its commit: the UI's Source, User and Version columns) and tlrun's ``git_commit`` (which marks a
    checkout with changes ``-dirty``)."""
    from mlflow.entities import SourceType
    from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE, MLFLOW_USER

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container's user without a name
        user = "unknown"
    tags = {MLFLOW_SOURCE_NAME: sys.argv[0] if sys.argv and sys.argv[0] else "tlrun",
            MLFLOW_SOURCE_TYPE: SourceType.to_string(SourceType.LOCAL), MLFLOW_USER: user}
    commit = tlrun_commit()
    if commit:
        tags |= {MLFLOW_GIT_COMMIT: commit.removesuffix("-dirty"), "git_commit": commit}
    return tags


@dataclass(frozen=True)
class DataInput:
    """A domain a run read, as an MLflow dataset input (a reference: the data itself is not stored)."""

    #: ``<dataset>/<domain>``.
    name: str
    #: What the run used it for: ``source``, ``target`` or ``evaluation``.
    context: str
    #: sha256 of every file the domain was read from, by file name (also the run's ``data.sha256.*`` tags).
    checksums: dict[str, str]
    #: Where it was read from.
    files: tuple[str, ...] = ()

    @property
    def digest(self) -> str:
        """The sha256 of the domain's file (of its files' checksums when it has several), cut to MLflow's
        :data:`MAX_DIGEST` characters."""
        if len(self.checksums) == 1:
            return next(iter(self.checksums.values()))[:MAX_DIGEST]
        listing = "".join(f"{name} {digest}\n" for name, digest in sorted(self.checksums.items()))
        return hashlib.sha256(listing.encode()).hexdigest()[:MAX_DIGEST]

    def entity(self) -> Any:
        """The MLflow ``DatasetInput``: its source the files (their names where the domain does not say where they
        are), its profile their full checksums, tagged with the context."""
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        source = json.dumps({"uri": ", ".join(self.files or sorted(self.checksums))})
        dataset = Dataset(self.name, self.digest, "local", source, profile=json.dumps({"sha256": self.checksums}))
        return DatasetInput(dataset, [InputTag(MLFLOW_DATASET_CONTEXT, self.context)])
