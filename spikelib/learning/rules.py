"""Learning rules by name: what a run configuration's ``rule = "..."`` builds."""

from __future__ import annotations

from typing import Any

from spikelib.learning.base import LearningRule, LocalizationTargets
from spikelib.learning.bptt import BPTT
from spikelib.learning.decolle import DECOLLE

__all__ = ["RULES", "make_rule"]


#: Names accepted by :func:`make_rule`.
RULES: tuple[str, ...] = ("bptt", "decolle")


def make_rule(name: str, **kwargs: Any) -> LearningRule[LocalizationTargets]:
    """Build a learning rule by name: ``"bptt"`` -> :class:`BPTT`, ``"decolle"`` ->
    :class:`spikelib.learning.decolle.DECOLLE`, with ``kwargs`` passed to its constructor.

    Raises:
        ValueError: unknown name.
    """
    if name == "bptt":
        return BPTT(**kwargs)
    if name == "decolle":
        return DECOLLE(**kwargs)
    raise ValueError(f"unknown learning rule {name!r}; expected one of {list(RULES)}")
