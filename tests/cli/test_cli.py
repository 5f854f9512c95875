"""The `tlrun` executable itself: help and config errors without heavy imports, a real run, a sweep, Ctrl-C.

Each test here starts a process (imports cost seconds), so most end-to-end checks live in test_run.py instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import first_run_logged, wait_for_runs
from tlrun.cli import unknown_group_option
from tlrun.config import method_scenarios

HEAVY = ("torch", "pytorch_lightning", "mlflow")


def probe(modules: tuple[str, ...]) -> str:
    """Code that runs the CLI and prints, at exit, which of ``modules`` the process imported."""
    return ("import atexit, sys; "
            f"atexit.register(lambda: print('HEAVY=' + ','.join(m for m in {modules!r} if m in sys.modules))); "
            "sys.argv = ['tlrun'] + sys.argv[1:]; from tlrun.cli import main; main()")


def _env(store: str) -> dict[str, str]:
    return {**os.environ, "MLFLOW_TRACKING_URI": store, "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"}


def _probe(tmp_path: Path, store: str, *args: str, modules: tuple[str, ...] = HEAVY) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", probe(modules), *args], cwd=tmp_path, env=_env(store),
                          capture_output=True, text=True, timeout=120)


def _tlrun() -> str:
    return shutil.which("tlrun", path=str(Path(sys.executable).parent)) or "tlrun"


def test_help_lists_groups_and_the_method_table_without_heavy_imports(tmp_path, mlflow_store):
    result = _probe(tmp_path, mlflow_store, "--help")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for group in ("method", "dataset", "backbone", "scenario", "trainer", "logger", "experiment"):
        assert f"\n{group}" in out
    assert "method: " + ", ".join(sorted(method_scenarios())) in out
    assert "method_base" not in out  # the shared parts of method configs are not a choice
    assert "selftaught_clustering" in out and "closed_form" in out
    assert out.strip().endswith("HEAVY=")


def test_a_closed_form_run_on_features_imports_neither_lightning_nor_torchvision(tmp_path, mlflow_store):
    """Lightning and torchvision (5 s of CPU to import) serve deep methods and image backbones only."""
    import numpy as np

    rng = np.random.default_rng(0)
    for domain in ("a", "b"):
        np.savez(tmp_path / f"{domain}.npz", X=rng.normal(size=(40, 5)), y=np.arange(40) % 2)
    result = _probe(tmp_path, mlflow_store, "method=jda", "dataset=features", f"dataset.root={tmp_path}",
                    "dataset.source=a", "dataset.target=b", f"hydra.run.dir={tmp_path / 'run'}", "threads=1",
                    modules=("pytorch_lightning", "lightning_fabric", "torchvision", "torch"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("HEAVY=torch")


def test_config_error_is_one_clear_line_without_heavy_imports(tmp_path, mlflow_store):
    result = _probe(tmp_path, mlflow_store, "method=jda", "scenario=finetune")
    assert result.returncode == 2
    assert "tlrun: error: method 'jda' does not fit scenario 'finetune'" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.strip().endswith("HEAVY=")


@pytest.mark.parametrize(
    "method, setting",
    [
        ("jda", "kernel=foo"),
        ("coral", "classifier=svm"),
        ("source_only", "optimizer=foo"),
        ("dann", "warmup=foo"),
        ("dsn", "difference_reduction=foo"),
        ("finetune", "freeze=foo"),
    ],
)
def test_a_bad_method_setting_is_one_clear_line_without_heavy_imports(tmp_path, mlflow_store, method, setting):
    result = _probe(tmp_path, mlflow_store, f"method={method}", f"method.{setting}")
    assert result.returncode == 2, result.stderr
    key, value = setting.split("=")
    errors = [line for line in result.stderr.splitlines() if line.startswith("tlrun: error: ")]
    assert len(errors) == 1 and key in errors[0] and repr(value) in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.strip().endswith("HEAVY=")


def test_an_unknown_group_option_is_one_clear_line_without_heavy_imports(tmp_path, mlflow_store):
    result = _probe(tmp_path, mlflow_store, "method=foo")
    assert result.returncode == 2
    assert result.stderr.strip() == f"tlrun: error: unknown method 'foo'; choose one of: {', '.join(sorted(method_scenarios()))}"
    assert result.stdout.strip().endswith("HEAVY=")


def test_a_misspelt_key_is_one_line_naming_the_settings_without_heavy_imports(tmp_path, mlflow_store):
    """Hydra's own message would suggest +method.lamdb=1, which adds a key no method reads."""
    result = _probe(tmp_path, mlflow_store, "method=jda", "method.lamdb=1")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "tlrun: error: method.lamdb: method jda has no such setting (did you mean method.lamb?); its settings: "
        "approx, classifier, classifier_options, dim, gamma, iterations, kernel, lamb, rank")
    assert "+method" not in result.stderr and result.stdout.strip().endswith("HEAVY=")


