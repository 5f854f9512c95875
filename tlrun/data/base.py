"""Containers shared by every dataset family.

A dataset loads one *domain* at a time into a :class:`Domain`: the samples (a feature matrix, pixel rows, or
image file paths) with their labels. What a method may see of those labels is decided later, by the scenario
(:mod:`tlrun.scenarios`); datasets know nothing of scenarios beyond the list they can serve.

This module imports numpy only, so that configuration errors (a missing file, an unknown domain) are raised
before torch is imported.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from tlrun.data import preprocess
from tlrun.errors import DataError

#: Training-time augmentation policies (``dataset.augment``), applied by :mod:`tlrun.backbones.inputs`:
#: ``none``; ``crop_flip`` (random crop + horizontal flip, for object photos); ``affine`` (small random rotation,
#: translation and scale, no flip, for digits).
AUGMENTATIONS = ("none", "crop_flip", "affine")


@dataclass(frozen=True)
class Domain:
    """All samples of one domain, as loaded from disk.

    Attributes:
        name: the domain's name (``amazon``, ``rotate``...).
        X: the samples: an ``(n, d)`` array, or a tuple of ``n`` image paths. Feature data are float64 after
            preprocessing (the closed-form methods compute in float64); pixel rows (``digits``) may be float32.
        y: ``(n,)`` int64 labels in ``0..C-1``, consistent across the domains of a dataset.
        classes: class names; ``classes[k]`` is the name of label ``k``.
        image_shape: ``(C, H, W)`` when each row of an array ``X`` is a flattened image (so that a CNN backbone
            can view it as one); ``None`` for plain features and for image paths.
        checksums: sha256 of every file the domain was read from, by file name (logged as run tags).
        files: where the domain was read from (data files, or the folder of its images), named in error messages.
        domain_names: for several domains pooled into one (:func:`pool_domains`), their names, in order; empty for
            a single domain.
        domain_index: for a pooled domain, ``(n,)`` int64: sample ``i`` comes from ``domain_names[domain_index[i]]``;
            ``None`` for a single domain.
    """

    name: str
    X: np.ndarray | tuple[str, ...]
    y: np.ndarray
    classes: tuple[str, ...]
    image_shape: tuple[int, int, int] | None = None
    checksums: dict[str, str] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    domain_names: tuple[str, ...] = ()
    domain_index: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.X) != len(self.y):
            raise DataError(f"domain {self.name!r}: {len(self.X)} samples but {len(self.y)} labels")

    @property
    def is_images(self) -> bool:
        """True when the samples are image files rather than arrays."""
        return not isinstance(self.X, np.ndarray)

    def __len__(self) -> int:
        return len(self.y)

    def describe(self) -> str:
        """The domain's name and where it was read from, for messages: ``amazon (/data/amazon.npz)``."""
        return f"{self.name} ({', '.join(self.files)})" if self.files else repr(self.name)


def domain_names(value: Any) -> tuple[str, ...]:
    """``dataset.source`` (or another domain option) as a tuple of names: one name, or a list of names (several
    source domains, pooled); empty when unset."""
    if value is None or isinstance(value, str):
        return (value,) if value else ()
    return tuple(str(name) for name in value)


def source_label(value: Any) -> str:
    """How a run names its source: the domain's name, or the pooled sources' names joined by ``+``
    (``original+rotate``): the ``source`` tag, and the source side of the task name."""
    return "+".join(domain_names(value))


def join_samples(*parts: np.ndarray | tuple[str, ...]) -> np.ndarray | tuple[str, ...]:
    """The samples of each part, in order (arrays, or tuples of image paths)."""
    return np.concatenate(parts) if isinstance(parts[0], np.ndarray) else tuple(x for part in parts for x in part)


def take(X: np.ndarray | tuple[str, ...], index: np.ndarray) -> np.ndarray | tuple[str, ...]:
    """The samples ``index`` of ``X``; ``X`` itself when that is all of them in order (no copy: at 100,000 × 2,048
    float64 a domain is 1.6 GB)."""
    if len(index) == len(X) and np.array_equal(index, np.arange(len(X))):
        return X
    if isinstance(X, np.ndarray):
        return X[index]
    return tuple(X[i] for i in index)


