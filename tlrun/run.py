"""One run, end to end: check the composition, open the MLflow run, load, split, fit, evaluate, report.

:func:`preflight` does every check that needs no data and no heavy import (method × scenario × dataset, the
method's settings, the dataset's files), so a bad command line fails in about a second and opens no MLflow run.
:func:`run` then does the work inside a :class:`~tlrun.tracking.TrackedRun`, which ends FINISHED, FAILED or
KILLED whatever happens.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf, open_dict

from tlrun.config import (RUN_URI_PREFIX, constructor_arguments, dataset_scenarios, foreign_targets,
                          group_options, instantiate, load_option, method_scenarios, natural_backbone, no_such_setting,
                          option_keys)
from tlrun.data.base import DataError, Domain, TransferDataset, ZeroShotDomains, join_problems
from tlrun.errors import OracleRefused, TlrunError
from tlrun.threads import check_threads, current_launcher, limited_threads, run_threads
from tlrun.scenarios import (
    LABELED_TARGET_SCENARIOS,
    EvaluationData,
    TrainingData,
    check_fit,
    check_target_labels,
    natural_scenario,
    split,
    split_zeroshot,
)


@dataclass
class Plan:
    """A composition that passed the pre-flight checks."""

    cfg: DictConfig
    dataset: TransferDataset
    #: ``cfg.backbone`` as the backbone is built: ``runs:/`` weights replaced by the downloaded file.
    backbone_cfg: DictConfig
    #: The run whose logged weights the backbone starts from (``backbone.weights=runs:/...``), if any.
    weights_run: str | None = None


def preflight(cfg: DictConfig) -> Plan:
    """Resolve ``scenario=auto``, check that method, scenario and dataset fit, the method's settings, and that the
    data is there.

    Raises :class:`~tlrun.errors.TlrunError` subclasses with a message naming what would fit. Imports no torch.
    """
    cfg = cfg.copy()
    missing = sorted(key for key in OmegaConf.missing_keys(cfg) if not key.startswith("hydra"))
    if missing:
        raise TlrunError(f"set {', '.join(missing)} on the command line (e.g. {missing[0]}=...)")
    if not isinstance(cfg.seed, int):
        raise TlrunError(f"seed must be an integer, got {cfg.seed!r}")
    check_threads(cfg.get("threads", "auto"))
    _check_select(str(cfg.trainer.get("select", "last")), cfg.method.get("family"),
                  float(cfg.dataset.get("source_val_fraction", 0.0)))
    methods = method_scenarios()
    method = cfg.method.get("name")
    if method not in methods:
        raise TlrunError(f"unknown method {method!r}; known methods: {', '.join(sorted(methods))}")
    if cfg.scenario.name == "auto":
        with open_dict(cfg):
            resolved = load_option("scenario", natural_scenario(methods[method]))
            for key in resolved:  # settings given on the command line as scenario.<key> carry over
                if key != "name" and key in cfg.scenario:
                    resolved[key] = cfg.scenario[key]
            cfg.scenario = resolved
    check_fit(method, cfg.scenario.name, cfg.dataset.name, list(cfg.dataset.scenarios), methods, dataset_scenarios())
    _check_method_settings(cfg.method)
    auto_backbone = cfg.backbone.name == "auto"
    if auto_backbone:
        with open_dict(cfg):
            cfg.backbone = load_option("backbone", natural_backbone(cfg.dataset, cfg.method.get("family")))
    if cfg.scenario.name == "zeroshot":
        from tlrun.data.preprocess import check_row_wise

        check_row_wise(str(cfg.dataset.get("preprocess", "none")), "in zeroshot would mix unseen-class samples into training")
        if str(cfg.trainer.get("select", "last")) not in ("last", "source_val"):
            raise TlrunError(
                f"trainer.select={cfg.trainer.select}: zeroshot trains without target samples, so only source_val (the "
                "held-out seen-class samples, dataset.source_val_fraction > 0) or last can choose the epoch"
            )
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
    backbone_cfg, weights_run = cfg.backbone, None
    if weights.startswith(RUN_URI_PREFIX):
        from tlrun.tracking import configured_uri, fetch_run_weights

        weights_run, file = fetch_run_weights(weights, configured_uri(cfg), Path(str(cfg.cache_dir)).expanduser() / "runs")
        backbone_cfg = cfg.backbone.copy()
        backbone_cfg.weights = str(file)
    elif weights not in ("none", "imagenet") and not Path(weights).expanduser().is_file():
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
    _check_random_features(cfg, dataset.holds_images, _given_on_command_line("backbone.weights"))
    # Closed-form methods read the rows as they are by design, and the zero-shot methods embed them so.
    reads_through_a_network = cfg.method.get("family") == "deep" and cfg.scenario.name != "zeroshot"
    flat_backbone = cfg.backbone.name in ("identity", "mlp")
    if (reads_through_a_network and cfg.dataset.get("image_shape") and flat_backbone
            and str(cfg.dataset.get("augment", "none")) == "none"):
        print(f"tlrun: note: backbone={cfg.backbone.name} reads each sample as a flat vector; "
              f"dataset.image_shape={list(cfg.dataset.image_shape)} serves a CNN (e.g. backbone=lenet)", file=sys.stderr)
    return Plan(cfg=cfg, dataset=dataset, backbone_cfg=backbone_cfg, weights_run=weights_run)


def _given_on_command_line(key: str) -> bool | None:
    """Whether the command line set ``key``; ``None`` without one (a config composed in Python)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return any(override.lstrip("+~").partition("=")[0] == key for override in HydraConfig.get().overrides.task)


