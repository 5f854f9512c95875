"""One truth for every default: a method's composed config (conf/method/<name>.yaml with the conf/method_base files
it includes) is its recipe, its class's constructor defaults are the same values, and the checks of
tlrun.methods.settings declare types and checks only (no defaults: every caller passes every setting)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

import pytest
from omegaconf import OmegaConf

from tlrun.backbones import MLP
from tlrun.config import constructor_arguments, group_options, method_metadata, option_node
from tlrun.methods import settings
from tlrun.methods.settings import check_settings, checks, is_check

NO_DEFAULT = "(no default)"
NOT_A_PARAMETER = "(not a parameter)"


def _class(target: str) -> type:
    module, _, name = target.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _recipe(method: str) -> tuple[str, dict[str, Any]]:
    """The method's ``_target_`` and constructor arguments as its composed config sets them (beside its
    ``method_info``, which a setting may read: zsl_attribute's ``variant``)."""
    node = OmegaConf.create({"method": option_node("method", method), "method_info": method_metadata(method)}).method
    return str(node._target_), constructor_arguments(node)


def constructor_default(cls: type, key: str) -> Any:
    """The default ``cls(...)`` gives ``key``: that of the first ``__init__`` along the MRO declaring it, following
    ``**kwargs`` up to the base class's; :data:`NOT_A_PARAMETER` if no reachable ``__init__`` takes it."""
    for each in cls.__mro__:
        if "__init__" not in vars(each) or each is object:
            continue
        parameters = inspect.signature(each.__init__).parameters
        if key in parameters:
            default = parameters[key].default
            return NO_DEFAULT if default is inspect.Parameter.empty else default
        if not any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters.values()):
            break
    return NOT_A_PARAMETER


def _plain(value: Any) -> Any:
    """A value as the YAML writes it: tuples as lists, read-only mappings as dicts."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _same(yaml_value: Any, python_value: Any) -> bool:
    yaml_value, python_value = _plain(yaml_value), _plain(python_value)
    return isinstance(yaml_value, bool) == isinstance(python_value, bool) and yaml_value == python_value


def test_every_constructor_default_is_the_composed_config_s_value():
    differences = []
    for method in group_options("method"):
        target, recipe = _recipe(method)
        cls = _class(target)
        for key, value in recipe.items():
            default = constructor_default(cls, key)
            if not _same(value, default):
                differences.append(f"{method}: {key}: yaml {value!r}, python {default!r}")
    listed = "\n".join(differences)
    assert not differences, f"{len(differences)} constructor defaults differ from the configs:\n{listed}"


@pytest.mark.parametrize("check", [check for check in vars(settings).values() if is_check(check)],
                         ids=lambda check: check.__name__)
def test_a_check_declares_types_and_no_defaults(check):
    defaulted = [name for name, parameter in inspect.signature(check).parameters.items()
                 if parameter.kind is parameter.KEYWORD_ONLY and parameter.default is not parameter.empty]
    assert not defaulted, f"{check.__name__} gives {', '.join(defaulted)} a default: the config is the recipe"


@pytest.mark.parametrize("method", group_options("method"))
def test_the_constructor_with_its_own_defaults_passes_its_checks(method):
    """Built in Python with nothing but what the run gives it (a backbone), each class passes every setting to its
    checks (a check without defaults would miss one) and takes the recipe."""
    target, recipe = _recipe(method)
    cls = _class(target)
    needs_backbone = constructor_default(cls, "backbone") is NO_DEFAULT
    built = cls(MLP(input_shape=(12,), hidden=[8])) if needs_backbone else cls()
    assert checks(target) and type(built) is cls


def test_a_config_missing_a_setting_is_named_before_the_checks_run():
    target, recipe = _recipe("jda")
    del recipe["iterations"], recipe["gamma"]
    with pytest.raises(ValueError, match=r"^JDA: the method config sets no gamma, iterations; "):
        check_settings(target, recipe)


def test_the_multi_source_methods_defaults_are_the_tuning_search_s_choices():
    """``m3sda``'s and ``mdan``'s defaults are what ``benchmarks/multi_source_tuning.py`` chose on its tuning task
    (its json, committed beside the table): a default changed by hand, or a search rerun without updating the
    configs, fails here."""
    import json
    from pathlib import Path

    choices = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "multi_source_tuning.json"
    chosen = json.loads(choices.read_text())["choices"]
    for method in ("m3sda", "mdan"):
        node = option_node("method", method)
        assert {key: node[key.removeprefix("method.")] for key in chosen[method]} == chosen[method], method
