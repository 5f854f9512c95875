"""Label availability: which splits carry labels, and which methods and datasets fit which scenario.

The four cells of transfer learning (source × target labels):

=============  ==========================  ========================================
source\\target  labeled                     unlabeled
=============  ==========================  ========================================
labeled        ``finetune``                ``da``, ``zeroshot`` (target classes unseen)
unlabeled      ``selftaught``              ``selftaught_clustering``
=============  ==========================  ========================================

Between ``finetune`` and ``da`` lies ``semi_da``: a few labeled target samples per class, the rest unlabeled.
Domain generalisation (``dg``) is ``da`` without the target: one or more labeled source domains train, and the
target domain, never seen at training time, is only tested on.

:func:`split` turns two loaded domains into what a method may train on (:class:`TrainingData`) and what only
the evaluation reads (:class:`EvaluationData`). Labels a scenario withholds are not hidden: they are never put
into the training containers at all (:class:`Unlabeled` has no label field).

Imports numpy only: compatibility errors are raised before torch is imported.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from tlrun.data.base import (ClassCarving, Domain, ZeroShotDomains, check_class_sets, check_same_classes,
                             source_label, take)
from tlrun.errors import TlrunError


@dataclass(frozen=True)
class ScenarioSpec:
    """One cell of the table: what is labeled on each side."""

    name: str
    source: str
    target: str
    summary: str


SCENARIOS: dict[str, ScenarioSpec] = {
    spec.name: spec
    for spec in (
        ScenarioSpec("da", "labeled", "unlabeled", "domain adaptation: same classes, shifted inputs"),
        ScenarioSpec("semi_da", "labeled", "a few labeled, the rest unlabeled", "semi-supervised domain adaptation"),
        ScenarioSpec("finetune", "labeled", "labeled (a few)", "fine-tuning, layer transfer, multi-task"),
        ScenarioSpec("dg", "labeled (one or more domains)", "unseen at training time",
                     "domain generalisation: test on a domain no sample of which trains"),
        ScenarioSpec("zeroshot", "labeled", "unseen classes", "classes linked by attributes or label embeddings"),
        ScenarioSpec("selftaught", "unlabeled", "labeled (a few)", "self-taught learning"),
        ScenarioSpec("selftaught_clustering", "unlabeled", "unlabeled", "self-taught clustering"),
    )
}


class ScenarioError(TlrunError):
    """A method, dataset and scenario that do not fit together. The message names what would fit."""


@dataclass(frozen=True)
class Labeled:
    """Samples with their labels (``X`` as in :class:`~tlrun.data.base.Domain`); for pooled sources, ``domains[i]``
    is sample ``i``'s source domain (an index into :attr:`TrainingData.source_domains`), else ``None``."""

    X: np.ndarray | tuple[str, ...]
    y: np.ndarray
    domains: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Unlabeled:
    """Samples without labels: the labels were never copied here."""

    X: np.ndarray | tuple[str, ...]

    def __len__(self) -> int:
        return len(self.X)


@dataclass(frozen=True)
class ClassDescriptions:
    """Side information of some classes (``zeroshot``): which classes, their names and attribute vectors.

    ``labels[k]`` is the dataset's label id of row ``k``; ``attributes`` is ``(len(labels), a)`` or ``None`` when
    the dataset has no attributes (label-embedding methods embed ``names`` instead).
    """

    labels: tuple[int, ...]
    names: tuple[str, ...]
    attributes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, labels: tuple[int, ...] | list[int]) -> "ClassDescriptions":
        """The descriptions of ``labels`` (dataset label ids), in that order."""
        rows = [self.labels.index(label) for label in labels]
        return ClassDescriptions(
            labels=tuple(int(label) for label in labels),
            names=tuple(self.names[row] for row in rows),
            attributes=None if self.attributes is None else self.attributes[rows],
        )


