"""The config of tlrun's Optuna sweeper, registered as ``hydra/sweeper=optuna`` (see :mod:`tlrun.tracking.search`).

Imports neither optuna nor tlrun: Hydra imports every plugin module whenever it starts, ``tlrun --help`` included.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class TlrunOptunaSweeperConf:
    _target_: str = "hydra_plugins.tlrun_optuna_sweeper.optuna_sweeper.TlrunOptunaSweeper"
    # Trials to run in this launch (a resumed study adds this many more).
    n_trials: int = 20
    # Trials launched together, as one batch of the configured launcher (hydra/launcher=joblib runs them in parallel).
    n_jobs: int = 1
    # maximize | minimize the objective.
    direction: str = "maximize"
    # tpe | random | grid (grid: every combination of the choice(...) and int(...) params, once).
    sampler: str = "tpe"
    # The sampler's seed; null: the config's top-level seed.
    seed: Optional[int] = None
    # Where the study lives: null (in memory, gone when the search ends) or a database URL such as
    # sqlite:///search.db; a study stored there is resumed by launching again with the same study_name.
    storage: Optional[str] = None
    # The study's name; null: "tlrun-<sweep identity>" (the same command resumes the same study).
    study_name: Optional[str] = None
    # The metric each trial is scored by: auto (label-free, see tlrun.tracking.search.objective) or a metric name.
    objective: str = "auto"
    # The search space, config key: spec. float(lo, hi[, log][, step=s]) | int(lo, hi[, log][, step=k]) |
    # choice(a, b, ...) | a Hydra sweep (a,b | range(lo, hi) | interval(lo, hi) | tag(log, interval(lo, hi))) |
    # a value that is no sweep (fixed for every trial). Sweeps among the command-line arguments join it.
    params: Dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=TlrunOptunaSweeperConf, provider="tlrun")
