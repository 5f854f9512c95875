"""``tlrun compare``: the table equals the runs' metrics, and the selection, files, artifacts and errors.

One MLflow store for the module (creating a sqlite store costs seconds), written with ``MlflowClient`` the way
tlrun's runs and sweeps write it:

* experiment ``paper``: sweep ``d0`` (a parent whose jobs FAILED or still run); sweep ``d1``: jda and tca on two
  tasks × two seeds (one jda run reused from an earlier launch: it is no child, the parent names it), a FAILED
  jda job, one coral run on one task; every run's config.yaml carries ``published`` numbers;
* experiment ``hp``: sweep ``d2`` (the latest parent): jda with two values of ``method.lamb``, and no_adaptation;
* experiment ``other`` (created last): one run tagged ``sweep=d3`` without a parent run.
"""

from __future__ import annotations

import csv
import ctypes
import io
import os
import statistics
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers import REPO
from tlrun.tracking.compare import (Published, comparison_table, compare_sweep, format_value, main, parse_settings,
                                    select_runs, wide_console)
from tlrun.tracking.sweeps import sweep_runs
from tlrun.errors import TlrunError

T1, T2 = "caltech→amazon", "amazon→webcam"
PUBLISHED_YAML = """\
method: {name: jda}
published:
  citation: Test et al., Table 1
  metric: target_acc
  values:
    jda: {caltech->amazon: 44.78, amazon->webcam: 37.96}
    tca: {caltech->amazon: 38.2}
"""
#: (method, task, seed, target_acc) of sweep d1's finished runs; the second jda caltech→amazon run is the reused one.
D1_RUNS = [("jda", T1, 0, 0.45), ("jda", T1, 1, 0.44), ("jda", T2, 0, 0.40), ("jda", T2, 1, 0.38),
           ("tca", T1, 0, 0.47), ("tca", T1, 1, 0.46), ("tca", T2, 0, 0.37), ("tca", T2, 1, 0.35),
           ("coral", T1, 0, 0.41)]


def _console():
    from rich.console import Console

    return Console(file=io.StringIO(), width=250)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> SimpleNamespace:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("compare").resolve()
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    clock = iter(range(1_000_000, 10_000_000, 1000))

    def experiment(name):
        return client.create_experiment(name, artifact_location=(folder / "artifacts" / name).as_uri())

    def parent(exp, sweep):
        tags = {"sweep.role": "parent", "sweep": sweep, "sweep.overrides": "method=jda,tca", "sweep.launcher": "basic"}
        return client.create_run(exp, start_time=next(clock), tags=tags).info.run_id

    def run(exp, method, task, seed, acc=None, status="FINISHED", parent_id=None, sweep=None, params=None,
            config=PUBLISHED_YAML):
        source, target = task.split("→")
        start = next(clock)
        tags = {"method": method, "dataset": "office_caltech10", "scenario": "da", "source": source, "target": target,
                "seed": str(seed), "backbone": "identity"}
        if parent_id:
            tags["mlflow.parentRunId"] = parent_id
        if sweep:
            tags |= {"sweep": sweep, "sweep_job": str(start)}
        run_id = client.create_run(exp, start_time=start, tags=tags).info.run_id
        values = {"method_info.name": method, "seed": str(seed), "dataset.source": source, "dataset.target": target,
                  "task": f"{source}-{target}", "logger.experiment": "x", "cache_dir": f"/cache/{start}",
                  "data.n_target_train": str(len(target)), "method.dim": "100", **(params or {})}
        metrics = [] if acc is None else [Metric("target_acc", acc, start, 0), Metric("source_acc", 0.9, start, 0)]
        client.log_batch(run_id, metrics=metrics, params=[Param(k, v) for k, v in values.items()])
        if config:
            client.log_text(run_id, config, "config.yaml")
        if status != "RUNNING":
            client.set_terminated(run_id, status, end_time=start + 10)
        return run_id

    sweeps = {name: str(folder / "multirun" / name) for name in ("d0", "d1", "d2", "d3", "old")}
    paper, hp = experiment("paper"), experiment("hp")
    p0 = parent(paper, sweeps["d0"])
    run(paper, "jda", T1, 0, status="FAILED", parent_id=p0, sweep=sweeps["d0"])
    run(paper, "jda", T1, 1, status="RUNNING", parent_id=p0, sweep=sweeps["d0"])
    reused = run(paper, "jda", T1, 1, 0.44, sweep=sweeps["old"])  # an earlier launch's run, reused by d1
    p1 = parent(paper, sweeps["d1"])
    client.set_tag(p1, "sweep.reused.3", reused)
    for method, task, seed, acc in D1_RUNS:
        if (method, task, seed) != ("jda", T1, 1):
            run(paper, method, task, seed, acc, parent_id=p1, sweep=sweeps["d1"])
    failed = run(paper, "jda", T1, 2, status="FAILED", parent_id=p1, sweep=sweeps["d1"])
    client.set_terminated(p1, "FINISHED")
    p2 = parent(hp, sweeps["d2"])
    for lamb, accs in (("0.1", (0.30, 0.32)), ("1.0", (0.50, 0.54))):
        for seed, acc in enumerate(accs):
            run(hp, "jda", T1, seed, acc, parent_id=p2, sweep=sweeps["d2"], params={"method.lamb": lamb}, config=None)
    for seed, acc in enumerate((0.20, 0.22)):
        run(hp, "no_adaptation", T1, seed, acc, parent_id=p2, sweep=sweeps["d2"], config=None)
    other = experiment("other")
    lone = run(other, "jda", "a→b", 0, 0.9, sweep=sweeps["d3"], config=None)
    return SimpleNamespace(uri=uri, client=client, folder=folder, sweeps=sweeps, p0=p0, p1=p1, p2=p2, reused=reused,
                 failed=failed, lone=lone)