@dataclass(frozen=True)
class TrainingData:
    """Everything a method may train on.

    ``source_val`` is the held-out labeled part of the source (for label-free model selection), or ``None``;
    ``target_val`` (``finetune``, ``selftaught``) is the part of the labeled target pool held out for early
    stopping and checkpoint selection, or ``None``; ``target_labeled`` (``semi_da``) the few labeled target
    samples beside the unlabeled ``target``; ``augment`` names the dataset's training-time augmentation
    policy (see :mod:`tlrun.backbones.inputs`).

    In ``zeroshot`` the training world holds the seen classes only: ``num_classes``, ``classes`` and the labels
    count the seen classes (label ``k`` is the class ``seen_classes.labels[k]`` of the dataset),
    ``seen_classes`` describes them, and ``target`` is empty (inductive zero-shot learning: no unseen sample,
    label or description reaches training).
    """

    source: Labeled | Unlabeled
    target: Labeled | Unlabeled
    num_classes: int
    classes: tuple[str, ...]
    image_shape: tuple[int, int, int] | None = None
    source_val: Labeled | None = None
    augment: str = "none"
    target_val: Labeled | None = None
    seen_classes: ClassDescriptions | None = None
    #: ``semi_da``: the few labeled target samples (``target`` holds the unlabeled rest).
    target_labeled: Labeled | None = None
    #: Several source domains pooled (multi-source): their names, indexed by ``source.domains``; empty for one.
    source_domains: tuple[str, ...] = ()
    #: Open-set DA: the label ``K`` (``num_classes``) a target sample of none of the source's classes gets, by the
    #: method's own unknown output or the runner's rule (:func:`tlrun.metrics.open_set_labels`); ``None`` otherwise.
    #: Part of the task, not of the labels: which samples are unknown stays with the runner.
    unknown_label: int | None = None


@dataclass(frozen=True)
class EvaluationData:
    """Held by the runner, never passed to a method's ``fit``.

    ``target_test`` is what ``target_acc`` is measured on. In ``da`` it is the whole target domain, the same
    samples as the unlabeled training target in the same order (the transductive protocol of the papers).
    ``source_val`` is a held-out part of the source, or ``None`` when the whole source trains.

    ``zeroshot``: ``target_test`` holds the unseen classes' test samples, ``seen_test`` the held-out samples of
    the seen classes (GZSL), ``classes`` describes every class and ``unseen`` lists the unseen ones (the ZSL
    candidates, whether or not each has test samples); labels are the dataset's ids. In
    ``selftaught_clustering`` the predictions are cluster ids, scored after matching clusters to classes.
    """

    target_test: Labeled
    source_val: Labeled | None
    target_is_training_target: bool
    scenario: str = "da"
    seen_test: Labeled | None = None
    classes: ClassDescriptions | None = None
    unseen: tuple[int, ...] = ()
    #: ``da`` with part of the target held out: the training target's labels, for the transductive figure beside
    #: the held-out one.
    transductive: Labeled | None = None
    #: ``dg`` with ``trainer.select=oracle``: the part of the test domain whose accuracy chooses the epoch (the
    #: rest is ``target_test``); read by the runner's reporter only, never handed to ``fit``.
    oracle_val: Labeled | None = None
    #: Open-set DA (``dataset.source_classes``): the label ``K`` of the target's unknown samples, the known classes
    #: being ``0..K-1``; ``None`` when every target class is a source class.
    unknown_label: int | None = None

    @property
    def protocol(self) -> str:
        """How the target is scored: ``transductive`` (the target samples the method adapted to, unlabeled: the
        papers' ``da`` protocol, and clustering) or ``held_out`` (samples no ``fit`` saw)."""
        return "transductive" if self.target_is_training_target else "held_out"


#: Scenarios that accept several source domains (``dataset.source=[a,b]``), pooled with each sample's domain kept.
MULTI_SOURCE_SCENARIOS = ("da", "semi_da", "dg")


def check_sources(scenario: str, sources: tuple[str, ...]) -> None:
    """Raise :class:`ScenarioError` when several sources are given to a scenario that takes one."""
    if len(sources) > 1 and scenario not in MULTI_SOURCE_SCENARIOS:
        raise ScenarioError(
            f"dataset.source lists {len(sources)} domains ({', '.join(sources)}), but scenario {scenario!r} takes one "
            f"source; several sources are pooled in: {', '.join(MULTI_SOURCE_SCENARIOS)}"
        )


