"""The search space, written in Hydra's sweep grammar, as Optuna's dimensions.

Every spec is read by Hydra's own override parser: the grammar of hydra-optuna-sweeper's search space, and of the
basic sweeper's grids (a recipe's ``params`` work with both sweepers). A ``range`` means what the basic sweeper
runs, its stop left out:

    a,b,c   choice(a, b, ...)          one of the values
    range(lo, hi[, step])              integers from lo, hi excluded (a range of floats: one of its values)
    interval(lo, hi)                   a float in [lo, hi]
    int(interval(lo, hi))              an integer in [lo, hi]
    tag(log, interval(lo, hi))         on a log scale (also tag(log, int(interval(lo, hi))))
    a value that is no sweep           fixed, for every trial

tlrun's earlier specs are still read, translated into that grammar in one place (:func:`translate`):
``float(lo, hi[, log])`` is ``[tag(log, ]interval(lo, hi)[)]``, ``int(lo, hi[, log])`` the same over
``int(interval(lo, hi))``. They stay for one capability Hydra's grammar lacks, ``step=``: ``float(lo, hi, step=s)``
and ``int(lo, hi, step=k)`` are ordered grids that include both bounds (an ``interval`` has no step; a ``range``
leaves out its stop and, for floats, is a set of unordered values), so the step travels beside the translated text.
On the command line, ``int(lo, hi)`` is tlrun's integer range, not Hydra's choice of two casts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

from tlrun.tracking.search.errors import SearchError

#: ``float(...)`` or ``int(...)`` with no call inside: one of tlrun's earlier specs (``int(interval(...))`` is Hydra's).
_TLRUN_SPEC = re.compile(r"^\s*(float|int)\s*\(([^()]*)\)\s*$", re.S)

SYNTAX = ("a search spec is float(lo, hi[, log][, step=s]), int(lo, hi[, log][, step=k]), choice(a, b, ...), "
          "a Hydra sweep (a,b / range(lo, hi) / interval(lo, hi) / tag(log, interval(lo, hi))) or a fixed value")


@dataclass(frozen=True)
class Param:
    """One dimension of the search space: ``kind`` is ``float``, ``int`` or ``choice`` (whose values are kept
    as the override text they were written as)."""

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[str, ...] = ()

    def distribution(self) -> Any:
        """The Optuna distribution."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "float":
            return FloatDistribution(float(self.low), float(self.high), log=self.log,
                                     step=None if self.step is None else float(self.step))
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return CategoricalDistribution(list(self.choices))

    def grid(self) -> list[Any]:
        """Every value, for ``sampler=grid``: the choices, the integers, or the floats ``lo + k·step``."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            raise SearchError(f"sampler=grid: {self.name}: {self} has no finite grid; give it a step "
                              f"(float({self.low}, {self.high}, step=...)) or use choice(...)")
        count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return [self.low + k * self.step for k in range(count)]

    def override(self, value: Any) -> str:
        """The Hydra override that sets this parameter to ``value``."""
        return f"{self.name}={value!r}" if self.kind == "float" else f"{self.name}={value}"

    def __str__(self) -> str:
        if self.kind == "choice":
            return f"choice({', '.join(self.choices)})"
        extra = (", log" if self.log else "") + (f", step={self.step}" if self.step is not None else "")
        return f"{self.kind}({self.low}, {self.high}{extra})"


@dataclass
class SearchSpace:
    """The dimensions searched, and the overrides every trial gets."""

    params: list[Param] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)

    def add(self, other: SearchSpace) -> None:
        names = {p.name for p in self.params} | {override.partition("=")[0] for override in self.fixed}
        for param in other.params:
            if param.name in names:
                raise SearchError(f"search space: {param.name} is given twice (in hydra.sweeper.params and on the "
                                  "command line); keep one")
        self.params += other.params
        self.fixed += other.fixed

    def overrides(self, values: Mapping[str, Any]) -> list[str]:
        """A trial's overrides: the fixed ones, then the sampled values."""
        return [*self.fixed, *(p.override(values[p.name]) for p in self.params)]

    def take(self, parsed: Param | str) -> None:
        """Add what :func:`parse_param` read: a dimension, or a fixed override."""
        if isinstance(parsed, Param):
            self.params.append(parsed)
        else:
            self.fixed.append(parsed)


# ------------------------------------------------------------------------------ tlrun's earlier specs, translated


def is_tlrun_spec(text: str) -> bool:
    """Whether ``text`` is one of tlrun's earlier specs, ``float(...)`` or ``int(...)`` with no call inside."""
    return _TLRUN_SPEC.match(text) is not None


