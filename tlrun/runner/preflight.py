"""The checks of a composed config that need no data and no heavy import: a bad command line fails in about a second.

:func:`preflight` resolves ``scenario=auto`` and ``backbone=auto`` and checks method × scenario × dataset, the
method's settings, the trainer's model selection, the scenario's fractions and the dataset's files. It imports no
torch, Lightning or MLflow (``tests/test_cli.py`` checks it through the command), and opens no MLflow run.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf, open_dict

from tlrun.config import (BASELINE, RUN_URI_PREFIX, constructor_arguments, dataset_scenarios, group_options,
                          instantiate, load_option, method_scenarios, methods, natural_backbone, no_such_setting,
                          option_keys, option_node)
from tlrun.data.base import DataError, TransferDataset, domain_names, join_problems
from tlrun.data.preprocess import check_row_wise
from tlrun.errors import TlrunError
from tlrun.methods.components.diagnostics import diagnostics_embedding
from tlrun.methods.components.selection import SCORES
from tlrun.methods.settings import AUTOMATIC_OPTIMISATION_ONLY, SettingTypeError, check_settings, optimises_by_hand
from tlrun.runner.resources import parse_memory
from tlrun.runner.threads import check_threads
from tlrun.scenarios import (LABELED_TARGET_SCENARIOS, SCENARIOS, check_carving_fits, check_fit,
                             check_generalisation, check_sources, check_target_labels, check_target_not_a_source,
                             natural_scenario)


@dataclass
class Plan:
    """A composition that passed the pre-flight checks."""

    cfg: DictConfig
    dataset: TransferDataset
    #: ``cfg.backbone`` as the backbone is built: ``runs:/`` weights replaced by the downloaded file
    #: (:func:`tlrun.runner.steps.with_run_weights`).
    backbone_cfg: DictConfig
    #: The run whose logged weights the backbone starts from (``backbone.weights=runs:/...``), if any.
    weights_run: str | None = None


def _check_system_metrics(wanted: bool) -> None:
    """``logger.system_metrics=true`` needs psutil, which only the ``system-metrics`` extra installs."""
    from importlib.util import find_spec

    if wanted and find_spec("psutil") is None:
        raise TlrunError('logger.system_metrics=true needs psutil: pip install "tlrun[system-metrics]" (from a '
                         'checkout: pip install -e ".[system-metrics]"; GPUs also need nvidia-ml-py, in the same extra)')


def resolve_auto(cfg: DictConfig, methods: dict[str, list[str]] | None = None) -> DictConfig:
    """A copy of ``cfg`` with ``scenario=auto`` and ``backbone=auto`` replaced by what they stand for: the method's
    natural scenario (scenario settings given as ``scenario.<key>`` carry over) and the backbone the dataset and the
    method's family call for. Raises :class:`~tlrun.errors.TlrunError` for an unknown method, and for a
    ``scenario.<key>`` set off ``auto``'s default that the natural scenario has not (it would be ignored)."""
    methods = method_scenarios() if methods is None else methods
    method = cfg.method_info.get("name")
    if method not in methods:
        raise TlrunError(f"unknown method {method!r}; known methods: {', '.join(sorted(methods))}")
    cfg = cfg.copy()
    with open_dict(cfg):
        if cfg.scenario.name == "auto":
            resolved = load_option("scenario", natural_scenario(methods[method]))
            defaults = option_node("scenario", "auto")
            for key in cfg.scenario:  # settings given on the command line as scenario.<key> carry over
                if key != "name" and key in resolved:
                    resolved[key] = cfg.scenario[key]
                elif key in defaults and cfg.scenario[key] != defaults[key]:  # set, and the scenario has no such key
                    owners = [f"scenario={name}" for name in group_options("scenario")
                              if name != "auto" and key in load_option("scenario", name)]
                    raise TlrunError(f"scenario.{key}={cfg.scenario[key]} is a setting of {' or '.join(owners)}, and "
                                     f"method {method}'s scenario (scenario=auto) is {resolved.name}, which would "
                                     f"ignore it: add {owners[0]}, or leave scenario.{key} out")
            cfg.scenario = resolved
        if cfg.backbone.name == "auto":
            cfg.backbone = load_option("backbone", natural_backbone(cfg.dataset, cfg.method_info.get("family")))
    return cfg


