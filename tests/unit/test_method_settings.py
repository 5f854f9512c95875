"""The method classes' settings checks (tlrun.methods.settings): registered for every method, passing every
shipped config, run by the constructors and, before any import of torch or any MLflow run, by the pre-flight."""

from __future__ import annotations

import importlib
import inspect
import math
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from tlrun.backbones import MLP
from tlrun.config import constructor_arguments, group_options, option_keys, option_node
from tlrun.errors import TlrunError
from tlrun.methods import settings as settings_module
from tlrun.methods.components.classifiers import make_classifier
from tlrun.methods.settings import (CLASSIFIERS, WEIGHTING_CLASSIFIERS, SettingTypeError, check_settings, checks,
                                    class_chain, is_check, own_checks, setting_types, values_of_other_types)
from tlrun.run import run


#: The ``_target_`` of every method config.
TARGETS = sorted({str(option_node("method", method)["_target_"]) for method in group_options("method")})


def _class(target: str) -> type:
    module, _, name = target.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("method", group_options("method"))
def test_every_method_has_a_check_that_its_default_config_passes(compose, method):
    settings = compose(f"method={method}").method
    assert checks(settings._target_), f"{settings._target_}'s __init__ calls no check of tlrun/methods/settings.py"
    check_settings(settings._target_, constructor_arguments(settings))


def test_the_weighting_classifiers_are_those_that_weight_samples():
    assert {name for name in CLASSIFIERS if make_classifier(name).supports_sample_weight} == set(WEIGHTING_CLASSIFIERS)


def test_a_bad_deep_setting_fails_as_the_constructor_does_before_any_mlflow_run(compose, mlflow_store):
    with pytest.raises(ValueError) as constructed:
        _class("tlrun.methods.dann.DANN")(MLP(input_shape=(12,), hidden=[8]), warmup="foo")
    with pytest.raises(TlrunError) as checked:
        run(compose("method=dann", "method.warmup=foo", experiment="bad-setting"))
    assert str(checked.value) == f"method: {constructed.value}"
    assert MlflowClient(tracking_uri=mlflow_store).get_experiment_by_name("bad-setting") is None


def test_the_config_less_hydra_s_keys_and_a_dataset_s_or_backbone_s_description_is_what_the_constructor_gets():
    node = OmegaConf.create({"name": "x", "scenarios": ["da"], "_target_": "a.B", "_partial_": False, "epochs": 3,
                             "pretrain_epochs": "${epochs}"})
    assert constructor_arguments(node) == {"epochs": 3, "pretrain_epochs": 3}


@pytest.mark.parametrize("method", group_options("method"))
def test_every_setting_a_method_config_defines_is_a_constructor_argument(compose, method):
    """option_keys (what preflight accepts without a +) is the composed method node, and every key of it (the
    metadata lives beside it, in method_info) reaches the constructor, which takes each as a parameter."""
    settings = compose(f"method={method}").method
    assert option_keys("method", method) == set(settings)
    assert set(constructor_arguments(settings)) == {key for key in settings if key != "_target_"}
    parameters = set()
    for cls in _class(settings._target_).__mro__:
        if "__init__" in vars(cls):
            parameters |= set(inspect.signature(cls.__init__).parameters)
    assert set(constructor_arguments(settings)) <= parameters, method


@pytest.mark.parametrize("recipe", group_options("experiment"))
def test_the_recipes_set_only_settings_their_methods_have(compose, recipe):
    composed = compose(f"+experiment={recipe}")
    assert set(composed.method) <= option_keys("method", str(composed.method_info.name)), recipe


def test_an_added_key_the_method_does_not_have_fails_before_any_mlflow_run(compose, mlflow_store):
    with pytest.raises(TlrunError, match=r"method.transfer_wieght: method dann has no such setting \(did you mean "
                                         r"method.transfer_weight\?\); its settings: backbone_lr_mult, batch_size"):
        run(compose("method=dann", "+method.transfer_wieght=2", experiment="added-key"))
    assert MlflowClient(tracking_uri=mlflow_store).get_experiment_by_name("added-key") is None



@pytest.mark.parametrize("method", group_options("method"))
def test_every_setting_of_every_method_has_a_type_and_a_value_of_another_type_fails_naming_the_key(compose, method):
    """Every key of the method's config (with those merged from conf/method_base) has a type declared by a check
    of its class; each value the command line can give that is not of that type fails before the range checks
    compare it, as ``method.<key>=<value>``."""
    config = compose(f"method={method}").method
    settings, target = constructor_arguments(config), config._target_
    types = setting_types(target)
    keys = sorted(key for key in option_keys("method", method) if not key.startswith("_"))
    assert not set(keys) - set(types), f"declare the type of {method}'s settings in a check of {target}"
    wrong = [(key, value) for key in keys for value in values_of_other_types(types[key])]
    unnamed = []
    for key, value in wrong:
        try:
            check_settings(target, {**settings, key: value})
        except SettingTypeError as error:
            if not str(error).startswith(f"method.{key}="):
                unnamed.append((key, value, str(error)))
        else:
            unnamed.append((key, value, "passed"))
    assert not unnamed and len(wrong) >= 3 * len(keys)