def translate(name: str, spec: str) -> tuple[str, float | int | None]:
    """One of tlrun's earlier specs as ``(Hydra sweep text, step)``; any other spec unchanged, without a step."""
    match = _TLRUN_SPEC.match(spec)
    if match is None:
        return spec.strip(), None
    function, inner = match.group(1), match.group(2)
    integer = function == "int"
    parts = [part.strip() for part in inner.split(",")] if inner.strip() else []
    positional, log, step = [], False, None
    for part in parts:
        key, equals, value = (text.strip() for text in part.partition("="))
        if not equals and part == "log":
            log = True
        elif equals and key == "log" and value.lower() in ("true", "false"):
            log = value.lower() == "true"
        elif equals and key == "step":
            step = _number(name, spec, value, integer)
        elif not equals:
            positional.append(_number(name, spec, part, integer))
        else:
            raise SearchError(f"search space: {name}: {spec!r}: unknown option {part!r} (options: log, step=...)")
    if len(positional) != 2:
        raise SearchError(f"search space: {name}: {spec!r}: {function} needs a lower and an upper bound, "
                          f"{function}(lo, hi[, log][, step=...])")
    interval = "interval({!r}, {!r})".format(*positional)
    interval = f"int({interval})" if integer else interval
    return (f"tag(log, {interval})" if log else interval), step


def _number(name: str, spec: str, text: str, integer: bool) -> float | int:
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or (integer and value != int(value)):
        raise SearchError(f"search space: {name}: {spec!r}: {text!r} is not {'an integer' if integer else 'a number'}")
    return int(value) if integer else value


# -------------------------------------------------------------------------------------- Hydra's sweeps, read


def parse_param(name: str, spec: Any, parser: Any = None) -> Param | str:
    """One entry of the search space: a :class:`Param`, or the override text of a fixed value.

    ``spec`` is read by Hydra's override parser (after :func:`translate`); what it cannot read, or reads as a
    sweep Optuna cannot search, raises a :class:`SearchError` naming the parameter.
    """
    if not isinstance(spec, str):  # a YAML number, boolean, list...: fixed
        text = "null" if spec is None else str(spec).lower() if isinstance(spec, bool) else str(spec)
        return f"{name}={text}"
    text, step = translate(name, spec)
    try:
        override = (parser or _parser()).parse_override(f"{name}={text}")
    except Exception as error:  # Hydra's grammar errors
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SearchError(f"search space: {name}: cannot read {spec!r} ({reason}); {SYNTAX}") from None
    if not override.is_sweep_override():
        return f"{name}={spec.strip()}"
    return _checked(_dimension(name, spec, override), spec, step)


def _dimension(name: str, spec: str, override: Any) -> Param:
    """A Hydra sweep as a dimension: a choice, a range (integers: an ``int`` with its step; otherwise its values,
    as a choice) or an interval (``int`` when cast so, ``log`` when tagged so)."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    value = override.value()
    if isinstance(value, ChoiceSweep):
        return Param(name, "choice", choices=tuple(override.sweep_string_iterator()))
    if isinstance(value, RangeSweep):
        values = list(override.sweep_string_iterator())
        if not values:
            raise SearchError(f"search space: {name}: {spec!r} is an empty range")
        if not value.shuffle and all(isinstance(v, int) for v in (value.start, value.stop, value.step)) and value.step > 0:
            return Param(name, "int", low=int(values[0]), high=int(values[-1]), step=int(value.step))
        return Param(name, "choice", choices=tuple(values))
    if isinstance(value, IntervalSweep):
        integer = isinstance(value.start, int) and isinstance(value.end, int)
        return Param(name, "int" if integer else "float", low=value.start, high=value.end, log="log" in value.tags)
    raise SearchError(f"search space: {name}: the optuna sweeper cannot search {spec!r}; {SYNTAX}")


def _checked(param: Param, spec: str, step: float | int | None) -> Param:
    """``param`` with ``step`` (from one of tlrun's specs), after checking its bounds, scale and step."""
    if param.kind == "choice":
        return param
    where = f"search space: {param.name}: {spec!r}"
    if not param.low < param.high:
        raise SearchError(f"{where}: the lower bound must be below the upper bound")
    if param.log and param.low <= 0:
        raise SearchError(f"{where}: a log scale needs a lower bound above 0")
    if step is None:
        return param
    if param.log:
        raise SearchError(f"{where}: log and step cannot be combined")
    if step <= 0:
        raise SearchError(f"{where}: step must be positive")
    return replace(param, step=step)


def parse_space(params: Mapping[str, Any] | None) -> SearchSpace:
    """``hydra.sweeper.params`` as a :class:`SearchSpace`. Keys may be dotted (``method.lamb: ...`` in YAML)
    or nested (what ``+hydra.sweeper.params.method.lamb=...`` makes on the command line)."""
    space, parser = SearchSpace(), _parser()
    for name, spec in _flatten(params or {}).items():
        space.take(parse_param(name, spec, parser))
    return space


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def space_from_arguments(arguments: Sequence[str], parser: Any = None) -> SearchSpace:
    """The command-line overrides as a :class:`SearchSpace`: sweeps (and tlrun's ``float(lo, hi)`` and
    ``int(lo, hi)``, which Hydra alone would read as a choice of two casts) become dimensions, the rest is fixed."""
    parser = parser or _parser()
    space = SearchSpace()
    for argument in arguments:
        override = parser.parse_override(argument)
        text = argument.partition("=")[2]
        if override.is_sweep_override() or is_tlrun_spec(text):
            space.take(parse_param(override.get_key_element(), text, parser))
        else:
            space.fixed.append(argument)
    return space


def _parser() -> Any:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()