def _cell(table, label, task):
    row = next(row for row in table.rows if row.label == label)
    return row.cells.get(task), row


# -- the table ---------------------------------------------------------------------------------------------------
def test_sweep_runs_are_the_children_and_the_reused_run(store):
    runs = sweep_runs(store.client, store.p1)
    assert len(runs) == len(D1_RUNS) + 1  # and the FAILED job
    assert store.reused in {run.info.run_id for run in runs} and store.failed in {run.info.run_id for run in runs}
    assert all(run.data.tags.get("sweep.role") != "parent" for run in runs)


def test_table_equals_the_runs_metrics_and_marks_the_best(store, tmp_path):
    runs = sweep_runs(store.client, store.p1)
    table = comparison_table(runs)
    assert table.tasks == [T1, T2] and table.unit == "%" and table.left_out == {"FAILED": 1}
    assert [row.label for row in table.rows] == ["jda", "tca", "coral"]
    # The numbers, straight from the store: percent of target_acc, grouped by method and task.
    expected: dict[tuple[str, str], list[float]] = {}
    for run in runs:
        if run.info.status == "FINISHED":
            key = (run.data.tags["method"], f"{run.data.tags['source']}→{run.data.tags['target']}")
            expected.setdefault(key, []).append(100 * run.data.metrics["target_acc"])
    for (method, task), values in expected.items():
        cell, _ = _cell(table, method, task)
        assert cell.n == len(values) and cell.mean == pytest.approx(statistics.mean(values))
        assert cell.std == (pytest.approx(statistics.stdev(values)) if len(values) > 1 else None)
    jda_avg = statistics.mean([statistics.mean(expected["jda", T1]), statistics.mean(expected["jda", T2])])
    assert _cell(table, "jda", T1)[1].avg == pytest.approx(jda_avg)
    assert _cell(table, "coral", T1)[1].avg is None  # coral lacks amazon→webcam
    best = {row.label: row.best for row in table.rows if row.kind == "ours"}
    assert best == {"jda": {T2, "avg"}, "tca": {T1}, "coral": set()}


