"""The checks of the method classes' constructor arguments, importable without torch.

A check ``check_<class>(name, *, <settings>, **_)`` raises the ``ValueError`` its class's constructor raises for a
bad setting (``name``: the class name the message starts with). :func:`check_settings` runs the checks of a class
and of the classes it extends, so :func:`tlrun.run.preflight` rejects a bad ``method.<key>`` before torch is
imported. Each check takes the keyword arguments of its class's constructor, without defaults: the method's composed
config (``conf/method/<name>.yaml``) is the recipe, its constructor's defaults are its values (a test keeps them
equal), and every caller passes every setting (the pre-flight the whole config, a constructor all of its own); each
check ignores the others (``**_``). Checks that need the data or the backbone stay in the classes.

Registration: none by hand. A class's own checks are the checks of this module its ``__init__`` calls (imported by
name at the top of its module: ``from tlrun.methods.settings import check_dann``); its checks are the own checks of
the classes it extends, bases first, then its own (:func:`checks`). Both are read from the source of tlrun's modules
(:mod:`ast`; :func:`class_chain`, :func:`own_checks`), never by importing them: a method config's ``_target_`` names
a class that imports torch. So a new class with new settings writes ``check_<class>`` here and calls it from its
``__init__``; a class without new settings (``DDC``, ``SourceOnly``) or a new YAML on an existing class needs
nothing. Classes outside tlrun have no checks here: their constructors check.

The checks' keyword annotations declare the type of every setting of every method config (a test walks them):
:func:`check_settings` rejects a value of another type, naming ``method.<key>``, before the checks compare values.

The choices of the settings (:data:`KERNELS`, :data:`CLASSIFIERS`, :data:`OPTIMIZERS`, ...) live here too.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping
from functools import lru_cache
from inspect import Parameter, isfunction, signature
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from tlrun.config import options_entry

#: Kernels of the MMD subspace methods (JDA, TCA).
KERNELS: tuple[str, ...] = ("primal", "linear", "rbf")
#: How the MMD subspace methods and KMM compute the ``rbf`` kernel: exactly (``none``, ``n × n``), through a Nyström feature
#: map of ``rank`` landmarks (``nystroem``, ``n × rank``), or exactly up to :data:`AUTO_EXACT_LIMIT` samples and by
#: Nyström above (``auto``).
KERNEL_APPROXIMATIONS: tuple[str, ...] = ("none", "nystroem", "auto")
#: ``approx=auto`` keeps the exact ``rbf`` kernel up to this many samples (source + target): its ``n × n`` matrices
#: take 0.8 GB each in float64 there, and each iteration decomposes one densely (``O(n³)``).
AUTO_EXACT_LIMIT = 10_000
#: Samples the median heuristic of an approximated ``rbf`` kernel (KMM's ``gamma=null``) reads: the distinct pairs of
#: 4,096 samples drawn with the run's seed (8.4 million distances, 0.4 GB in float64) estimate the median of all
#: pairs, whose ``n²`` distances would take 80 GB at 100,000 samples.
MEDIAN_SAMPLE = 4096
#: How CORAL estimates the covariances: Ledoit–Wolf shrinkage (``ledoit_wolf``), ``+ r (tr C / d) I`` (``trace``) or
#: ``+ r I`` (``absolute``, the paper's).
CORAL_SHRINKAGES = ("ledoit_wolf", "trace", "absolute")
#: Kernels of KMM.
KMM_KERNELS = ("rbf", "linear")
#: The classifiers of :mod:`tlrun.methods.components.classifiers`, and those whose ``fit`` honours sample weights.
CLASSIFIERS: tuple[str, ...] = ("1nn", "logreg", "linear_svm")
WEIGHTING_CLASSIFIERS = ("logreg", "linear_svm")
OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("none", "cosine", "inv")
WARMUPS = ("none", "dann")
#: Representations a deep DA method can align, from the input to the output.
LAYERS = ("backbone", "features", "logits", "probabilities")
FREEZE_POLICIES = ("none", "all_but_head", "first_k", "last_k")
SHARINGS = ("input", "middle")
WEIGHTINGS = ("fixed", "uncertainty")
COLUMN2_INITS = ("random", "copy")
#: What the k-means baselines may learn their representation on.
REPRESENTATION_DATA = ("source", "source_and_target")
#: How self-taught clustering draws its initial clusters.
STC_INITS = ("kmeans", "random")
#: The variants of the attribute embedding (zsl_attribute): the notes' MLP and hinge, or ALE's bilinear form and loss.
ZSL_VARIANTS = ("notes", "ale")

Check = Callable[..., None]


class SettingTypeError(TypeError):
    """A method setting of a type its declaration does not allow; the message names ``method.<key>`` and the value."""


def check_settings(target: str, settings: Mapping[str, Any]) -> None:
    """Run the checks of the method class ``target`` (a ``_target_`` path) on its keyword arguments.

    First each setting's type (:func:`setting_types`; :class:`SettingTypeError`), then that every setting the checks
    take is given (the checks have no defaults: the config is the recipe), then the checks' values: raises what the
    class's constructor would, ``ValueError`` (or ``TypeError``) naming the bad setting. A class without checks
    (one from outside tlrun) passes; its constructor checks.
    """
    name = target.rpartition(".")[2]
    types = setting_types(target)
    for key, value in settings.items():
        if key in types and not _is_a(value, types[key]):
            raise SettingTypeError(f"method.{key}={as_written(value)}: {name}'s {key} must be {_described(types[key])}")
    missing = sorted(set(types) - set(settings))
    if missing:
        raise ValueError(
            f"{name}: the method config sets no {', '.join(missing)}; a method config sets every setting of its "
            "class (see conf/method/: a deep method includes a conf/method_base/ file with its defaults list)"
        )
    for check in checks(target):
        check(name, **settings)


@lru_cache(maxsize=None)
def setting_types(target: str) -> dict[str, Any]:
    """The type of each setting of the method class ``target``: the keyword annotations of its checks."""
    types: dict[str, Any] = {}
    for check in checks(target):
        hints = get_type_hints(check)
        types.update((key, hints[key]) for key, parameter in signature(check).parameters.items()
                     if parameter.kind is Parameter.KEYWORD_ONLY)
    return types


def _is_a(value: Any, kind: Any) -> bool:
    """Whether ``value`` is of the annotated type ``kind``: an int is no bool, a float a finite number (an int
    too), a list a list or tuple of its items' type, a Literal one of its values."""
    origin = get_origin(kind)
    if origin in (Union, UnionType):
        return any(_is_a(value, each) for each in get_args(kind))
    if origin is Literal:
        return any(type(value) is type(choice) and value == choice for choice in get_args(kind))
    if origin is list:
        return isinstance(value, (list, tuple)) and all(_is_a(item, get_args(kind)[0]) for item in value)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, origin or kind)