def pool_domains(domains: Sequence[Domain]) -> Domain:
    """Several domains of one dataset as one (multi-source DA): the samples concatenated in the order given, each
    sample's origin kept in :attr:`Domain.domain_index`. One domain is returned as it is.

    The domains must share the label space and the feature size (:class:`DataError` otherwise).
    """
    if len(domains) == 1:
        return domains[0]
    first = domains[0]
    for other in domains[1:]:
        if other.classes != first.classes or other.image_shape != first.image_shape:
            raise DataError(f"source domains {first.name!r} and {other.name!r} use different label spaces or image "
                            "shapes; pool domains of one dataset")
    check_same_features(*(("source", domain) for domain in domains))
    return Domain(
        name=source_label([domain.name for domain in domains]),
        X=join_samples(*(domain.X for domain in domains)),
        y=np.concatenate([domain.y for domain in domains]),
        classes=first.classes,
        image_shape=first.image_shape,
        checksums={name: digest for domain in domains for name, digest in domain.checksums.items()},
        files=tuple(dict.fromkeys(path for domain in domains for path in domain.files)),
        domain_names=tuple(domain.name for domain in domains),
        domain_index=np.repeat(np.arange(len(domains), dtype=np.int64), [len(domain) for domain in domains]),
    )


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def image_shape_option(value: Any) -> tuple[int, int, int]:
    """``dataset.image_shape`` as ``(C, H, W)``: three positive integers, else :class:`DataError`."""
    try:
        shape = tuple(int(size) for size in value)
        valid = len(shape) == 3 and all(size > 0 and size == given for size, given in zip(shape, value))
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise DataError(f"dataset.image_shape must be three positive integers [C, H, W], got {value!r}")
    return shape


def join_problems(problems: Sequence[str]) -> str:
    """Several problems as one message: ``2 problems: (1) ...; (2) ...`` (one problem: its message)."""
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} problems: " + "; ".join(f"({k}) {text}" for k, text in enumerate(problems, start=1))


def caught(*checks: Callable[[], Any]) -> list[str]:
    """Run every check; the message of each :class:`DataError` raised, in order."""
    found = []
    for check in checks:
        try:
            check()
        except DataError as error:
            found.append(str(error))
    return found


def unknown_domains(dataset: str, available: tuple[str, ...], *domains: str) -> list[str]:
    """A message naming the available domains for each of ``domains`` that is unknown (empty names skipped)."""
    return [
        f"dataset {dataset!r} has no domain {domain!r}; choose one of: {', '.join(available) or 'none found'}"
        for domain in dict.fromkeys(domains)
        if domain and domain not in available
    ]


def check_domains(dataset: str, available: tuple[str, ...], *domains: str) -> None:
    """Raise :class:`DataError` naming the available domains when one of ``domains`` is unknown."""
    problems = unknown_domains(dataset, available, *domains)
    if problems:
        raise DataError(problems[0])


def present_classes(domain: Domain) -> list[str]:
    """Names of the classes that have at least one sample in ``domain``, in label order."""
    return [domain.classes[label] for label in np.unique(domain.y)]


def check_same_classes(source: Domain, target: Domain) -> None:
    """Raise :class:`DataError` when the classes present in ``source`` and ``target`` differ.

    The message lists the class names found only in the source and only in the target.
    """
    if source.classes != target.classes:
        raise DataError(
            f"source {source.name!r} and target {target.name!r} use different label spaces "
            f"({len(source.classes)} and {len(target.classes)} classes); load both from one dataset"
        )
    in_source, in_target = present_classes(source), present_classes(target)
    if in_source != in_target:
        only_source = [name for name in in_source if name not in in_target]
        only_target = [name for name in in_target if name not in in_source]
        raise DataError(
            f"source {source.name!r} and target {target.name!r} do not contain the same classes: "
            f"only in source: {', '.join(only_source) or 'none'}; "
            f"only in target: {', '.join(only_target) or 'none'}"
        )


