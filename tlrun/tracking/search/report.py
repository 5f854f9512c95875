"""The end of a search: the best trial printed; every trial, the optimisation history and
``optimization_results.yaml`` written under the sweep folder; the same logged on the sweep's parent run."""

from __future__ import annotations

import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from omegaconf import OmegaConf

from tlrun.tracking.search.objective import reads_target_labels


@dataclass(frozen=True)
class Trials:
    """A study's finished trials (of every launch of a stored study), and the best one (``None``: none completed)."""

    done: list[Any]
    complete: list[Any]
    failed: list[Any]
    best: Any

    @classmethod
    def of(cls, study: Any) -> "Trials":
        from optuna.trial import TrialState

        done = [t for t in study.trials if t.state != TrialState.RUNNING]
        complete = [t for t in done if t.state == TrialState.COMPLETE]
        failed = [t for t in done if t.state == TrialState.FAIL]
        return cls(done, complete, failed, study.best_trial if complete else None)

    def first_error(self) -> str:
        """The message of the first failed trial that has one ("" when none has)."""
        return next((t.user_attrs.get("error") for t in self.failed if t.user_attrs.get("error")), "")


def write_results(study: Any, trials: Trials, sweep_dir: Path, objective: str | None, direction: str) -> Path:
    """Print the best trial; write ``search/trials.csv``, ``search/optimization_history.png`` and
    ``optimization_results.yaml`` under ``sweep_dir``. Returns the ``search`` folder."""
    best = trials.best
    out_dir = sweep_dir / "search"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_trials_csv(trials.done, out_dir / "trials.csv")
    history_plot(trials.done, objective or "value", direction, out_dir / "optimization_history.png")
    results = {
        "name": "optuna",
        "study_name": study.study_name,
        "objective": objective,
        "direction": direction,
        "n_trials": len(trials.done),
        "n_complete": len(trials.complete),
        "n_failed": len(trials.failed),
    }
    if best is not None:
        results |= {"best_trial": best.number, "best_value": best.value, "best_params": dict(best.params),
                    "best_run": best.user_attrs.get("run_id")}
        params = ", ".join(f"{key}={value}" for key, value in best.params.items())
        print(f"tlrun: search best trial {best.number}: {objective} = {best.value:.4f} with {params}; "
              f"run {best.user_attrs.get('run_id')}", flush=True)
    else:
        print("tlrun: search: no trial completed", file=sys.stderr, flush=True)
    OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
    return out_dir


def log_on_parent(client: Any, parent: str, trials: Trials, out_dir: Path, objective: str | None, direction: str,
                  sampler: str, trial_of_run: Mapping[str, int]) -> None:
    """Log the search on the sweep's parent run: tags ``search.*`` (objective, best run and trial...), metrics
    (trials complete and failed, best value), params ``search.best.<name>``, and ``out_dir`` as the artifacts
    ``search/``; tag each run this launch made (``trial_of_run``: run id → trial number) ``search.trial``."""
    from mlflow.entities import Metric, Param, RunTag

    from tlrun.tracking.records import safe_key

    best = trials.best
    now = int(time.time() * 1000)
    tags = {"search.objective": objective or "", "search.direction": direction, "search.sampler": sampler}
    if objective and reads_target_labels(objective):
        tags["search.oracle"] = "true"
    metrics = [Metric("search.trials_complete", float(len(trials.complete)), now, 0),
               Metric("search.trials_failed", float(len(trials.failed)), now, 0)]
    params = []
    if best is not None:
        tags |= {"search.best_run": str(best.user_attrs.get("run_id")), "search.best_trial": str(best.number)}
        metrics.append(Metric("search.best_value", float(best.value), now, 0))
        logged = client.get_run(parent).data.params
        for name, value in best.params.items():
            key = safe_key(f"search.best.{name}")
            if logged.get(key, str(value)) == str(value):
                params.append(Param(key, str(value)))
            else:  # a relaunched search found another best: params cannot change, tags can
                tags[key] = str(value)
    client.log_batch(parent, metrics=metrics, params=params, tags=[RunTag(k, v) for k, v in tags.items()])
    for run_id, number in trial_of_run.items():
        client.set_tag(run_id, "search.trial", str(number))
    client.log_artifacts(parent, str(out_dir), "search")


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