def _described(kind: Any) -> str:
    """What the annotated type ``kind`` allows, as a user writes it on the command line (``auto, true or false``)."""
    *most, last = _alternatives(kind)
    return f"{', '.join(most)} or {last}" if most else last


def _alternatives(kind: Any) -> list[str]:
    if get_origin(kind) in (Union, UnionType):
        return [alternative for each in get_args(kind) for alternative in _alternatives(each)]
    if get_origin(kind) is Literal or kind is bool:
        return [as_written(choice) for choice in get_args(kind) or (True, False)]
    if get_origin(kind) is list:
        return [f"a list [{_described(get_args(kind)[0])}, ...]"]
    return [{int: "an integer", float: "a finite number", str: "a string", NoneType: "null",
             Mapping: "a mapping {key: value, ...}"}[get_origin(kind) or kind]]


def as_written(value: Any) -> str:
    """``value`` as it is written on the command line (``true``, ``null``, ``[1, 2]``)."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, (list, tuple)):
        return f"[{', '.join(map(as_written, value))}]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key}: {as_written(item)}" for key, item in value.items()) + "}"
    return str(value)


#: A value of each kind the command line parses to, with the kinds of declared type that allow it (a Literal's
#: choices are no kind: ``abc`` is none of them; ``inf`` is no setting's, a float being finite).
COMMAND_LINE_VALUES: tuple[tuple[Any, tuple[Any, ...]], ...] = (
    ("abc", (str,)), (10.5, (float,)), (3, (int, float)), (True, (bool,)), (None, (NoneType,)), ([1, 2], (list,)),
    ({"a": 1}, (Mapping,)), (math.inf, ()),
)


def values_of_other_types(kind: Any) -> list[Any]:
    """The values of :data:`COMMAND_LINE_VALUES` of a kind that no alternative of the annotated type ``kind`` is:
    wrong-typed values, to test and fuzz the type checks with (independently of how they accept a value)."""
    alternatives = get_args(kind) if get_origin(kind) in (Union, UnionType) else (kind,)
    kinds = {get_origin(each) or each for each in alternatives}
    return [value for value, allowed_in in COMMAND_LINE_VALUES if not kinds & set(allowed_in)]


# ------------------------------------------------------------------------------------------ registration


def is_check(function: Any) -> bool:
    """Whether ``function`` is a check: ``(name, *, <settings>, **_)``, as every ``check_<class>`` of this module."""
    if not isfunction(function):
        return False
    parameters = list(signature(function).parameters.values())
    return (len(parameters) > 1 and parameters[0].name == "name" and parameters[-1].kind is Parameter.VAR_KEYWORD
            and all(parameter.kind is Parameter.KEYWORD_ONLY for parameter in parameters[1:-1]))


def checks(target: str) -> tuple[Check, ...]:
    """The checks of the class ``target``: the own checks of the classes it extends, then its own."""
    return tuple(check for each in class_chain(target) for check in own_checks(each))


@lru_cache(maxsize=None)
def class_chain(target: str) -> tuple[str, ...]:
    """The tlrun classes the class ``target`` extends, each after its bases, then ``target`` (``_target_`` paths);
    empty for a class no tlrun module defines. Read from the modules' source: no import."""
    definition = _class_definition(target)
    if definition is None:
        return ()
    names = _module_names(target.rpartition(".")[0])
    chain: list[str] = []
    for base in definition.bases:
        chain += [each for each in class_chain(_qualified(base, names)) if each not in chain]
    return (*chain, target)