def _check_random_features(cfg: DictConfig, holds_images: bool, weights_given: bool | None) -> None:
    """A method that does not train its backbone (closed-form, frozen features) on image files, with a backbone of
    random weights, would report numbers of random features: refused unless ``backbone.weights=none`` is on the
    command line (on purpose); a config composed in Python (``weights_given`` None) gets a warning."""
    if cfg.method.get("family") == "deep" or not holds_images or str(cfg.backbone.get("weights", "none")) != "none":
        return
    problem = (f"method {cfg.method.name} does not train its backbone, and backbone {cfg.backbone.name} has random "
               "weights (backbone.weights=none): its features of the images would be random projections. Set "
               f"backbone.weights=imagenet (or a state-dict file, or {RUN_URI_PREFIX}<run_id>/model)")
    if weights_given is False:
        raise TlrunError(f"{problem}, or put backbone.weights=none on the command line to do so on purpose")
    if weights_given is None:
        print(f"tlrun: warning: {problem}", file=sys.stderr)


def _check_method_settings(method: DictConfig) -> None:
    """The method's constructor arguments, checked as its class checks them (:mod:`tlrun.methods.settings`); a key
    its config does not define (``+method.transfer_wieght=2``) is refused here, not by the constructor in a run."""
    from tlrun.methods.settings import SettingTypeError, check_settings

    unknown = sorted(set(map(str, method)) - option_keys("method", str(method.name)))
    if unknown:
        raise TlrunError(no_such_setting("method", str(method.name), unknown[0]))
    try:
        check_settings(str(method.get("_target_", "")), constructor_arguments(method))
    except SettingTypeError as error:  # its message starts with the key as typed: method.dim=10.5
        raise TlrunError(str(error)) from None
    except (ValueError, TypeError) as error:
        raise TlrunError(f"method: {error}") from None