def check_same_features(*domains: tuple[str, Domain]) -> None:
    """Raise :class:`DataError` when array domains (given as ``(role, domain)``) differ in feature size.

    The message names each domain's role, name, files and size; image files have no size and are skipped.
    """
    arrays = [(role, domain) for role, domain in domains if not domain.is_images]
    if len({domain.X.shape[1] for _, domain in arrays}) > 1:
        sizes = ", ".join(f"{role} {domain.describe()} has {domain.X.shape[1]} features" for role, domain in arrays)
        raise DataError(
            f"{sizes}: the domains must be described by the same features (one extractor, one "
            "dimension); use files of one release, or extract the features of every domain the same way"
        )


def check_pair(source: Domain, target: Domain) -> None:
    """What :meth:`TransferDataset.load_pair` checks: the same classes (:func:`check_same_classes`), the same
    feature size (:func:`check_same_features`), and at least two classes, each a :class:`DataError`."""
    check_same_classes(source, target)
    check_same_features(("source", source), ("target", target))
    present = present_classes(target)
    if len(present) < 2:
        raise DataError(
            f"target {target.describe()} holds a single class ({present[0] if present else 'none'}): there is "
            "nothing to classify; check the labels (dataset.y_key) or choose another target"
        )


#: The name of the class that gathers the target samples of classes outside the source's (open-set DA).
UNKNOWN_CLASS = "unknown"


@dataclass(frozen=True)
class ClassCarving:
    """How a task's class sets were carved out of a dataset by ``dataset.target_classes`` (``partial``: the
    target keeps only some of the source's classes) or ``dataset.source_classes`` (``open_set``: the source keeps
    only some classes, the target's other samples become one unknown class).

    Attributes:
        kind: ``partial`` or ``open_set``.
        source: the names of the classes the source keeps, in label order after carving.
        target: the names of the classes the target keeps (``open_set``: the known ones, then ``unknown``).
    """

    kind: str
    source: tuple[str, ...]
    target: tuple[str, ...]

    @property
    def unknown_label(self) -> int | None:
        """``open_set``: the label of the unknown class, ``K`` (the known classes are ``0..K-1``); else ``None``."""
        return len(self.source) if self.kind == "open_set" else None

    def tags(self) -> dict[str, str]:
        """The run's tags: ``class_sets`` (``partial`` or ``open_set``), ``classes.source`` and ``classes.target``."""
        return {"class_sets": self.kind, "classes.source": ",".join(self.source),
                "classes.target": ",".join(self.target)}


def class_ids(option: str, values: Any, classes: tuple[str, ...]) -> list[int]:
    """The label ids named by ``dataset.<option>``, in the order given. A string is a class name; an integer ``v``
    is the class id ``v`` (``0 <= v < C``) or the class named ``str(v)``, whichever exists, and when both exist and
    are different classes (names ``1..10`` on ids ``0..9``) it is refused as ambiguous, the message naming both
    readings (a quoted value, ``'1'``, is always a name). :class:`DataError` too when the list is empty, repeats a
    class or names none of the dataset's."""
    if isinstance(values, (str, int)) or not values:
        raise DataError(f"dataset.{option} must be a non-empty list of class ids or names, got {values!r}")
    ids = []
    for value in values:
        by_name = classes.index(str(value)) if isinstance(value, (str, int)) and str(value) in classes else None
        by_id = value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(classes) else None
        if by_id is not None and by_name not in (None, by_id):
            raise DataError(f"dataset.{option}: {value} could be the class id {value} (named {classes[by_id]!r}) or "
                            f"the class named {str(value)!r} (id {by_name}); write class names as quoted strings, e.g. "
                            f"\"dataset.{option}=['{value}']\" for the class named {str(value)!r}, "
                            f"\"dataset.{option}=['{classes[by_id]}']\" for the id {value}")
        found = by_id if by_name is None else by_name
        if found is None:
            raise DataError(f"dataset.{option}: no class {value!r}; the dataset's classes are the ids "
                            f"0..{len(classes) - 1} or the names {', '.join(classes)}")
        ids.append(found)
    if len(set(ids)) < len(ids):
        raise DataError(f"dataset.{option} names a class twice: {list(values)}")
    return ids


