"""The steps of a job that rank 0 and the DDP workers share, in the order a job takes them.

After :func:`~tlrun.runner.preflight.preflight`: the backbone's ``runs:/`` weights fetched from the job's store
(:func:`with_run_weights`), the device held (:func:`job_device`), the data read and checked (:func:`load_data`),
split as the scenario says (:func:`split_data`), a deep method built for it (:func:`build_deep_method`), and what
the method is handed besides the data (:func:`method_context`, :func:`checkpoint_file`). Rank 0 records the job
around these steps (:mod:`tlrun.runner.job`); a worker only trains.

torch and the feature extraction are imported by the steps that use them: :mod:`tlrun.runner.job`, which the CLI
imports before any check, stays light.
"""

from __future__ import annotations

import dataclasses
import random
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from omegaconf import DictConfig, OmegaConf

from tlrun.config import RUN_URI_PREFIX, instantiate
from tlrun.data import preprocess
from tlrun.data.base import ClassCarving, Domain, ZeroShotDomains, carve_classes
from tlrun.data.images import verify_images
from tlrun.data.shapes import check_backbone_input
from tlrun.methods.base import Reporter, RunContext
from tlrun.runner import ddp, devices
from tlrun.runner.preflight import Plan, construct, generalisation_options
from tlrun.scenarios import LABELED_TARGET_SCENARIOS, EvaluationData, TrainingData, split, split_zeroshot
from tlrun.tracking.records import DataInput


def with_run_weights(plan: Plan, tracking_uri: str) -> Plan:
    """``backbone.weights=runs:/<run id>/model``: the plan with that run's logged weights, downloaded from the
    job's store into ``<cache_dir>/runs``, as the backbone's weights file (``plan.weights_run`` names the run);
    any other plan as it is. Raises :class:`~tlrun.errors.TlrunError` when the store has no such run."""
    weights = str(plan.backbone_cfg.get("weights", "none"))
    if not weights.startswith(RUN_URI_PREFIX):
        return plan
    from tlrun.tracking import fetch_run_weights  # MLflow: only for weights that live in a store

    weights_run, file = fetch_run_weights(weights, tracking_uri, Path(str(plan.cfg.cache_dir)).expanduser() / "runs")
    backbone_cfg = plan.backbone_cfg.copy()
    backbone_cfg.weights = str(file)
    return dataclasses.replace(plan, backbone_cfg=backbone_cfg, weights_run=weights_run)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def job_device(cfg: DictConfig) -> Iterator[tuple[str, dict[str, Any]]]:
    """The closed-form device and the Lightning Trainer kwargs (less tlrun's own ``select`` and ``jobs_per_gpu``),
    held for the block. ``accelerator: auto`` takes the GPU when there is one; without a GPU the run falls back to
    the CPU in 32-bit precision. A one-GPU trainer claims a GPU no other tlrun job holds (:mod:`tlrun.runner.devices`).
    Several devices (``trainer=ddp``) train a deep method with Lightning DDP, one process per device; closed-form
    methods compute in this process, on the first device (:func:`tlrun.runner.ddp.configure`)."""
    import torch

    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer.pop("select", None)
    jobs_per_gpu = int(trainer.pop("jobs_per_gpu", 1))
    device, accelerator = "cpu", trainer.get("accelerator")
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        device = "cuda"
        trainer["accelerator"] = "gpu" if accelerator == "auto" else accelerator
    elif accelerator in ("gpu", "cuda", "auto"):
        if accelerator != "auto" or str(trainer.get("precision", "32-true")) not in ("32-true", "32"):
            print("tlrun: no GPU here; running on the CPU in 32-bit precision")
        trainer.update(accelerator="cpu", precision="32-true")
    elif accelerator == "cpu" and str(trainer.get("precision")).startswith("16"):  # trainer=ddp trainer.accelerator=cpu
        print("tlrun: 16-bit mixed precision is for GPUs; running on the CPU in 32-bit precision")
        trainer["precision"] = "32-true"
    trainer = ddp.configure(trainer, cfg.method_info.name, cfg.method_info.get("family"), device)
    if device == "cpu" or not devices.wants_one_gpu(trainer):
        yield device, trainer
        return

    def waiting() -> None:
        print("tlrun: every GPU is held by other tlrun jobs; waiting for one to free", flush=True)

    with devices.claimed_gpu(devices.visible_gpu_ids(), jobs_per_gpu, on_wait=waiting) as index:
        torch.cuda.set_device(index)
        trainer["devices"] = [index]
        yield f"cuda:{index}", trainer