def test_a_wrong_type_says_the_key_the_value_and_what_is_allowed():
    def message(target: str, **settings: object) -> str:
        with pytest.raises(SettingTypeError) as error:
            check_settings(target, settings)
        return str(error.value)

    assert message("tlrun.methods.tca.TCA", dim=10.5) == "method.dim=10.5: TCA's dim must be an integer"
    assert message("tlrun.methods.tca.TCA", lamb=math.nan) == "method.lamb=nan: TCA's lamb must be a finite number"
    assert message("tlrun.methods.dann.DANN", patience=True) == (
        "method.patience=true: DANN's patience must be an integer or null")
    assert message("tlrun.methods.dann.DANN", backbone_lr_mult="fast") == (
        "method.backbone_lr_mult=fast: DANN's backbone_lr_mult must be a finite number or auto")
    assert message("tlrun.methods.dan.DAN", layers=["features", 1]) == (
        "method.layers=[features, 1]: DAN's layers must be a string or a list [a string, ...]")
    dan = constructor_arguments(OmegaConf.create(option_node("method", "dan")))
    check_settings("tlrun.methods.dan.DAN", {**dan, "lr": 1, "layers": ["features"], "patience": None})  # an int is a float


@pytest.mark.parametrize("target", TARGETS)
def test_the_class_chain_read_from_the_source_is_the_classes_tlrun_s_class_extends(target):
    """What registration derives without importing a class is its import's MRO: every tlrun class in it, each
    after the classes it extends."""
    chain = class_chain(target)
    extended = [f"{cls.__module__}.{cls.__qualname__}" for cls in _class(target).__mro__]
    assert set(chain) == {path for path in extended if path.startswith("tlrun.")}
    for position, path in enumerate(chain):
        bases = {f"{base.__module__}.{base.__qualname__}" for base in _class(path).__bases__}
        assert bases & set(chain) <= set(chain[:position]), path


def test_every_check_is_called_by_the_constructor_of_a_class_a_method_config_builds():
    """No check is left out of the pre-flight: each one is a class's own check, found in its ``__init__``, and the
    constructors run them in that order."""
    everything = {check for check in vars(settings_module).values() if is_check(check)}
    called = {check for target in TARGETS for path in class_chain(target) for check in own_checks(path)}
    assert called == everything


@pytest.mark.parametrize("target", TARGETS)
def test_a_setting_has_one_type_along_a_class_chain(target):
    declared: dict[str, set] = {}
    for check in checks(target):
        for key, parameter in list(inspect.signature(check).parameters.items())[1:]:
            if parameter.kind is parameter.KEYWORD_ONLY:
                declared.setdefault(key, set()).add(parameter.annotation)
    assert {key: kinds for key, kinds in declared.items() if len(kinds) > 1} == {}


def test_a_wrong_type_on_the_command_line_is_one_error_line_and_no_mlflow_run(tmp_path):
    store = tmp_path / "store" / "mlflow.db"
    result = subprocess.run(
        [sys.executable, "-m", "tlrun.cli", "method=tca", "method.dim=10.5", f"logger.tracking_uri=sqlite:///{store}",
         f"hydra.run.dir={tmp_path / 'run'}", "threads=1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("tlrun: error:")
    assert "method.dim=10.5" in result.stderr.strip().splitlines()[-1]
    assert not store.parent.exists()


@pytest.mark.parametrize("options, error", [
    ({"logreg": {"C": "abc"}}, "method.classifier_options.logreg.C=abc: must be a finite number"),
    ({"linear_svm": {"C": -1.0}}, "method.classifier_options.linear_svm.C=-1.0: must be positive"),
    ({"1nn": {"max_block": 10.5}}, "method.classifier_options.1nn.max_block=10.5: must be an integer"),
    ({"logreg": {"CC": 1.0}}, "method.classifier_options.logreg.CC: logreg has no option 'CC'; its options: C, max_iter, seed"),
    ({"logreg": 3}, "method.classifier_options.logreg=3: must be a mapping"),
])
def test_classifier_options_are_checked_by_name_type_and_sign(options, error):
    """Every entry is checked, the chosen classifier's or not: a typo does not wait for the day it is chosen."""
    from tlrun.methods.settings import chosen_classifier_options

    with pytest.raises((ValueError, TypeError)) as raised:
        chosen_classifier_options("1nn" if "1nn" not in options else "logreg", options)
    assert str(raised.value).startswith(error)
