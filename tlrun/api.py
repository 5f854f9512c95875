"""tlrun from Python: notebooks and scripts run, load and fit through the code path of the command line.

- :func:`run` composes a run exactly as ``tlrun <overrides>`` does (the same config tree, the same checks of
  unknown options and settings) and runs it into the MLflow store, returning a :class:`Result`;
- :func:`load` reads the model a run logged (a :class:`~tlrun.predictor.Predictor`);
- :func:`fit` uses a closed-form method as a scikit-learn-style estimator on arrays (no run, no store), with the
  defaults of its method config.

Example (``docs/python.md`` has more)::

    from tlrun import api

    result = api.run("jda", dataset="digits", **{"dataset.target": "rotate", "method.lamb": 0.1})
    result.metrics["target_acc"]            # a fraction
    model = api.load(result.run_id)         # or result.model
    model.predict(X_new)                    # class names

Keyword arguments are overrides: ``dataset="features"`` is ``dataset=features``; dotted keys (``"method.lamb"``)
go through ``**{...}``, or write them with double underscores (``method__lamb=0.1``). Strings in Hydra's syntax
may also be given positionally (``api.run("jda", "dataset.target=rotate")``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Sequence

import numpy as np
from omegaconf import DictConfig

from tlrun.errors import TlrunError


@dataclass(frozen=True)
class Result:
    """A finished run: its MLflow id, final metrics (fractions), the config it ran (``auto`` resolved) and store."""

    run_id: str
    metrics: dict[str, float]
    config: DictConfig
    tracking_uri: str

    @cached_property
    def model(self) -> Any:
        """The run's logged model (:func:`load`)."""
        return load(self.run_id, self.tracking_uri)


def overrides(method: str, *given: str, **settings: Any) -> list[str]:
    """The command line ``tlrun`` would get: ``method=<method>``, then ``given``, then ``settings`` as
    ``key=value`` (``a__b`` stands for ``a.b``; lists as ``[x,y]``, booleans as ``true``/``false``, ``None`` as
    ``null``)."""
    return [f"method={method}", *given, *(f"{key.replace('__', '.')}={_text(value)}" for key, value in settings.items())]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_text(each) for each in value) + "]"
    return str(value)


def compose(method: str, *given: str, **settings: Any) -> DictConfig:
    """The config ``tlrun <overrides>`` composes (:func:`overrides`), checked as the command line is."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from tlrun.cli import unknown_group_option, unknown_setting
    from tlrun.config import config_dir, register_resolvers

    command_line = overrides(method, *given, **settings)
    error = unknown_group_option(command_line) or unknown_setting(command_line)
    if error:
        raise TlrunError(error)
    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra_compose("config", overrides=command_line)


def run(method: str, *given: str, **settings: Any) -> Result:
    """Run ``tlrun method=<method> <overrides>`` in this process (see the module's docstring); raises
    :class:`~tlrun.errors.TlrunError` for what the command line would answer with ``tlrun: error:``."""
    from omegaconf import OmegaConf

    from tlrun.runner.job import run_job
    from tlrun.runner.preflight import resolve_auto
    from tlrun.tracking.uri import configured_uri

    cfg = compose(method, *given, **settings)
    outcome = run_job(cfg)
    resolved = OmegaConf.create(OmegaConf.to_container(resolve_auto(cfg), resolve=True))
    return Result(outcome.run_id, outcome.metrics, resolved, configured_uri(cfg))


def load(run_id: str, tracking_uri: str | None = None, device: str = "cpu") -> Any:
    """The model run ``run_id`` logged, as a :class:`~tlrun.predictor.Predictor` on ``device``; the store is
    ``tracking_uri``, else as for a run (``$MLFLOW_TRACKING_URI``, else ``outputs/mlflow.db``)."""
    from tlrun.tracking.models import load_run_predictor
    from tlrun.tracking.uri import resolve_tracking_uri

    return load_run_predictor(run_id, resolve_tracking_uri(tracking_uri), device)


def fit(method: str, Xs: np.ndarray, ys: Sequence[Any], Xt: np.ndarray, *, seed: int = 0, device: str = "cpu",
        **options: Any) -> Any:
    """Fit the closed-form domain-adaptation method ``method`` (``tca``, ``jda``, ``coral``, ``kmm``,
    ``no_adaptation``) on labeled source rows ``Xs, ys`` and unlabeled target rows ``Xt`` (no run is recorded);
    ``options`` override its config's defaults (``lamb=0.1``). Returns a :class:`~tlrun.predictor.Predictor`
    whose ``predict(X)`` gives labels among ``ys``'s values (as text)."""
    from tlrun.config import instantiate, methods
    from tlrun.methods.base import NullReporter, RunContext
    from tlrun.predictor import Inputs, Predictor
    from tlrun.scenarios import Labeled, TrainingData, Unlabeled

    closed_form = methods(family="closed_form", scenario="da")
    if method not in closed_form:
        raise TlrunError(f"api.fit takes the closed-form DA methods ({', '.join(closed_form)}); run {method} with "
                         "api.run")
    Xs, Xt = np.asarray(Xs, dtype=np.float64), np.asarray(Xt, dtype=np.float64)
    if Xs.ndim != 2 or Xt.ndim != 2 or Xs.shape[1] != Xt.shape[1] or len(Xs) != len(ys):
        raise TlrunError(f"api.fit: Xs {Xs.shape} and Xt {Xt.shape} must be (n, d) with the same d, and ys one label "
                         "per row of Xs")
    classes, y = np.unique(np.asarray(ys).astype(str), return_inverse=True)
    estimator = instantiate(compose(method, **{f"method.{key}": value for key, value in options.items()}).method)
    data = TrainingData(source=Labeled(Xs, y.astype(np.int64)), target=Unlabeled(Xt), num_classes=len(classes),
                        classes=tuple(classes))
    estimator.fit(data, RunContext(reporter=NullReporter(), device=device, seed=seed))
    return Predictor(estimator, tuple(classes), Inputs("rows", n_features=Xs.shape[1]))
