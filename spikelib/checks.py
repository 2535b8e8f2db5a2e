"""Argument checks shared by every layer: errors that name the value received and what is allowed."""

from __future__ import annotations

from typing import Any

__all__ = ["check_choice", "check_number"]


def check_choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def check_number(name: str, value: Any, low: float, high: float = float("inf"), integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        what = "an int" if integer else "a number"
        bounds = f">= {low}" if high == float("inf") else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {what} {bounds}, got {value!r}")
