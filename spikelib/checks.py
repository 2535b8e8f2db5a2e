"""Argument checks shared by every layer: errors that name the value received and what is allowed.

Three checks cover the package's range, type and choice checks, so every message reads the
same way (``"<name> must be <what is allowed>, got <value>"``):

* :func:`check_choice`: one of a fixed set of values (``coding``, ``reset``, ``norm`` ...);
* :func:`check_number`: an int or a number in a range, each end closed or open
  (``num_steps >= 1``, ``beta`` in [0, 1], ``tau > 0``);
* :func:`check_int_tuple`: a non-empty sequence of ints in a range, of a given length
  (channels and kernels of every pyramid level).

Each returns the value it checked (the tuple for :func:`check_int_tuple`), so a constructor
can check and store in one line. This module imports nothing from spikelib.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["check_choice", "check_number", "check_int_tuple"]


def check_choice(name: str, value: Any, allowed: Sequence[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``.

    Raises:
        ValueError: ``"<name> must be one of [...], got <value>"``.
    """
    if not any(value is option or (type(value) is type(option) and value == option) for option in allowed):
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def _bounds(low: float, high: float, low_open: bool, high_open: bool) -> str:
    if high == math.inf:
        return f"{'>' if low_open else '>='} {low:g}" if low != -math.inf else ""
    if low == -math.inf:
        return f"{'<' if high_open else '<='} {high:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def check_number(
    name: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    integer: bool = False,
    *,
    low_open: bool = False,
    high_open: bool = False,
    note: str = "",
) -> Any:
    """Return ``value`` if it is an int (``integer``) or a finite real number within the bounds.

    Args:
        name: the argument's name, for the message.
        value: what was received (``bool`` is refused: ``True`` is not a count).
        low, high: the bounds (infinite: none).
        integer: ints only.
        low_open, high_open: exclude the bound itself (``tau > 0``, ``threshold < 1``).
        note: appended to the allowed values in the message, e.g. ``"(0: all)"``.

    Raises:
        ValueError: ``"<name> must be an int >= 1, got 0"``,
            ``"<name> must be a number in [0, 1], got 1.5"``.
    """
    kinds = (int,) if integer else (int, float)
    bounds = _bounds(low, high, low_open, high_open)
    ok = not isinstance(value, bool) and isinstance(value, kinds) and (integer or math.isfinite(value))
    if ok:
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        ok = above and below
    if not ok:
        what = "an int" if integer else "a finite number" if not bounds else "a number"
        allowed = " ".join(part for part in (what, bounds, note) if part)
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return value


def check_int_tuple(
    name: str, value: Any, length: int | None = None, low: int = 1, allow_empty: bool = False
) -> tuple[int, ...]:
    """``value`` as a tuple of ints ``>= low`` (a single int is a tuple of one).

    Args:
        name: the argument's name, for the message.
        value: an int, or a list or tuple of ints.
        length: the number of entries required (``None``: any).
        low: the smallest entry allowed.
        allow_empty: accept an empty sequence.

    Raises:
        ValueError: an entry that is not an int ``>= low``, an empty sequence, or the
            wrong number of entries; the message shows the whole value.
    """
    items = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if (not items and not allow_empty) or any(isinstance(v, bool) or not isinstance(v, int) or v < low for v in items):
        empty = "" if allow_empty else "non-empty "
        raise ValueError(f"{name} must be a {empty}sequence of ints >= {low}, got {value!r}")
    if length is not None and len(items) != length:
        raise ValueError(f"{name} must have {length} entries (one per level), got {len(items)}: {value!r}")
    return items
