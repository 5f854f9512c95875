"""tlrun's Optuna sweeper: ``tlrun --multirun hydra/sweeper=optuna ...``. A thin Hydra plugin over
:class:`tlrun.tracking.search.OptunaSearch`, where the search and its documentation live.

Hydra imports this module whenever tlrun starts (``tlrun --help`` included), so optuna, MLflow and tlrun's search
are imported only when a search runs.
"""

import sys
from typing import Any, Dict, List, Optional

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class TlrunOptunaSweeper(Sweeper):
    """Each trial a Hydra job of the configured launcher, hence a child MLflow run of the sweep's parent."""

    def __init__(self, n_trials: int, n_jobs: int, direction: str, sampler: str, seed: Optional[int],
                 storage: Optional[str], study_name: Optional[str], objective: str,
                 params: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        self.settings = dict(n_trials=n_trials, n_jobs=n_jobs, direction=direction, sampler=sampler, seed=seed,
                             storage=storage, study_name=study_name, objective=objective, params=params)
        self.hydra_context: Optional[HydraContext] = None
        self.config: Optional[DictConfig] = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        from tlrun.tracking.search import require_optuna

        require_optuna()  # a SearchError naming the search extra, before any job
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: List[str]) -> Any:
        from tlrun.errors import TlrunError
        from tlrun.tracking.search import OptunaSearch

        assert self.config is not None and self.hydra_context is not None
        try:
            search = OptunaSearch(self.settings, self.config, self.launcher, self.hydra_context.config_loader)
            return search.run(arguments)
        except TlrunError as error:  # as the CLI does: the message alone says what to do
            print(f"tlrun: error: {error}", file=sys.stderr, flush=True)
            sys.exit(2)
