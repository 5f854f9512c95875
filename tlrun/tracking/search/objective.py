"""What a search trial is scored by: the label-free default objective (:func:`default_objective`), and the value
read from what a trial's job returned."""

from __future__ import annotations

import math
from typing import Any, Mapping

from omegaconf import DictConfig

from tlrun.tracking.search.errors import SearchError

#: Metrics computed from the target's test labels: a search on them is not label-free.
LABEL_READING_METRICS = ("target_acc", "selected.oracle", "gzsl_seen_acc", "gzsl_unseen_acc", "gzsl_h", "nmi", "ari")


def default_objective(cfg: DictConfig) -> str:
    """The metric a search maximizes when ``objective=auto``: label-free unless ``trainer.select=oracle``.

    - ``selftaught_clustering``: none (no labels anywhere but the test's): a :class:`SearchError`, name one;
    - ``trainer.select=oracle``: ``target_acc`` (it reads the target's test labels; the search warns);
    - ``trainer.select=<score>`` other than ``last`` (deep methods): ``selected.<score>``, the score of the
      epoch the run kept (``selected.target_val`` in ``finetune`` with ``scenario.target_val_fraction > 0``);
    - ``selftaught`` (an unlabeled source, so no source accuracy): a :class:`SearchError`, name one;
    - otherwise a held-out source split is needed (``dataset.source_val_fraction > 0``, else a
      :class:`SearchError`): ``select.source_val`` for deep methods (its last epoch), ``source_acc`` for
      closed-form ones. The same in ``da``, ``finetune`` and ``zeroshot`` (held-out seen-class samples).

    ``scenario=auto`` counts as the method's natural scenario.
    """
    from tlrun.config import method_scenarios
    from tlrun.scenarios import natural_scenario

    method = str(cfg.method_info.get("name"))
    scenario = str(cfg.scenario.get("name"))
    if scenario == "auto":
        known = method_scenarios()
        if method not in known:
            raise SearchError(f"objective=auto: unknown method {method!r}")
        scenario = natural_scenario(known[method])
    name_one = "name the metric to search on: hydra.sweeper.objective=<metric>"
    if scenario == "selftaught_clustering":
        raise SearchError(f"objective=auto: selftaught_clustering has no labels to score a trial without the target's "
                          f"test labels; {name_one} (e.g. nmi or target_acc, which read them)")
    select = str(cfg.trainer.get("select", "last"))
    if select == "oracle":
        return "target_acc"
    if select != "last":
        return f"selected.{select}"
    if scenario == "selftaught":
        raise SearchError(f"objective=auto: in selftaught the source has no labels, so no source accuracy scores a "
                          f"trial; {name_one} (target_acc reads the target's test labels)")
    if float(cfg.dataset.get("source_val_fraction", 0.0) or 0.0) <= 0:
        raise SearchError("objective=auto scores a trial on a held-out source split: set dataset.source_val_fraction "
                          f"> 0 (e.g. 0.2), or {name_one}")
    return "select.source_val" if cfg.method_info.get("family") == "deep" else "source_acc"


def reads_target_labels(objective: str) -> bool:
    """Whether ``objective`` is computed from the target's test labels (an oracle search)."""
    return objective in LABEL_READING_METRICS


def objective_value(metrics: Mapping[str, float], objective: str) -> float:
    """``metrics[objective]``; a :class:`SearchError` listing the metrics present when it is absent or not finite."""
    if objective not in metrics:
        raise SearchError(f"the run has no metric {objective!r}; its metrics: {', '.join(sorted(metrics)) or 'none'}")
    value = float(metrics[objective])
    if not math.isfinite(value):
        raise SearchError(f"the run's {objective} is {value}")
    return value


def job_metrics(returned: Any) -> tuple[dict[str, float], str | None, bool]:
    """``(metrics, run id, skipped)`` of what a job returned (a :class:`~tlrun.run.RunOutcome`, a mapping of
    metrics, or a number, taken as the objective's value under the name ``value``)."""
    if hasattr(returned, "metrics"):
        return dict(returned.metrics), getattr(returned, "run_id", None), bool(getattr(returned, "skipped", False))
    if isinstance(returned, Mapping):
        return dict(returned), None, False
    if isinstance(returned, (int, float)):
        return {"value": float(returned)}, None, False
    raise SearchError(f"a job returned {type(returned).__name__}, not a run's metrics")
