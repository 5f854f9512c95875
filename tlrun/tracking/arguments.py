"""The ``key=value`` settings of tlrun's subcommands that are not runs (``tlrun ui``, ``tlrun predict``,
``tlrun evaluate``): parsed in one place, with the same errors. Imports OmegaConf only."""

from __future__ import annotations

from typing import Any

from tlrun.errors import TlrunError
from tlrun.tracking.uri import resolve_tracking_uri


def key_value_settings(command: str, arguments: list[str], defaults: dict[str, Any],
                       as_typed: tuple[str, ...] = ()) -> dict[str, Any]:
    """``key=value`` ``arguments`` over ``defaults`` (values read as YAML, except the keys ``as_typed``, kept as
    typed: run ids and paths), with ``tracking_uri`` resolved (:func:`~tlrun.tracking.uri.resolve_tracking_uri`);
    a malformed argument or an unknown key is a :class:`~tlrun.errors.TlrunError` naming the settings."""
    from omegaconf import OmegaConf

    malformed = [argument for argument in arguments if "=" not in argument]
    if malformed:
        raise TlrunError(f"tlrun {command} takes key=value settings ({', '.join(defaults)}), got {' '.join(malformed)!r}")
    try:
        given = OmegaConf.to_container(OmegaConf.from_dotlist(arguments))
    except Exception as error:  # OmegaConf's grammar errors
        raise TlrunError(f"tlrun {command}: cannot read the settings {' '.join(arguments)!r}: {error}") from None
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise TlrunError(f"tlrun {command}: unknown setting {', '.join(unknown)}; settings: {', '.join(defaults)}")
    text = dict(argument.split("=", 1) for argument in arguments)
    settings = {**defaults, **given, **{key: text[key] for key in as_typed if key in text}}
    settings["tracking_uri"] = resolve_tracking_uri(settings.get("tracking_uri"))
    return settings