@lru_cache(maxsize=None)
def own_checks(target: str) -> tuple[Check, ...]:
    """The checks of this module that the ``__init__`` of the class ``target`` calls, in the order it calls them."""
    definition = _class_definition(target)
    init = next((node for node in (definition.body if definition else ()) if isinstance(node, ast.FunctionDef)
                 and node.name == "__init__"), None)
    if init is None:
        return ()
    names = _module_names(target.rpartition(".")[0])
    called = [_qualified(node.func, names) for node in ast.walk(init) if isinstance(node, ast.Call)]
    own = [globals().get(path.rpartition(".")[2]) for path in called if path.rpartition(".")[0] == __name__]
    return tuple(dict.fromkeys(check for check in own if is_check(check)))


def _class_definition(target: str) -> ast.ClassDef | None:
    """The ``class`` statement of ``target`` in its module's source, if that module is tlrun's and defines it."""
    module, _, name = target.rpartition(".")
    tree = _module_source(module)
    classes = (node for node in tree.body if isinstance(node, ast.ClassDef)) if tree else ()
    return next((node for node in classes if node.name == name), None)


@lru_cache(maxsize=None)
def _module_source(module: str) -> ast.Module | None:
    """The parsed source of the tlrun module ``module``; ``None`` for another package's (or no file)."""
    package, _, rest = module.partition(".")
    if package != __name__.partition(".")[0] or not rest:
        return None
    path = Path(__file__).resolve().parents[1].joinpath(*rest.split("."))
    source = next((file for file in (path.with_suffix(".py"), path / "__init__.py") if file.is_file()), None)
    return ast.parse(source.read_text(encoding="utf-8")) if source else None


@lru_cache(maxsize=None)
def _module_names(module: str) -> dict[str, str]:
    """The dotted path each top-level name of ``module`` stands for: its classes and its (absolute) imports."""
    names: dict[str, str] = {}
    for node in _module_source(module).body:
        if isinstance(node, ast.ClassDef):
            names[node.name] = f"{module}.{node.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.partition(".")[0]
                names[bound] = alias.name if alias.asname else bound
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.update((alias.asname or alias.name, f"{node.module}.{alias.name}") for alias in node.names)
    return names


def _qualified(expression: ast.expr, names: Mapping[str, str]) -> str:
    """The dotted path a name or attribute (``DANN``, ``adaptation.DomainAdaptation``) of a module stands for."""
    head, dot, rest = ast.unparse(expression).partition(".")
    return names.get(head, head) + dot + rest


# ------------------------------------------------------------------------------------------ shared pieces


