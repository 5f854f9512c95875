"""The ``key=value`` settings of tlrun's subcommands that are not runs (``tlrun ui``, ``tlrun predict``,
``tlrun evaluate``): parsed in one place, with the same errors. Imports OmegaConf only."""

from __future__ import annotations

from typing import Any

from tlrun.errors import TlrunError
from tlrun.tracking.uri import resolve_tracking_uri


def key_value_settings(command: str, arguments: list[str], defaults: dict[str, Any], as_typed: tuple[str, ...] = (),
                       prefix: str | None = None) -> dict[str, Any]:
    """``key=value`` ``arguments`` over ``defaults`` (values read as YAML, except the keys ``as_typed``, kept as
    typed: run ids and paths), with ``tracking_uri`` resolved (:func:`~tlrun.tracking.uri.resolve_tracking_uri`);
    with a ``prefix``, ``<prefix>.<key>=<value>`` settings are gathered, as typed, in ``settings[prefix]``. A malformed
    argument or an unknown key is a :class:`~tlrun.errors.TlrunError` naming the settings."""
    from omegaconf import OmegaConf

    known = [*defaults, *([f"{prefix}.<key>"] if prefix else [])]
    malformed = [argument for argument in arguments if "=" not in argument]
    if malformed:
        raise TlrunError(f"tlrun {command} takes key=value settings ({', '.join(known)}), got {' '.join(malformed)!r}")
    try:
        given = OmegaConf.to_container(OmegaConf.from_dotlist(arguments))
    except Exception as error:  # OmegaConf's grammar errors
        raise TlrunError(f"tlrun {command}: cannot read the settings {' '.join(arguments)!r}: {error}") from None
    unknown = sorted(key for key in given if key not in defaults and key != prefix)
    if unknown or prefix and not isinstance(given.get(prefix, {}), dict):
        raise TlrunError(f"tlrun {command}: unknown setting {', '.join(unknown) or prefix}; settings: {', '.join(known)}")
    text = dict(argument.split("=", 1) for argument in arguments)
    settings = {**defaults, **{key: value for key, value in given.items() if key != prefix},
                **{key: text[key] for key in as_typed if key in text}}
    if prefix:
        settings[prefix] = {key[len(prefix) + 1:]: value for key, value in text.items() if key.startswith(f"{prefix}.")}
    settings["tracking_uri"] = resolve_tracking_uri(settings.get("tracking_uri"))
    return settings
