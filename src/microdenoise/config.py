"""Method parameters: frozen config dataclasses built from Python values or CLI strings.

:func:`make_config` checks names (a renamed parameter is named, ``Config.RENAMED``),
coerces strings (``--param k=v``) to the annotated types (:func:`coerce`) and
checks numeric ranges (:func:`check_range`: finite, ``> 0`` unless the parameter is
in :data:`NON_NEGATIVE` or declares its own ``min``, and at most the config's
``MAXIMA`` for sizes that set an allocation); :func:`parse_params` reads the
CLI's ``k=v`` items. :mod:`microdenoise.registry` builds every method through it.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from .errors import InputError

__all__ = ["NON_NEGATIVE", "check_range", "coerce", "field_types", "make_config",
           "parse_params"]


def field_types(config_cls: type[Any]) -> dict[str, Any]:
    return typing.get_type_hints(config_cls)


def make_config(config_cls: type[Any], params: dict[str, Any], *, method: str = "") -> Any:
    """Build a frozen config, checking names and coercing strings (``--param k=v``)."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(params) - fields)
    renamed = {k: v for k, v in getattr(config_cls, "RENAMED", {}).items() if k in unknown}
    if renamed:
        old, new = next(iter(renamed.items()))
        raise InputError(f"parameter {old} of method {method!r} is now called {new}: "
                         f"use {new}={params[old]}")
    if unknown:
        raise InputError(
            f"unknown parameter(s) {', '.join(unknown)} for method {method!r}; "
            f"valid: {', '.join(sorted(fields))}"
        )
    hints = field_types(config_cls)
    values = {k: coerce(v, hints[k], name=k) for k, v in params.items()}
    by_name = {f.name: f for f in dataclasses.fields(config_cls)}
    maxima = getattr(config_cls, "MAXIMA", {})
    for key, value in values.items():
        check_range(key, value, by_name[key].metadata.get("min"), method=method,
                    maximum=maxima.get(key))
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as exc:
        raise InputError(f"bad parameters for method {method!r}: {exc}") from None


#: Numeric parameters for which 0 is meaningful (a seed, a weight or term switched off,
#: "no patience", a fraction or percentile that may be 0). Every other int/float
#: parameter of every method must be > 0; a config field may also declare its own
#: lower bound with ``dataclasses.field(metadata={"min": ...})``.
NON_NEGATIVE = frozenset({
    "seed", "g_map", "stage1_steps", "stop_patience", "lr_patience", "n_epochs",
    "n_epochs_decay", "lambda_gan", "lambda_l1", "lambda_ssim", "lambda_tv", "lambda_cl",
    "positivity", "tv", "val_fraction", "val_from", "beta1", "beta2", "percentiles",
    "target_percentiles", "background",
})


def check_range(name: str, value: Any, minimum: float | None = None, *,
                method: str = "", maximum: float | None = None) -> None:
    """Refuse a number (or a tuple of numbers) outside a parameter's range.

    The range is ``minimum`` when given, else ``>= 0`` for the names in
    :data:`NON_NEGATIVE`, else ``> 0``; and at most ``maximum`` where the config
    declares one (``Config.MAXIMA``, by field name: the sizes that set an allocation,
    so that ``size=1e9`` is refused before any memory is asked for). NaN and
    infinities are refused. ``None`` (a default computed later) passes.
    """
    items = value if isinstance(value, tuple) else (value,)
    of = f" of method {method!r}" if method else ""
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | float):
            continue
        if not math.isfinite(item):
            raise InputError(f"parameter {name}{of} must be a finite number, got {value!r}")
        if maximum is not None and item > maximum:
            raise InputError(f"parameter {name}{of} must be at most {maximum:g}, got {value!r}")
        if minimum is not None:
            ok, rule = item >= minimum, f">= {minimum:g}"
        elif name in NON_NEGATIVE:
            ok, rule = item >= 0, ">= 0"
        else:
            ok, rule = item > 0, "> 0"
        if not ok:
            raise InputError(f"parameter {name}{of} must be {rule}, got {value!r}")


def coerce(value: Any, hint: Any, *, name: str) -> Any:
    """Convert ``value`` (often a string from the CLI) to the annotated type ``hint``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, name=name)
            except InputError as exc:
                errors.append(str(exc).removeprefix(f"parameter {name} ").split(", not ")[0])
        raise InputError(f"parameter {name} {', or '.join(errors)}, not {value!r}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise InputError(f"parameter {name} must be one of {', '.join(map(str, args))}, "
                         f"not {value!r}")
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else list(value)
        inner = args[0] if args else str
        return tuple(coerce(v, inner, name=name) for v in items)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise InputError(f"parameter {name} must be true or false, not {value!r}")
    if hint in (int, float):
        if isinstance(value, bool):
            raise InputError(f"parameter {name} must be a number, not {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InputError(f"parameter {name} must be a number, not {value!r}") from None
        if not math.isfinite(number):
            raise InputError(f"parameter {name} must be a finite number, not {value!r}")
        if hint is int:
            if number != int(number):
                raise InputError(f"parameter {name} must be a whole number, not {value!r}")
            return int(number)
        return number
    if hint is str:
        return str(value)
    return value


def parse_params(items: typing.Iterable[str]) -> dict[str, str]:
    """Parse CLI ``k=v`` strings into a dict (values stay strings; configs coerce them)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--param takes key=value, got {item!r}")
        if key.strip() in out:
            raise InputError(f"--param {key.strip()} is given twice ({out[key.strip()]!r} and "
                             f"{value.strip()!r}); give each parameter once")
        out[key.strip()] = value.strip()
    return out