def _check_select(select: str, family: str | None, source_val_fraction: float) -> None:
    """``trainer.select`` must name a known score, only deep methods (which train in epochs) select, and the
    scores computed on the held-out source (``source_val``, ``dev``) need one."""
    from tlrun.selection import SCORES

    if select not in SCORES:
        raise TlrunError(f"trainer.select={select}: unknown; choose one of {', '.join(SCORES)}")
    if select != "last" and family != "deep":
        raise TlrunError(f"trainer.select={select} chooses among the epochs of a deep method; use trainer.select=last")
    if select in ("source_val", "dev") and source_val_fraction <= 0:
        raise TlrunError(f"trainer.select={select} scores a held-out part of the labeled source, and this dataset "
                         "holds out none: add dataset.source_val_fraction=0.1 (or another fraction)")


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


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def target_scorer(evaluation: EvaluationData) -> Callable[[np.ndarray], float] | None:
    """The accuracy of predictions for the training target, when it *is* the test target (``da``; cluster ids
    matched to classes in ``selftaught_clustering``); ``None`` otherwise. The labels live only in this closure."""
    if not evaluation.target_is_training_target:
        return None
    labels, clusters = evaluation.target_test.y, evaluation.scenario == "selftaught_clustering"

    def score(predictions: np.ndarray) -> float:
        if clusters:
            from tlrun.metrics import clustering_accuracy

            return clustering_accuracy(labels, np.asarray(predictions))
        return float(np.mean(np.asarray(predictions) == labels))

    return score


class EvaluationReporter:
    """The :class:`~tlrun.methods.base.Reporter` a method talks to: metrics into the run, predictions scored.

    Label-blind by construction: the reporter holds no labels, only a scorer (:func:`target_scorer`), and a method
    gets nothing back from :meth:`target_predictions`; the runner logs the accuracy as ``target_acc``. Only an
    oracle run (``trainer.select=oracle``, tagged ``selection.oracle=true``) may ask for the accuracy, to choose
    its epoch.
    """

    def __init__(self, tracked: Any, score: Callable[[np.ndarray], float] | None, oracle: bool = False) -> None:
        self.tracked = tracked
        self._score = score
        self._oracle = oracle
        self.last_step = 0

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.tracked.log_metrics(metrics, step)
        self.last_step = max(self.last_step, step or 0)

    def target_predictions(self, predictions: np.ndarray, step: int) -> None:
        if self._score is not None:
            self.log_metrics({"target_acc": self._score(predictions)}, step)

    def oracle_accuracy(self, predictions: np.ndarray) -> float | None:
        if not self._oracle:
            raise OracleRefused("target accuracy is read only by an oracle run (trainer.select=oracle)")
        return None if self._score is None else self._score(predictions)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        self.tracked.log_figure(figure, artifact_file)


@contextmanager
def _job_device(cfg: DictConfig) -> Iterator[tuple[str, dict[str, Any]]]:
    """The closed-form device and the Lightning Trainer kwargs (less tlrun's own ``select`` and ``jobs_per_gpu``),
    held for the block. ``accelerator: auto`` takes the GPU when there is one; without a GPU the run falls back to
    the CPU in 32-bit precision. A one-GPU trainer claims a GPU no other tlrun job holds (:mod:`tlrun.devices`).
    Several devices (``trainer=ddp``) train a deep method with Lightning DDP, one process per device; closed-form
    methods compute in this process, on the first device (:func:`tlrun.distributed.configure`)."""
    import torch

    from tlrun.devices import claimed_gpu, visible_gpu_ids, wants_one_gpu
    from tlrun.distributed import configure

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
    trainer = configure(trainer, cfg.method.name, cfg.method.get("family"), device)
    if device == "cpu" or not wants_one_gpu(trainer):
        yield device, trainer
        return

    def waiting() -> None:
        print("tlrun: every GPU is held by other tlrun jobs; waiting for one to free", flush=True)

    with claimed_gpu(visible_gpu_ids(), jobs_per_gpu, on_wait=waiting) as index:
        torch.cuda.set_device(index)
        trainer["devices"] = [index]
        yield f"cuda:{index}", trainer


def _features(plan: Plan, domain: Domain, device: str) -> Domain:
    """A closed-form method's inputs: the domain as is, or features extracted by the frozen backbone (cached).

    Arrays were preprocessed when loaded; image files are, once the backbone has turned them into features.
    """
    cfg = plan.cfg
    if cfg.backbone.name == "identity" and not domain.is_images:
        return domain
    from tlrun.backbones.extract import extract_features
    from tlrun.data import preprocess

    features = extract_features(
        backbone_cfg=plan.backbone_cfg,
        domain=domain,
        dataset_name=cfg.dataset.name,
        preprocess=str(cfg.dataset.get("preprocess", "none")),
        cache_dir=Path(str(cfg.cache_dir)).expanduser() / "features",
        device=device,
    )
    if domain.is_images:
        features = preprocess.apply(str(cfg.dataset.get("preprocess", "none")), features)
    return dataclasses.replace(domain, X=features, image_shape=None)


