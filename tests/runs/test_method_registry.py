"""The method configs are the registry of methods: what tlrun.config reads from them is what Hydra composes, Hydra's
own instantiate builds a method from its ``method`` node (the metadata lives beside it, in ``method_info``), and a
new deep DA method added as one YAML file (a variant of an existing class) joins the property tests' and the
benchmark's method lists, with its misspelt options refused, without any list being edited."""

from __future__ import annotations

import importlib.util
import shutil

import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.helpers import REPO
import tests.runs.test_deep_da as deep_da_properties
import tlrun.config
from tlrun.backbones import LeNet
from tlrun.config import (METHOD_INFO_KEYS, config_dir, group_options, method_metadata, methods, option_node,
                          with_method_info)
from tlrun.errors import TlrunError
from tlrun.run import run

#: Linear MMD on the logits: DDC's class on another layer, a new method in one file (no code, no list).
DDC_ON_LOGITS = """\
# @package _global_
# Linear MMD on the logits: DDC's objective on the classifier's outputs.
defaults:
  - ddc@_here_
  - _self_

method:
  layers: [logits]
method_info:
  name: ddc_logits
  summary: linear-kernel MMD on the logits
"""


@pytest.mark.parametrize("method", group_options("method"))
def test_the_config_tlrun_reads_is_the_one_hydra_composes(compose, method):
    """``option_node`` (the settings preflight knows, the defaults tests compare) and ``method_metadata`` (the lists
    of tests and benchmarks) read a method config as Hydra composes it: same keys, same order, same values."""
    composed = compose(f"method={method}")
    assert list(option_node("method", method).items()) == list(OmegaConf.to_container(composed.method).items())
    assert method_metadata(method) == OmegaConf.to_container(composed.method_info)
    assert set(method_metadata(method)) <= set(METHOD_INFO_KEYS), f"conf/method/{method}.yaml: a misspelt key"
    assert method_metadata(method)["name"] == method  # else runs would be tagged with another method's name


@pytest.mark.parametrize("method", group_options("method"))
def test_hydra_s_own_instantiate_builds_a_method_from_its_method_node(compose, method):
    """``hydra.utils.instantiate(cfg.method)`` builds the method with nothing stripped; a deep method is handed its
    backbone network (the digits' LeNet here), as the runner does."""
    cfg = compose(f"method={method}")
    network = {"backbone": LeNet(input_shape=(1, 8, 8))} if cfg.method_info.family == "deep" else {}
    built = instantiate(cfg.method, **network)
    assert f"{type(built).__module__}.{type(built).__qualname__}" == cfg.method._target_


def test_a_config_stored_with_the_metadata_inside_method_reads_as_today_s(compose):
    """``resume=`` of a run stored before ``method_info`` existed (``method.name``, ``method.family``...)."""
    today = OmegaConf.to_container(compose("method=dann"), resolve=True)
    stored = {key: value for key, value in today.items() if key != "method_info"}
    stored["method"] = {**today["method"], **today["method_info"]}
    assert with_method_info(stored) == today
    assert with_method_info(today) is today


@pytest.fixture
def compose_with_a_new_method(tmp_path, monkeypatch, request):
    """``compose`` on a copy of conf/ with ``method/ddc_logits.yaml`` added; tlrun.config reads the copy."""
    conf = tmp_path / "conf"
    shutil.copytree(config_dir(), conf)
    (conf / "method" / "ddc_logits.yaml").write_text(DDC_ON_LOGITS)
    monkeypatch.setattr(tlrun.config, "config_dir", lambda: conf)
    return request.getfixturevalue("compose")  # set up now, it composes from the copy


def _benchmark(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_method_added_as_one_yaml_file_joins_the_property_tests_and_the_benchmark(compose_with_a_new_method):
    compose = compose_with_a_new_method
    cfg = compose("method=ddc_logits")
    assert (cfg.method._target_, list(cfg.method.layers)) == ("tlrun.methods.ddc.DDC", ["logits"])
    assert method_metadata("ddc_logits") == {**method_metadata("ddc"), "name": "ddc_logits",
                                             "summary": "linear-kernel MMD on the logits"}
    assert "ddc_logits" not in deep_da_properties.ADAPTATION_METHODS  # collected from the shipped configs
    assert "ddc_logits" in deep_da_properties.adaptation_methods()
    assert "ddc_logits" in methods(scenario="semi_da")
    benchmark = _benchmark("deep_da_digits")
    assert "ddc_logits" in benchmark.deep_da_methods() and benchmark.kind("ddc_logits") == "discrepancy"
    # The properties the deep DA methods are held to, on the new one.
    deep_da_properties.test_transfer_term_is_nonzero_and_reaches_the_feature_extractor(compose, "ddc_logits")
    deep_da_properties.test_a_misspelt_option_name_is_an_error(compose, "ddc_logits")


@pytest.mark.parametrize("override, error, message", [
    ("method.layers=[logit]", TlrunError, "DDC: layers must be one or more of"),  # DDC's check, before any run
    ("method.layer=[logits]", ConfigCompositionException, "method.layer"),  # a key the method does not have
    ("+method.layer=[logits]", TlrunError, r"did you mean method\.layers"),  # added anyway: named, closest first
])
def test_a_misspelt_option_of_the_new_method_is_an_error(compose_with_a_new_method, override, error, message):
    with pytest.raises(error, match=message):
        run(compose_with_a_new_method("method=ddc_logits", override))