def preflight(cfg: DictConfig) -> Plan:
    """Resolve ``scenario=auto``, check that method, scenario and dataset fit, the method's settings, and that the
    data is there. ``backbone.weights=runs:/...`` is checked against its store later, by
    :func:`tlrun.runner.steps.with_run_weights`.

    Raises :class:`~tlrun.errors.TlrunError` subclasses with a message naming what would fit. Imports no torch.
    """
    cfg = cfg.copy()
    missing = sorted(key for key in OmegaConf.missing_keys(cfg) if not key.startswith("hydra"))
    if missing:
        raise TlrunError(f"set {', '.join(missing)} on the command line (e.g. {missing[0]}=...)")
    if not isinstance(cfg.seed, int):
        raise TlrunError(f"seed must be an integer, got {cfg.seed!r}")
    check_threads(cfg.get("threads", "auto"))
    diagnostics_embedding(cfg.get("diagnostics", False))
    parse_memory(cfg.get("resources", {}).get("max_memory", "auto"))  # checked against the data once it is loaded
    _check_system_metrics(bool(cfg.logger.get("system_metrics", False)))
    _check_select(str(cfg.trainer.get("select", "last")), cfg.method_info.get("family"),
                  float(cfg.dataset.get("source_val_fraction", 0.0)))
    methods = method_scenarios()
    auto_backbone = cfg.backbone.name == "auto"
    cfg = resolve_auto(cfg, methods)
    method = cfg.method_info.name
    check_fit(method, cfg.scenario.name, cfg.dataset.name, list(cfg.dataset.scenarios), methods, dataset_scenarios())
    _check_method_settings(method, cfg.method)
    _check_steps_by_hand(method, cfg)
    _check_carving(cfg)
    check_sources(cfg.scenario.name, domain_names(cfg.dataset.get("source")))
    if SCENARIOS[cfg.scenario.name].source == "unlabeled" and _given_on_command_line("dataset.source_val_fraction"):
        raise TlrunError(f"dataset.source_val_fraction holds out labeled source samples, and scenario "
                         f"{cfg.scenario.name}'s source is unlabeled, so it would be ignored: leave it out")
    if cfg.scenario.name == "zeroshot":
        check_row_wise(str(cfg.dataset.get("preprocess", "none")), "in zeroshot would mix unseen-class samples into training")
        if str(cfg.trainer.get("select", "last")) not in ("last", "source_val"):
            raise TlrunError(
                f"trainer.select={cfg.trainer.select}: zeroshot trains without target samples, so only source_val (the "
                "held-out seen-class samples, dataset.source_val_fraction > 0) or last can choose the epoch"
            )
    if cfg.scenario.name == "dg" or str(cfg.trainer.get("select", "last")) == "lodo":
        _check_generalisation(cfg, bool(_given_on_command_line("dataset.source_val_fraction")))
    if str(cfg.trainer.get("select", "last")) == "target_val" and not (
        cfg.scenario.name == "finetune" and float(cfg.scenario.get("target_val_fraction", 0.0)) > 0
    ):
        raise TlrunError(
            "trainer.select=target_val needs a held-out part of the labeled target: scenario=finetune with "
            "scenario.target_val_fraction > 0 (e.g. 0.2)"
        )
    held_out = cfg.scenario.get("target_test_fraction", 0.0)
    if isinstance(held_out, bool) or not isinstance(held_out, (int, float)) or not 0.0 <= held_out < 1.0:
        raise TlrunError(f"scenario.target_test_fraction={held_out}: must be a number in [0, 1) (0: the whole target "
                         "is adapted to and scored, the papers' transductive protocol)")
    if cfg.scenario.name in (*LABELED_TARGET_SCENARIOS, "semi_da"):
        check_target_labels(
            cfg.scenario.get("target_labels_per_class"), cfg.scenario.get("target_label_fraction"),
            float(cfg.scenario.get("target_val_fraction", 0.0)),
            cfg.scenario.name != "semi_da" and bool(cfg.dataset.get("target_test")), cfg.scenario.name,
        )
    weights = str(cfg.backbone.get("weights", "none"))
    a_file = weights not in ("none", "imagenet") and not weights.startswith(RUN_URI_PREFIX)
    if a_file and not Path(weights).expanduser().is_file():
        raise TlrunError(
            f"backbone.weights={weights}: no such file (use none, imagenet, a state-dict file, or "
            f"{RUN_URI_PREFIX}<run_id>/model for the weights an earlier run logged)"
        )
    dataset = construct(lambda: instantiate(cfg.dataset), "dataset")
    problems = []  # every missing piece in one message: the backbone, the data folder, each domain's files
    if dataset.holds_images and cfg.backbone.get("image_size") is None:
        image_backbones = [name for name in group_options("backbone") if load_option("backbone", name).get("image_size")]
        problems.append(
            f"dataset {cfg.dataset.name!r} holds image files, which backbone {cfg.backbone.name!r}"
            f"{' (what backbone=auto chose)' if auto_backbone else ''} cannot read; "
            f"choose one of: {', '.join('backbone=' + name for name in image_backbones)} "
            "(e.g. backbone=resnet50 backbone.weights=imagenet)"
        )
    problems += dataset.problems()
    if problems:
        raise DataError(join_problems(problems))
    if not dataset.disjoint_roles:
        check_target_not_a_source(cfg.scenario.name, dataset.sources, dataset.target, bool(dataset.target_test))
    check_random_features(cfg, dataset.holds_images, _given_on_command_line("backbone.weights"))
    # Closed-form methods read the rows as they are by design, and the zero-shot methods embed them so.
    reads_through_a_network = cfg.method_info.get("family") == "deep" and cfg.scenario.name != "zeroshot"
    flat_backbone = cfg.backbone.name in ("identity", "mlp")
    if (reads_through_a_network and cfg.dataset.get("image_shape") and flat_backbone
            and str(cfg.dataset.get("augment", "none")) == "none"):
        print(f"tlrun: note: backbone={cfg.backbone.name} reads each sample as a flat vector; "
              f"dataset.image_shape={list(cfg.dataset.image_shape)} serves a CNN (e.g. backbone=lenet)", file=sys.stderr)
    return Plan(cfg=cfg, dataset=dataset, backbone_cfg=cfg.backbone)


