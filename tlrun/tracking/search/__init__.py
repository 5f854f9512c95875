"""Hyperparameter search with Optuna: every trial a job of the sweep, so a child MLflow run of the search's parent.

``tlrun --multirun hydra/sweeper=optuna ...`` selects tlrun's own Hydra sweeper (the thin plugin
``hydra_plugins/tlrun_optuna_sweeper``), which runs :class:`~tlrun.tracking.search.sweeper.OptunaSearch`. Each
trial is a Hydra job launched through the configured launcher (basic, joblib...), so
:class:`tlrun.tracking.callbacks.SweepTracking` makes it a child run of the sweep's parent like any ``--multirun``
job; the trial's value is read from what the job returns (:class:`tlrun.run.RunOutcome`: the run's final metrics).

**Settings** (``hydra.sweeper.<key>``, see ``hydra_plugins/tlrun_optuna_sweeper/config.py``): ``n_trials``,
``n_jobs`` (trials launched per batch), ``direction``, ``sampler`` (``tpe``, ``random``, ``grid``), ``seed``
(null: the config's ``seed``), ``storage`` (null: in memory; a URL such as ``sqlite:///search.db`` keeps the
study, and launching again with the same ``study_name`` resumes it), ``study_name``, ``objective`` (``auto``:
:func:`~tlrun.tracking.search.objective.default_objective`; or a metric name) and ``params``, the search space.

**Search space** (:mod:`~tlrun.tracking.search.space`): ``params`` maps a config key to a spec in Hydra's sweep
grammar, as hydra-optuna-sweeper reads it: ``a,b,c`` or ``choice(a, b, c)`` (a choice), ``range(lo, hi, step)``
(integers from ``lo``, ``hi`` excluded), ``interval(lo, hi)`` (a float), ``int(interval(lo, hi))`` (an integer),
``tag(log, interval(lo, hi))`` (log scale); a value that is no sweep is fixed for every trial. tlrun's
``float(lo, hi[, log][, step=s])`` and ``int(lo, hi[, log][, step=k])`` are read too (translated into that
grammar; ``step=`` is what Hydra's grammar cannot say). Keys may be dotted (``method.lamb: float(0.01, 10, log)``
in a YAML file) or nested. Sweeps among the command-line arguments are dimensions too, in the same grammar, except
that Hydra reads command-line values first and rejects a bare ``log`` in ``float(...)``: there, write
``'method.lamb=tag(log, interval(0.01, 10))'``, or quote the spec into ``params``:
``'+hydra.sweeper.params.method.lamb="float(0.01, 10, log)"'`` (the ``+``: the key is new to the config).
``method.dim=int(10, 100)`` on the command line is tlrun's integer range, not Hydra's choice of two casts.

**Objective** (:mod:`~tlrun.tracking.search.objective`). ``auto`` is label-free unless ``trainer.select=oracle``.
A trial fails (and the search goes on) when its job raised, when its metrics lack the objective, or when ``auto``
would score it by another metric than the search's. At the end (:mod:`~tlrun.tracking.search.report`) the best
trial is printed and, on the parent run, logged as the tags ``search.objective`` and ``search.best_run``, the
metric ``search.best_value`` and the params ``search.best.<name>``, with every trial in the artifact
``search/trials.csv`` and the optimisation history in ``search/optimization_history.png`` (both also written under
``<sweep dir>/search``, beside ``<sweep dir>/optimization_results.yaml``).

Imports neither optuna nor MLflow at module level: Hydra imports the plugin whenever tlrun starts.
"""

from tlrun.tracking.search.errors import SearchError, require_optuna
from tlrun.tracking.search.objective import default_objective, objective_value, reads_target_labels
from tlrun.tracking.search.space import Param, SearchSpace, parse_param, parse_space, space_from_arguments
from tlrun.tracking.search.sweeper import OptunaSearch, SearchSettings

__all__ = ["OptunaSearch", "Param", "SearchError", "SearchSettings", "SearchSpace", "default_objective",
           "objective_value", "parse_param", "parse_space", "reads_target_labels", "require_optuna", "space_from_arguments"]
