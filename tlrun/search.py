"""Hyperparameter search with Optuna: every trial a job of the sweep, so a child MLflow run of the search's parent.

``tlrun --multirun hydra/sweeper=optuna ...`` selects tlrun's own Hydra sweeper (the thin plugin
``hydra_plugins/tlrun_optuna_sweeper``), which runs :class:`OptunaSearch`. Each trial is a Hydra job launched
through the configured launcher (basic, joblib...), so :class:`tlrun.callbacks.SweepTracking` makes it a child
run of the sweep's parent like any ``--multirun`` job; the trial's value is read from what the job returns
(:class:`tlrun.run.RunOutcome`: the run's final metrics).

**Settings** (``hydra.sweeper.<key>``, see ``hydra_plugins/tlrun_optuna_sweeper/config.py``): ``n_trials``,
``n_jobs`` (trials launched per batch), ``direction``, ``sampler`` (``tpe``, ``random``, ``grid``), ``seed``
(null: the config's ``seed``), ``storage`` (null: in memory; a URL such as ``sqlite:///search.db`` keeps the
study, and launching again with the same ``study_name`` resumes it), ``study_name``, ``objective`` (``auto``:
:func:`default_objective`; or a metric name) and ``params``, the search space.

**Search space.** ``params`` maps a config key to a spec (:func:`parse_param`)::

    float(lo, hi)  float(lo, hi, log)  float(lo, hi, step=s)     a float in [lo, hi]
    int(lo, hi)    int(lo, hi, log)    int(lo, hi, step=k)       an integer in [lo, hi]
    choice(a, b, ...)                                            one of the values
    a value that is no sweep                                     fixed, for every trial

and Hydra's sweep syntax is read too (so the ``params`` of basic-sweeper recipes work): ``a,b,c`` (a choice),
``range(lo, hi, step)`` (integers from ``lo``, ``hi`` excluded), ``interval(lo, hi)`` (a float),
``int(interval(lo, hi))`` (an integer), ``tag(log, interval(lo, hi))`` (log scale). Keys may be dotted
(``method.lamb: float(0.01, 10, log)`` in a YAML file) or nested. Sweeps among the command-line arguments are
dimensions too (:func:`space_from_arguments`), in the same syntax, except that Hydra reads command-line values
first and rejects a bare ``log`` in ``float(...)``: there, write ``'method.lamb=tag(log, interval(0.01, 10))'``,
or quote the spec into ``params``: ``'+hydra.sweeper.params.method.lamb="float(0.01, 10, log)"'`` (the ``+``:
the key is new to the config). ``method.dim=int(10, 100)`` on the command line is tlrun's integer range, not
Hydra's choice of two casts.

**Objective.** ``auto`` is :func:`default_objective`, label-free unless ``trainer.select=oracle``. A trial
fails (and the search goes on) when its job raised, when its metrics lack the objective, or when ``auto`` would
score it by another metric than the search's. At the end the best trial is printed and, on the parent run,
logged as the tags ``search.objective`` and ``search.best_run``, the metric ``search.best_value`` and the params
``search.best.<name>``, with every trial in the artifact ``search/trials.csv`` and the optimisation history in
``search/optimization_history.png`` (both also written under ``<sweep dir>/search``, beside
``<sweep dir>/optimization_results.yaml``).

Imports neither optuna nor MLflow at module level: Hydra imports the plugin whenever tlrun starts.
"""

from __future__ import annotations

import csv
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from tlrun.errors import TlrunError

DIRECTIONS = ("maximize", "minimize")
SAMPLERS = ("tpe", "random", "grid")
#: Metrics computed from the target's test labels: a search on them is not label-free.
LABEL_READING_METRICS = ("target_acc", "selected.oracle", "gzsl_seen_acc", "gzsl_unseen_acc", "gzsl_h", "nmi", "ari")
#: ``float(...)``, ``int(...)``, ``choice(...)``: tlrun's spec functions.
OWN_FUNCTIONS = ("float", "int", "choice")
_CALL = re.compile(r"^\s*([A-Za-z_]\w*)\s*\((.*)\)\s*$", re.S)


class SearchError(TlrunError):
    """A search that cannot start or finish: a bad setting, search space or objective. The message says which."""


# ----------------------------------------------------------------------------------------------- search space


