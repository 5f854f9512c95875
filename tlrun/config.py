"""The config tree: where it lives, what its groups hold, and how a group config becomes an object.

A method config keeps its constructor (``method``: ``_target_`` and its arguments, what
``hydra.utils.instantiate(cfg.method)`` builds) apart from what describes the method (``method_info``:
:data:`METHOD_INFO_KEYS`). Dataset and backbone configs carry their :data:`DESCRIPTION_KEYS` beside their constructor
arguments; :func:`instantiate` strips them before Hydra's ``_target_`` instantiation. The method configs are the
registry of methods: tests and benchmarks that run every method of a family or a scenario list them with
:func:`methods`. Everything here imports only OmegaConf and Hydra, so ``tlrun --help`` and configuration errors never
pay for torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

#: The node of a method config that describes the method: ``conf/method/<name>.yaml`` is a ``# @package _global_``
#: file with two nodes, ``method`` (the constructor: ``_target_`` and its arguments, what ``method.<key>=`` sets) and
#: this one, whose keys are :data:`METHOD_INFO_KEYS`. Runs log it as the params ``method_info.<key>``.
METHOD_INFO = "method_info"
#: The keys of :data:`METHOD_INFO`: the method's ``name`` (its option's), ``family`` (``deep`` | ``closed_form``),
#: ``kind`` (what its transfer does, :data:`BASELINE`...), ``scenarios`` (the first is its natural one), a one-line
#: ``summary``, ``source_val_fraction``: the default ``dataset.source_val_fraction`` of the datasets that leave the
#: held-out source share to the method (``${oc.select:method_info.source_val_fraction,0.0}``), and ``class_sets``: the
#: carved task a method is made for and the only one it runs (``open_set``: OSBP's unknown output; absent: any).
METHOD_INFO_KEYS = ("name", "family", "kind", "scenarios", "summary", "source_val_fraction", "class_sets")
#: Keys a dataset or backbone config holds beside its constructor arguments: its ``name`` and the ``scenarios`` a
#: dataset serves.
DESCRIPTION_KEYS = ("name", "scenarios")
#: Keys of every dataset config (``conf/dataset_base/classes.yaml``) that the runner applies to the loaded domains
#: (:func:`tlrun.data.base.carve_classes`), not constructor arguments.
CARVING_KEYS = ("source_classes", "target_classes")
#: The ``kind`` of a method config (what its transfer does; every deep DA method says) that marks a method without
#: transfer, the reference its family is compared with (``source_only``, ``target_only``, ``no_adaptation``). The
#: other kinds: ``discrepancy``, ``adversarial``, ``reconstruction``, ``class_confusion``.
BASELINE = "baseline"
#: ``backbone.weights=runs:/<run_id>/model``: the weights an earlier run logged (see :mod:`tlrun.tracking`).
RUN_URI_PREFIX = "runs:/"

#: The config groups a run composes, in the order ``tlrun --help`` lists them.
GROUPS = ("method", "dataset", "backbone", "scenario", "trainer", "logger", "debug", "experiment")


def config_dir() -> Path:
    """The config tree: ``tlrun/conf`` inside an installed package, else ``conf/`` beside the package."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"tlrun's config tree is missing: looked in {package / 'conf'} and {package.parent / 'conf'}")


def group_options(group: str) -> list[str]:
    """The option names of a config group (its yaml files), sorted."""
    return sorted(path.stem for path in (config_dir() / group).glob("*.yaml"))


def _load_option(group: str, option: str) -> DictConfig:
    return _load_yaml(config_dir() / group / f"{option}.yaml")


@lru_cache(maxsize=None)
def _load_yaml(path: Path) -> DictConfig:
    return OmegaConf.load(path)


def load_option(group: str, option: str) -> DictConfig:
    """One group option's yaml, as written (a copy: callers may change it)."""
    return _load_option(group, option).copy()


def option_node(group: str, option: str) -> dict[str, Any]:
    """A group option as composed (its own keys and those of the configs it merges into itself), unresolved; of a
    method config, its ``method`` node (the constructor's settings; :func:`method_metadata` reads the other)."""
    composed = _composed(group, option)
    return OmegaConf.to_container(composed.get(group, {}) if group == "method" else composed)


@lru_cache(maxsize=None)
def _composed(group: str, option: str) -> DictConfig:
    """The yaml files of :func:`_layers` merged, their defaults lists left out (read-only: cached, as the files are;
    ``tlrun --help`` alone reads every method's twice)."""
    merged = OmegaConf.create()
    for layer in _layers(group, option):
        merged = OmegaConf.merge(merged, OmegaConf.masked_copy(layer, [key for key in layer if key != "defaults"]))
    OmegaConf.set_readonly(merged, True)
    return merged