def _input_shape(domain: Domain) -> tuple[int, ...] | None:
    """The per-sample shape a backbone receives (``None``: image files, whose shape the backbone sets)."""
    if domain.is_images:
        return None
    return tuple(domain.image_shape) if domain.image_shape else (domain.X.shape[1],)


def _build_deep_method(plan: Plan, source: Domain) -> Any:
    """A deep method needs its backbone, sized by the loaded data."""
    backbone = construct(lambda: instantiate(plan.backbone_cfg, input_shape=_input_shape(source)), "backbone")
    return construct(lambda: instantiate(plan.cfg.method, backbone=backbone), "method")


def task_name(cfg: DictConfig) -> str:
    """``source->target``, or ``source->unseen`` in ``zeroshot`` (whose target is the unseen classes)."""
    target = "unseen" if cfg.scenario.name == "zeroshot" else cfg.dataset.get("target", "")
    return f"{cfg.dataset.get('source', '')}->{target}"


def _tags(cfg: DictConfig, weights_run: str | None = None) -> dict[str, str]:
    """The run's tags; model selection by target accuracy is marked ``selection.oracle=true``; a backbone that
    starts from an earlier run's weights names that run (``lineage.weights_run``)."""
    import sklearn
    import torch

    import tlrun
    from tlrun.tracking import git_commit

    tags = {
        "method": cfg.method.name,
        "dataset": cfg.dataset.name,
        "scenario": cfg.scenario.name,
        "source": str(cfg.dataset.get("source", "")),
        "target": str(cfg.dataset.get("target", "")),
        "backbone": cfg.backbone.name,
        "seed": str(cfg.seed),
        "selection": str(cfg.trainer.get("select", "last")),
        "version.tlrun": tlrun.__version__,
        "version.torch": torch.__version__,
        "version.sklearn": sklearn.__version__,
        "threads": str(torch.get_num_threads()),
    }
    if tags["selection"] == "oracle":
        tags["selection.oracle"] = "true"
    if weights_run:
        tags["lineage.weights_run"] = weights_run
    commit = git_commit(Path(__file__).resolve().parent)
    if commit:
        tags["git_commit"] = commit
    tags.update(_sweep_tags())
    return tags


