"""The ``tlrun`` command: a thin Hydra entry point, and the subcommands ``tlrun ui`` (the MLflow UI on the
project's store) and ``tlrun compare`` (tables and plots of runs).

Only Hydra and OmegaConf are imported here, so ``tlrun --help`` and configuration errors answer in about a
second; :mod:`tlrun.run` imports torch and MLflow only once the configuration has passed its checks.
"""

from __future__ import annotations

import sys
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from tlrun.config import config_dir, register_resolvers
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
    _hydra_main()


if __name__ == "__main__":
    main()