def check_kernel(kernel: str) -> None:
    """Raise ``ValueError`` naming the options unless ``kernel`` is one of :data:`KERNELS`."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of: {', '.join(KERNELS)}")


#: The options of each classifier of :mod:`tlrun.methods.components.classifiers`
#: (``classifier_options.<classifier>.<option>``), with their types; each must be positive.
CLASSIFIER_OPTIONS: dict[str, dict[str, type]] = {
    "1nn": {"max_block": int},
    "logreg": {"C": float, "max_iter": int, "seed": int},
    "linear_svm": {"C": float, "max_iter": int, "seed": int},
}


def chosen_classifier_options(classifier: str, options: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    """The options of ``classifier`` in a per-classifier mapping (``classifier_options``), after checking that the
    name and the mapping's keys are classifiers, and every entry's options their names, types and signs."""
    if classifier not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {classifier!r}; choose one of: {', '.join(CLASSIFIERS)}")
    chosen = options_entry(classifier, options, CLASSIFIERS, "classifier_options", "classifier", "{linear_svm: {C: 1.0e-4}}")
    for name, entry in dict(options or {}).items():
        if not isinstance(entry, Mapping):
            raise SettingTypeError(f"method.classifier_options.{name}={as_written(entry)}: must be a mapping {{option: value}}")
        for key, value in entry.items():
            where, known = f"method.classifier_options.{name}.{key}", CLASSIFIER_OPTIONS[name]
            if key not in known:
                raise ValueError(f"{where}: {name} has no option {key!r}; its options: {', '.join(known) or 'none'}")
            if not _is_a(value, known[key]):
                raise SettingTypeError(f"{where}={as_written(value)}: must be {_described(known[key])}")
            if key != "seed" and not value > 0:
                raise ValueError(f"{where}={as_written(value)}: must be positive")
    return chosen


def layer_names(method: str, layers: Any) -> tuple[str, ...]:
    """``layers`` as a tuple of known layer names (one name or a list), else a ValueError naming the options."""
    names = (layers,) if isinstance(layers, str) else tuple(layers)
    unknown = [name for name in names if name not in LAYERS]
    if not names or unknown:
        raise ValueError(f"{method}: layers must be one or more of {', '.join(LAYERS)}, got {list(names)}")
    return names


def _check_encoder(encoder: str, options_by_encoder: Mapping[str, Mapping[str, Any]] | None, what: str) -> None:
    """Build the encoder with its options: bad names, options and values fail (numpy only, no data)."""
    from tlrun.methods.components.representations import make_encoder, options_for

    make_encoder(encoder, **options_for(encoder, options_by_encoder, what))


def _is_number_at_least_0(value: Any) -> bool:
    return math.isfinite(float(value)) and float(value) >= 0


# ------------------------------------------------------------------------------------------ deep methods


def check_deep_method(
    name: str, *, epochs: int, batch_size: int, optimizer: str, lr: float, momentum: float, nesterov: bool,
    weight_decay: float, backbone_lr_mult: float | Literal["auto"], lr_schedule: str, bottleneck_dim: int,
    iterations_per_epoch: int | None, eval_batch_size: int, num_workers: int | Literal["auto"], report_every: int,
    patience: int | None, **_: Any,
) -> None:
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"{name}: optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"{name}: lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {lr_schedule!r}")
    if int(epochs) < 1 or int(batch_size) < 1 or int(eval_batch_size) < 1 or not lr > 0:
        raise ValueError(f"{name}: epochs, batch_size, eval_batch_size and lr must be positive")
    if not (_is_number_at_least_0(momentum) and _is_number_at_least_0(weight_decay)):
        raise ValueError(f"{name}: momentum and weight_decay must be numbers ≥ 0, got {momentum} and {weight_decay}")
    if nesterov and optimizer == "sgd" and not momentum > 0:
        raise ValueError(f"{name}: nesterov=true needs momentum > 0, got {momentum}")
    if int(report_every) < 0:
        raise ValueError(f"{name}: report_every must be ≥ 0, got {report_every}")
    if num_workers != "auto" and int(num_workers) < 0:
        raise ValueError(f"{name}: num_workers must be auto or a number of worker processes ≥ 0, got {num_workers}")
    if int(bottleneck_dim) < 0:
        raise ValueError(f"{name}: bottleneck_dim must be 0 (none) or positive, got {bottleneck_dim}")
    if iterations_per_epoch is not None and int(iterations_per_epoch) < 1:
        raise ValueError(f"{name}: iterations_per_epoch must be positive or null, got {iterations_per_epoch}")
    if patience is not None and int(patience) < 1:
        raise ValueError(f"{name}: patience must be a positive number of scored epochs or null, got {patience}")
    if backbone_lr_mult != "auto":
        try:
            float(backbone_lr_mult)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: backbone_lr_mult must be a number or auto, got {backbone_lr_mult!r}") from None


def check_domain_adaptation(name: str, *, transfer_weight: float, warmup: str, warmup_gamma: float,
                            source_batches: Literal["pooled", "per_source"], **_: Any) -> None:
    if source_batches not in ("pooled", "per_source"):
        raise ValueError(f"{name}: source_batches must be pooled or per_source, got {source_batches!r}")
    if warmup not in WARMUPS:
        raise ValueError(f"{name}: warmup must be one of {', '.join(WARMUPS)}, got {warmup!r}")
    if not _is_number_at_least_0(transfer_weight):
        raise ValueError(f"{name}: transfer_weight must be a number ≥ 0, got {transfer_weight!r}")
    if not _is_number_at_least_0(warmup_gamma):
        raise ValueError(f"{name}: warmup_gamma must be a number ≥ 0, got {warmup_gamma!r}")


def check_discrepancy_alignment(name: str, *, layers: str | list[str], **_: Any) -> None:
    layer_names(name, layers)


def check_deep_coral(name: str, *, penalty: Literal["deep_coral", "domainbed"], **_: Any) -> None:
    if penalty not in ("deep_coral", "domainbed"):
        raise ValueError(f"{name}: penalty must be deep_coral or domainbed, got {penalty!r}")


def check_dan(
    name: str, *, kernel_mul: float, kernel_num: int, bandwidth_center: Literal["median", "mean"],
    estimator: Literal["quadratic", "linear"], **_: Any,
) -> None:
    if not kernel_mul > 1 or int(kernel_num) < 1:
        raise ValueError(f"{name}: kernel_mul must be > 1 and kernel_num ≥ 1, got {kernel_mul} and {kernel_num}")
    if bandwidth_center not in ("median", "mean"):
        raise ValueError(f"{name}: bandwidth_center must be median or mean, got {bandwidth_center!r}")
    if estimator not in ("quadratic", "linear"):
        raise ValueError(f"{name}: estimator must be quadratic or linear, got {estimator!r}")


def check_cmd(name: str, *, moments: int, layers: str | list[str], bottleneck_dim: int, **_: Any) -> None:
    if int(moments) < 1:
        raise ValueError(f"{name}: moments must be at least 1, got {moments}")
    names = layer_names(name, layers)
    unbounded = [layer for layer in names if layer not in ("features", "probabilities")]
    if unbounded:
        raise ValueError(f"{name}: layers must be bounded in [0, 1] (features, probabilities), got {unbounded}")
    if int(bottleneck_dim) == 0 and "features" in names:
        raise ValueError(f"{name}: the features are bounded by the bottleneck's sigmoid; set bottleneck_dim > 0")


def check_m3sda(name: str, *, moments: int, classifiers: Literal["shared", "per_source"], discrepancy_weight: float,
                generator_steps: int, **_: Any) -> None:
    if int(moments) < 1:
        raise ValueError(f"{name}: moments must be at least 1, got {moments}")
    if classifiers not in ("shared", "per_source"):
        raise ValueError(f"{name}: classifiers must be shared or per_source, got {classifiers!r}")
    if not _is_number_at_least_0(discrepancy_weight):
        raise ValueError(f"{name}: discrepancy_weight must be a number ≥ 0, got {discrepancy_weight!r}")
    if float(discrepancy_weight) and classifiers == "shared":
        raise ValueError(f"{name}: discrepancy_weight (M3SDA-β's steps) needs a pair of classifiers per source: set "
                         "classifiers=per_source, or discrepancy_weight=0")
    if int(generator_steps) < 1:
        raise ValueError(f"{name}: generator_steps (M3SDA-β's step C per batch) must be at least 1, got {generator_steps}")


#: Trainer settings (with their defaults) that Lightning applies in automatic optimisation only (clipping,
#: accumulation) or counts in optimizer steps (``max_steps``): a method that takes its own steps, several per batch,
#: cannot honour them.
AUTOMATIC_OPTIMISATION_ONLY = {"gradient_clip_val": None, "accumulate_grad_batches": 1, "max_steps": -1}


def optimises_by_hand(target: str, settings: Mapping[str, Any]) -> bool:
    """Whether the method class ``target`` with these settings takes its optimizer steps itself (Lightning's manual
    optimisation): ``M3SDA`` with ``discrepancy_weight`` β > 0, whose batches are M3SDA-β's alternating steps."""
    return (any(name.endswith(".M3SDA") for name in class_chain(target))
            and _is_number_at_least_0(settings.get("discrepancy_weight", 0)) and float(settings["discrepancy_weight"]) > 0)