def _sweep_tags() -> dict[str, str]:
    """Tags that tie the runs of one ``--multirun`` together (empty for a single run): the sweep folder, the
    job's number, and the link to the sweep's parent run (see :mod:`tlrun.tracking.sweeps`)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from tlrun.tracking.sweeps import PARENT_TAG, parent_of_job
    from tlrun.tracking import sweep_tag

    if not HydraConfig.initialized():
        return {}
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return {}
    parent = parent_of_job()
    return {"sweep": sweep_tag(hydra_cfg.sweep.dir), "sweep_job": str(hydra_cfg.job.num)} | ({PARENT_TAG: parent} if parent else {})


@dataclass(frozen=True)
class LoadedData:
    """The domains a run needs, read and checked before its MLflow run opens (a bad file opens no run)."""

    #: The source and target domains (``None`` in ``zeroshot``).
    pair: tuple[Domain, Domain] | None = None
    #: The labeled scenarios' separate test domain, when the dataset has one.
    target_test: Domain | None = None
    #: The seen/unseen split of a ``zeroshot`` run.
    zeroshot: ZeroShotDomains | None = None

    def domains(self) -> tuple[Domain, ...]:
        if self.zeroshot is not None:
            return self.zeroshot.domains()
        return (*self.pair, *([self.target_test] if self.target_test is not None else []))


def load_data(plan: Plan) -> LoadedData:
    """Read every domain the scenario needs and check it: readable, consistent, every image decodable (cached by
    content under ``<cache_dir>/verified_images``), shaped for the backbone. Raises
    :class:`~tlrun.data.base.DataError` naming the file and what to do."""
    from tlrun.data.images import verify_images
    from tlrun.data.shapes import check_backbone_input

    dataset, scenario = plan.dataset, plan.cfg.scenario.name
    if scenario == "zeroshot":
        loaded = LoadedData(zeroshot=dataset.load_zeroshot())
    else:
        target_test = dataset.load_target_test() if scenario in LABELED_TARGET_SCENARIOS else None
        loaded = LoadedData(pair=dataset.load_pair(), target_test=target_test)
    for domain in loaded.domains():
        check_backbone_input(plan.backbone_cfg, domain)
        verify_images(domain, Path(str(plan.cfg.cache_dir)).expanduser())
    return loaded


def _split_data(plan: Plan, loaded: LoadedData, tracked: Any, feature_device: str | None) -> tuple[TrainingData, EvaluationData, Domain]:
    """Split the loaded data as the scenario says; closed-form methods (``feature_device`` set) get features.

    Returns the training and evaluation data and a domain whose samples are of the training kind (it sizes a
    deep method's backbone). The data files' checksums become run tags.
    """
    cfg, scenario = plan.cfg, plan.cfg.scenario
    as_features = (lambda domain: _features(plan, domain, feature_device)) if feature_device else (lambda domain: domain)
    augment = str(getattr(plan.dataset, "augment", "none"))
    source_val_fraction = float(cfg.dataset.get("source_val_fraction", 0.0))
    if loaded.zeroshot is not None:
        domains = loaded.zeroshot
        domains = dataclasses.replace(
            domains, **{key: as_features(domain) for key, domain in zip(("train", "test_seen", "test_unseen"), domains.domains())}
        )
        # The zero-shot target is the unseen classes (digits: under the source's shift), whatever dataset.target says.
        tracked.set_tags({"target": domains.test_unseen.name, "unseen": ",".join(domains.classes[k] for k in domains.unseen)}
                         | ({"unseen_split": domains.split_rule} if domains.split_rule else {}))
        training, evaluation = split_zeroshot(domains, seed=cfg.seed, source_val_fraction=source_val_fraction, augment=augment)
        source = domains.train
    else:
        source, target = (as_features(domain) for domain in loaded.pair)
        training, evaluation = split(
            source,
            target,
            scenario.name,
            seed=cfg.seed,
            source_val_fraction=source_val_fraction,
            target_labels_per_class=scenario.get("target_labels_per_class"),
            target_label_fraction=scenario.get("target_label_fraction"),
            target_val_fraction=float(scenario.get("target_val_fraction", 0.0)),
            target_test=loaded.target_test,
            target_test_fraction=float(scenario.get("target_test_fraction", 0.0)),
            augment=augment,
        )
    tracked.set_tags({f"data.sha256.{name}": digest for d in loaded.domains() for name, digest in d.checksums.items()}
                     | {"protocol": evaluation.protocol})
    return training, evaluation, source


@dataclass(frozen=True)
class RunOutcome:
    """What a job returns to Hydra (and its sweeper): the MLflow run and its final metrics."""

    run_id: str
    #: The run's metrics, latest values (``target_acc``, ``source_acc``, ``select.*``, ``selected.*``...).
    metrics: dict[str, float]
    #: True when a FINISHED run of the same config existed and nothing ran (a relaunched sweep).
    skipped: bool = False


def run(cfg: DictConfig) -> float:
    """Run one composed config; returns the target accuracy (a fraction)."""
    return run_job(cfg).metrics["target_acc"]


#: The run tag naming a deep run's resumable checkpoint (deleted when the run finishes).
CHECKPOINT_TAG = "checkpoint"


def _checkpoint_file(cfg: DictConfig, run_id: str) -> Path:
    """Where a deep run writes its resumable checkpoint: ``<cache_dir>/checkpoints/<run id>/last.ckpt``."""
    return Path(str(cfg.cache_dir)).expanduser() / "checkpoints" / run_id / "last.ckpt"


def _discard_checkpoint(checkpoint: Path, tracked: Any) -> None:
    """After the run: a FINISHED run needs no checkpoint, and one that stopped before its first has none to resume
    from; either way its folder goes, and the run's checkpoint tag with it. An interrupted run keeps both."""
    if tracked.status != "FINISHED" and checkpoint.is_file():
        return
    shutil.rmtree(checkpoint.parent, ignore_errors=True)
    try:
        tracked.delete_tag(CHECKPOINT_TAG)
    except TlrunError as error:  # the store failed: the run's own end has said so, or says so now
        print(f"tlrun: the run's checkpoint tag could not be removed: {error}", file=sys.stderr)


def _resumed_config(cfg: DictConfig) -> DictConfig:
    """``resume=<run id>``: the interrupted run's own config (its ``config.yaml`` artifact), tracked into this
    command's store, after checking that the run stopped before finishing and that its checkpoint is there."""
    import tempfile

    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    from tlrun.tracking import PROCESS_TAG, configured_uri, open_client, process_alive

    run_id, uri = str(cfg.resume), configured_uri(cfg)
    try:
        record = open_client(uri, create=False).get_run(run_id)
    except MlflowException:
        raise TlrunError(f"resume={run_id}: the MLflow store {uri} has no such run (set logger.tracking_uri to the "
                         "store the run was tracked in)") from None
    if record.info.status == "FINISHED":
        raise TlrunError(f"resume={run_id}: the run already FINISHED; there is nothing to resume")
    if record.info.status == "RUNNING" and process_alive(record.data.tags.get(PROCESS_TAG, "")):
        raise TlrunError(f"resume={run_id}: the run is still RUNNING (process {record.data.tags[PROCESS_TAG]}); stop it "
                         "first (Ctrl-C ends it KILLED)")
    checkpoint = record.data.tags.get(CHECKPOINT_TAG)
    if not checkpoint:
        raise TlrunError(f"resume={run_id}: the run has no checkpoint. Deep methods write one after every epoch "
                         "(checkpoints=true); a closed-form run is simply run again")
    if not Path(checkpoint).is_file():
        raise TlrunError(f"resume={run_id}: its checkpoint {checkpoint} is gone (was the cache_dir cleaned, or is "
                         "this another machine?); run it again instead")
    with tempfile.TemporaryDirectory() as scratch:
        stored = OmegaConf.load(download_artifacts(run_id=run_id, artifact_path="config.yaml", tracking_uri=uri,
                                                   dst_path=scratch))
    # The store is data, not code: anyone who can write its artifacts could name any callable as a _target_.
    tree = OmegaConf.to_container(stored, resolve=True)
    refused = foreign_targets(tree)
    if refused:
        raise TlrunError(f"resume={run_id}: refused: the run's stored config.yaml names {', '.join(refused)}, which "
                         "none of tlrun's configs does (was the artifact edited?); nothing was built or run")
    resumed = OmegaConf.create(tree)
    with open_dict(resumed):
        resumed.logger = cfg.logger
        resumed.resume = run_id
    return resumed


def run_job(cfg: DictConfig) -> RunOutcome:
    """Run one composed config into a new MLflow run, unless a relaunched sweep finds it FINISHED already;
    with ``resume=<run id>``, continue that interrupted deep run from its last checkpoint, into the same run."""
    from tlrun.tracking.sweeps import HASH_TAG, config_hash, note_job, record_failed_before_run, reuse_finished

    resume = str(cfg.resume) if cfg.get("resume") else None
    try:
        plan = preflight(_resumed_config(cfg) if resume else cfg)
    except TlrunError as error:  # no run opens: the sweep's parent keeps the message
        record_failed_before_run(cfg, str(error))
        raise
    cfg = plan.cfg
    from tlrun import distributed

    if distributed.is_worker(cfg):  # a process DDP started for rank > 0 (trainer=ddp): it only joins the training
        distributed.join_training(plan)
        return RunOutcome("", {})

    digest = config_hash(cfg)
    note_job(cfg, digest)
    earlier = None if resume else reuse_finished(cfg, digest)
    if earlier is not None:
        print(f"tlrun: skipped: run {earlier.info.run_id} of this config already FINISHED (skip_finished=false reruns it)")
        return RunOutcome(earlier.info.run_id, dict(earlier.data.metrics), skipped=True)
    from tlrun.evaluation import evaluate, print_summary
    from tlrun.tracking import TrackedRun, flatten, interrupts_stop_the_run

    deep = cfg.method.family == "deep"
    # The data is read and checked, and closed-form methods are built (what only their constructor checks fails
    # here), before a run opens; deep methods need the data to size their network.
    try:
        loaded = load_data(plan)
        method = None if deep else construct(lambda: instantiate(cfg.method), "method")
    except TlrunError as error:  # as in preflight: no run opens, the sweep's parent keeps the message
        record_failed_before_run(cfg, str(error))
        raise
    resolved = OmegaConf.to_container(cfg, resolve=True)
    run_name = f"{cfg.method.name} {task_name(cfg)}"
    with (
        ExitStack() as after_the_run,  # left last, once the run has its final status
        interrupts_stop_the_run(),
        distributed.rank_zero(cfg),
        _job_device(cfg) as (device, trainer_kwargs),
        limited_threads(run_threads(cfg.get("threads", "auto"), current_launcher())),
        TrackedRun(
            experiment=cfg.logger.experiment, tracking_uri=cfg.logger.tracking_uri, run_name=run_name,
            tags={"resumed": time.strftime("%Y-%m-%d %H:%M:%S")} if resume else _tags(cfg, plan.weights_run) | {HASH_TAG: digest},
            run_id=resume,
        ) as tracked,
    ):
        if not resume:
            tracked.log_params(flatten(resolved) | ({"lineage.weights_run": plan.weights_run} if plan.weights_run else {}))
            tracked.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        import torch

        checkpoint = _checkpoint_file(cfg, tracked.run_id) if deep and cfg.get("checkpoints", True) else None
        if checkpoint is not None:
            after_the_run.callback(_discard_checkpoint, checkpoint, tracked)
        placement = distributed.tags(trainer_kwargs)  # trainer.strategy=ddp, trainer.world_size=N
        if checkpoint is not None and not resume:
            placement[CHECKPOINT_TAG] = str(checkpoint)
        if device != "cpu":
            placement["device"] = f"{device} ({torch.cuda.get_device_name(device)})"
        tracked.set_tags(placement)
        started = time.perf_counter()  # after the GPU claim: duration_s leaves out any wait for a free GPU
        seed_everything(cfg.seed)

        training, evaluation, source = _split_data(plan, loaded, tracked, None if deep else device)
        tracked.log_params({"data.n_source_train": str(len(training.source)), "data.n_target_train": str(len(training.target)),
                            "data.n_target_val": str(len(training.target_val) if training.target_val else 0),
                            "data.n_target_test": str(len(evaluation.target_test))})

        from tlrun.methods.base import RunContext

        select = str(cfg.trainer.get("select", "last"))
        reporter = EvaluationReporter(tracked, target_scorer(evaluation), oracle=select == "oracle")
        context = RunContext(
            reporter=reporter, device=device, seed=cfg.seed, trainer=trainer_kwargs,
            lightning_logger=tracked.lightning_logger, select=select, diagnostics=bool(cfg.get("diagnostics", False)),
            checkpoint=checkpoint, resume_from=checkpoint if resume else None,
        )
        if deep:
            method = _build_deep_method(plan, source)
        method.fit(training, context)
        if cfg.get("save_model", True) and isinstance(method, torch.nn.Module):
            tracked.log_model(method)
        # Deep methods log their epochs through Lightning's logger, which the reporter does not see.
        final_step = max(reporter.last_step, int(getattr(method, "epochs", 0)))
        result = evaluate(method, evaluation, training.source, training.classes, tracked, step=final_step)
        tracked.log_metrics({"duration_s": time.perf_counter() - started}, final_step)
    print_summary(cfg, result, tracked)
    return RunOutcome(tracked.run_id, dict(tracked.client.get_run(tracked.run_id).data.metrics))