def _layers(group: str, option: str, load: Callable[[str, str], Any] = _load_option) -> Iterator[Any]:
    """The yaml files a group option is merged from, in Hydra's order: those its defaults list merges into it
    (``- /method_base/deep_da@_here_``, with theirs), and itself where ``_self_`` stands (else last); each read by
    ``load`` (OmegaConf's loader, or :func:`_plain_option`)."""
    node = load(group, option)
    entries = list(node.get("defaults", []))
    for entry in entries if "_self_" in entries else [*entries, "_self_"]:
        if entry == "_self_":
            yield node
        elif isinstance(entry, str) and entry.endswith("@_here_"):
            yield from _layers(*_here_path(group, entry), load=load)


@lru_cache(maxsize=None)
def _plain_option(group: str, option: str) -> dict[str, Any]:
    """A group option's yaml as plain data, read by PyYAML's C loader: a tenth of OmegaConf's cost, which matters to
    the method registry (every run reads every method's metadata). Its plain scalars differ from OmegaConf's in one
    case only (``1e-3`` without a dot stays a string), which no metadata key holds."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load((config_dir() / group / f"{option}.yaml").read_text(), Loader=loader) or {}


def _here_path(group: str, entry: str) -> tuple[str, str]:
    """``(group, option)`` of a defaults-list entry ``[/other_group/]option@_here_`` of a ``group`` option."""
    path = entry[: -len("@_here_")]
    return tuple(path.lstrip("/").rsplit("/", 1)) if path.startswith("/") else (group, path)


def option_keys(group: str, option: str) -> set[str]:
    """The keys a group option defines, with those of the configs its defaults list merges into it
    (``- /method_base/deep_da@_here_``, ``- deep@_here_``): what ``<group>.<key>=`` may set without a ``+``."""
    return set(map(str, option_node(group, option)))


def _targets_in(node: Any) -> Iterator[tuple[str, Any]]:
    """Every ``_target_`` in a nested dict/list tree, as ``(dotted path of its node, value)``."""
    stack: list[tuple[str, Any]] = [("", node)]
    while stack:
        path, node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            if key == "_target_":
                yield path or "<root>", value
            else:
                stack.append((f"{path}.{key}" if path else str(key), value))


@lru_cache(maxsize=None)
def known_targets() -> frozenset[str]:
    """Every ``_target_`` that tlrun's own config tree names (methods, datasets, backbones, launchers...): the only
    objects a config read back from a store (``resume=``) may build."""
    found: set[str] = set()
    for path in config_dir().rglob("*.yaml"):
        found.update(str(target) for _, target in _targets_in(OmegaConf.to_container(OmegaConf.load(path))))
    return frozenset(found)


def foreign_targets(tree: dict[str, Any]) -> list[str]:
    """``path._target_=value`` for every ``_target_`` of a plain config tree that tlrun's config tree does not name."""
    return sorted(f"{path}._target_={target}" for path, target in _targets_in(tree) if target not in known_targets())


def _defaults_entries(group: str, option: str) -> list[Any]:
    """The defaults list of a group option and of the configs it merges into itself (``...@_here_``)."""
    node = _load_option(group, option)
    entries = list(node.get("defaults", []))
    for entry in list(entries):
        if isinstance(entry, str) and entry.endswith("@_here_"):
            entries += _defaults_entries(*_here_path(group, entry))
    return entries


def option_overrides(group: str, option: str) -> dict[str, str]:
    """The group choices a group option's defaults list overrides (``- override /method: jda``; a recipe, or a
    method that sets its own backbone), as ``{group: option}``."""
    overrides = {}
    for entry in _defaults_entries(group, option):
        if isinstance(entry, DictConfig):
            for key, value in entry.items():
                words = str(key).split()
                if len(words) == 2 and words[0] == "override":
                    overrides[words[1].lstrip("/").split("@")[0]] = str(value)
    return overrides


def primary_defaults() -> dict[str, str]:
    """The option ``conf/config.yaml`` chooses for each config group (``{method: jda, dataset: digits, ...}``); a
    group it leaves unchosen (``debug: null``) is not listed."""
    chosen = {}
    for entry in OmegaConf.load(config_dir() / "config.yaml").defaults:
        if isinstance(entry, DictConfig):
            chosen.update({str(key): str(value) for key, value in entry.items() if value is not None})
    return chosen


def top_level_keys() -> set[str]:
    """The settings ``conf/config.yaml`` defines at its top level (``seed``, ``threads``...), groups and ``hydra``
    left out."""
    return {str(key) for key in OmegaConf.load(config_dir() / "config.yaml") if key not in ("defaults", "hydra")}