def _keep(domain: Domain, mask: np.ndarray, relabel: np.ndarray | None = None,
          classes: tuple[str, ...] | None = None) -> Domain:
    """``domain`` reduced to the samples of ``mask`` (a pooled domain's sample origins too), label ``k`` renamed
    ``relabel[k]`` in the label space ``classes`` (``None``: labels and label space kept)."""
    index = np.flatnonzero(mask)
    y = domain.y[index] if relabel is None else relabel[domain.y[index]]
    return replace(domain, X=take(domain.X, index), y=y.astype(np.int64), classes=domain.classes if classes is None else classes,
                   domain_index=None if domain.domain_index is None else domain.domain_index[index])


def carve_classes(
    source: Domain, target: Domain, source_classes: Any = None, target_classes: Any = None
) -> tuple[Domain, Domain, ClassCarving | None]:
    """Carve a partial or an open-set task out of a loaded pair (both options ``None``: the pair as it is).

    - ``target_classes`` (partial DA): the target keeps the samples of these classes only; every class keeps its
      label, and the source keeps all its classes.
    - ``source_classes`` (open-set DA): the source keeps the samples of these classes only, relabeled ``0..K-1``
      in sorted label order; the target keeps every sample (with ``target_classes`` too, those of its classes,
      which must include the source's: OSBP's protocol leaves some classes out of both domains), those of the
      other classes relabeled ``K`` (:data:`UNKNOWN_CLASS`).

    Raises :class:`DataError` when a list is empty or names an unknown class, a partial target class is absent
    from the source, the partial target keeps fewer than two classes, an open-set target lacks a source class
    (universal DA, not supported) or no target sample lies outside the open-set source's classes.
    """
    if source_classes is None and target_classes is None:
        return source, target, None
    classes = source.classes
    if target_classes is not None:
        kept = class_ids("target_classes", target_classes, classes)
        target = _keep(target, np.isin(target.y, kept))
    if source_classes is None:
        missing = sorted(set(kept) - set(np.unique(source.y).tolist()))
        if missing:
            raise DataError(f"dataset.target_classes: the source {source.name!r} has no sample of class "
                            f"{', '.join(classes[k] for k in missing)}; partial DA keeps target classes of the source")
        if len(np.unique(target.y)) < 2:
            raise DataError(f"dataset.target_classes={list(target_classes)} leaves the target {target.name!r} fewer "
                            "than two classes with samples: nothing to classify")
        return source, target, ClassCarving("partial", tuple(present_classes(source)), tuple(present_classes(target)))
    known = sorted(class_ids("source_classes", source_classes, classes))
    if target_classes is not None and not set(known) <= set(kept):
        raise DataError("dataset.target_classes beside dataset.source_classes (open-set DA) must include every source "
                        "class: a target lacking some (universal DA) is not supported")
    if len(known) < 2:
        raise DataError(f"dataset.source_classes={list(source_classes)}: open-set DA needs at least two known classes")
    if np.all(np.isin(target.y, known)):
        raise DataError(f"dataset.source_classes={list(source_classes)}: every sample of the target {target.name!r} "
                        "is of these classes, so there is no unknown class; leave some of its classes out")
    relabel = np.full(len(classes), len(known), dtype=np.int64)
    relabel[known] = np.arange(len(known))
    names = tuple(classes[k] for k in known)
    source = _keep(source, np.isin(source.y, known), relabel, names)
    target = _keep(target, np.ones(len(target), dtype=bool), relabel, (*names, UNKNOWN_CLASS))
    return source, target, ClassCarving("open_set", names, target.classes)