def test_published_rows_and_differences(store):
    table = comparison_table(sweep_runs(store.client, store.p1),
                             published=Published("Test", "target_acc", {"jda": {T1: 44.78, T2: 37.97}, "tca": {T1: 38.2}}))
    assert [row.label for row in table.rows] == ["jda", "jda (published)", "jda Δ", "tca", "tca (published)", "tca Δ",
                                                 "coral"]
    jda, jda_delta, tca_delta = (_cell(table, label, T1)[1] for label in ("jda", "jda Δ", "tca Δ"))
    assert jda_delta.cells[T1].mean == pytest.approx(jda.cells[T1].mean - 44.78)
    assert jda_delta.cells[T2].mean == pytest.approx(jda.cells[T2].mean - 37.97)
    assert jda_delta.avg == pytest.approx(jda.avg - (44.78 + 37.97) / 2)
    assert tca_delta.cells[T1].mean == pytest.approx(46.5 - 38.2) and T2 not in tca_delta.cells and tca_delta.avg is None
    assert not jda_delta.best and not _cell(table, "jda (published)", T1)[1].best
    # Published numbers for another metric are not shown.
    other = comparison_table(sweep_runs(store.client, store.p1), metric="target_acc",
                             published=Published("Test", "gzsl_h", {"jda": {T1: 1.0}}))
    assert other.published is None and len(other.rows) == 3