def check_mdan(name: str, *, gamma: float, aggregation: Literal["soft", "hard"], **_: Any) -> None:
    if not float(gamma) > 0:
        raise ValueError(f"{name}: gamma (of the smooth maximum over sources) must be positive, got {gamma}")
    if aggregation not in ("soft", "hard"):
        raise ValueError(f"{name}: aggregation must be soft or hard, got {aggregation!r}")


def check_dann(name: str, *, discriminator_hidden: int, **_: Any) -> None:
    if int(discriminator_hidden) < 1:
        raise ValueError(f"{name}: discriminator_hidden must be positive, got {discriminator_hidden}")


def check_osbp(name: str, *, boundary: float, **_: Any) -> None:
    if not 0.0 < float(boundary) < 1.0:
        raise ValueError(f"{name}: boundary (the unknown probability t) must be in (0, 1), got {boundary}")


def check_cdan(
    name: str, *, entropy_conditioning: bool, randomized: Literal["auto"] | bool, randomized_dim: int, **_: Any,
) -> None:
    if randomized not in ("auto", True, False):
        raise ValueError(f"{name}: randomized must be auto, true or false, got {randomized!r}")
    if int(randomized_dim) < 1:
        raise ValueError(f"{name}: randomized_dim must be positive, got {randomized_dim}")


