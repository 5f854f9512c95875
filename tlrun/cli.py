"""The ``tlrun`` command: a thin Hydra entry point, and the subcommands ``tlrun ui`` (the MLflow UI on the
project's store), ``tlrun compare`` (tables and plots of runs), ``tlrun predict`` and ``tlrun evaluate`` (a run's
model on new data).

Only Hydra and OmegaConf are imported here, so ``tlrun --help`` and configuration errors answer in about a
second: an unknown group option (``method=foo``) is caught here, before Hydra composes; :mod:`tlrun.runner` checks
the rest and imports torch and MLflow only once the configuration has passed its checks.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from difflib import get_close_matches
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException, HydraException
from omegaconf.errors import OmegaConfBaseException
from hydra.types import RunMode
from omegaconf import DictConfig

from tlrun.collector import pause_collector, resume_collector
from tlrun.config import (GROUPS, config_dir, group_options, no_such_setting, option_keys, option_node,
                          option_overrides, primary_defaults, register_resolvers, top_level_keys)
from tlrun.errors import TlrunError

register_resolvers()


@hydra.main(config_path=str(config_dir()), config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> Any:
    from tlrun.runner.job import run_job  # imported when a job runs: --help stays light

    try:
        return run_job(cfg)
    except TlrunError as error:
        # A problem the user can fix: its message alone says what to do; a traceback would bury it.
        print(f"tlrun: error: {error}", file=sys.stderr)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            # The sweep's other jobs still run; Hydra reports the first failure when they are done.
            _failed_jobs.append((str(error), True))
            raise SweepJobFailed(f"tlrun: error: {error}", True) from None
        sys.exit(2)
    except KeyboardInterrupt:
        signum = interrupting_signal()
        print(f"tlrun: interrupted ({signal.Signals(signum).name}); the MLflow run is marked KILLED and keeps what it "
              "logged", file=sys.stderr)
        sys.exit(128 + signum)  # the shell's convention: 130 for Ctrl-C, 143 for SIGTERM
    except Exception as error:
        line = _report_unexpected(error)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            _failed_jobs.append((line.removeprefix("tlrun: error: "), False))
            raise SweepJobFailed(line, False) from error
        sys.exit(1)


#: The sweep jobs of this process that failed: (message, whether the input was at fault).
_failed_jobs: list[tuple[str, bool]] = []


class SweepJobFailed(CompactHydraException):
    """A sweep job's failure, raised to the sweep once its jobs are done: the job's ``tlrun: error:`` line and
    whether the input was at fault. It crosses processes (joblib, submitit launchers) as its ``args``."""

    def __str__(self) -> str:
        return str(self.args[0])


def interrupting_signal() -> int:
    """The signal that interrupted the run (SIGINT unless tlrun's handler saw another, see :mod:`tlrun.tracking`)."""
    tracking = sys.modules.get("tlrun.tracking")
    return getattr(tracking, "interrupted_by", None) or signal.SIGINT


def _report_unexpected(error: BaseException) -> str:
    """An error tlrun did not foresee: one ``tlrun: error:`` line (returned too), last; the traceback before it only
    on request (``HYDRA_FULL_ERROR=1``), since a run that opened keeps it as its ``error.txt`` artifact."""
    if _TRACEBACKS_ASKED:
        traceback.print_exception(error)
    message = " ".join(f"{type(error).__name__}: {error}".split())
    line = (f"tlrun: error: {message} (unexpected: a run that had opened ended FAILED with the traceback in its "
            "error.txt; HYDRA_FULL_ERROR=1 prints it here)")
    print(line, file=sys.stderr)
    return line


#: Characters of Hydra's override grammar beyond a plain option name (interpolation, quoting, lists, sweeps such
#: as ``range(...)`` or ``choice(...)``): such values are left to Hydra.
_OVERRIDE_SYNTAX = set("${}()[]'\" \\")


def _adds_config_folders(arguments: list[str]) -> bool:
    """Options may then come from elsewhere: such command lines are left to Hydra."""
    return any(argument.startswith(("hydra.searchpath", "--config-dir", "-cd")) for argument in arguments)


def _group_choices(argument: str) -> tuple[str, list[str]] | None:
    """``(group, options)`` of a ``[+]group=option[,option...]`` override of a config group in ``conf/``; ``None``
    for anything else, and for values in Hydra's richer syntax (interpolations, ``choice(...)``)."""
    key, equals, value = argument.partition("=")
    group = key.lstrip("+")
    if not equals or group not in GROUPS or not value or value == "null" or _OVERRIDE_SYNTAX & set(value):
        return None
    return group, value.split(",")


def unknown_group_option(arguments: list[str]) -> str | None:
    """The error for the first ``group=option`` (or ``+group=option``) override of a config group in ``conf/``
    whose option does not exist (with the closest name), ``None`` when there is none. A comma-separated sweep
    must list options only. Values in Hydra's richer syntax, and command lines that add config folders, are left
    to Hydra."""
    if _adds_config_folders(arguments):
        return None
    for group, choices in filter(None, map(_group_choices, arguments)):
        options = group_options(group)
        unknown = [choice for choice in choices if choice not in options]
        if unknown:
            close = get_close_matches(unknown[0], options, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            return f"unknown {group} {unknown[0]!r}{hint}; choose one of: {', '.join(options)}"
    return None


def chosen_options(arguments: list[str]) -> dict[str, list[str] | None]:
    """The option(s) of each config group a command line composes: given on it, else set by its ``+experiment``,
    else by the chosen method (a method may set its backbone), else ``conf/config.yaml``'s; ``None`` where Hydra's
    richer syntax leaves it open."""
    chosen: dict[str, list[str] | None] = {group: [option] for group, option in primary_defaults().items()}
    given = dict(_group_choices(argument) or (None, None) for argument in arguments)
    given.pop(None, None)
    for experiment in given.get("experiment") or []:
        chosen |= {group: [option] for group, option in option_overrides("experiment", experiment).items()}
    methods = given.get("method", chosen.get("method")) or []
    backbones = {option_overrides("method", method).get("backbone") for method in methods}
    if len(backbones) == 1 and None not in backbones:
        chosen["backbone"] = list(backbones)
    elif len(backbones) > 1:  # a sweep over methods that choose different backbones
        chosen["backbone"] = None
    unclear = {argument.partition("=")[0].lstrip("+") for argument in arguments if _group_choices(argument) is None}
    return chosen | given | {group: None for group in GROUPS if group in unclear}


def unknown_setting(arguments: list[str]) -> str | None:
    """The error for the first ``<group>.<key>=value`` whose chosen group option has no ``key`` (with the closest
    name and the option's settings), or a top-level ``key=value`` that tlrun's config does not define; ``None``
    when there is none. Hydra's own message for them points to ``+<group>.<key>=``, which would add a setting
    nothing reads. ``+key`` additions, ``hydra.*`` and command lines that add config folders are left to Hydra."""
    if _adds_config_folders(arguments):
        return None
    chosen = chosen_options(arguments)
    top_level = None if chosen.get("experiment") else top_level_keys()  # a recipe may add top-level keys (task)
    for argument in arguments:
        key, equals, _ = argument.partition("=")
        if not equals or argument.startswith(("+", "~", "-")):
            continue
        group, dot, path = key.partition(".")
        if not dot:
            if top_level is not None and "/" not in key and key not in GROUPS and key not in top_level:
                close = get_close_matches(key, sorted(top_level), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                return f"{key}: no such setting{hint}; settings: {', '.join(sorted(top_level))}, and the groups {', '.join(GROUPS)}"
            continue
        if group not in GROUPS or group == "experiment" or not chosen.get(group):
            continue
        for option in chosen[group]:
            error = _unknown_path(group, option, path.split("."))
            if error:
                return error
    return None


def _unknown_path(group: str, option: str, path: list[str]) -> str | None:
    """The error for ``<group>.<path>`` when the composed option has no such key, at any depth."""
    if path[0] not in option_keys(group, option):
        return no_such_setting(group, option, path[0])
    node: Any = option_node(group, option)
    for depth, key in enumerate(path):
        where = ".".join([group, *path[:depth]])
        if not isinstance(node, dict):
            return f"{where}.{key}: {where} is a value, not a mapping of settings"
        if key not in node and not node:  # an empty mapping of options: they are added
            return f"{where}.{key}: {where} is empty in the config; add an option with +{where}.{key}=..."
        if key not in node:
            known = sorted(map(str, node))
            close = get_close_matches(key, known, n=1)
            hint = f" (did you mean {where}.{close[0]}?)" if close else ""
            return f"{where}.{key}: no such setting{hint}; {where} has: {', '.join(known)}"
        node = node[key]
    return None


#: Whether the user asked for tracebacks (``HYDRA_FULL_ERROR=1``); tlrun itself sets the variable so that Hydra raises
#: what it would print (:func:`main` prints it as one line).
_TRACEBACKS_ASKED = os.environ.get("HYDRA_FULL_ERROR") == "1"

#: Subcommands that are not runs: ``tlrun <name> key=value ...`` calls ``<module>.<function>(arguments)``.
SUBCOMMANDS = {"ui": "tlrun.tracking.ui:main", "compare": "tlrun.tracking.compare:main",
               "predict": "tlrun.tracking.apply:predict", "evaluate": "tlrun.tracking.apply:evaluate"}


#: Hydra's flags that take a value (``--cfg job``), and those that take none, on a command that prints a config.
_VALUE_FLAGS = {"--cfg": "cfg", "-c": "cfg", "--package": "package", "-p": "package"}
_HELP_FLAGS = {"--help", "-h"}
_PLAIN_FLAGS = {"--resolve", *_HELP_FLAGS}


def _flags_and_overrides(arguments: list[str]) -> tuple[list[str], dict[str, str], set[str]] | None:
    """The overrides, the value flags (``--cfg job``, ``--package``) and the plain flags (``--resolve``, ``--help``)
    of a command tlrun may answer itself; ``None`` when another flag or extra config folders need Hydra."""
    flags: dict[str, str] = {}
    plain: set[str] = set()
    overrides: list[str] = []
    items = iter(arguments)
    for argument in items:
        name, equals, value = argument.partition("=")
        if argument in _PLAIN_FLAGS:
            plain.add(argument)
        elif name in _VALUE_FLAGS:
            flags[_VALUE_FLAGS[name]] = value if equals else next(items, "")
        elif argument.startswith("-"):
            return None
        else:
            overrides.append(argument)
    return None if _adds_config_folders(overrides) else (overrides, flags, plain)


def job_config_request(arguments: list[str]) -> tuple[list[str], str | None, bool] | None:
    """``(overrides, package, resolve)`` of a ``--cfg job`` command (``-c job``, ``--package``/``-p``, ``--resolve``)
    that tlrun prints itself; ``None`` for any other command, and for those Hydra must compose (other flags, a
    ``--multirun``, extra config folders)."""
    parsed = _flags_and_overrides(arguments)
    if parsed is None or parsed[1].get("cfg") != "job" or parsed[2] & _HELP_FLAGS:
        return None
    overrides, flags, plain = parsed
    return overrides, flags.get("package"), "--resolve" in plain


def help_request(arguments: list[str]) -> tuple[list[str], bool] | None:
    """``(overrides, resolve)`` of a ``--help`` (``-h``) command that tlrun prints itself; ``None`` otherwise."""
    parsed = _flags_and_overrides(arguments)
    if parsed is None or parsed[1] or not parsed[2] & _HELP_FLAGS:
        return None
    return parsed[0], "--resolve" in parsed[2]


def print_help(overrides: list[str], resolve: bool) -> None:
    """``tlrun --help``: the template of ``hydra.help`` (conf/config.yaml) with ``$CONFIG``, the composed config, as
    Hydra's app help renders it, without the two listings of every config group Hydra makes first for
    placeholders tlrun's template does not use (two thirds of its time)."""
    import string

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    template = str(cfg.hydra.help.template)
    with open_dict(cfg):
        del cfg["hydra"]
    print(string.Template(template).safe_substitute(CONFIG=OmegaConf.to_yaml(cfg, resolve=resolve)))


def print_job_config(overrides: list[str], package: str | None, resolve: bool) -> None:
    """``tlrun --cfg job``: the composed config as Hydra prints it, except that ``backbone`` and ``scenario`` show
    what ``auto`` resolves to for this command (what the run would use and record), with a comment saying so."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from tlrun.runner.preflight import resolve_auto

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    automatic = [group for group in ("backbone", "scenario") if cfg[group].name == "auto"]
    note = None
    if automatic:
        try:
            cfg = resolve_auto(cfg)
        except TlrunError as error:
            note = f"# tlrun left auto unresolved: {error}"
        else:
            resolved = ", ".join(f"{group}: auto -> {cfg[group].name}" for group in automatic)
            note = f"# tlrun resolved {resolved} (what this command runs and records)"
    node = OmegaConf.select(cfg, package) if package else cfg
    if package and node is None:
        raise TlrunError(f"--package {package}: the composed config has no such key")
    if note:
        print(note)
    print(OmegaConf.to_yaml(node, resolve=resolve) if OmegaConf.is_config(node) else node, end="")


def main() -> None:
    """Console-script entry point: ``tlrun ui ...`` starts the MLflow UI (:mod:`tlrun.tracking.ui`),
    ``tlrun compare ...`` tabulates runs (:mod:`tlrun.tracking.compare`), ``tlrun predict|evaluate ...`` apply a
    run's model (:mod:`tlrun.tracking.apply`); anything else is a run (or a sweep) composed by Hydra."""
    if sys.argv[1:2] and sys.argv[1] in SUBCOMMANDS:
        from importlib import import_module

        try:
            module, _, function = SUBCOMMANDS[sys.argv[1]].partition(":")
            code = getattr(import_module(module), function)(sys.argv[2:])
        except TlrunError as error:
            print(f"tlrun: error: {error}", file=sys.stderr)
            sys.exit(2)
        except Exception as error:
            _report_unexpected(error)
            sys.exit(1)
        sys.exit(code)
    error = unknown_group_option(sys.argv[1:]) or unknown_setting(sys.argv[1:])
    if error:  # Hydra's own message for it spans a screen, or points the wrong way
        print(f"tlrun: error: {error}", file=sys.stderr)
        sys.exit(2)
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises its errors instead of printing them: one line each, below
    try:
        job_config = job_config_request(sys.argv[1:])
        if job_config is not None:
            print_job_config(*job_config)
            return
        help_asked = help_request(sys.argv[1:])
        if help_asked is not None:
            print_help(*help_asked)
            return
        if "hydra/sweeper=optuna" in sys.argv[1:]:  # optuna, of the search extra, checked before a sweep run opens
            from tlrun.tracking.search import require_optuna

            require_optuna()
        pause_collector()  # until the run is set up: tlrun.collector
        try:
            _hydra_main()
        finally:
            resume_collector(freeze=False)  # a run that failed before fitting, or an in-process caller
    except SweepJobFailed as failure:  # every job has run; each failure was printed when it happened
        # Jobs that ran in this process are all counted; those of a launcher's workers only by the first failure.
        failed = _failed_jobs or [(str(failure).removeprefix("tlrun: error: "), bool(failure.args[1]))]
        count = f"{len(failed)} sweep jobs failed; the first" if len(failed) > 1 else "a sweep job failed"
        print(f"tlrun: error: {count}: {failed[0][0]}", file=sys.stderr)
        sys.exit(2 if all(at_fault for _, at_fault in failed) else 1)
    except TlrunError as error:
        print(f"tlrun: error: {error}", file=sys.stderr)
        sys.exit(2)
    except (HydraException, OmegaConfBaseException) as error:  # the command line could not be composed
        if _TRACEBACKS_ASKED:
            traceback.print_exception(error)
        cause = f" ({str(error.__cause__).splitlines()[0]})" if error.__cause__ and str(error.__cause__) else ""
        print(f"tlrun: error: {' '.join(str(error).split())}{cause}", file=sys.stderr)
        sys.exit(2)
    except Exception as error:
        _report_unexpected(error)
        sys.exit(1)


if __name__ == "__main__":
    main()