@pytest.mark.parametrize("arguments, error", [
    (["method=jdaa"], "unknown method 'jdaa' (did you mean jda?); choose one of: "),
    (["seeed=1"], "seeed: no such setting (did you mean seed?); settings: "),
    (["--multirun", "method=jda,dann", "method.dim=30"], "method.dim: method dann has no such setting; its settings: "),
    (["dataset.roott=x"], "dataset.roott: dataset digits has no such setting; its settings: augment"),
    (["dataset=features", "dataset.roott=x"], "dataset.roott: dataset features has no such setting (did you mean dataset.root?)"),
    (["backbone.weights=imagenet"], "backbone.weights: backbone=auto has no settings; name the backbone"),
    (["trainer.max_epochs=3"], "trainer.max_epochs: trainer cpu has no such setting"),
    (["method.classifier_options.logreg.CC=1"],
     "method.classifier_options.logreg.CC: no such setting (did you mean method.classifier_options.logreg.C?)"),
    (["method.classifier_options.1nn.max_block=8"], "method.classifier_options.1nn.max_block: method.classifier_options.1nn "
                                                    "is empty in the config; add an option with +method."),
    (["method.dim.x=1"], "method.dim.x: method.dim is a value, not a mapping of settings"),
])
def test_misspelt_options_and_keys_are_named_with_the_closest_name(arguments, error):
    from tlrun.cli import unknown_setting

    assert (unknown_group_option(arguments) or unknown_setting(arguments) or "").startswith(error)


def test_keys_the_chosen_options_define_pass_the_key_check():
    from tlrun.cli import unknown_setting

    for arguments in (
        ["method.lamb=2", "seed=1", "hydra.run.dir=x", "+trainer.limit_train_batches=2", "method.classifier_options.logreg.C=2"],
        ["method=finetune", "backbone.weights=x"],  # finetune's own backbone (lenet)
        ["+experiment=zsl_cub", "method.margin=2", "dataset.root=x"],  # the recipe's method and dataset
        ["method=jda", "scenario.target_labels_per_class=3"],  # scenario=auto holds every scenario's keys
        ["method=${oc.env:M}", "method.anything=1"],  # Hydra's syntax leaves the method open
    ):
        assert unknown_setting(arguments) is None, arguments


def test_only_plain_options_of_tlruns_groups_are_checked_before_hydra():
    assert unknown_group_option(["+experiment=nope"]).startswith("unknown experiment 'nope'; choose one of: ")
    assert unknown_group_option(["--multirun", "method=jda,danm"]).startswith("unknown method 'danm'")
    for arguments in (
        ["--multirun", "method=jda,coral", "dataset=digits"],  # a sweep over options
        ["--multirun", "method=choice(jda,danm)"], ["method=${oc.env:METHOD}"], ["method=[jda]"],  # Hydra's syntax
        ["hydra/launcher=nope", "method.kernel=nope", "seed=1"],  # not a tlrun group
        ["hydra.searchpath=[file:///my/conf]", "method=mine"],  # options from elsewhere
    ):
        assert unknown_group_option(arguments) is None, arguments