@dataclass(frozen=True)
class Param:
    """One dimension of the search space: ``kind`` is ``float``, ``int`` or ``choice`` (whose values are kept
    as the override text they were written as)."""

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[str, ...] = ()

    def distribution(self) -> Any:
        """The Optuna distribution."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "float":
            return FloatDistribution(float(self.low), float(self.high), log=self.log,
                                     step=None if self.step is None else float(self.step))
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return CategoricalDistribution(list(self.choices))

    def grid(self) -> list[Any]:
        """Every value, for ``sampler=grid``: the choices, the integers, or the floats ``lo + k·step``."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            raise SearchError(f"sampler=grid: {self.name}: {self} has no finite grid; give it a step "
                              f"(float({self.low}, {self.high}, step=...)) or use choice(...)")
        count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return [self.low + k * self.step for k in range(count)]

    def override(self, value: Any) -> str:
        """The Hydra override that sets this parameter to ``value``."""
        return f"{self.name}={value!r}" if self.kind == "float" else f"{self.name}={value}"

    def __str__(self) -> str:
        if self.kind == "choice":
            return f"choice({', '.join(self.choices)})"
        extra = (", log" if self.log else "") + (f", step={self.step}" if self.step is not None else "")
        return f"{self.kind}({self.low}, {self.high}{extra})"


@dataclass
class SearchSpace:
    """The dimensions searched, and the overrides every trial gets."""

    params: list[Param] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)

    def add(self, other: SearchSpace) -> None:
        names = {p.name for p in self.params} | {_key(o) for o in self.fixed}
        for param in other.params:
            if param.name in names:
                raise SearchError(f"search space: {param.name} is given twice (in hydra.sweeper.params and on the "
                                  "command line); keep one")
        self.params += other.params
        self.fixed += other.fixed

    def overrides(self, values: Mapping[str, Any]) -> list[str]:
        """A trial's overrides: the fixed ones, then the sampled values."""
        return [*self.fixed, *(p.override(values[p.name]) for p in self.params)]


def _key(override: str) -> str:
    return override.partition("=")[0]


def _split_arguments(text: str) -> list[str]:
    """``text`` split at the commas outside quotes and brackets, each part stripped."""
    parts, depth, quote, current = [], 0, "", ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += char
    parts.append(current.strip())
    return parts


def _number(name: str, spec: str, text: str, integer: bool) -> float | int:
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or (integer and value != int(value)):
        raise SearchError(f"search space: {name}: {spec!r}: {text!r} is not {'an integer' if integer else 'a number'}")
    return int(value) if integer else value


def parse_param(name: str, spec: Any, parser: Any = None) -> Param | str:
    """One entry of the search space: a :class:`Param`, or the override text of a fixed value.

    ``float(...)``, ``int(...)`` and ``choice(...)`` (without calls inside) are tlrun's specs; any other text is
    read by Hydra's override parser, so its sweeps count too (``a,b``, ``range``, ``interval``, ``tag(log, ...)``,
    ``int(interval(...))``) and a value that is no sweep is fixed. What neither reads raises a
    :class:`SearchError` naming the parameter.
    """
    if not isinstance(spec, str):  # a YAML number, boolean, list...: fixed
        text = "null" if spec is None else str(spec).lower() if isinstance(spec, bool) else str(spec)
        return f"{name}={text}"
    match = _own_call(spec)
    if match is None:
        return _hydra_value(name, spec, parser)
    function, inner = match.group(1), match.group(2)
    arguments = _split_arguments(inner) if inner.strip() else []
    if function == "choice":
        if not arguments or any(not part for part in arguments):
            raise SearchError(f"search space: {name}: {spec!r}: choice needs one or more values, separated by commas")
        return Param(name, "choice", choices=tuple(arguments))
    integer = function == "int"
    positional, log, step = [], False, None
    for part in arguments:
        key, equals, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not equals and part == "log":
            log = True
        elif equals and key == "log" and value.lower() in ("true", "false"):
            log = value.lower() == "true"
        elif equals and key == "step":
            step = _number(name, spec, value, integer)
        elif not equals:
            positional.append(_number(name, spec, part, integer))
        else:
            raise SearchError(f"search space: {name}: {spec!r}: unknown option {part!r} (options: log, step=...)")
    if len(positional) != 2:
        raise SearchError(f"search space: {name}: {spec!r}: {function} needs a lower and an upper bound, "
                          f"{function}(lo, hi[, log][, step=...])")
    low, high = positional
    if not low < high:
        raise SearchError(f"search space: {name}: {spec!r}: the lower bound must be below the upper bound")
    if log and low <= 0:
        raise SearchError(f"search space: {name}: {spec!r}: a log scale needs a lower bound above 0")
    if log and step is not None:
        raise SearchError(f"search space: {name}: {spec!r}: log and step cannot be combined")
    if step is not None and step <= 0:
        raise SearchError(f"search space: {name}: {spec!r}: step must be positive")
    return Param(name, function, low=low, high=high, log=log, step=step)


