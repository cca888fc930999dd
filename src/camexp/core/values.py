"""Checks of one setting's value, shared by the config checks, the data modules and the methods.

Each check takes the key (as the user writes it: ``model.head.width``, ``method.threshold``),
the value and the error class to raise (a :class:`~camexp.core.errors.UserError` subclass), and
returns the value converted. The message names the key, the value and what is allowed:
``key=value must be <allowed>.``; with a ``context`` (``method=adl``), ``key=value is not allowed
for method=adl: use <allowed>.``
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _refuse(key: str, value: Any, allowed: str, error: type[Exception], context: str | None,
            describe: str = "", note: str = "") -> Exception:
    allowed = f"{describe}, {allowed}" if describe else allowed
    if context:
        return error(f"{key}={value!r} is not allowed for {context}: use {allowed}{note}.")
    return error(f"{key}={value!r} must be {allowed}{note}.")


def check_choice(key: str, value: Any, error: type[Exception], allowed: Collection,
                 context: str | None = None) -> Any:
    """``value`` if it is one of ``allowed`` (listed sorted in the message)."""
    if value in allowed:
        return value
    if context:
        raise _refuse(key, value, f"one of {sorted(allowed)}", error, context)
    raise error(f"{key}={value!r} is not allowed; use one of {sorted(allowed)}.")


def check_positive(key: str, value: Any, error: type[Exception], note: str = "",
                   context: str | None = None) -> int:
    """``value`` if it is an integer > 0 (``note`` follows "a positive integer")."""
    if not _is_int(value) or value <= 0:
        raise _refuse(key, value, "a positive integer", error, context, note=note)
    return value


def check_count(key: str, value: Any, error: type[Exception], context: str | None = None,
                describe: str = "", note: str = "") -> int:
    """``value`` if it is an integer >= 0 (``describe`` says what it counts, before the rule)."""
    if not _is_int(value) or value < 0:
        raise _refuse(key, value, "an integer >= 0", error, context, describe, note)
    return value


def check_nonnegative(key: str, value: Any, error: type[Exception], context: str | None = None,
                      note: str = "") -> float:
    """``value`` as a float if it is a number >= 0."""
    if not _is_number(value) or value < 0:
        raise _refuse(key, value, "a number >= 0", error, context, note=note)
    return float(value)


def check_number(key: str, value: Any, error: type[Exception], context: str | None = None,
                 above: float | None = None, note: str = "") -> float:
    """``value`` as a float if it is a finite number, and ``> above`` when ``above`` is given."""
    import math

    ok = _is_number(value) and math.isfinite(value) and (above is None or value > above)
    if not ok:
        allowed = "a finite number" if above is None else f"a number > {above:g}"
        raise _refuse(key, value, allowed, error, context, note=note)
    return float(value)


def check_fraction(key: str, value: Any, error: type[Exception], context: str | None = None,
                   low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a float if it lies in [0, 1], the ends excluded as asked."""
    ok = _is_number(value) and (value > 0 if low_open else value >= 0)
    ok = ok and (value < 1 if high_open else value <= 1)
    if not ok:
        interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        raise _refuse(key, value, f"a number in {interval}", error, context)
    return float(value)


def check_flag(key: str, value: Any, error: type[Exception]) -> bool:
    """``value`` if it is a boolean (``true``/``false`` in YAML)."""
    if not isinstance(value, bool):
        raise _refuse(key, value, "true or false", error, None)
    return value