def check_target_not_a_source(scenario: str, sources: tuple[str, ...], target: str, separate_test: bool) -> None:
    """Raise :class:`ScenarioError` when the target domain is also a labeled source whose samples the run scores:
    their labels would train the method scored on them (``da``, ``semi_da``; ``finetune`` unless a separate test
    domain, ``dataset.target_test``, is scored). ``dg`` refuses it in :func:`check_generalisation`; an unlabeled
    source (``selftaught``...) trains no label."""
    scored = scenario in ("da", "semi_da") or (scenario == "finetune" and not separate_test)
    if scored and target in sources:
        raise ScenarioError(
            f"{scenario}: dataset.target {target!r} is also a source, so the labels of the samples it is scored on "
            "would train it; choose a target that is not in dataset.source"
            + ("" if scenario != "finetune" else ", or score a separate test domain (dataset.target_test)")
        )


def check_generalisation(sources: tuple[str, ...], target: str, val_domain: str | None = None) -> None:
    """``dg``: the test domain must not be a source (it would train), and the leave-one-domain-out validation
    domain (``val_domain``, ``trainer.select=lodo``) must be one of several sources (one must still train)."""
    if target in sources:
        raise ScenarioError(
            f"dg: the test domain {target!r} is also a source (dataset.source={list(sources)}), so it would train; "
            "domain generalisation tests on a domain no sample of which trains: take it out of dataset.source"
        )
    if val_domain is not None and (val_domain not in sources or len(sources) < 2):
        raise ScenarioError(
            f"dg: scenario.val_domain={val_domain!r} must be one of several sources (dataset.source={list(sources)}): "
            "it is held out of training to choose the epoch (trainer.select=lodo), and another source must train"
        )


def natural_scenario(method_scenarios: list[str]) -> str:
    """The scenario a method runs in when none is given: the first one it declares."""
    return method_scenarios[0]


def check_fit(
    method: str,
    scenario: str,
    dataset: str,
    dataset_scenarios: list[str],
    method_scenarios: dict[str, list[str]],
    datasets: dict[str, list[str]] | None = None,
) -> None:
    """Raise :class:`ScenarioError` unless ``method`` supports ``scenario`` and ``dataset`` can serve it.

    ``method_scenarios`` maps every known method to the scenarios it declares, ``datasets`` every known dataset
    to the scenarios it serves; they are used to name the methods and datasets that would fit.
    """
    if method not in method_scenarios:
        raise ScenarioError(f"unknown method {method!r}; known methods: {', '.join(sorted(method_scenarios))}")
    if scenario not in SCENARIOS:
        raise ScenarioError(f"unknown scenario {scenario!r}; known scenarios: {', '.join(SCENARIOS)}")
    supported = method_scenarios[method]
    if scenario not in supported:
        fitting = sorted(name for name, scens in method_scenarios.items() if scenario in scens)
        raise ScenarioError(
            f"method {method!r} does not fit scenario {scenario!r} "
            f"({SCENARIOS[scenario].source} source, {SCENARIOS[scenario].target} target): it supports "
            f"{', '.join(supported)}. Use scenario={supported[0]}"
            + (f", or a method for {scenario}: {', '.join(fitting)}." if fitting else f"; no method supports {scenario!r} yet.")
        )
    if scenario not in dataset_scenarios:
        serving = sorted(name for name, scens in (datasets or {}).items() if scenario in scens)
        raise ScenarioError(
            f"dataset {dataset!r} cannot serve scenario {scenario!r}: it serves {', '.join(dataset_scenarios)}."
            + (f" Datasets that serve {scenario}: {', '.join('dataset=' + name for name in serving)}." if serving else "")
        )


#: The option that carves each kind of task (:func:`~tlrun.data.base.carve_classes`).
CARVING_OPTIONS = {"partial": "dataset.target_classes", "open_set": "dataset.source_classes"}


