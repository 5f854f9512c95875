"""The search behind the ``optuna`` sweeper (:class:`OptunaSearch`): ask Optuna for trials, launch them as Hydra
jobs, tell Optuna their values, report the best. See :mod:`tlrun.tracking.search` for its settings."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from tlrun.tracking.search.errors import SearchError
from tlrun.tracking.search.objective import default_objective, job_metrics, objective_value, reads_target_labels
from tlrun.tracking.search.report import Trials, log_on_parent, write_results
from tlrun.tracking.search.space import SearchSpace, parse_space, space_from_arguments

DIRECTIONS = ("maximize", "minimize")
SAMPLERS = ("tpe", "random", "grid")


@dataclass(frozen=True)
class SearchSettings:
    """The sweeper's settings, ``hydra.sweeper.<key>``, checked (see :mod:`tlrun.tracking.search`)."""

    n_trials: int = 20
    n_jobs: int = 1
    direction: str = "maximize"
    sampler: str = "tpe"
    seed: int | None = None
    storage: str | None = None
    study_name: str | None = None
    objective: str = "auto"
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = "hydra.sweeper."
        if int(self.n_trials) < 1 or int(self.n_jobs) < 1:
            raise SearchError(f"{where}n_trials and {where}n_jobs must be at least 1")
        if self.direction not in DIRECTIONS:
            raise SearchError(f"{where}direction={self.direction}: choose one of {', '.join(DIRECTIONS)}")
        if self.sampler not in SAMPLERS:
            raise SearchError(f"{where}sampler={self.sampler}: choose one of {', '.join(SAMPLERS)}")
        if not str(self.objective).strip():
            raise SearchError(f"{where}objective: give auto or a metric name")


@dataclass
class TrialRecord:
    """What the search knows of one trial of this launch."""

    number: int
    params: dict[str, Any]
    state: str = "RUNNING"
    value: float | None = None
    run_id: str | None = None
    job: int | None = None
    skipped: bool = False
    error: str = ""
    #: The Optuna trial.
    trial: Any = None