def _given_on_command_line(key: str) -> bool | None:
    """Whether the command line set ``key``; ``None`` without one (a config composed in Python)."""
    if not HydraConfig.initialized():
        return None
    return any(override.lstrip("+~").partition("=")[0] == key for override in HydraConfig.get().overrides.task)


def check_random_features(cfg: DictConfig, holds_images: bool, weights_given: bool | None) -> None:
    """A method that does not train its backbone (closed-form, frozen features) on image files, with a backbone of
    random weights, would report numbers of random features: refused unless ``backbone.weights=none`` is on the
    command line (on purpose); a config composed in Python (``weights_given`` None) gets a warning."""
    weights = str(cfg.backbone.get("weights", "none"))
    if cfg.method_info.get("family") == "deep" or not holds_images or weights != "none":
        return
    problem = (f"method {cfg.method_info.name} does not train its backbone, and backbone {cfg.backbone.name} has "
               "random weights (backbone.weights=none): its features of the images would be random projections. Set "
               f"backbone.weights=imagenet (or a state-dict file, or {RUN_URI_PREFIX}<run_id>/model)")
    if weights_given is False:
        raise TlrunError(f"{problem}, or put backbone.weights=none on the command line to do so on purpose")
    if weights_given is None:
        print(f"tlrun: warning: {problem}", file=sys.stderr)