def test_default_run_prints_how_to_open_its_store(tmp_path, mlflow_store):
    """The installed `tlrun` runs the default experiment and ends with the commands that open its store (sweeps and
    their table: tests/test_sweeps.py)."""
    result = subprocess.run([_tlrun(), f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, env=_env(mlflow_store),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("tlrun: running jda on digits original->thick (scenario da)\n")
    assert f"tlrun ui tracking_uri={mlflow_store}" in result.stdout
    assert f"mlflow ui --backend-store-uri {mlflow_store}" in result.stdout
    recorded = (tmp_path / "run" / ".hydra" / "config.yaml").read_text()  # Hydra's record shows what auto became
    assert "name: identity" in recorded and "name: da" in recorded and "name: auto" not in recorded


@pytest.mark.parametrize("arguments, expected", [
    (["method=dann", "--cfg", "job"], {"backbone.name": "lenet", "scenario.name": "da", "method_info.name": "dann"}),
    (["method=dann", "scenario=semi_da", "-c", "job", "--package", "backbone"], {"name": "lenet"}),
])
def test_cfg_job_shows_what_auto_resolves_to(monkeypatch, capsys, arguments, expected):
    from omegaconf import OmegaConf

    from tlrun.cli import main

    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    monkeypatch.setattr(sys, "argv", ["tlrun", *arguments])
    main()
    printed = capsys.readouterr().out
    assert printed.startswith("# tlrun resolved backbone: auto -> lenet") and "name: auto" not in printed
    shown = OmegaConf.create(printed)
    assert {key: OmegaConf.select(shown, key) for key in expected} == expected


@pytest.mark.parametrize("sent, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupt_ends_the_run_killed_and_keeps_its_metrics(tmp_path, mlflow_store, sent, exit_code):
    process = subprocess.Popen(
        # A deep run of many epochs: the default JDA stops at its fixed point (13 iterations, ~1 s on digits), which
        # could come before the signal.
        [_tlrun(), "method=source_only", "method.epochs=100000", "diagnostics=false", f"logger.experiment=cli-{sent.name}",
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, env=_env(mlflow_store), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    runs = wait_for_runs(process, mlflow_store, f"cli-{sent.name}", first_run_logged("target_acc", 3), timeout=120,
                         every=0.5)
    assert runs is not None, process.communicate(timeout=10)
    run_id, client = runs[0].info.run_id, MlflowClient(tracking_uri=mlflow_store)
    process.send_signal(sent)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == exit_code, stderr  # the shell's convention: 128 + the signal's number
    record = client.get_run(run_id)
    assert record.info.status == "KILLED"
    assert len(client.get_metric_history(run_id, "target_acc")) >= 3


def test_data_that_cannot_be_used_is_one_line_and_opens_no_run(tmp_path, mlflow_store):
    """Source and target of different feature sizes: exit 2, both files and sizes named, no MLflow run."""
    import numpy as np

    root = tmp_path / "features"
    root.mkdir()
    rng = np.random.default_rng(0)
    np.savez(root / "a.npz", X=rng.normal(size=(30, 8)), y=np.arange(30) % 3)
    np.savez(root / "b.npz", X=rng.normal(size=(30, 5)), y=np.arange(30) % 3)
    result = _probe(tmp_path, mlflow_store, "dataset=features", f"dataset.root={root}", "dataset.source=a",
                    "dataset.target=b", "logger.experiment=cli-data")
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("tlrun: error: ") and "a.npz) has 8 features" in last and "b.npz) has 5 features" in last
    assert "Traceback" not in result.stderr
    assert MlflowClient(tracking_uri=mlflow_store).get_experiment_by_name("cli-data") is None


def test_every_missing_piece_is_named_at_once(tmp_path, mlflow_store):
    result = _probe(tmp_path, mlflow_store, "dataset=office31", f"dataset.root={tmp_path / 'nowhere'}")
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("tlrun: error: ") and "problems: (1)" in last
    assert "backbone" in last and "nowhere" in last


@pytest.mark.parametrize("launcher, counted", [("basic", "2 sweep jobs failed; the first"), ("joblib", "a sweep job failed")])
def test_a_sweep_whose_jobs_fail_ends_with_one_error_line(tmp_path, mlflow_store, launcher, counted):
    """Jobs in this process are all counted; a launcher's workers report their first failure (it crosses processes)."""
    result = _probe(tmp_path, mlflow_store, "--multirun", f"hydra/launcher={launcher}", "method=jda,tca", "method.dim=0",
                    "threads=1", "logger.experiment=cli-bad-sweep", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"tlrun: error: {counted}: method: dim must be >= 1 (got 0)"
    assert "Traceback" not in result.stderr


def test_a_command_line_hydra_cannot_compose_is_one_line(tmp_path, mlflow_store):
    """Hydra's own composition errors (a mapping where the config has a list, a broken override) end in one
    tlrun: error: line, exit code 2, no traceback and no MLflow run."""
    for arguments, message in (
        (["method=dan", "method.layers={a: 1}"], "tlrun: error: Error merging override method.layers={a: 1}"),
        (["seed=[1"], "tlrun: error: no viable alternative at input '[1'"),
    ):
        result = _probe(tmp_path, mlflow_store, *arguments, "logger.experiment=cli-compose")
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr
        assert "Traceback" not in result.stderr
    assert MlflowClient(tracking_uri=mlflow_store).get_experiment_by_name("cli-compose") is None


@pytest.mark.parametrize("arguments", [["--help"], ["method=jda", "-h"], ["--help", "--resolve", "dataset.target=rotate"]])
def test_tlruns_own_help_is_hydras_app_help(capsys, arguments):
    """tlrun renders ``--help`` itself (skipping Hydra's listings of every config group, which its template does not
    show): the text is what Hydra prints."""
    from tlrun import cli

    assert cli.help_request(arguments) is not None
    cli.print_help(*cli.help_request(arguments))
    ours = capsys.readouterr().out
    hydras = subprocess.run([sys.executable, "-c", "import sys; from tlrun import cli; sys.argv[0] = 'tlrun'; "
                             "cli._hydra_main()", *arguments], capture_output=True, text=True, timeout=120)
    assert ours == hydras.stdout  # Hydra's in a process of its own: its global state stays there


def test_help_with_other_flags_is_left_to_hydra():
    from tlrun import cli

    assert cli.help_request(["--hydra-help"]) is None and cli.help_request(["--help", "--multirun"]) is None
    assert cli.help_request(["--cfg", "job", "--help"]) is None and cli.job_config_request(["--cfg", "job", "--help"]) is None