def check_carving_fits(kind: str | None, scenario: str, method: str, family: str | None, open_set_methods: list[str],
                       needs: str | None = None) -> None:
    """Raise :class:`ScenarioError` unless a task carved as ``kind`` (``partial`` or ``open_set``, see
    :func:`~tlrun.data.base.carve_classes`; ``None``: not carved) fits ``scenario`` and ``method``: partial DA runs
    in ``da`` and ``semi_da``, open-set DA in ``da`` with a deep method (one of ``open_set_methods``), whose class
    probabilities the label-free unknown rule reads unless the method has an unknown output of its own; a method
    whose config ``needs`` a kind (``class_sets``: OSBP's ``open_set``) runs that kind only."""
    if needs is not None and kind != needs:
        raise ScenarioError(f"method {method!r} is made for {needs.replace('_', '-')} DA only, and this task is "
                            f"{'closed-set' if kind is None else kind.replace('_', '-')}: carve one with "
                            f"{CARVING_OPTIONS[needs]}=[...] (e.g. \"{CARVING_OPTIONS[needs]}=[0,1,2,3,4,5]\" on the "
                            f"digits), or choose another method (e.g. dann)")
    if kind is None:
        return
    option = CARVING_OPTIONS[kind]
    scenarios = ("da", "semi_da") if kind == "partial" else ("da",)
    if scenario not in scenarios:
        raise ScenarioError(f"{option} carves {'a partial' if kind == 'partial' else 'an open-set'} DA task, which runs in scenario "
                            f"{' or '.join(scenarios)} (a domain-adaptation method), not {scenario}")
    if kind == "open_set" and family != "deep":
        raise ScenarioError(f"open-set DA ({option}) needs a deep method, whose class probabilities (or own unknown "
                            f"output) tell the unknown samples by; {method!r} is {family}: use one of "
                            f"{', '.join(open_set_methods)}")