def check_dsn(
    name: str, *, reconstruction_weight: float, difference_weight: float, similarity_weight: float,
    decoder_hidden: int, discriminator_hidden: int, difference_reduction: str, **_: Any,
) -> None:
    weights = (reconstruction_weight, difference_weight, similarity_weight)
    if not all(_is_number_at_least_0(weight) for weight in weights):
        raise ValueError(f"{name}: the loss weights must be numbers ≥ 0, got {weights}")
    if int(decoder_hidden) < 1 or int(discriminator_hidden) < 1:
        raise ValueError(f"{name}: decoder_hidden and discriminator_hidden must be positive")
    if difference_reduction not in ("sum", "mean"):
        raise ValueError(f"{name}: difference_reduction must be sum or mean, got {difference_reduction!r}")


def check_mcc(name: str, *, temperature: float, **_: Any) -> None:
    if not temperature > 0:
        raise ValueError(f"{name}: temperature must be positive, got {temperature}")


def check_pixelda(
    name: str, *, noise_dim: int, generator_channels: int, generator_blocks: int, discriminator_channels: int,
    adversarial_weight: float, content_weight: float, **_: Any,
) -> None:
    if min(int(noise_dim), int(generator_channels), int(generator_blocks), int(discriminator_channels)) < 1:
        raise ValueError(f"{name}: noise_dim, generator_channels, generator_blocks and discriminator_channels must be positive")
    if not (_is_number_at_least_0(adversarial_weight) and _is_number_at_least_0(content_weight)):
        raise ValueError(
            f"{name}: adversarial_weight and content_weight must be numbers ≥ 0, got {adversarial_weight} and {content_weight}"
        )


def check_sdt(
    name: str, *, discriminator_hidden: int, temperature: float, soft_label_weight: float,
    pseudo_label_threshold: float, **_: Any,
) -> None:
    if int(discriminator_hidden) < 1 or not temperature > 0 or soft_label_weight < 0:
        raise ValueError(f"{name}: discriminator_hidden and temperature must be positive, soft_label_weight ≥ 0")
    if not 0.0 <= pseudo_label_threshold <= 1.0:
        raise ValueError(f"{name}: pseudo_label_threshold must be in [0, 1], got {pseudo_label_threshold}")


def check_fine_tuning(
    name: str, *, pretrain_epochs: int, freeze: str, freeze_k: int, freeze_last_k: int, freeze_bn: bool,
    layer_decay: float, head_lr: float | None, unfreeze_every: int, warmup_epochs: int, **_: Any,
) -> None:
    if freeze not in FREEZE_POLICIES:
        raise ValueError(f"{name}: freeze must be one of {', '.join(FREEZE_POLICIES)}, got {freeze!r}")
    if int(pretrain_epochs) < 0 or int(unfreeze_every) < 0 or int(warmup_epochs) < 0:
        raise ValueError(f"{name}: pretrain_epochs, unfreeze_every and warmup_epochs must be >= 0")
    if not 0.0 < float(layer_decay) <= 1.0:
        raise ValueError(f"{name}: layer_decay must be in (0, 1], got {layer_decay}")
    if head_lr is not None and not float(head_lr) > 0:
        raise ValueError(f"{name}: head_lr must be positive (or null: lr), got {head_lr}")


def check_l2sp(name: str, *, alpha: float, beta: float, **_: Any) -> None:
    if alpha < 0 or beta < 0:
        raise ValueError(f"{name}: alpha and beta must be >= 0, got alpha={alpha}, beta={beta}")