def check_class_sets(source: Domain, target: Domain, carving: ClassCarving | None) -> None:
    """:func:`check_same_classes`, unless the task was carved (:func:`carve_classes`): then the difference its kind
    allows, a :class:`DataError` otherwise: ``partial``, the target's classes among the source's; ``open_set``, the
    target's label space the source's plus the unknown class, and no source sample of the unknown class."""
    if carving is None:
        check_same_classes(source, target)
        return
    if carving.kind == "partial":
        if source.classes != target.classes or not set(present_classes(target)) <= set(present_classes(source)):
            raise DataError(f"partial DA: the classes of the target {target.name!r} must be among the source's")
    elif target.classes != (*source.classes, UNKNOWN_CLASS) or np.any(source.y >= len(source.classes)):
        raise DataError(f"open-set DA: the target {target.name!r} must hold the source's classes and {UNKNOWN_CLASS!r}")


@dataclass(frozen=True)
class ZeroShotDomains:
    """What a dataset serving ``zeroshot`` loads: seen classes to train on, and the two GZSL test sets.

    All three domains share one label space (``classes``: every class, seen and unseen, in label order).

    Attributes:
        train: samples of the seen classes that may train (the "trainval" part).
        test_seen: held-out samples of the seen classes (GZSL's seen test set); may be empty.
        test_unseen: samples of the unseen classes (the ZSL test set, and GZSL's unseen test set).
        unseen: label ids of the unseen classes; no sample of ``train`` carries one.
        attributes: ``(C, a)`` side information, row ``k`` describing class ``k`` (attribute vectors), or
            ``None`` when the dataset has none (label-embedding methods embed ``classes`` names instead).
        split_rule: where the seen/unseen split comes from, in a few words (the run's ``unseen_split`` tag), e.g.
            digits' ``0 of 5 (seeded rule, ...)`` or ``explicit``, zsl_xlsa's ``proposed split: val``; ``None``
            when the dataset does not say.
    """

    train: Domain
    test_seen: Domain
    test_unseen: Domain
    unseen: tuple[int, ...]
    attributes: np.ndarray | None = None
    split_rule: str | None = None

    @property
    def classes(self) -> tuple[str, ...]:
        return self.train.classes

    def __post_init__(self) -> None:
        check_same_features(("train", self.train), ("test_seen", self.test_seen), ("test_unseen", self.test_unseen))

    def domains(self) -> tuple[Domain, Domain, Domain]:
        return self.train, self.test_seen, self.test_unseen