class OptunaSearch:
    """The search behind the ``optuna`` sweeper: ask Optuna for a batch of trials, launch them as Hydra jobs,
    tell Optuna their values, and report the best on the sweep's parent run."""

    def __init__(self, settings: Mapping[str, Any], config: DictConfig, launcher: Any, config_loader: Any) -> None:
        params = settings.get("params")
        if isinstance(params, DictConfig):
            params = OmegaConf.to_container(params, resolve=False)
        self.settings = SearchSettings(**{**settings, "params": params or {}})
        self.config = config
        self.launcher = launcher
        self.config_loader = config_loader
        self.objective: str | None = None if self.settings.objective == "auto" else str(self.settings.objective)
        self.records: list[TrialRecord] = []

    # ---- setup

    def space(self, arguments: Sequence[str]) -> SearchSpace:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        space = parse_space(self.settings.params)
        space.add(space_from_arguments(arguments, OverridesParser.create(config_loader=self.config_loader)))
        if not space.params:
            raise SearchError("the search space is empty: give hydra.sweeper.params (e.g. "
                              "'+hydra.sweeper.params.method.lamb=\"float(0.01, 10, log)\"') or a sweep on the "
                              "command line (e.g. 'method.lamb=tag(log, interval(0.01, 10))')")
        return space

    def study(self, space: SearchSpace) -> Any:
        """The Optuna study: new, or the stored one of the same name (resumed). The sampler is seeded with
        ``seed`` plus the number of trials the study holds, so that a resumed search draws new points."""
        import optuna

        from tlrun.tracking.sweeps import sweep_identity

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        name = self.settings.study_name or f"tlrun-{sweep_identity(self.config)}"
        try:
            study = optuna.create_study(storage=self.settings.storage, study_name=name, direction=self.settings.direction,
                                        load_if_exists=True, sampler=optuna.samplers.RandomSampler(seed=0))
        except Exception as error:  # a URL SQLAlchemy cannot open, a database it cannot create...
            raise SearchError(f"hydra.sweeper.storage={self.settings.storage}: cannot open the study there: {error}") from error
        if study.direction.name.lower() != self.settings.direction:
            raise SearchError(f"the stored study {name!r} is to {study.direction.name.lower()}; "
                              f"hydra.sweeper.direction={self.settings.direction} does not fit it")
        earlier = len(study.trials)
        seed = (self.settings.seed if self.settings.seed is not None else int(self.config.get("seed", 0))) + earlier
        if self.settings.sampler == "tpe":
            study.sampler = optuna.samplers.TPESampler(seed=seed)
        elif self.settings.sampler == "random":
            study.sampler = optuna.samplers.RandomSampler(seed=seed)
        else:
            study.sampler = _GridSampler({p.name: p.grid() for p in space.params}, seed=seed)
        if earlier:
            print(f"tlrun: search: resuming study {name!r} ({earlier} earlier trials) in {self.settings.storage}")
        return study

    # ---- the loop

    def run(self, arguments: Sequence[str]) -> list[Sequence[Any]]:
        """The search; returns the launcher's results, batch by batch (as Hydra's sweepers do)."""
        space = self.space(arguments)
        study = self.study(space)
        stored = study.user_attrs.get("objective")
        if stored and self.objective not in (None, stored):
            raise SearchError(f"the stored study {study.study_name!r} searched on {stored}, not on {self.objective}: "
                              "give another hydra.sweeper.study_name, or objective=auto")
        if self.objective is None and stored:
            self.objective = stored  # a resumed study keeps its objective (a trial that disagrees fails)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        if self.objective is not None:
            self._announce(study)
        distributions = {p.name: p.distribution() for p in space.params}
        print(f"tlrun: search: {self.settings.n_trials} trials ({self.settings.sampler}, {self.settings.direction}) over "
              + "; ".join(f"{p.name}: {p}" for p in space.params), flush=True)
        returns: list[Sequence[Any]] = []
        launched, asked = 0, 0
        try:
            while asked < self.settings.n_trials:
                if self.settings.sampler == "grid" and study.sampler.is_exhausted(study):
                    print("tlrun: search: every point of the grid has been tried")
                    break
                batch = []
                for _ in range(min(self.settings.n_jobs, self.settings.n_trials - asked)):
                    trial = study.ask(distributions)
                    record = TrialRecord(trial.number, dict(trial.params), trial=trial)
                    self.records.append(record)
                    batch.append((trial, record, space.overrides(trial.params)))
                asked += len(batch)
                ready = [(trial, record, overrides) for trial, record, overrides in batch
                         if self._check(study, trial, record, overrides)]
                if not ready:
                    continue
                for offset, (_, record, _) in enumerate(ready):
                    record.job = launched + offset
                results = self.launcher.launch([overrides for _, _, overrides in ready], initial_job_idx=launched)
                launched += len(ready)
                returns.append(results)
                for (trial, record, _), result in zip(ready, results):
                    self._tell(study, trial, record, result)
        except SearchError:  # the search could not start: nothing to report
            raise
        except BaseException:  # interrupted (Ctrl-C, SIGTERM) or broken: report what is done, then stop
            for record in self.records:
                if record.state == "RUNNING":
                    try:
                        self._fail(study, record.trial, record, "the search stopped before this trial ended")
                    except Exception:  # told already, when the error came after Optuna stored the trial
                        pass
            try:
                self.finish(study, sweep_dir, must_complete=False)
            except Exception as error:
                print(f"tlrun: could not report the search: {error}", file=sys.stderr)
            raise
        self.finish(study, sweep_dir)
        return returns

    def _announce(self, study: Any) -> None:
        study.set_user_attr("objective", self.objective)
        print(f"tlrun: search objective: {self.objective} ({self.settings.direction})", flush=True)
        if reads_target_labels(self.objective):
            print(f"tlrun: warning: the search objective {self.objective} reads the target's test labels: the "
                  "hyperparameters it picks are an oracle's choice, not a label-free one",
                  file=sys.stderr, flush=True)

    def _check(self, study: Any, trial: Any, record: TrialRecord, overrides: list[str]) -> bool:
        """Compose the trial's config before launching it; under ``objective=auto`` the first trial sets the
        objective (a :class:`SearchError` there stops the search) and later ones must agree. A trial that does
        not pass fails without a job."""
        try:
            job_config = self.config_loader.load_sweep_config(master_config=self.config, sweep_overrides=list(overrides))
        except Exception as error:  # a value Hydra cannot compose (an unknown group option...)
            self._fail(study, trial, record, f"its config does not compose: {error}")
            return False
        if self.settings.objective != "auto":
            return True
        try:
            objective = default_objective(job_config)
        except SearchError as error:
            if self.objective is None:  # the search's own config: every trial would fail so
                self._fail(study, trial, record, str(error), say=False)
                raise
            self._fail(study, trial, record, str(error))
            return False
        if self.objective is None:
            self.objective = objective
            self._announce(study)
        elif objective != self.objective:
            self._fail(study, trial, record, f"objective=auto scores this trial's config by {objective}, the search by "
                                             f"{self.objective}: name hydra.sweeper.objective to compare them")
            return False
        return True

    def _fail(self, study: Any, trial: Any, record: TrialRecord, message: str, say: bool = True) -> None:
        from optuna.trial import TrialState

        record.state, record.error = "FAIL", message
        trial.set_user_attr("error", message[:1000])
        study.tell(trial, state=TrialState.FAIL)
        if say:
            print(f"tlrun: search trial {record.number} failed: {message}", file=sys.stderr, flush=True)

    def _tell(self, study: Any, trial: Any, record: TrialRecord, result: Any) -> None:
        from hydra.core.utils import JobStatus

        trial.set_user_attr("job", record.job)
        if result.status != JobStatus.COMPLETED:
            self._fail(study, trial, record, f"its job failed: {result._return_value}")
            return
        try:
            metrics, record.run_id, record.skipped = job_metrics(result.return_value)
            trial.set_user_attr("run_id", record.run_id)
            trial.set_user_attr("skipped", record.skipped)
            value = objective_value(metrics, self.objective or "value")
        except SearchError as error:
            self._fail(study, trial, record, str(error))
            return
        study.tell(trial, value)
        record.state, record.value = "COMPLETE", value
        print(f"tlrun: search trial {record.number}: {self.objective} = {value:.4f}"
              + (f" (run {record.run_id}{', reused' if record.skipped else ''})" if record.run_id else ""), flush=True)

    # ---- the end

    def finish(self, study: Any, sweep_dir: Path, must_complete: bool = True) -> None:
        """Print the best trial; write the trials, the history plot and ``optimization_results.yaml``; log them
        on the parent run. Trials of an earlier launch of a stored study count too. With ``must_complete``, a
        search where no trial completed raises a :class:`SearchError` (after writing and logging)."""
        from tlrun.tracking.sweeps import PARENT_ENV, client_for

        trials = Trials.of(study)
        out_dir = write_results(study, trials, sweep_dir, self.objective, self.settings.direction)
        parent = os.environ.get(PARENT_ENV)
        # This launch's runs (not reused ones: they may belong to another sweep).
        trial_of_run = {record.run_id: record.number for record in self.records if record.run_id and not record.skipped}
        try:
            if parent:
                log_on_parent(client_for(self.config), parent, trials, out_dir, self.objective,
                              self.settings.direction, self.settings.sampler, trial_of_run)
        except Exception as error:  # the results are on disk; the store's trouble must not hide them
            print(f"tlrun: could not log the search results on the sweep run: {error}", file=sys.stderr)
        if trials.best is None and must_complete:
            first = trials.first_error()
            raise SearchError("no trial of the search completed" + (f"; the first failure: {first}" if first else ""))


def _GridSampler(search_space: dict[str, list[Any]], seed: int) -> Any:
    """Optuna's grid sampler, less its ``study.stop()`` once the grid is done, which works only inside
    ``study.optimize``; the search asks ``is_exhausted`` before each trial instead."""
    from optuna.samplers import GridSampler

    class Grid(GridSampler):
        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            pass

    return Grid(search_space, seed=seed)