SYNTAX = ("a search spec is float(lo, hi[, log][, step=s]), int(lo, hi[, log][, step=k]), choice(a, b, ...), "
          "a Hydra sweep (a,b / range(lo, hi) / interval(lo, hi) / tag(log, interval(lo, hi))) or a fixed value")


def parse_space(params: Mapping[str, Any] | None) -> SearchSpace:
    """``hydra.sweeper.params`` as a :class:`SearchSpace`. Keys may be dotted (``method.lamb: ...`` in YAML)
    or nested (what ``+hydra.sweeper.params.method.lamb=...`` makes on the command line)."""
    space, parser = SearchSpace(), _parser()
    for name, spec in _flatten(params or {}).items():
        parsed = parse_param(name, spec, parser)
        if isinstance(parsed, Param):
            space.params.append(parsed)
        else:
            space.fixed.append(parsed)
    return space


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def space_from_arguments(arguments: Sequence[str], parser: Any = None) -> SearchSpace:
    """The command-line overrides as a :class:`SearchSpace`: sweeps (Hydra's, and tlrun's ``float(lo, hi)`` and
    ``int(lo, hi)``, which Hydra would read as a choice of two casts) become dimensions, the rest is fixed."""
    parser = parser or _parser()
    space = SearchSpace()
    for argument in arguments:
        override = parser.parse_override(argument)
        text = argument.partition("=")[2]
        if not override.is_sweep_override() and _own_call(text) is None:
            space.fixed.append(argument)
            continue
        param = parse_param(override.get_key_element(), text, parser)
        if isinstance(param, str):
            space.fixed.append(param)
        else:
            space.params.append(param)
    return space


def _own_call(text: str) -> re.Match[str] | None:
    """``float(...)``, ``int(...)`` or ``choice(...)`` with no call inside: tlrun's spec (``int(interval(...))``
    is Hydra's)."""
    match = _CALL.match(text)
    return match if match is not None and match.group(1) in OWN_FUNCTIONS and "(" not in match.group(2) else None


def _parser() -> Any:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def _hydra_value(name: str, spec: str, parser: Any) -> Param | str:
    """``spec`` read by Hydra's override parser: a sweep as a :class:`Param`, any other value fixed."""
    try:
        override = (parser or _parser()).parse_override(f"{name}={spec.strip()}")
    except Exception as error:  # Hydra's grammar errors
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SearchError(f"search space: {name}: cannot read {spec!r} ({reason}); {SYNTAX}") from None
    if override.is_sweep_override():
        return _from_hydra_sweep(name, override)
    return f"{name}={spec.strip()}"