class TransferDataset:
    """Base of every dataset config's ``_target_``: a family of domains sharing one label space.

    The constructor only records the configuration (no I/O, no torch), so that the runner can call
    :meth:`check` and report a missing or misnamed dataset before anything heavy is imported.

    Args:
        root: folder holding the data files (``None`` for embedded data).
        source: the source domain's name, or a list of names: several sources, pooled by :meth:`load_pair` with
            each sample's domain kept (multi-source DA; :attr:`sources` lists them, :attr:`source` joins them).
        target: the target domain's name.
        preprocess: per-domain preprocessing applied by :meth:`load` (see :mod:`tlrun.data.preprocess`).
        source_val_fraction: fraction of the source held out for validation (``source_acc``); 0 trains on all
            source samples, as the papers' protocols do.
        augment: the training-time augmentation policy, one of :data:`AUGMENTATIONS`; it needs images (pixel rows
            or image files), see :meth:`augmentable`.
    """

    #: The dataset's name as used on the command line (``dataset=<name>``).
    name: str = ""
    #: Domains that exist in this dataset.
    domains: tuple[str, ...] = ()
    #: True when samples are image files (they need a backbone that reads images).
    holds_images: bool = False
    #: True when a domain's source and target samples are disjoint draws (digits' halves), so that a domain may be
    #: both in any scenario (see :func:`tlrun.scenarios.check_target_not_a_source`).
    disjoint_roles: bool = False
    #: A domain whose samples are the ``finetune`` test set (instead of the target's unlabeled rest), or
    #: ``None``; datasets with official train/test splits let their config set it.
    target_test: str | None = None

    def __init__(
        self,
        root: str | None = None,
        source: str = "",
        target: str = "",
        preprocess: str = "none",
        source_val_fraction: float = 0.0,
        augment: str = "none",
    ) -> None:
        self.root = Path(root).expanduser() if root else None
        #: The source domains' names (one, or several to pool).
        self.sources = domain_names(source)
        #: The source's name as a run reports it: the pooled names joined by ``+``.
        self.source = source_label(source)
        self.target = target
        self.preprocess = preprocess
        self.source_val_fraction = source_val_fraction
        self.augment = augment

    def augmentable(self) -> bool:
        """True when the samples are images (pixel rows or files), so that ``augment`` can apply to them."""
        return True

    def wanted_domains(self) -> tuple[str, ...]:
        """The domains a run reads: the sources, the target and :attr:`target_test` (when set)."""
        return tuple(dict.fromkeys(domain for domain in (*self.sources, self.target, self.target_test) if domain))

    def problems(self) -> list[str]:
        """Every problem found without reading the data (unknown domains, bad options, missing files), each a
        message that says where to put the data and where to get it; empty when the data can be loaded.

        Subclasses add theirs to the base's (unknown domains, then :meth:`option_problems`).
        """
        return unknown_domains(self.name, self.domains, *self.wanted_domains()) + self.option_problems()

    def option_problems(self) -> list[str]:
        """The problems of the options every dataset has (the sources, preprocess, source_val_fraction, augment)."""
        found = caught(lambda: preprocess.get(self.preprocess))
        repeated = sorted({name for name in self.sources if self.sources.count(name) > 1})
        if repeated:
            found.append(f"dataset.source lists {', '.join(repeated)} more than once; name each source domain once")
        if not self.sources:
            found.append(f"dataset.source is empty: name a source domain of {self.name!r} (or a list of them)")
        try:
            fraction_ok = 0.0 <= float(self.source_val_fraction) < 1.0
        except (TypeError, ValueError):
            fraction_ok = False
        if not fraction_ok:
            found.append(f"dataset.source_val_fraction must be in [0, 1), got {self.source_val_fraction!r}")
        if self.augment not in AUGMENTATIONS:
            found.append(f"unknown dataset.augment {self.augment!r}; choose one of: {', '.join(AUGMENTATIONS)}")
        elif self.augment != "none" and not self.augmentable():
            found.append(
                f"dataset.augment={self.augment} needs images, but dataset {self.name!r} holds feature vectors "
                "without an image shape; set dataset.augment=none"
            )
        return found

    def check(self) -> None:
        """Fail fast, without reading the data, when the domains or files are not there: one
        :class:`DataError` telling every problem of :meth:`problems`."""
        problems = self.problems()
        if problems:
            raise DataError(join_problems(problems))

    def load(self, domain: str) -> Domain:
        """Read and preprocess one domain."""
        raise NotImplementedError

    def load_as(self, domain: str, role: str) -> Domain:
        """Read ``domain`` for its ``role`` in the run, ``source`` or ``target``: :meth:`load` (a dataset that
        draws sources and targets differently from one domain, as digits' disjoint halves, overrides it)."""
        return self.load(domain)

    def load_pair(self) -> tuple[Domain, Domain]:
        """Load the source (several sources pooled, :func:`pool_domains`) and the target domain, and check that
        each source contains the target's classes.

        Both domains share the dataset's label space (``Domain.classes``), but a domain may lack some classes
        (a partial file, or mismatched releases). When the classes *present* in a source and the target differ, a
        :class:`DataError` lists, by class name, those only in the source and those only in the target. Domains
        of different feature sizes, or a target of a single class, are errors too (see :func:`check_pair`).
        """
        sources = [self.load_as(name, "source") for name in self.sources]
        target = self.load_as(self.target, "target")
        for source in sources:
            check_pair(source, target)
        return pool_domains(sources), target

    def load_zeroshot(self) -> ZeroShotDomains:
        """The seen-class training samples, the seen and unseen test samples, and the class side information
        (scenario ``zeroshot``). Datasets that serve ``zeroshot`` override it."""
        raise DataError(f"dataset {self.name!r} has no zero-shot split (no seen/unseen classes, no class side information)")

    def load_target_test(self) -> Domain | None:
        """The :attr:`target_test` domain, or ``None`` when the dataset has none."""
        return self.load(self.target_test) if self.target_test else None