@dataclass(frozen=True)
class LoadedData:
    """The domains a run needs, read and checked before its MLflow run opens (a bad file opens no run)."""

    #: The source and target domains (``None`` in ``zeroshot``).
    pair: tuple[Domain, Domain] | None = None
    #: The labeled scenarios' separate test domain, when the dataset has one.
    target_test: Domain | None = None
    #: The seen/unseen split of a ``zeroshot`` run.
    zeroshot: ZeroShotDomains | None = None
    #: How ``dataset.target_classes`` or ``dataset.source_classes`` carved the pair (``None``: not carved).
    carving: ClassCarving | None = None

    def domains(self) -> tuple[Domain, ...]:
        return tuple(domain for _, domain in self.roles())

    def roles(self) -> tuple[tuple[str, Domain], ...]:
        """Each domain with what the run uses it for: ``source``, ``target`` or ``evaluation`` (a separate test
        domain; in ``zeroshot`` the seen classes' test set, the unseen classes being the target)."""
        if self.zeroshot is not None:
            return tuple(zip(("source", "evaluation", "target"), self.zeroshot.domains()))
        return (("source", self.pair[0]), ("target", self.pair[1]),
                *([("evaluation", self.target_test)] if self.target_test is not None else []))


def load_data(plan: Plan) -> LoadedData:
    """Read every domain the scenario needs and check it: readable, consistent, every image decodable (cached by
    content under ``<cache_dir>/verified_images``), shaped for the backbone. Raises
    :class:`~tlrun.data.base.DataError` naming the file and what to do."""
    dataset, scenario = plan.dataset, plan.cfg.scenario.name
    class_options = _class_options(plan.cfg)
    if scenario == "zeroshot":
        loaded = LoadedData(zeroshot=dataset.load_zeroshot())
    else:
        target_test = dataset.load_target_test() if scenario in LABELED_TARGET_SCENARIOS else None
        *pair, carving = carve_classes(*dataset.load_pair(), *class_options)
        loaded = LoadedData(pair=tuple(pair), target_test=target_test, carving=carving)
    for domain in loaded.domains():
        check_backbone_input(plan.backbone_cfg, domain)
        verify_images(domain, Path(str(plan.cfg.cache_dir)).expanduser())
    return loaded


@dataclass(frozen=True)
class SplitData:
    """The loaded data split as the scenario says."""

    training: TrainingData
    evaluation: EvaluationData
    #: A domain whose samples are of the training kind: it sizes a deep method's backbone.
    sizing_domain: Domain
    #: The run's tags about its data: the files' checksums, the protocol, a zero-shot run's unseen classes.
    tags: dict[str, str] = field(default_factory=dict)
    #: The domains read, as the run's MLflow dataset inputs.
    inputs: tuple[DataInput, ...] = ()
    #: The frozen backbone a closed-form method's samples went through, built once for every domain (the logged
    #: model reads its inputs through it too; kept, on the CPU, until then); ``None``: the samples are the method's
    #: inputs as they are.
    feature_extractor: Any = None


def split_data(plan: Plan, loaded: LoadedData, feature_device: str | None) -> SplitData:
    """Split the loaded data as the scenario says; closed-form methods (``feature_device`` set) get features."""
    cfg, scenario = plan.cfg, plan.cfg.scenario
    extractor = _frozen_backbone(plan, loaded) if feature_device else None
    as_features = ((lambda domain: _features(plan, domain, extractor, feature_device)) if extractor is not None
                   else (lambda domain: domain))
    augment = str(getattr(plan.dataset, "augment", "none"))
    source_val_fraction = float(cfg.dataset.get("source_val_fraction", 0.0))
    tags = {}
    if loaded.zeroshot is not None:
        domains = loaded.zeroshot
        domains = dataclasses.replace(
            domains, **{key: as_features(domain) for key, domain in zip(("train", "test_seen", "test_unseen"), domains.domains())}
        )
        # The zero-shot target is the unseen classes (digits: under the source's shift), whatever dataset.target says.
        tags = ({"target": domains.test_unseen.name, "unseen": ",".join(domains.classes[k] for k in domains.unseen)}
                | ({"unseen_split": domains.split_rule} if domains.split_rule else {}))
        training, evaluation = split_zeroshot(domains, seed=cfg.seed, source_val_fraction=source_val_fraction, augment=augment)
        source = domains.train
    else:
        source, target = (as_features(domain) for domain in loaded.pair)
        options = generalisation_options(cfg)
        training, evaluation = split(
            source,
            target,
            scenario.name,
            seed=cfg.seed,
            source_val_fraction=source_val_fraction,
            target_labels_per_class=scenario.get("target_labels_per_class"),
            target_label_fraction=scenario.get("target_label_fraction"),
            target_val_fraction=float(scenario.get("target_val_fraction", 0.0)),
            target_test=as_features(loaded.target_test) if loaded.target_test is not None else None,
            target_test_fraction=float(scenario.get("target_test_fraction", 0.0)),
            augment=augment,
            carving=loaded.carving,
            **options,
        )
        tags = loaded.carving.tags() if loaded.carving is not None else {}
        if options.get("val_domain"):  # lodo: the source held out whole, which chose the epoch and did not train
            tags["val_domain"] = options["val_domain"]
    tags |= ({f"data.sha256.{name}": digest for d in loaded.domains() for name, digest in d.checksums.items()}
             | {"protocol": evaluation.protocol})
    inputs = tuple(DataInput(f"{cfg.dataset.name}/{domain.name}", role, dict(domain.checksums), tuple(domain.files))
                   for role, domain in loaded.roles())
    return SplitData(training, evaluation, source, tags, inputs, extractor)