def check_distill_finetune(name: str, *, distill_weight: float, temperature: float, **_: Any) -> None:
    if distill_weight < 0 or temperature <= 0:
        raise ValueError(
            f"{name}: distill_weight must be >= 0 and temperature > 0, got {distill_weight}, {temperature}"
        )


def check_multitask(
    name: str, *, sharing: str, shared_stages: int | None, private_stages: int, weighting: str, source_weight: float,
    target_weight: float, **_: Any,
) -> None:
    if sharing not in SHARINGS:
        raise ValueError(f"{name}: sharing must be one of {', '.join(SHARINGS)}, got {sharing!r}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"{name}: weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
    weights = (float(source_weight), float(target_weight))
    if not all(_is_number_at_least_0(weight) for weight in weights) or not any(weights):
        raise ValueError(
            f"{name}: source_weight and target_weight must be >= 0, not both 0; got {source_weight}, {target_weight}"
        )


def check_progressive(name: str, *, column2_init: str, lateral_scale: float, freeze: str, **_: Any) -> None:
    if column2_init not in COLUMN2_INITS:
        raise ValueError(f"{name}: column2_init must be one of {', '.join(COLUMN2_INITS)}, got {column2_init!r}")
    if not _is_number_at_least_0(lateral_scale):
        raise ValueError(f"{name}: lateral_scale must be a number >= 0, got {lateral_scale!r}")
    if column2_init == "random" and freeze != "none":
        raise ValueError(
            f"{name}: freeze={freeze} would keep randomly drawn column-2 stages as they are; use freeze=none, or "
            "column2_init=copy to freeze stages copied from the source column"
        )


def check_attribute_embedding(
    name: str, *, variant: str, margin: float, violations: str, learn_label_embedding: bool, embedding_dim: int,
    label_hidden: int, center_signatures: bool, calibration: float, **_: Any,
) -> None:
    if variant not in ZSL_VARIANTS:
        raise ValueError(f"{name}: variant must be one of {', '.join(ZSL_VARIANTS)}, got {variant!r}")
    if variant == "ale" and learn_label_embedding:
        raise ValueError(
            f"{name}: variant=ale compares samples with the class signatures themselves (phi(y) = s_y); "
            "learn_label_embedding=true is the notes variant's option"
        )
    if margin < 0:
        raise ValueError(f"{name}: margin must be >= 0, got {margin}")
    if violations not in ("max", "sum"):
        raise ValueError(f"{name}: violations must be max or sum, got {violations!r}")
    if int(embedding_dim) < 1 or int(label_hidden) < 1:
        raise ValueError(f"{name}: embedding_dim and label_hidden must be positive")


def check_label_embedding(name: str, *, label_embeddings: str, label_template: str, **_: Any) -> None:
    """Declares the types of the class-name embedding's settings (any text is a vectors file's path or a template)."""


def check_conse(name: str, *, top: int, center_signatures: bool, calibration: float, **_: Any) -> None:
    if int(top) < 1:
        raise ValueError(f"{name}: top (T, the seen classes whose embeddings are mixed) must be >= 1, got {top}")


# ------------------------------------------------------------------------------------------ closed-form methods


def check_source_classifier(
    name: str, *, classifier: str, classifier_options: Mapping[str, Any] | None, **_: Any,
) -> None:
    chosen_classifier_options(classifier, classifier_options)


def check_coral(name: str, *, regularization: float, shrinkage: str, center: bool, **_: Any) -> None:
    if regularization <= 0:
        raise ValueError(f"regularization must be > 0 (got {regularization})")
    if shrinkage not in CORAL_SHRINKAGES:
        raise ValueError(f"{name}: shrinkage must be one of {', '.join(CORAL_SHRINKAGES)}, got {shrinkage!r}")


def check_kmm(
    name: str, *, kernel: str, gamma: float | None, bound: float, epsilon: float | None, max_iter: int, tol: float,
    approx: str, rank: int, classifier: str, **_: Any,
) -> None:
    if kernel not in KMM_KERNELS:
        raise ValueError(f"unknown kernel {kernel!r} for KMM; choose one of: {', '.join(KMM_KERNELS)}")
    _check_kernel_approximation(approx, rank)
    if classifier not in WEIGHTING_CLASSIFIERS:
        raise ValueError(
            f"KMM trains a sample-weighted classifier, and {classifier!r} cannot weight samples; "
            "use classifier=logreg or classifier=linear_svm"
        )
    if bound <= 0:
        raise ValueError(f"bound must be > 0 (got {bound})")
    if gamma is not None and gamma <= 0:
        raise ValueError(f"gamma must be > 0 or null (the median heuristic) (got {gamma})")
    if epsilon is not None and epsilon < 0:
        raise ValueError(f"epsilon must be >= 0 or null ((sqrt(n_s) - 1) / sqrt(n_s)) (got {epsilon})")
    if max_iter < 1 or tol <= 0:
        raise ValueError(f"max_iter must be >= 1 and tol > 0 (got {max_iter} and {tol})")


def _check_kernel_approximation(approx: str, rank: int) -> None:
    if approx not in KERNEL_APPROXIMATIONS:
        raise ValueError(f"unknown approx {approx!r}; choose one of: {', '.join(KERNEL_APPROXIMATIONS)}")
    if rank < 1:
        raise ValueError(f"rank (the Nyström landmarks) must be >= 1 (got {rank})")


def check_mmd_subspace_method(
    name: str, *, kernel: str, dim: int, lamb: float, gamma: float, approx: str, rank: int, classifier: str,
    classifier_options: Mapping[str, Any] | None, **_: Any,
) -> None:
    """The MMD subspace's settings, TCA's all (its config has no ``iterations``: it is JDA's first)."""
    check_kernel(kernel)
    _check_kernel_approximation(approx, rank)
    chosen_classifier_options(classifier, classifier_options)
    if dim < 1:
        raise ValueError(f"dim must be >= 1 (got {dim})")
    if lamb <= 0:
        raise ValueError(f"lamb must be > 0 (got {lamb})")
    if gamma <= 0:
        raise ValueError(f"gamma must be > 0 (got {gamma})")


def approximates_kernel(kernel: str, approx: str, n_samples: int) -> bool:
    """Whether the MMD subspace methods and KMM use the Nyström map for ``kernel`` on ``n_samples`` (source +
    target): only ``rbf`` is approximated (``primal`` and ``linear`` are exact at linear cost already)."""
    return kernel == "rbf" and (approx == "nystroem" or (approx == "auto" and n_samples > AUTO_EXACT_LIMIT))


def check_jda(name: str, *, iterations: int, **_: Any) -> None:
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1 (got {iterations})")


def check_eszsl(
    name: str, *, gamma: float, lamb: float, standardize: bool, center_signatures: bool, calibration: float, **_: Any,
) -> None:
    if not (gamma > 0 and lamb > 0):
        raise ValueError(f"{name}: gamma and lamb must be positive, got {gamma} and {lamb}")


def check_kmeans_clustering(
    name: str, *, representation: str, representation_options: Mapping[str, Any] | None, learn_representation_on: str,
    n_clusters: int | None, n_init: int, max_iter: int, **_: Any,
) -> None:
    if learn_representation_on not in REPRESENTATION_DATA:
        raise ValueError(
            f"unknown learn_representation_on {learn_representation_on!r}; choose one of: {', '.join(REPRESENTATION_DATA)}"
        )
    for key, value in (("n_init", n_init), ("max_iter", max_iter)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be an integer >= 1, got {value!r}")
    if n_clusters is not None and (not isinstance(n_clusters, int) or n_clusters < 2):
        raise ValueError(f"n_clusters must be an integer >= 2 or null (the number of classes), got {n_clusters!r}")
    _check_encoder(representation, representation_options, "representation_options")


def check_self_taught(
    name: str, *, encoder: str, encoder_options: Mapping[str, Any] | None, classifier: str,
    classifier_options: Mapping[str, Any] | None, **_: Any,
) -> None:
    chosen_classifier_options(classifier, classifier_options)
    _check_encoder(encoder, encoder_options, "encoder_options")


def _check_count(key: str, value: object, minimum: int, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        allowed = f"an integer >= {minimum}" + (" or None" if optional else "")
        raise ValueError(f"{key} must be {allowed} (got {value!r})")


def check_self_taught_clustering(
    name: str, *, n_clusters: int | None, feature_clusters: int, source_clusters: int | None, lamb: float,
    iterations: int, init: str, **_: Any,
) -> None:
    _check_count("n_clusters", n_clusters, 2, optional=True)
    _check_count("feature_clusters", feature_clusters, 2)
    _check_count("source_clusters", source_clusters, 2, optional=True)
    _check_count("iterations", iterations, 1)
    if isinstance(lamb, bool) or not isinstance(lamb, (int, float)) or not math.isfinite(lamb) or lamb < 0:
        raise ValueError(f"lamb must be a finite number >= 0 (got {lamb!r})")
    if init not in STC_INITS:
        raise ValueError(f"init must be one of {', '.join(STC_INITS)} (got {init!r})")