def _from_hydra_sweep(name: str, override: Any) -> Param:
    """A Hydra sweep override as a dimension: a choice, a range (integers: an ``int`` with its step; otherwise
    its values, as a choice) or an interval (``log`` when tagged so)."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    value = override.value()
    if isinstance(value, ChoiceSweep):
        return Param(name, "choice", choices=tuple(override.sweep_string_iterator()))
    if isinstance(value, RangeSweep):
        values = list(override.sweep_string_iterator())
        if not values:
            raise SearchError(f"search space: {name}: {override.input_line!r} is an empty range")
        if not value.shuffle and all(isinstance(v, int) for v in (value.start, value.stop, value.step)) and value.step > 0:
            return Param(name, "int", low=int(values[0]), high=int(values[-1]), step=int(value.step))
        return Param(name, "choice", choices=tuple(values))
    if isinstance(value, IntervalSweep):
        integer = isinstance(value.start, int) and isinstance(value.end, int)
        return parse_param(name, f"{'int' if integer else 'float'}({value.start}, {value.end}"
                                 f"{', log' if 'log' in value.tags else ''})")
    raise SearchError(f"search space: {name}: the optuna sweeper cannot search {override.input_line!r}; {SYNTAX}")


# --------------------------------------------------------------------------------------------------- objective


def default_objective(cfg: DictConfig) -> str:
    """The metric a search maximizes when ``objective=auto``: label-free unless ``trainer.select=oracle``.

    - ``selftaught_clustering``: none (no labels anywhere but the test's): a :class:`SearchError`, name one;
    - ``trainer.select=oracle``: ``target_acc`` (it reads the target's test labels; the search warns);
    - ``trainer.select=<score>`` other than ``last`` (deep methods): ``selected.<score>``, the score of the
      epoch the run kept (``selected.target_val`` in ``finetune`` with ``scenario.target_val_fraction > 0``);
    - ``selftaught`` (an unlabeled source, so no source accuracy): a :class:`SearchError`, name one;
    - otherwise a held-out source split is needed (``dataset.source_val_fraction > 0``, else a
      :class:`SearchError`): ``select.source_val`` for deep methods (its last epoch), ``source_acc`` for
      closed-form ones. The same in ``da``, ``finetune`` and ``zeroshot`` (held-out seen-class samples).

    ``scenario=auto`` counts as the method's natural scenario.
    """
    from tlrun.config import method_scenarios
    from tlrun.scenarios import natural_scenario

    method = str(cfg.method.get("name"))
    scenario = str(cfg.scenario.get("name"))
    if scenario == "auto":
        known = method_scenarios()
        if method not in known:
            raise SearchError(f"objective=auto: unknown method {method!r}")
        scenario = natural_scenario(known[method])
    name_one = "name the metric to search on: hydra.sweeper.objective=<metric>"
    if scenario == "selftaught_clustering":
        raise SearchError(f"objective=auto: selftaught_clustering has no labels to score a trial without the target's "
                          f"test labels; {name_one} (e.g. nmi or target_acc, which read them)")
    select = str(cfg.trainer.get("select", "last"))
    if select == "oracle":
        return "target_acc"
    if select != "last":
        return f"selected.{select}"
    if scenario == "selftaught":
        raise SearchError(f"objective=auto: in selftaught the source has no labels, so no source accuracy scores a "
                          f"trial; {name_one} (target_acc reads the target's test labels)")
    if float(cfg.dataset.get("source_val_fraction", 0.0) or 0.0) <= 0:
        raise SearchError("objective=auto scores a trial on a held-out source split: set dataset.source_val_fraction "
                          f"> 0 (e.g. 0.2), or {name_one}")
    return "select.source_val" if cfg.method.get("family") == "deep" else "source_acc"


def reads_target_labels(objective: str) -> bool:
    """Whether ``objective`` is computed from the target's test labels (an oracle search)."""
    return objective in LABEL_READING_METRICS


def objective_value(metrics: Mapping[str, float], objective: str) -> float:
    """``metrics[objective]``; a :class:`SearchError` listing the metrics present when it is absent or not finite."""
    if objective not in metrics:
        raise SearchError(f"the run has no metric {objective!r}; its metrics: {', '.join(sorted(metrics)) or 'none'}")
    value = float(metrics[objective])
    if not math.isfinite(value):
        raise SearchError(f"the run's {objective} is {value}")
    return value


def job_metrics(returned: Any) -> tuple[dict[str, float], str | None, bool]:
    """``(metrics, run id, skipped)`` of what a job returned (a :class:`~tlrun.run.RunOutcome`, a mapping of
    metrics, or a number, taken as the objective's value under the name ``value``)."""
    if hasattr(returned, "metrics"):
        return dict(returned.metrics), getattr(returned, "run_id", None), bool(getattr(returned, "skipped", False))
    if isinstance(returned, Mapping):
        return dict(returned), None, False
    if isinstance(returned, (int, float)):
        return {"value": float(returned)}, None, False
    raise SearchError(f"a job returned {type(returned).__name__}, not a run's metrics")


# ------------------------------------------------------------------------------------------------------ search


@dataclass(frozen=True)
class SearchSettings:
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

        from tlrun.sweeps import sweep_identity

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
        from optuna.trial import TrialState

        trials = [t for t in study.trials if t.state != TrialState.RUNNING]
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        failed = [t for t in trials if t.state == TrialState.FAIL]
        best = study.best_trial if complete else None
        out_dir = sweep_dir / "search"
        out_dir.mkdir(parents=True, exist_ok=True)
        write_trials_csv(trials, out_dir / "trials.csv")
        history_plot(trials, self.objective or "value", self.settings.direction, out_dir / "optimization_history.png")
        results = {
            "name": "optuna",
            "study_name": study.study_name,
            "objective": self.objective,
            "direction": self.settings.direction,
            "n_trials": len(trials),
            "n_complete": len(complete),
            "n_failed": len(failed),
        }
        if best is not None:
            results |= {"best_trial": best.number, "best_value": best.value, "best_params": dict(best.params),
                        "best_run": best.user_attrs.get("run_id")}
            params = ", ".join(f"{key}={value}" for key, value in best.params.items())
            print(f"tlrun: search best trial {best.number}: {self.objective} = {best.value:.4f} with {params}; "
                  f"run {best.user_attrs.get('run_id')}", flush=True)
        else:
            print("tlrun: search: no trial completed", file=sys.stderr, flush=True)
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
        try:
            self._log_parent(best, complete, failed, out_dir)
        except Exception as error:  # the results are on disk; the store's trouble must not hide them
            print(f"tlrun: could not log the search results on the sweep run: {error}", file=sys.stderr)
        if best is None and must_complete:
            first = next((t.user_attrs.get("error") for t in failed if t.user_attrs.get("error")), "")
            raise SearchError("no trial of the search completed" + (f"; the first failure: {first}" if first else ""))

    def _log_parent(self, best: Any, complete: list[Any], failed: list[Any], out_dir: Path) -> None:
        from mlflow.entities import Metric, Param as MlflowParam, RunTag

        from tlrun.sweeps import PARENT_ENV, client_for
        from tlrun.tracking import safe_key

        parent = os.environ.get(PARENT_ENV)
        if not parent:
            return
        client = client_for(self.config)
        now = int(time.time() * 1000)
        tags = {"search.objective": self.objective or "", "search.direction": self.settings.direction,
                "search.sampler": self.settings.sampler}
        if self.objective and reads_target_labels(self.objective):
            tags["search.oracle"] = "true"
        metrics = [Metric("search.trials_complete", float(len(complete)), now, 0),
                   Metric("search.trials_failed", float(len(failed)), now, 0)]
        params = []
        if best is not None:
            tags |= {"search.best_run": str(best.user_attrs.get("run_id")), "search.best_trial": str(best.number)}
            metrics.append(Metric("search.best_value", float(best.value), now, 0))
            logged = client.get_run(parent).data.params
            for name, value in best.params.items():
                key = safe_key(f"search.best.{name}")
                if logged.get(key, str(value)) == str(value):
                    params.append(MlflowParam(key, str(value)))
                else:  # a relaunched search found another best: params cannot change, tags can
                    tags[key] = str(value)
        client.log_batch(parent, metrics=metrics, params=params, tags=[RunTag(k, v) for k, v in tags.items()])
        for record in self.records:  # this launch's runs (not reused ones: they may belong to another sweep)
            if record.run_id and not record.skipped:
                client.set_tag(record.run_id, "search.trial", str(record.number))
        client.log_artifacts(parent, str(out_dir), "search")


def _GridSampler(search_space: dict[str, list[Any]], seed: int) -> Any:
    """Optuna's grid sampler, less its ``study.stop()`` once the grid is done, which works only inside
    ``study.optimize``; the search asks ``is_exhausted`` before each trial instead."""
    from optuna.samplers import GridSampler

    class Grid(GridSampler):
        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            pass

    return Grid(search_space, seed=seed)


def write_trials_csv(trials: Sequence[Any], path: Path) -> None:
    """One row per trial: number, state, value, MLflow run, job, reused, the params, the error if it failed."""
    names = sorted({name for t in trials for name in t.params})
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["number", "state", "value", "run_id", "job", "skipped", *names, "error"])
        for t in trials:
            writer.writerow([t.number, t.state.name, "" if t.value is None else t.value, t.user_attrs.get("run_id", ""),
                             t.user_attrs.get("job", ""), t.user_attrs.get("skipped", ""),
                             *(t.params.get(name, "") for name in names), t.user_attrs.get("error", "")])


def history_plot(trials: Sequence[Any], objective: str, direction: str, path: Path) -> None:
    """The optimisation history: each completed trial's value and the best so far, failed trials marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    done = [(t.number, t.value) for t in trials if t.value is not None and t.state.name == "COMPLETE"]
    figure, axis = plt.subplots(figsize=(6, 4))
    if done:
        numbers, values = zip(*done)
        better = max if direction == "maximize" else min
        best = [better(values[: k + 1]) for k in range(len(values))]
        axis.scatter(numbers, values, s=18, label=objective)
        axis.step(numbers, best, where="post", color="tab:red", label="best so far")
    failed = [t.number for t in trials if t.state.name == "FAIL"]
    if failed:
        for number in failed:
            axis.axvline(number, color="0.8", linestyle=":", linewidth=1)
        axis.plot([], [], color="0.8", linestyle=":", label="failed trial")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("trial")
    axis.set_ylabel(objective)
    axis.set_title(f"optimisation history ({direction} {objective})")
    if done or failed:
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