def no_such_setting(group: str, option: str, key: str) -> str:
    """The error for ``<group>.<key>=...`` when the chosen option defines no ``key``: the closest names, and every
    setting it has (Hydra's own message would send the user to ``+<group>.<key>``, which adds a key nobody reads)."""
    from difflib import get_close_matches

    settings = sorted(name for name in option_keys(group, option) - set(DESCRIPTION_KEYS) if not name.startswith("_"))
    close = get_close_matches(key, settings, n=1)
    hint = f" (did you mean {group}.{close[0]}?)" if close else ""
    if not settings:
        example = " (e.g. backbone=resnet50 backbone.weights=imagenet)" if group == "backbone" else ""
        return f"{group}.{key}: {group}={option} has no settings; name the {group} to set its keys{example}"
    return f"{group}.{key}: {group} {option} has no such setting{hint}; its settings: {', '.join(settings)}"


def method_metadata(name: str) -> dict[str, Any]:
    """The :data:`METHOD_INFO` node of the method config ``conf/method/<name>.yaml``, with what it merges (its keys
    are scalars and lists: each layer's replace the earlier's)."""
    info: dict[str, Any] = {}
    for layer in _layers("method", name, load=_plain_option):
        info.update(layer.get(METHOD_INFO) or {})
    return info


def with_method_info(tree: dict[str, Any]) -> dict[str, Any]:
    """A config tree (plain dicts) stored before method configs kept their metadata apart (``method.name``...), with
    it moved to :data:`METHOD_INFO`: a run interrupted then can be resumed now. A tree that has it is returned as is."""
    if METHOD_INFO in tree:
        return tree
    method = dict(tree["method"])
    info = {key: method.pop(key) for key in METHOD_INFO_KEYS if key in method}
    return {**tree, "method": method, METHOD_INFO: info}


def method_scenarios() -> dict[str, list[str]]:
    """Every method's declared scenarios, read from ``conf/method/*.yaml``: the registry of methods."""
    return {name: list(method_metadata(name)["scenarios"]) for name in group_options("method")}


def methods(family: str | None = None, scenario: str | None = None, baselines: bool = True,
            closed_set: bool = False) -> list[str]:
    """The methods (``conf/method/``) of ``family`` that serve ``scenario`` (``None``: any), the baselines first
    (:data:`BASELINE`; ``baselines=False`` leaves them out), then by name: what a test or a benchmark runs for
    "every method of a family" (a new method config joins it). ``closed_set=True`` leaves out the methods that run
    a carved task only (``class_sets``: ``osbp``)."""
    chosen = {name: method_metadata(name) for name in group_options("method")}
    chosen = {name: metadata for name, metadata in chosen.items()
              if family in (None, metadata.get("family")) and scenario in (None, *metadata["scenarios"])
              and (baselines or metadata.get("kind") != BASELINE) and not (closed_set and metadata.get("class_sets"))}
    return sorted(chosen, key=lambda name: (chosen[name].get("kind") != BASELINE, name))


def dataset_scenarios() -> dict[str, list[str]]:
    """Every dataset's servable scenarios, read from ``conf/dataset/*.yaml``."""
    return {name: list(_load_option("dataset", name).scenarios) for name in group_options("dataset")}


def natural_backbone(dataset: DictConfig, family: str | None) -> str:
    """What ``backbone=auto`` stands for: ``lenet`` for a deep method on rows that are images (the dataset sets
    ``image_shape``), else ``identity`` (closed-form methods read the features as they are, never through an
    untrained CNN). Image-file datasets need a named backbone; preflight says so."""
    return "lenet" if family == "deep" and dataset.get("image_shape") else "identity"


def method_table() -> str:
    """The method × scenario table (plain text), as ``tlrun --help`` and the README show it."""
    from tlrun.scenarios import SCENARIOS

    scenarios = list(SCENARIOS)
    methods = method_scenarios()
    width = max(len(name) for name in methods) + 2
    columns = [max(len(s), 3) + 2 for s in scenarios]
    lines = ["method".ljust(width) + "".join(s.ljust(c) for s, c in zip(scenarios, columns)) + "family"]
    for name, supported in methods.items():
        marks = "".join(("x" if s in supported else ".").ljust(c) for s, c in zip(scenarios, columns))
        lines.append(name.ljust(width) + marks + str(method_metadata(name).get("family", "")))
    return "\n".join(lines)


def _without_description(node: DictConfig) -> dict[str, Any]:
    arguments = OmegaConf.to_container(node, resolve=True)
    for key in DESCRIPTION_KEYS + CARVING_KEYS:
        arguments.pop(key, None)
    return arguments


def instantiate(node: DictConfig, **kwargs: Any) -> Any:
    """Build a group config's ``_target_`` (``cfg.method``, ``cfg.dataset``, ``cfg.backbone``) with the
    :data:`DESCRIPTION_KEYS` of a dataset or backbone removed; ``kwargs`` are passed on."""
    from hydra.utils import instantiate as hydra_instantiate

    return hydra_instantiate(_without_description(node), **kwargs)