def _check_method_settings(name: str, settings: DictConfig) -> None:
    """The constructor arguments (``settings``) of method ``name``, checked as its class checks them
    (:mod:`tlrun.methods.settings`); a key its config does not define (``+method.transfer_wieght=2``) is refused here,
    not by the constructor in a run."""
    unknown = sorted(set(map(str, settings)) - option_keys("method", name))
    if unknown:
        raise TlrunError(no_such_setting("method", name, unknown[0]))
    try:
        check_settings(str(settings.get("_target_", "")), constructor_arguments(settings))
    except SettingTypeError as error:  # its message starts with the key as typed: method.dim=10.5
        raise TlrunError(str(error)) from None
    except (ValueError, TypeError) as error:
        raise TlrunError(f"method: {error}") from None


def _check_steps_by_hand(name: str, cfg: DictConfig) -> None:
    """A method that takes its own optimizer steps refuses the trainer settings of automatic optimisation."""
    if not optimises_by_hand(str(cfg.method.get("_target_", "")), cfg.method):
        return
    given = [f"trainer.{key}={cfg.trainer[key]}" for key, default in AUTOMATIC_OPTIMISATION_ONLY.items()
             if cfg.trainer.get(key, default) != default]
    if given:
        raise TlrunError(
            f"{', '.join(given)}: {name} with method.discrepancy_weight > 0 takes its own optimizer steps, several per "
            "batch, which Lightning's gradient clipping and accumulation do not reach and max_steps would count; leave "
            "them out (a shorter run: method.epochs or method.iterations_per_epoch), or set method.discrepancy_weight=0"
        )


def _check_carving(cfg: DictConfig) -> None:
    """The task ``dataset.source_classes`` (open-set) or ``dataset.target_classes`` (partial) carve, or the closed-set
    one, fits the scenario and the method (:func:`~tlrun.scenarios.check_carving_fits`)."""
    kind = ("open_set" if cfg.dataset.get("source_classes") is not None
            else "partial" if cfg.dataset.get("target_classes") is not None else None)
    check_carving_fits(kind, cfg.scenario.name, cfg.method_info.name, cfg.method_info.get("family"),
                       methods(family="deep", scenario="da"), cfg.method_info.get("class_sets"))


def _check_select(select: str, family: str | None, source_val_fraction: float) -> None:
    """``trainer.select`` must name a known score, only deep methods (which train in epochs) select, and the
    scores computed on the held-out source (``source_val``, ``dev``) need one."""
    if select not in SCORES:
        raise TlrunError(f"trainer.select={select}: unknown; choose one of {', '.join(SCORES)}")
    if select != "last" and family != "deep":
        raise TlrunError(f"trainer.select={select} chooses among the epochs of a deep method; use trainer.select=last")
    if select in ("source_val", "dev") and source_val_fraction <= 0:
        raise TlrunError(f"trainer.select={select} scores a held-out part of the labeled source, and this dataset "
                         "holds out none: add dataset.source_val_fraction=0.1 (or another fraction)")


def generalisation_options(cfg: DictConfig) -> dict[str, Any]:
    """``dg``'s options of :func:`~tlrun.scenarios.split` that follow ``trainer.select``: the source domain held out
    for ``lodo`` (``scenario.val_domain``, else the last source) and the test domain's share that an ``oracle``
    selects by; none in other scenarios."""
    if cfg.scenario.name != "dg":
        return {}
    select, sources = str(cfg.trainer.get("select", "last")), domain_names(cfg.dataset.get("source"))
    return {
        "val_domain": (cfg.scenario.get("val_domain") or (sources or (None,))[-1]) if select == "lodo" else None,
        "oracle_fraction": float(cfg.scenario.get("oracle_fraction", 0.0)) if select == "oracle" else 0.0,
    }