def _holdout(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random (train, held-out) index split with ``round(fraction · n)`` held out."""
    order = rng.permutation(n)
    n_out = int(round(fraction * n))
    return np.sort(order[n_out:]), np.sort(order[:n_out])


def _source_holdout(source: Domain, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_holdout` of the source; of each pooled source domain separately (``round(fraction · n_d)`` of each
    held out, so that validation covers every training domain)."""
    if source.domain_index is None:
        return _holdout(len(source), fraction, rng)
    kept, held = [], []
    for members in (np.flatnonzero(source.domain_index == d) for d in range(len(source.domain_names))):
        train, val = _holdout(len(members), fraction, rng)
        kept.append(members[train])
        held.append(members[val])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def labeled_part(domain: Domain, index: np.ndarray) -> Labeled:
    """The samples ``index`` of ``domain`` with their labels (and their source domains, when pooled)."""
    domains = None if domain.domain_index is None else domain.domain_index[index]
    return Labeled(take(domain.X, index), domain.y[index], domains)


def _per_class_holdout(y: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held-out) indices with ``round(fraction · n_c)`` of each class ``c`` held out, at least one, and at
    least one kept."""
    if not 0.0 < fraction < 1.0:
        raise ScenarioError(f"dataset.target_test_fraction must be in [0, 1), got {fraction}")
    kept, held = [], []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        if len(members) < 2:
            raise ScenarioError(f"da: target class {label} has {len(members)} sample, so none can be held out and "
                                "adapted to at once; set dataset.target_test_fraction=0")
        n_out = min(max(1, int(round(fraction * len(members)))), len(members) - 1)
        held.append(members[:n_out])
        kept.append(members[n_out:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


#: Scenarios whose target is a labeled pool drawn from the target domain (``scenario.target_labels_per_class``...).
LABELED_TARGET_SCENARIOS = ("finetune", "selftaught")


def check_target_labels(
    per_class: int | None,
    fraction: float | None,
    val_fraction: float = 0.0,
    separate_test: bool = False,
    scenario: str = "finetune",
) -> None:
    """A labeled target pool needs exactly one of a count per class (≥ 1) and a fraction (in (0, 1); up to 1
    when the test set is a separate domain), and a validation fraction in [0, 1)."""
    if (per_class is None) == (fraction is None):
        raise ScenarioError(
            f"{scenario}: set exactly one of scenario.target_labels_per_class, scenario.target_label_fraction "
            "(the other =null)"
        )
    if per_class is not None and (not isinstance(per_class, int) or per_class < 1):
        raise ScenarioError(f"{scenario}: scenario.target_labels_per_class must be an integer >= 1, got {per_class!r}")
    if fraction is not None and not (0.0 < float(fraction) <= 1.0 if separate_test else 0.0 < float(fraction) < 1.0):
        raise ScenarioError(
            f"{scenario}: scenario.target_label_fraction must be in (0, {'1]' if separate_test else '1)'}, got {fraction!r}"
            + ("" if separate_test else " (1 needs a separate test domain, dataset.target_test)")
        )
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ScenarioError(f"{scenario}: scenario.target_val_fraction must be in [0, 1), got {val_fraction!r}")


def _labeled_target_index(
    y: np.ndarray,
    per_class: int | None,
    fraction: float | None,
    val_fraction: float,
    rng: np.random.Generator,
    separate_test: bool,
    scenario: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the labeled target pool, split into (training, validation): ``per_class`` samples of every
    class, or ``fraction`` of each class; ``floor(val_fraction · count)`` of each class's pool validate."""
    check_target_labels(per_class, fraction, val_fraction, separate_test, scenario)
    train, val = [], []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        count = per_class if per_class is not None else max(1, int(round(fraction * len(members))))
        if count > len(members) or (count == len(members) and not separate_test):
            raise ScenarioError(
                f"{scenario}: class {label} has {len(members)} target samples, so {count} labeled ones leave none "
                "to test on; lower scenario.target_labels_per_class or scenario.target_label_fraction"
            )
        n_val = int(np.floor(val_fraction * count))
        if val_fraction > 0 and n_val == 0:
            raise ScenarioError(
                f"{scenario}: scenario.target_val_fraction={val_fraction} of {count} labeled samples of class {label} "
                "holds out none; raise the fraction or the labels per class (or set it to 0: no validation split)"
            )
        val.append(members[:n_val])
        train.append(members[n_val:count])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def split(
    source: Domain,
    target: Domain,
    scenario: str,
    *,
    seed: int,
    source_val_fraction: float = 0.0,
    target_labels_per_class: int | None = None,
    target_label_fraction: float | None = None,
    target_val_fraction: float = 0.0,
    target_test: Domain | None = None,
    target_test_fraction: float = 0.0,
    augment: str = "none",
    val_domain: str | None = None,
    oracle_fraction: float = 0.0,
    carving: ClassCarving | None = None,
) -> tuple[TrainingData, EvaluationData]:
    """Split two loaded domains into training and evaluation data for ``scenario`` (``zeroshot``: see
    :func:`split_zeroshot`).

    - ``da``: labeled source (less ``source_val_fraction`` held out), the whole target *without* labels;
      evaluation on the whole target (transductive, the papers' protocol). ``target_test_fraction`` > 0 holds
      that fraction of each target class out of training instead: evaluation on those samples (held out), and
      the transductive figure on the rest.
    - ``semi_da``: labeled source, a labeled pool of the target as in ``finetune`` (no validation part), the rest
      of the target unlabeled; evaluation on that rest (the samples adapted to without their labels).
    - ``finetune``: labeled source, a labeled pool of the target (per class or a fraction of each class, drawn
      from ``seed``) of which ``target_val_fraction`` of each class is held out as ``target_val`` (early
      stopping, checkpoint selection); evaluation on the rest of the target, or on ``target_test`` when the
      dataset has a separate test domain (then the pool may be the whole target). No choice reads the test set.
    - ``selftaught``: the target as in ``finetune``, but the source *without* labels (its classes need not be
      the target's).
    - ``selftaught_clustering``: source and target without labels; evaluation clusters the whole target.
    - ``dg``: the labeled sources as in ``da`` (``source_val_fraction`` of each held out), or, with ``val_domain``
      (leave-one-domain-out selection), that source domain held out whole as ``source_val`` and the others
      training; the training target is empty and the whole target domain tests (held out), less
      ``oracle_fraction`` of each class kept apart as ``oracle_val`` for an oracle's choice of epoch.

    ``carving`` (:func:`~tlrun.data.base.carve_classes`) lets the class sets differ: a partial target, or an open-set
    one whose unknown samples the evaluation knows by :attr:`EvaluationData.unknown_label`; the method trains
    among the source's classes.
    """
    if scenario not in ("da", "semi_da", "finetune", "selftaught", "selftaught_clustering", "dg"):
        raise ScenarioError(
            f"scenario {scenario!r} has no two-domain split"
            + ("; zeroshot data are split by split_zeroshot" if scenario == "zeroshot" else "")
        )
    labeled_source = scenario in ("da", "semi_da", "finetune", "dg")
    if labeled_source:
        check_class_sets(source, target, carving)
    if target_test is not None:
        if target_test.name == target.name:
            raise ScenarioError(
                f"{scenario}: the test domain {target_test.name!r} is the target domain itself, so the labeled pool "
                "would be drawn from the test set; set dataset.target_test to another folder, or to null"
            )
        check_same_classes(target, target_test)
    rng = np.random.default_rng(seed)
    source_val: Labeled | None = None
    if scenario == "dg":
        check_generalisation(source.domain_names or (source.name,), target.name, val_domain)
    if val_domain is not None:
        source, source_val = _leave_domain_out(source, val_domain)
        training_source: Labeled | Unlabeled = labeled_part(source, np.arange(len(source)))
    elif labeled_source:
        train_index, val_index = _source_holdout(source, source_val_fraction, rng)
        training_source: Labeled | Unlabeled = labeled_part(source, train_index)
        if len(val_index):
            source_val = labeled_part(source, val_index)
    else:
        training_source = Unlabeled(source.X)

    target_val: Labeled | None = None
    transductive: Labeled | None = None
    target_labeled: Labeled | None = None
    oracle_val: Labeled | None = None
    if scenario in LABELED_TARGET_SCENARIOS:
        labeled, validating = _labeled_target_index(
            target.y, target_labels_per_class, target_label_fraction, target_val_fraction, rng,
            target_test is not None, scenario,
        )
        training_target: Labeled | Unlabeled = Labeled(take(target.X, labeled), target.y[labeled])
        if len(validating):
            target_val = Labeled(take(target.X, validating), target.y[validating])
        if target_test is None:
            rest = np.setdiff1d(np.arange(len(target)), np.concatenate([labeled, validating]))
            test = Labeled(take(target.X, rest), target.y[rest])
        else:
            test = Labeled(target_test.X, target_test.y)
        aligned = False
    elif scenario == "semi_da":
        labeled, _ = _labeled_target_index(target.y, target_labels_per_class, target_label_fraction, 0.0, rng, False,
                                           scenario)
        rest = np.setdiff1d(np.arange(len(target)), labeled)
        target_labeled = Labeled(take(target.X, labeled), target.y[labeled])
        training_target = Unlabeled(take(target.X, rest))
        test = Labeled(take(target.X, rest), target.y[rest])
        aligned = True
    elif scenario == "dg":  # no target sample trains: the training target is empty
        training_target = Unlabeled(take(target.X, np.arange(0)))
        tested, oracle_index = (_per_class_holdout(target.y, oracle_fraction, rng) if oracle_fraction > 0
                                else (np.arange(len(target)), np.arange(0)))
        test = Labeled(take(target.X, tested), target.y[tested])
        oracle_val = Labeled(take(target.X, oracle_index), target.y[oracle_index]) if len(oracle_index) else None
        aligned = False
    elif scenario == "da" and target_test_fraction > 0:
        adapted, held_out = _per_class_holdout(target.y, target_test_fraction, rng)
        training_target = Unlabeled(take(target.X, adapted))
        transductive = Labeled(take(target.X, adapted), target.y[adapted])
        test = Labeled(take(target.X, held_out), target.y[held_out])
        aligned = False
    else:  # da, selftaught_clustering: the whole target, unlabeled, is also the test set
        training_target = Unlabeled(target.X)
        test = Labeled(target.X, target.y)
        aligned = True

    training = TrainingData(
        source=training_source,
        target=training_target,
        num_classes=len(target.classes if carving is None else source.classes),
        classes=target.classes if carving is None else source.classes,
        image_shape=target.image_shape,
        source_val=source_val,
        augment=augment,
        target_val=target_val,
        target_labeled=target_labeled,
        source_domains=source.domain_names,
        unknown_label=None if carving is None else carving.unknown_label,
    )
    evaluation = EvaluationData(
        target_test=test, source_val=source_val, target_is_training_target=aligned, scenario=scenario,
        transductive=transductive, oracle_val=oracle_val,
        unknown_label=None if carving is None else carving.unknown_label,
    )
    return training, evaluation


def _leave_domain_out(source: Domain, name: str) -> tuple[Domain, Labeled]:
    """The pooled ``source`` less its domain ``name`` (the others re-indexed, a single one left unpooled), and that
    domain's samples with their labels (leave-one-domain-out validation)."""
    held = source.domain_names.index(name)
    kept_names = tuple(other for other in source.domain_names if other != name)
    kept = np.flatnonzero(source.domain_index != held)
    index = source.domain_index[kept]
    remaining = replace(
        source, name=source_label(kept_names), X=take(source.X, kept), y=source.y[kept],
        domain_names=kept_names if len(kept_names) > 1 else (),
        domain_index=np.where(index > held, index - 1, index) if len(kept_names) > 1 else None,
    )
    out = np.flatnonzero(source.domain_index == held)
    return remaining, Labeled(take(source.X, out), source.y[out])


def split_zeroshot(
    domains: ZeroShotDomains, *, seed: int, source_val_fraction: float = 0.0, augment: str = "none"
) -> tuple[TrainingData, EvaluationData]:
    """Split a dataset's zero-shot domains into a training world of seen classes and the GZSL evaluation.

    Training holds the seen classes' samples (less ``source_val_fraction`` held out for ``source_acc``), relabeled
    ``0..S-1`` in the order of ``seen_classes``, and the descriptions of those classes only; its target is
    empty. Evaluation holds the unseen test samples (``target_test``), the held-out seen samples
    (``seen_test``), and the descriptions of every class, with the dataset's label ids.
    """
    train, names = domains.train, domains.classes
    unseen = tuple(sorted(int(label) for label in domains.unseen))
    if not unseen:
        raise ScenarioError(f"zeroshot: dataset domain {train.name!r} declares no unseen class")
    leaked = sorted(set(np.unique(train.y).tolist()) & set(unseen))
    if leaked:
        raise ScenarioError(
            f"zeroshot: the training samples contain unseen classes {', '.join(names[k] for k in leaked)}; "
            "a zero-shot split must keep every unseen class out of training"
        )
    outside = sorted(set(np.unique(domains.test_unseen.y).tolist()) - set(unseen))
    if outside:
        raise ScenarioError(
            f"zeroshot: the unseen test set holds seen classes {', '.join(names[k] for k in outside)}"
        )
    attributes = None if domains.attributes is None else np.asarray(domains.attributes, dtype=np.float64)
    if attributes is not None and attributes.shape[0] != len(names):
        raise ScenarioError(
            f"zeroshot: {attributes.shape[0]} attribute rows for {len(names)} classes; one row per class expected"
        )
    every_class = ClassDescriptions(labels=tuple(range(len(names))), names=names, attributes=attributes)
    seen = tuple(sorted(np.unique(train.y).tolist()))
    local = np.full(len(names), -1, dtype=np.int64)
    local[list(seen)] = np.arange(len(seen))
    rng = np.random.default_rng(seed)
    train_index, val_index = _holdout(len(train), source_val_fraction, rng)
    source = Labeled(take(train.X, train_index), local[train.y[train_index]])
    source_val = Labeled(take(train.X, val_index), local[train.y[val_index]]) if len(val_index) else None
    seen_classes = every_class.subset(seen)
    training = TrainingData(
        source=source,
        target=Unlabeled(take(train.X, np.arange(0))),
        num_classes=len(seen),
        classes=seen_classes.names,
        image_shape=train.image_shape,
        source_val=source_val,
        augment=augment,
        seen_classes=seen_classes,
    )
    evaluation = EvaluationData(
        target_test=Labeled(domains.test_unseen.X, domains.test_unseen.y),
        source_val=source_val,
        target_is_training_target=False,
        scenario="zeroshot",
        seen_test=Labeled(domains.test_seen.X, domains.test_seen.y) if len(domains.test_seen) else None,
        classes=every_class,
        unseen=unseen,
    )
    return training, evaluation