def _class_options(cfg: DictConfig) -> tuple[Any, Any]:
    """``dataset.source_classes`` and ``dataset.target_classes`` as plain lists (``None`` when unset; preflight has
    checked that they fit the run's scenario and method)."""
    options = (cfg.dataset.get("source_classes"), cfg.dataset.get("target_classes"))  # absent from older runs' configs
    return tuple(OmegaConf.to_container(value) if OmegaConf.is_config(value) else value for value in options)


def _frozen_backbone(plan: Plan, loaded: LoadedData) -> Any:
    """The frozen backbone (eval mode) that turns a closed-form method's samples into features, sized by the first
    domain (every domain's samples have one shape); ``None`` for feature rows read as they are (``identity``)."""
    domain = loaded.domains()[0]
    if plan.cfg.backbone.name == "identity" and not domain.is_images:
        return None
    from tlrun.backbones.extract import build_backbone  # torch and torchvision: only for closed-form runs

    return build_backbone(plan.backbone_cfg, domain).eval()


def _features(plan: Plan, domain: Domain, backbone: Any, device: str) -> Domain:
    """A closed-form method's inputs: the domain's features from the frozen ``backbone`` (cached).

    Arrays were preprocessed when loaded; image files are, once the backbone has turned them into features.
    """
    cfg = plan.cfg
    from tlrun.backbones.extract import extract_features

    preprocessing = str(cfg.dataset.get("preprocess", "none"))
    features = extract_features(
        backbone,
        domain=domain,
        dataset_name=cfg.dataset.name,
        preprocess=preprocessing,
        cache_dir=Path(str(cfg.cache_dir)).expanduser() / "features",
        device=device,
    )
    if domain.is_images:
        features = preprocess.apply(preprocessing, features)
    return dataclasses.replace(domain, X=features, image_shape=None)


def _input_shape(domain: Domain) -> tuple[int, ...] | None:
    """The per-sample shape a backbone receives (``None``: image files, whose shape the backbone sets)."""
    if domain.is_images:
        return None
    return tuple(domain.image_shape) if domain.image_shape else (domain.X.shape[1],)


def build_deep_method(plan: Plan, sizing_domain: Domain) -> Any:
    """A deep method, with its backbone sized by the loaded data."""
    backbone = construct(lambda: instantiate(plan.backbone_cfg, input_shape=_input_shape(sizing_domain)), "backbone")
    return construct(lambda: instantiate(plan.cfg.method, backbone=backbone), "method")


def checkpoint_file(cfg: DictConfig, run_id: str) -> Path:
    """Where a deep run writes its resumable checkpoint: ``<cache_dir>/checkpoints/<run id>/last.ckpt``."""
    return Path(str(cfg.cache_dir)).expanduser() / "checkpoints" / run_id / "last.ckpt"


def method_context(
    cfg: DictConfig, device: str, trainer: dict[str, Any], reporter: Reporter, *,
    lightning_logger: Callable[[], Any] | None, diagnostics: bool | str | None, checkpoint: Path | None, resume: bool,
) -> RunContext:
    """What the method is handed besides the data: the run's seed and selection rule, the device and Trainer
    settings of :func:`job_device`, and the supervision of the DDP processes (:func:`tlrun.runner.ddp.callbacks`);
    with ``resume``, training continues from ``checkpoint``."""
    return RunContext(
        reporter=reporter, device=device, seed=cfg.seed, trainer=trainer, lightning_logger=lightning_logger,
        select=str(cfg.trainer.get("select", "last")), diagnostics=diagnostics, checkpoint=checkpoint,
        resume_from=checkpoint if resume else None, callbacks=ddp.callbacks(trainer),
    )