def _check_generalisation(cfg: DictConfig, fraction_given: bool = False) -> None:
    """``dg`` trains without a target sample, so only scores of the sources, or the tagged oracle, choose the
    epoch; ``lodo`` (a source domain held out whole) is ``dg``'s; the test domain is no source. A setting of one
    selection given to another, which would ignore it, is refused: ``scenario.val_domain`` (``lodo``'s),
    ``scenario.oracle_fraction`` off its default (``oracle``'s), and ``dataset.source_val_fraction`` on the command
    line (``fraction_given``) with ``lodo``."""
    select, sources = str(cfg.trainer.get("select", "last")), domain_names(cfg.dataset.get("source"))
    if cfg.scenario.name != "dg":
        raise TlrunError(f"trainer.select=lodo holds one of several source domains out of training: it is scenario=dg's "
                         f"(this run's scenario is {cfg.scenario.name})")
    if select not in ("last", "source_val", "lodo", "oracle"):
        raise TlrunError(f"trainer.select={select}: dg trains without target samples, so the epoch is chosen by the "
                         "sources (source_val: a held-out part of each; lodo: one source held out whole), by the test "
                         "domain (oracle, tagged), or not at all (last)")
    fraction = cfg.scenario.get("oracle_fraction", 0.0)
    if select == "oracle" and not (isinstance(fraction, (int, float)) and 0.0 < fraction < 1.0):
        raise TlrunError(f"scenario.oracle_fraction={fraction}: trainer.select=oracle needs a share in (0, 1) of each "
                         "test-domain class to choose by (DomainBed: 0.2)")
    if select != "oracle" and fraction != option_node("scenario", "dg")["oracle_fraction"]:
        raise TlrunError(f"scenario.oracle_fraction={fraction} is the test-domain share an oracle chooses the epoch "
                         f"by, and this run selects by {select}, which would ignore it: add trainer.select=oracle, or "
                         "leave scenario.oracle_fraction out")
    if select != "lodo" and cfg.scenario.get("val_domain"):
        raise TlrunError(f"scenario.val_domain={cfg.scenario.val_domain} is the source held out whole for "
                         f"trainer.select=lodo, and this run selects by {select}, which would ignore it: add "
                         "trainer.select=lodo, or leave scenario.val_domain out")
    if select == "lodo" and fraction_given:
        raise TlrunError(f"dataset.source_val_fraction={cfg.dataset.source_val_fraction}: trainer.select=lodo holds "
                         "a whole source domain out instead, and every sample of the others trains: leave "
                         "dataset.source_val_fraction out, or select by source_val")
    val_domain = generalisation_options(cfg)["val_domain"]
    check_generalisation(sources, str(cfg.dataset.get("target", "")), val_domain)
    check_row_wise(str(cfg.dataset.get("preprocess", "none")), "in dg would read statistics of the test domain")
    training = len(sources) - (val_domain is not None)
    if cfg.method_info.get("kind") not in (None, BASELINE) and training < 2:
        raise TlrunError(
            f"{cfg.method_info.name} in dg aligns the training source domains with each other, and this run trains on "
            f"{training}: give dataset.source more domains (with trainer.select=lodo, one more: one is held out), or "
            "train one source with method=source_only (ERM)"
        )


def construct(build: Callable[[], Any], what: str) -> Any:
    """``build()``, with a constructor's complaint about its arguments turned into a :class:`TlrunError`.

    Hydra wraps what a ``_target_`` raises; a ``ValueError``/``TypeError`` there is a bad config value.
    """
    try:
        return build()
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, (ValueError, TypeError, TlrunError)):
            raise TlrunError(f"{what}: {cause}") from error
        raise
