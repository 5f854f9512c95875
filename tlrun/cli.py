"""The ``tlrun`` command: a thin Hydra entry point, and the subcommands ``tlrun ui`` (the MLflow UI on the
project's store) and ``tlrun compare`` (tables and plots of runs).

Only Hydra and OmegaConf are imported here, so ``tlrun --help`` and configuration errors answer in about a
second: an unknown group option (``method=foo``) is caught here, before Hydra composes; :mod:`tlrun.run` checks
the rest and imports torch and MLflow only once the configuration has passed its checks.
"""

from __future__ import annotations

import sys
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from tlrun.config import GROUPS, config_dir, group_options, register_resolvers
from tlrun.errors import TlrunError

register_resolvers()


@hydra.main(config_path=str(config_dir()), config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> Any:
    from tlrun.run import run_job

    try:
        return run_job(cfg)
    except TlrunError as error:
        # A problem the user can fix: its message alone says what to do; a traceback would bury it.
        print(f"tlrun: error: {error}", file=sys.stderr)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweep's other jobs still run; Hydra reports the failure when they are done
        sys.exit(2)
    except KeyboardInterrupt:
        print("tlrun: interrupted; the MLflow run is marked KILLED and keeps what it logged", file=sys.stderr)
        sys.exit(130)


#: Characters of Hydra's override grammar beyond a plain option name (interpolation, quoting, lists, sweeps such
#: as ``range(...)`` or ``choice(...)``): such values are left to Hydra.
_OVERRIDE_SYNTAX = set("${}()[]'\" \\")


def unknown_group_option(arguments: list[str]) -> str | None:
    """The error for the first ``group=option`` (or ``+group=option``) override of a config group in ``conf/``
    whose option does not exist, ``None`` when there is none. A comma-separated sweep must list options only.
    Values in Hydra's richer syntax, and command lines that add config folders, are left to Hydra."""
    if any(argument.startswith(("hydra.searchpath", "--config-dir", "-cd")) for argument in arguments):
        return None
    for argument in arguments:
        key, equals, value = argument.partition("=")
        group = key.lstrip("+")
        if not equals or group not in GROUPS or not value or value == "null" or _OVERRIDE_SYNTAX & set(value):
            continue
        options = group_options(group)
        unknown = [choice for choice in value.split(",") if choice not in options]
        if unknown:
            return f"unknown {group} {unknown[0]!r}; choose one of: {', '.join(options)}"
    return None


#: Subcommands that are not runs: ``tlrun <name> key=value ...`` calls ``main(arguments)`` of the module.
SUBCOMMANDS = {"ui": "tlrun.ui", "compare": "tlrun.compare"}


def main() -> None:
    """Console-script entry point: ``tlrun ui ...`` starts the MLflow UI (:mod:`tlrun.ui`), ``tlrun compare ...``
    tabulates runs (:mod:`tlrun.compare`); anything else is a run (or a sweep) composed by Hydra."""
    if sys.argv[1:2] and sys.argv[1] in SUBCOMMANDS:
        from importlib import import_module

        try:
            sys.exit(import_module(SUBCOMMANDS[sys.argv[1]]).main(sys.argv[2:]))
        except TlrunError as error:
            print(f"tlrun: error: {error}", file=sys.stderr)
            sys.exit(2)
    error = unknown_group_option(sys.argv[1:])
    if error:  # Hydra's own message for it spans a screen
        print(f"tlrun: error: {error}", file=sys.stderr)
        sys.exit(2)
    _hydra_main()


if __name__ == "__main__":
    main()