def test_hyperparameter_rows_and_files_logged_to_the_parent(store, tmp_path):
    comparison = compare_sweep(store.client, store.p2, console=_console(), out_dir=tmp_path)
    assert [row.label for row in comparison.rows] == ["jda (method.lamb=0.1)", "jda (method.lamb=1.0)", "no_adaptation"]
    assert comparison.varying == ["method.lamb"]
    assert _cell(comparison, "jda (method.lamb=1.0)", T1)[0].mean == pytest.approx(52.0)
    names = {"comparison.md", "comparison.csv", "comparison.tex", "per_task.png", "target_acc_vs_method.lamb.png"}
    assert {path.name for path in tmp_path.iterdir()} == names
    for png in ("per_task.png", "target_acc_vs_method.lamb.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    logged = store.client.list_artifacts(store.p2, "comparison")
    assert {Path(artifact.path).name for artifact in logged if not artifact.is_dir} == names


def test_sweep_files_read_back_equal_the_table(store, tmp_path):
    console = _console()
    comparison = compare_sweep(store.client, store.p1, console=console, out_dir=tmp_path)
    assert comparison.published is not None and comparison.published.citation == "Test et al., Table 1"
    with open(tmp_path / "comparison.csv", encoding="utf-8") as handle:
        rows = {row["label"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"jda", "jda (published)", "jda Δ", "tca", "tca (published)", "tca Δ", "coral"}
    for row in comparison.rows:
        for task in comparison.tasks:
            cell = row.cells.get(task)
            assert rows[row.label][f"{task} mean"] == ("" if cell is None else repr(cell.mean))
    assert float(rows["jda"][f"{T1} mean"]) == pytest.approx(44.5)
    assert float(rows["jda"][f"{T1} std"]) == pytest.approx(statistics.stdev([45.0, 44.0]))
    assert rows["jda"][f"{T1} n"] == "2" and rows["coral"]["avg"] == "" and rows["jda (published)"]["kind"] == "published"
    assert float(rows["jda Δ"]["avg"]) == pytest.approx(41.75 - 41.37)
    md = (tmp_path / "comparison.md").read_text(encoding="utf-8")
    assert "| tca | **46.50 ± 0.71** | 36.00 ± 1.41 | 41.25 |" in md and "**41.75**" in md
    assert "| jda Δ | -0.28 | +1.04 | +0.38 |" in md and "1 FAILED" in md
    tex = (tmp_path / "comparison.tex").read_text(encoding="utf-8")
    assert all(rule in tex for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}{lrrr}"))
    assert r"\textbf{46.50 $\pm$ 0.71}" in tex and r"caltech$\to$amazon" in tex
    assert "jda (published)" in console.file.getvalue()
    logged = {Path(a.path).name for a in store.client.list_artifacts(store.p1, "comparison")}
    assert {"comparison.md", "comparison.csv", "comparison.tex", "per_task.png"} == logged  # nothing varies: no vs-plot


def test_a_sweep_without_finished_runs_prints_one_line_and_logs_nothing(store):
    console = _console()
    assert compare_sweep(store.client, store.p0, console=console) is None
    assert console.file.getvalue().count("\n") == 1 and "none of the 2 run(s) finished" in console.file.getvalue()
    assert store.client.list_artifacts(store.p0) == []


def _fake(method, task, value, params=(), metric="loss", status="FINISHED", start=0):
    source, target = task.split("→")
    return SimpleNamespace(info=SimpleNamespace(status=status, start_time=start, run_id=f"r{start}"),
                           data=SimpleNamespace(tags={"method": method, "source": source, "target": target},
                                                params=dict(params), metrics={metric: value}))


def test_a_varying_group_name_labels_the_row_and_lower_can_be_better():
    runs = [_fake("dann", T1, 0.5, {"backbone.name": "lenet", "backbone.dim": "500"}, start=1),
            _fake("dann", T1, 0.3, {"backbone.name": "resnet50", "backbone.dim": "2048"}, start=2)]
    table = comparison_table(runs, metric="loss", better="lower")
    assert [row.label for row in table.rows] == ["dann (backbone=lenet)", "dann (backbone=resnet50)"]
    assert table.unit == "" and table.rows[1].best == {T1, "avg"} and table.rows[0].cells[T1].mean == 0.5
    assert comparison_table(runs, metric="loss").rows[0].best == {T1, "avg"}


# -- selection ---------------------------------------------------------------------------------------------------
def _ids(selection):
    return {run.info.run_id for run in selection.runs}


def test_filters_select_the_runs(store, monkeypatch):
    client = store.client
    by_id = select_runs(client, sweep=store.p1)
    assert by_id.parent_run_id == store.p1 and _ids(by_id) == {r.info.run_id for r in sweep_runs(client, store.p1)}
    monkeypatch.chdir(store.folder)
    by_folder = select_runs(client, sweep="multirun/d0/../d1")
    assert by_folder.parent_run_id == store.p1 and _ids(by_folder) == _ids(by_id)
    children_only = select_runs(client, sweep=store.sweeps["d3"])  # no parent run: the runs tagged with the folder
    assert _ids(children_only) == {store.lone} and children_only.parent_run_id is None
    paper = select_runs(client, experiment="paper")
    assert store.reused in _ids(paper) and store.lone not in _ids(paper) and len(paper.runs) == 12
    tca = select_runs(client, experiment="paper", tags={"method": "tca"})
    assert len(tca.runs) == 4 and {run.data.tags["method"] for run in tca.runs} == {"tca"}
    part = select_runs(client, sweep=store.p1, tags={"seed": "0"})
    assert part.parent_run_id is None and {run.data.tags["seed"] for run in part.runs} == {"0"}
    assert select_runs(client).parent_run_id == store.p2  # the latest sweep
    assert select_runs(client, sweep="latest").parent_run_id == store.p2
    parents = (store.p0, store.p1, store.p2)
    for run_id in parents:
        client.delete_run(run_id)
    try:
        latest_experiment = select_runs(client)
        assert _ids(latest_experiment) == {store.lone} and "other" in latest_experiment.description
    finally:
        for run_id in parents:
            client.restore_run(run_id)


def test_errors_name_what_to_change(store):
    client = store.client
    with pytest.raises(TlrunError, match="no such experiment; experiments in the store: Default, hp, other, paper"):
        select_runs(client, experiment="nope")
    with pytest.raises(TlrunError, match="no runs match experiment=hp, tag.method=tca"):
        select_runs(client, experiment="hp", tags={"method": "tca"})
    with pytest.raises(TlrunError, match="is not a sweep's parent run"):
        select_runs(client, sweep=store.lone)
    with pytest.raises(TlrunError, match="no run tagged sweep="):
        select_runs(client, sweep="/no/such/sweep")
    with pytest.raises(TlrunError, match="metric 'nope'; metrics present: source_acc, target_acc"):
        comparison_table(sweep_runs(client, store.p1), metric="nope")
    with pytest.raises(TlrunError, match="unknown setting prot; settings: tracking_uri, experiment"):
        parse_settings(["prot=1"])
    with pytest.raises(TlrunError, match="key=value"):
        parse_settings(["latest"])


def test_settings_keep_filter_text_and_default_to_the_store_and_a_dated_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = parse_settings(["sweep=1e5", "tag.seed=007", "tag.sweep.role=parent", "metric=source_acc"])
    assert settings["sweep"] == "1e5" and settings["tags"] == {"seed": "007", "sweep.role": "parent"}
    assert settings["tracking_uri"] == f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}"
    assert Path(settings["out"]).parent == tmp_path / "outputs" / "compare" and settings["metric"] == "source_acc"


# -- the command -------------------------------------------------------------------------------------------------
def test_main_compares_the_latest_sweep_by_default(store, tmp_path, capsys):
    assert main([f"tracking_uri={store.uri}", f"out={tmp_path}", "metric=source_acc"]) == 0
    output = capsys.readouterr().out
    assert "the latest sweep" in output and store.sweeps["d2"] in output and "source_acc (%)" in output
    assert (tmp_path / "comparison.csv").is_file()
    logged = {Path(a.path).name for a in store.client.list_artifacts(store.p2, "comparison/source_acc")}
    assert "comparison.csv" in logged


def test_cli_errors_are_one_line_and_exit_2(store, monkeypatch, capsys):
    from tlrun import cli

    monkeypatch.setattr(sys, "argv", ["tlrun", "compare", f"tracking_uri={store.uri}", "metric=nope", f"sweep={store.p1}"])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("tlrun: error: no finished run logged the metric 'nope'")


def test_tlrun_compare_command(store, tmp_path):
    argv = ["tlrun", "compare", f"tracking_uri={store.uri}", f"sweep={store.sweeps['d1']}", f"out={tmp_path / 'out'}"]
    command = [sys.executable, "-c", f"import sys; sys.argv={argv!r}; from tlrun.cli import main; main()"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200",
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "jda (published)" in result.stdout and f"parent run {store.p1}" in result.stdout
    with open(tmp_path / "out" / "comparison.csv", encoding="utf-8") as handle:
        tca = next(row for row in csv.DictReader(handle) if row["label"] == "tca")
    assert float(tca[f"{T1} mean"]) == pytest.approx(46.5)


def test_a_difference_that_rounds_to_zero_has_no_minus_and_logs_keep_every_column(monkeypatch):
    assert format_value(-0.001, "%", signed=True) == "+0.00"
    assert format_value(-0.004, "%") == "0.00"
    monkeypatch.setattr("sys.stdout", io.StringIO())  # a log file or a pipe: no 80-column cut
    assert wide_console().width == 1000


def test_no_store_at_the_location_is_an_error_and_nothing_is_created(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TlrunError, match=f"there is no MLflow store at {tmp_path / 'outputs' / 'mlflow.db'}"):
        main([])
    with pytest.raises(TlrunError, match="no MLflow store at .*elsewhere"):
        main([f"tracking_uri=sqlite:///{tmp_path / 'elsewhere' / 'mlflow.db'}"])
    assert list(tmp_path.iterdir()) == []


def _as_a_reader() -> None:
    """``preexec_fn``: the child (root's, when the tests run as root) loses the capabilities by which root writes
    whatever the file modes say (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER: dropped from its bounding set,
    so the program it executes does not get them)."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for capability in (1, 2, 3):
            if libc.prctl(24, capability, 0, 0, 0):  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_a_read_only_store_is_compared_and_a_run_into_it_says_it_is_read_only(tmp_path):
    """A store folder and files without write permission, used by processes the modes bind: compare opened the
    lock beside the store for writing and died with an OSError; a run into it ended in a traceback."""
    from tlrun.tracking import TrackedRun

    folder = tmp_path / "store"
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    for acc in (0.5, 0.7):
        with TrackedRun("read-only", tracking_uri=uri, tags={"method": "jda", "source": "a", "target": "b"}) as run:
            run.log_metrics({"target_acc": acc})
    (folder / "mlflow.db.lock").unlink()
    for path in [*folder.rglob("*"), folder]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200",
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    script = (f"from tlrun.tracking.compare import main\nmain(['tracking_uri={uri}', 'out={tmp_path / 'out'}'])\n"
              "from tlrun.tracking import StoreError, TrackedRun\n"
              f"try:\n    TrackedRun('read-only', tracking_uri='{uri}')\nexcept StoreError as error:\n    print(error)")
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                              timeout=120, preexec_fn=_as_a_reader)
        assert done.returncode == 0, done.stderr
        assert "jda" in done.stdout and "60.00 ± 14.14" in done.stdout  # the comparison of the two runs
        assert f"the MLflow store {uri} is read-only" in done.stdout, done.stdout + done.stderr
    finally:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