def constructor_arguments(node: DictConfig) -> dict[str, Any]:
    """The keyword arguments :func:`instantiate` passes to a group config's ``_target_`` from the config (resolved,
    less the :data:`DESCRIPTION_KEYS` and Hydra's ``_target_``-like keys)."""
    arguments = _without_description(node)
    return {key: value for key, value in arguments.items() if not (key.startswith("_") and key.endswith("_"))}


def read_only(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only copy of a nested mapping: the default of a constructor's mapping setting (``classifier_options``),
    equal to its method config's value and safe to share between calls."""
    return MappingProxyType({key: read_only(value) if isinstance(value, Mapping) else value
                             for key, value in mapping.items()})


def as_dicts(mapping: Mapping[str, Any] | None) -> dict[str, Any]:
    """A nested mapping (``None``: empty) as plain dicts: what a constructor keeps of a mapping setting."""
    return {key: as_dicts(value) if isinstance(value, Mapping) else value for key, value in (mapping or {}).items()}


def options_entry(name: str, options_by_name: Any, known: Any, what: str, noun: str, example: str) -> dict[str, Any]:
    """The entry of ``name`` in a per-name options mapping of a method config (``classifier_options``,
    ``encoder_options``: ``{linear_svm: {C: 1.0e-4}, ...}``), after checking that every key is one of ``known``;
    ``what`` (the mapping), ``noun`` (what its keys name) and ``example`` word the error."""
    options_by_name = dict(options_by_name or {})
    unknown = sorted(set(options_by_name) - set(known))
    if unknown:
        raise ValueError(
            f"{what} maps {noun} names to their options (e.g. {example}); "
            f"{', '.join(map(repr, unknown))} is not one of: {', '.join(known)}"
        )
    return dict(options_by_name.get(name) or {})


def task_part(task: str, part: str) -> str:
    """Resolver ``${tlrun.task:<source>-<target>,source|target}``: one side of a task written ``source-target``.

    Recipes sweep over ``task`` to list exactly the source → target pairs of a paper (a cartesian sweep over
    ``dataset.source`` and ``dataset.target`` would add the source == target diagonal).
    """
    pieces = str(task).split("-")
    if len(pieces) != 2 or part not in ("source", "target"):
        raise ValueError(f"task {task!r} is not written <source>-<target> (asked for {part!r})")
    return pieces[0] if part == "source" else pieces[1]


def other_domains(domains: Any, held_out: str) -> list[str]:
    """Resolver ``${tlrun.others:<domains>,<held_out>}``: the domains but the held-out one, in order.

    Leave-one-domain-out recipes (``dg``) sweep over ``dataset.target`` and train on the other domains:
    ``dataset.source: ${tlrun.others:${domains},${dataset.target}}``.
    """
    names = [str(name) for name in domains]
    if held_out not in names:
        raise ValueError(f"the held-out domain {held_out!r} is not one of {names}")
    return [name for name in names if name != held_out]


def groups_help() -> str:
    """One line per config group of :data:`GROUPS`, ``group: option, option, …``, for ``tlrun --help`` (Hydra's own
    listing would also show ``method_base``, which holds the shared parts of method configs, not a choice)."""
    named = {group: f"{group} (add with +experiment=NAME)" if group == "experiment" else group for group in GROUPS}
    return "\n".join(f"{named[group]}: {', '.join(group_options(group))}" for group in GROUPS) + "\n"


def register_resolvers() -> None:
    """Register tlrun's OmegaConf resolvers (idempotent; every process that composes configs needs them)."""
    if not OmegaConf.has_resolver("tlrun.task"):
        OmegaConf.register_new_resolver("tlrun.task", task_part)
    if not OmegaConf.has_resolver("tlrun.others"):
        OmegaConf.register_new_resolver("tlrun.others", other_domains)
    if not OmegaConf.has_resolver("tlrun.method_table"):
        OmegaConf.register_new_resolver("tlrun.method_table", method_table)
    if not OmegaConf.has_resolver("tlrun.groups_help"):
        OmegaConf.register_new_resolver("tlrun.groups_help", groups_help)
    if not OmegaConf.has_resolver("tlrun.gpus_per_job"):
        OmegaConf.register_new_resolver("tlrun.gpus_per_job", _gpus_per_job)


def _gpus_per_job() -> int:
    """Resolver ``${tlrun.gpus_per_job:}``, the Ray launcher's GPUs per job: 1 on a machine with a CUDA GPU, else 0 (the
    job runs on the CPU)."""
    import torch  # when a Ray sweep's launcher config is resolved, not before

    return 1 if torch.cuda.is_available() else 0
