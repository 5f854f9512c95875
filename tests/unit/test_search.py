"""Hyperparameter search (``hydra/sweeper=optuna``): the search-space syntax, the label-free default objective,
and end to end: every trial a child MLflow run of the search's parent, the best logged there, failures told."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.helpers import REPO
from tlrun.tracking.search import (
    Param,
    SearchError,
    SearchSettings,
    SearchSpace,
    default_objective,
    objective_value,
    parse_param,
    parse_space,
    reads_target_labels,
    space_from_arguments,
)
from tlrun.tracking.search.space import translate

ENTRY = "import sys; sys.argv = ['tlrun', *sys.argv[1:]]; from tlrun.cli import main; main()"
#: tlrun without optuna, as installed without the search extra.
WITHOUT_OPTUNA = "import sys; sys.modules['optuna'] = None\n" + ENTRY
#: tlrun saying at exit whether optuna was imported.
TELLS_OPTUNA = ("import atexit, sys; atexit.register(lambda: print('OPTUNA IMPORTED', 'optuna' in sys.modules))\n"
                + ENTRY)


# ------------------------------------------------------------------------------------------------ search space


def test_the_spec_syntax_reads_floats_ints_choices_and_fixed_values():
    assert parse_param("method.lamb", "float(0.01, 10, log)") == Param("method.lamb", "float", 0.01, 10.0, log=True)
    assert parse_param("method.dim", "int(10,100)") == Param("method.dim", "int", 10, 100)
    assert parse_param("method.dim", "int(10, 100, step=10)").grid() == list(range(10, 101, 10))
    assert parse_param("x", "float(0, 1, step=0.25)").grid() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert parse_param("x", "int(1, 64, log=true)").log
    kernel = parse_param("method.kernel", "choice(primal, linear, rbf)")
    assert kernel.choices == ("primal", "linear", "rbf") and kernel.override("rbf") == "method.kernel=rbf"
    assert parse_param("x", "choice('a,b', [1, 2], c)").choices == ("a\\,b", "[1,2]", "c")  # as Hydra writes them
    assert parse_param("method.classifier", "logreg") == "method.classifier=logreg"  # fixed
    assert parse_param("method.dim", 30) == "method.dim=30" and parse_param("save_model", False) == "save_model=false"
    assert Param("x", "float", 0.1, 1.0).override(0.25) == "x=0.25"
    assert str(parse_param("x", "float(0.01,10,log)")) == "float(0.01, 10.0, log)"


def test_params_may_be_dotted_or_nested_and_the_distributions_are_optuna_s():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    space = parse_space({"method.lamb": "float(0.01, 10, log)", "method": {"dim": "int(10, 100)", "kernel": "choice(a, b)"},
                         "seed": 3})
    assert [p.name for p in space.params] == ["method.lamb", "method.dim", "method.kernel"]
    assert space.fixed == ["seed=3"]
    lamb, dim, kernel = (p.distribution() for p in space.params)
    assert lamb == FloatDistribution(0.01, 10.0, log=True)
    assert dim == IntDistribution(10, 100) and kernel == CategoricalDistribution(["a", "b"])
    assert space.overrides({"method.lamb": 0.5, "method.dim": 20, "method.kernel": "b"}) == [
        "seed=3", "method.lamb=0.5", "method.dim=20", "method.kernel=b"]


def test_params_also_read_hydra_s_sweep_syntax():
    space = parse_space({"method.lamb": "tag(log, interval(0.01, 10))", "method.kernel": "linear,rbf",
                         "seed": "range(0,3)", "method.dim": "int(interval(2, 8))", "method.gamma": "0.5"})
    assert space.params == [Param("method.lamb", "float", 0.01, 10.0, log=True),
                            Param("method.kernel", "choice", choices=("linear", "rbf")),
                            Param("seed", "int", 0, 2, step=1), Param("method.dim", "int", 2, 8)]
    assert space.fixed == ["method.gamma=0.5"]


def test_tlrun_s_specs_are_translated_into_hydra_s_grammar_with_the_step_kept_beside():
    assert translate("x", "float(0.01, 10, log)") == ("tag(log, interval(0.01, 10.0))", None)
    assert translate("x", "int(2,30)") == ("int(interval(2, 30))", None)
    assert translate("x", "int(10, 100, step=10)") == ("int(interval(10, 100))", 10)
    assert translate("x", "float(0, 1, step=0.25)") == ("interval(0.0, 1.0)", 0.25)
    assert translate("x", " choice(a, b) ") == ("choice(a, b)", None)  # Hydra's own: read as it is
    assert parse_param("x", "int(1, 64, log)") == parse_param("x", "tag(log, int(interval(1, 64)))")
    assert parse_param("x", "float(0.5, 2)") == parse_param("x", "interval(0.5, 2)")


@pytest.mark.parametrize("spec, message", [
    ("uniform(0, 1)", "cannot read 'uniform(0, 1)'"),
    ("interval(0)", "cannot read 'interval(0)'"),
    ("float(1, 0)", "lower bound must be below"),
    ("float(0, 1, log)", "log scale needs a lower bound above 0"),
    ("int(1.5, 3)", "'1.5' is not an integer"),
    ("float(a, 1)", "'a' is not a number"),
    ("float(0.1, 1, foo=2)", "unknown option 'foo=2'"),
    ("float(0.1)", "needs a lower and an upper bound"),
    ("float(0.1, 1, log, step=0.1)", "log and step cannot be combined"),
    ("choice()", "empty choice is not legal"),
    ("float(0.1, 1", "cannot read"),
])
def test_unknown_or_wrong_syntax_is_an_error_naming_the_parameter(spec, message):
    with pytest.raises(SearchError, match="method.lamb") as error:
        parse_param("method.lamb", spec)
    assert message in str(error.value)


def test_command_line_sweeps_become_dimensions_in_tlrun_s_or_hydra_s_syntax():
    space = space_from_arguments([
        "method=tca", "method.lamb=tag(log,interval(0.01,10))", "method.dim=int(2,30)", "method.kernel=linear,rbf",
        "method.gamma=interval(0.5,2)", "seed=range(0,30,10)", "+trainer.limit_train_batches=4", "method.epochs=int(interval(1,5))",
    ])
    assert space.fixed == ["method=tca", "+trainer.limit_train_batches=4"]
    params = {p.name: p for p in space.params}
    assert params["method.lamb"] == Param("method.lamb", "float", 0.01, 10.0, log=True)
    assert params["method.dim"] == Param("method.dim", "int", 2, 30)  # tlrun's int(lo, hi), not Hydra's cast
    assert params["method.kernel"].choices == ("linear", "rbf")
    assert params["method.gamma"] == Param("method.gamma", "float", 0.5, 2.0)
    assert params["seed"] == Param("seed", "int", 0, 20, step=10)  # range excludes its stop
    assert params["method.epochs"] == Param("method.epochs", "int", 1, 5)
    both = SearchSpace(params=[params["method.dim"]])
    with pytest.raises(SearchError, match="method.dim is given twice"):
        both.add(space_from_arguments(["method.dim=3,4"]))
    with pytest.raises(SearchError, match="sampler=grid: method.lamb"):
        params["method.lamb"].grid()


def test_the_settings_and_the_objective_value_are_checked():
    with pytest.raises(SearchError, match="direction=up"):
        SearchSettings(direction="up")
    with pytest.raises(SearchError, match="sampler=cmaes"):
        SearchSettings(sampler="cmaes")
    with pytest.raises(SearchError, match="n_trials"):
        SearchSettings(n_trials=0)
    assert objective_value({"source_acc": 0.5}, "source_acc") == 0.5
    with pytest.raises(SearchError, match="no metric 'select.dev'; its metrics: source_acc, target_acc"):
        objective_value({"target_acc": 0.4, "source_acc": 0.5}, "select.dev")
    with pytest.raises(SearchError, match="nan"):
        objective_value({"x": float("nan")}, "x")


# --------------------------------------------------------------------------------------------------- objective


@pytest.mark.parametrize("overrides, objective", [
    (["method=tca"], "source_acc"),                                              # da, closed-form
    (["method=dann"], "select.source_val"),                                      # da, deep, trainer.select=last
    (["method=dann", "trainer.select=snd"], "selected.snd"),                     # a label-free selection score
    (["method=dann", "trainer.select=oracle"], "target_acc"),                    # the oracle
    (["method=finetune"], "select.source_val"),                                  # labeled target: same rule
    (["method=finetune", "trainer.select=target_val", "scenario.target_val_fraction=0.2"], "selected.target_val"),
    (["method=no_adaptation", "scenario=finetune"], "source_acc"),
    (["method=eszsl"], "source_acc"),                                            # zeroshot: held-out seen classes
    (["method=zsl_attribute"], "select.source_val"),
])
def test_the_default_objective_is_label_free_unless_the_run_selects_by_oracle(compose, overrides, objective):
    assert default_objective(compose(*overrides)) == objective
    assert reads_target_labels(objective) == (objective == "target_acc")


@pytest.mark.parametrize("overrides, message", [
    (["method=tca", "dataset.source_val_fraction=0"], "set dataset.source_val_fraction > 0"),
    (["method=dann", "dataset.source_val_fraction=0"], "set dataset.source_val_fraction > 0"),
    (["method=selftaught"], "in selftaught the source has no labels"),
    (["method=kmeans"], "selftaught_clustering has no labels"),
])
def test_without_a_label_free_score_the_default_objective_asks_for_one(compose, overrides, message):
    with pytest.raises(SearchError, match="hydra.sweeper.objective=<metric>") as error:
        default_objective(compose(*overrides))
    assert message in str(error.value)


# ------------------------------------------------------------------------------------ the loop, with fake jobs


class _Loader:
    def load_sweep_config(self, master_config, sweep_overrides):
        return master_config


class _Launcher:
    """Job 0 raises, job 2 lacks the objective, the others return ``source_acc = x``."""

    def __init__(self, fail_all: bool = False):
        self.fail_all = fail_all
        self.batches: list[list[list[str]]] = []

    def launch(self, job_overrides, initial_job_idx):
        from hydra.core.utils import JobReturn, JobStatus

        from tlrun.runner.job import RunOutcome

        self.batches.append([list(o) for o in job_overrides])
        results = []
        for number, overrides in enumerate(job_overrides, start=initial_job_idx):
            x = float(dict(o.split("=", 1) for o in overrides)["x"])
            result = JobReturn(status=JobStatus.COMPLETED)
            if number == 0 or self.fail_all:
                result.status, result._return_value = JobStatus.FAILED, ValueError("boom")
            elif number == 2:
                result._return_value = RunOutcome(f"run{number}", {"target_acc": 0.3, "select.dev": -1.0})
            else:
                result._return_value = RunOutcome(f"run{number}", {"source_acc": x})
            results.append(result)
        return results


def _fake_search(tmp_path, launcher, **settings):
    from tlrun.tracking.search import OptunaSearch

    config = OmegaConf.create({"seed": 0, "hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}})
    settings = {"n_trials": 4, "n_jobs": 2, "direction": "maximize", "sampler": "random", "seed": None, "storage": None,
                "study_name": "fake", "objective": "source_acc", "params": {"x": "float(0, 1)"}} | settings
    return OptunaSearch(settings, config, launcher, _Loader())


def test_failed_jobs_and_missing_metrics_fail_their_trials_and_the_search_goes_on(tmp_path, monkeypatch):
    from tlrun.tracking.sweeps import PARENT_ENV

    monkeypatch.delenv(PARENT_ENV, raising=False)
    launcher = _Launcher()
    search = _fake_search(tmp_path, launcher)
    search.run(["y=3"])
    assert [len(batch) for batch in launcher.batches] == [2, 2]  # n_jobs trials per batch
    assert all(batch[0] == "y=3" for jobs in launcher.batches for batch in jobs)  # fixed overrides in every job
    with open(tmp_path / "sweep" / "search" / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["state"] for row in rows] == ["FAIL", "COMPLETE", "FAIL", "COMPLETE"]
    assert rows[0]["error"] == "its job failed: boom"
    assert rows[2]["error"] == "the run has no metric 'source_acc'; its metrics: select.dev, target_acc"
    assert rows[2]["run_id"] == "run2"
    results = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    best = max((float(rows[k]["x"]), rows[k]["run_id"]) for k in (1, 3))
    assert (results.best_value, results.best_run) == best and results.n_failed == 2


def test_a_search_where_every_trial_fails_says_why(tmp_path, monkeypatch):
    from tlrun.tracking.sweeps import PARENT_ENV

    monkeypatch.delenv(PARENT_ENV, raising=False)
    with pytest.raises(SearchError, match="no trial of the search completed; the first failure: its job failed: boom"):
        _fake_search(tmp_path, _Launcher(fail_all=True), n_trials=2).run([])
    assert (tmp_path / "sweep" / "search" / "trials.csv").read_text().count("FAIL") == 2


# -------------------------------------------------------------------------------------------------- end to end


def _search(tmp_path: Path, *args: str, entry: str = ENTRY, sweeper: str = "optuna",
            ) -> tuple[subprocess.CompletedProcess, str]:
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-c", entry, "--multirun", f"hydra/sweeper={sweeper}", *args, "trainer.enable_progress_bar=false",
               f"hydra.sweep.dir={tmp_path / 'sweep'}", f"cache_dir={tmp_path / 'cache'}"]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300), store


def _runs(store: str, experiment: str) -> tuple[list, list]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    parents = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    return parents, [r for r in runs if r.data.tags.get("sweep.role") != "parent"]


def test_a_search_of_four_trials_is_one_parent_with_four_children_and_the_best_logged_on_it(tmp_path):
    result, store = _search(tmp_path, "method=tca", "hydra.sweeper.n_trials=4", "logger.experiment=search",
                            '+hydra.sweeper.params.method.lamb="float(0.01, 10, log)"', "method.dim=int(2,10)")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "tlrun: search objective: source_acc (maximize)" in output
    (parent,), children = _runs(store, "search")
    assert len(children) == 4 and {c.info.status for c in children} == {"FINISHED"}
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    lambs = [float(c.data.params["method.lamb"]) for c in children]
    assert len(set(lambs)) == 4 and all(0.01 <= lamb <= 10 for lamb in lambs)
    assert all(2 <= int(c.data.params["method.dim"]) <= 10 for c in children)
    best = max(c.data.metrics["source_acc"] for c in children)
    assert parent.data.metrics["search.best_value"] == best
    by_id = {c.info.run_id: c for c in children}
    best_run = by_id[parent.data.tags["search.best_run"]]
    assert best_run.data.metrics["source_acc"] == best
    assert parent.data.tags["search.objective"] == "source_acc"
    assert parent.data.params["search.best.method.lamb"] == best_run.data.params["method.lamb"]
    assert sorted(c.data.tags["search.trial"] for c in children) == ["0", "1", "2", "3"]
    with open(tmp_path / "sweep" / "search" / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and {row["state"] for row in rows} == {"COMPLETE"}
    assert {row["run_id"] for row in rows} == set(by_id)
    from mlflow.tracking import MlflowClient

    artifacts = {a.path for a in MlflowClient(tracking_uri=store).list_artifacts(parent.info.run_id, "search")}
    assert artifacts == {"search/trials.csv", "search/optimization_history.png"}
    results = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    assert results.best_run == best_run.info.run_id and results.best_value == best and results.n_complete == 4
    assert f"run {best_run.info.run_id}" in output


def test_a_trial_whose_config_fails_is_told_failed_and_the_search_completes(tmp_path):
    result, store = _search(tmp_path, "method=tca", "method.kernel=linear,bogus", "hydra.sweeper.sampler=grid",
                            "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=2", "logger.experiment=search-fail")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "every point of the grid has been tried" in output  # 2 points: the third trial is not asked
    with open(tmp_path / "sweep" / "search" / "trials.csv") as handle:
        rows = {row["method.kernel"]: row for row in csv.DictReader(handle)}
    assert rows["linear"]["state"] == "COMPLETE" and rows["bogus"]["state"] == "FAIL"
    assert "unknown kernel 'bogus'" in rows["bogus"]["error"]
    (parent,), children = _runs(store, "search-fail")
    assert [c.data.params["method.kernel"] for c in children] == ["linear"]
    assert parent.data.tags["search.best_run"] == children[0].info.run_id
    assert parent.data.metrics["search.trials_failed"] == 1 and parent.data.metrics["search.trials_complete"] == 1
    # The sweep's own accounting: a job that failed before its run opened fails the parent, its message kept.
    assert parent.info.status == "FAILED"
    assert any("unknown kernel 'bogus'" in value for key, value in parent.data.tags.items()
               if key.startswith("sweep.failed_before_run."))


def test_a_search_without_a_label_free_objective_stops_before_any_job(tmp_path):
    # Without the MLflow callback (~hydra.callbacks.sweep_tracking): the check needs no store, and costs less.
    result, _ = _search(tmp_path, "method=kmeans", "method.n_init=int(1,3)", "~hydra.callbacks.sweep_tracking")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "tlrun: error: objective=auto: selftaught_clustering has no labels" in result.stderr
    assert "Launching" not in result.stdout + result.stderr and "Traceback" not in result.stderr


def test_hydra_finds_the_sweeper_and_tlrun_help_does_not_import_optuna(tmp_path):
    code = ("import sys; sys.argv = ['tlrun', '--help']\n"
            "import atexit; atexit.register(lambda: print('IMPORTED', 'optuna' in sys.modules, 'tlrun.tracking.search' in sys.modules))\n"
            "from hydra.core.config_store import ConfigStore\n"
            "from tlrun.cli import main\n"
            "try:\n    main()\nfinally:\n    print('SWEEPERS', sorted(ConfigStore.instance().list('hydra/sweeper')))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert "IMPORTED False False" in result.stdout, result.stdout + result.stderr
    assert "SWEEPERS ['basic.yaml', 'optuna.yaml']" in result.stdout


def test_a_search_without_optuna_names_the_search_extra_and_opens_no_run(tmp_path):
    result, _ = _search(tmp_path, "method=tca", "method.dim=int(2,10)", entry=WITHOUT_OPTUNA)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()  # one line, no traceback
    assert line.startswith("tlrun: error: hydra/sweeper=optuna needs optuna, which cannot be imported")
    assert line.endswith('pip install "tlrun[search]" (in a clone: pip install -e ".[search]")')
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # no store, no sweep folder


def test_the_sweeper_itself_checks_for_optuna_before_it_launches_anything(monkeypatch):
    from hydra_plugins.tlrun_optuna_sweeper.optuna_sweeper import TlrunOptunaSweeper

    monkeypatch.setitem(sys.modules, "optuna", None)  # a config file may choose the sweeper: the CLI cannot see it
    sweeper = TlrunOptunaSweeper(n_trials=1, n_jobs=1, direction="maximize", sampler="tpe", seed=None, storage=None,
                                 study_name=None, objective="auto")
    with pytest.raises(SearchError, match=re.escape('pip install "tlrun[search]"')):
        sweeper.setup(hydra_context=None, task_function=None, config=None)


def test_a_sweep_that_is_no_search_never_imports_optuna(tmp_path):
    result, _ = _search(tmp_path, "method=coral", "diagnostics=false", "save_model=false", entry=TELLS_OPTUNA,
                        sweeper="basic")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OPTUNA IMPORTED False" in result.stdout
