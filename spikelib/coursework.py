"""Checks for the notebooks' graded exercises: specific feedback instead of a bare ``AssertionError``.

Every exercise in the course is a function the student completes (nbgrader removes the
body between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` and leaves
``raise NotImplementedError()``). An autograded test cell then calls one of these checks:

- :func:`check_value` compares one answer (a number, an array, a tensor) with the expected one;
- :func:`check_function` calls the student's function on named cases and compares each result
  with a reference implementation, and, when a known wrong implementation gives the student's
  answer, names that mistake.

A failed check raises :class:`ExerciseFailed` (an ``AssertionError``, so nbgrader scores the
cell zero) whose message says which case failed, what came back, what was expected, and a hint.
A passed check prints one line. The notebook goes on either way in the lesson's own cells,
which use ``spikelib``'s version, never the student's.

Example::

    >>> check_value("1.1", predicted_spike_count, 3, hint="count the threshold crossings")
    Exercise 1.1 passed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch

__all__ = ["Case", "ExerciseFailed", "check_function", "check_value"]


class ExerciseFailed(AssertionError):
    """An exercise's answer is missing or wrong; the message is the feedback to read."""


class Case(NamedTuple):
    """One call of the student's function: a name for the feedback, and its arguments."""

    name: str
    args: tuple[object, ...]
    kwargs: Mapping[str, object] = {}


def _as_array(value: object) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


def _summary(value: object) -> str:
    if isinstance(value, torch.Tensor | np.ndarray):
        array = _as_array(value)
        if array.size <= 8:
            return np.array2string(array, precision=4, separator=", ")
        return f"an array of shape {tuple(array.shape)}"
    if isinstance(value, float):  # 0.3333333432674408 (a float32 result) reads as 0.333333
        return f"{value:.6g}"
    if isinstance(value, tuple | list) and len(value) <= 8:
        inner = ", ".join(_summary(item) for item in value)
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    return repr(value)


def _mismatch(got: object, expected: object, rtol: float, atol: float) -> str | None:
    """Why ``got`` differs from ``expected``, or None when they agree within the tolerance."""
    if got is None:
        return "the answer is None (did the function return its result?)"
    if isinstance(got, str | bytes):  # numpy would read "3" as the number 3
        return f"got the text {got!r}; return a number, not a string"
    try:
        got_array = _as_array(got)
    except (TypeError, ValueError):
        return f"got {got!r}, which is not a number or an array"
    expected_array = _as_array(expected)
    if got_array.shape != expected_array.shape:
        return f"got shape {tuple(got_array.shape)}, expected shape {tuple(expected_array.shape)}"
    unexpected = ~np.isfinite(got_array) & (got_array != expected_array)  # inf is right where inf is expected
    if unexpected.any():
        return f"got {_summary(got)}, with NaN or infinity where the expected answer, {_summary(expected)}, differs"
    if np.allclose(got_array, expected_array, rtol=rtol, atol=atol, equal_nan=True):
        return None
    differences = np.abs(got_array - expected_array)
    worst = float(np.max(np.where(np.isnan(differences), 0.0, differences)))
    if got_array.size <= 8:
        return f"got {_summary(got)}, expected {_summary(expected)} (largest difference {worst:.3g})"
    wrong = ~np.isclose(got_array, expected_array, rtol=rtol, atol=atol, equal_nan=True)
    first = tuple(int(i) for i in np.argwhere(wrong)[0])
    return (
        f"{int(wrong.sum())} of {wrong.size} values differ (largest difference {worst:.3g}); "
        f"the first at index {first}: got {got_array[first]:g}, expected {expected_array[first]:g}"
    )


def _fresh(case: Case) -> tuple[tuple[object, ...], dict[str, object]]:
    """A private copy of a case's arguments, so a function that writes into its input
    (``mem += cur``) changes neither the case nor what the reference is called with."""
    return copy.deepcopy(case.args), copy.deepcopy(dict(case.kwargs))


def _call(exercise: str, function: Callable[..., object], case: Case) -> object:
    args, kwargs = _fresh(case)
    try:
        return function(*args, **kwargs)
    except NotImplementedError:
        raise ExerciseFailed(
            f"Exercise {exercise} is not answered yet: replace `raise NotImplementedError()` "
            f"in `{getattr(function, '__name__', 'the function')}` with your code."
        ) from None
    except ExerciseFailed:
        raise
    except Exception as error:  # the student's code crashed: report where, as feedback
        raise ExerciseFailed(
            f"Exercise {exercise}, case {case.name!r}: your function raised {type(error).__name__}: {error}"
        ) from error


def check_value(
    exercise: str,
    answer: Callable[[], object],
    expected: object,
    *,
    hint: str,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    mistakes: Mapping[str, object] | None = None,
) -> None:
    """Check a one-value answer (a prediction written down, a number worked out).

    Args:
        exercise: the exercise's number as the notebook shows it, e.g. ``"1.2"``.
        answer: the student's function of no arguments that returns the answer.
        expected: the right answer (number, array or tensor).
        hint: what to look at again when the answer is wrong.
        rtol, atol: tolerances of the comparison (``numpy.allclose``).
        mistakes: known wrong answers by the mistake that gives them; a match is named.

    Raises:
        ExerciseFailed: when the answer is missing or differs from ``expected``.
    """
    got = _call(exercise, answer, Case("answer", ()))
    problem = _mismatch(got, expected, rtol, atol)
    if problem is not None:
        for mistake, wrong in (mistakes or {}).items():
            if _mismatch(got, wrong, rtol, atol) is None:
                raise ExerciseFailed(f"Exercise {exercise}: {problem}. This is what {mistake} gives.")
        raise ExerciseFailed(f"Exercise {exercise}: {problem}. Hint: {hint}")
    print(f"Exercise {exercise} passed.")


def check_function(
    exercise: str,
    function: Callable[..., object],
    reference: Callable[..., object],
    cases: Sequence[Case],
    *,
    hint: str,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    mistakes: Mapping[str, Callable[..., object]] | None = None,
) -> None:
    """Call the student's function on each case and compare it with a reference implementation.

    Outputs may be numbers, arrays, tensors, or tuples of them (compared element by element).
    Cases are checked in order and the first failure is reported, so put the simplest first.

    Args:
        exercise: the exercise's number as the notebook shows it, e.g. ``"3.1"``.
        function: the student's function.
        reference: the right implementation (usually ``spikelib``'s own).
        cases: the calls to make, each with a name the feedback quotes.
        hint: what to look at again when a case fails and no known mistake matches.
        rtol, atol: tolerances of the comparison (``numpy.allclose``).
        mistakes: wrong implementations by the mistake they make; when one of them gives the
            student's output on the failing case, the feedback names that mistake.

    Raises:
        ExerciseFailed: on the first case whose output is missing or differs from the reference.
    """
    if not cases:
        raise ValueError(f"exercise {exercise}: check_function needs at least one case")
    for case in cases:
        got = _call(exercise, function, case)
        args, kwargs = _fresh(case)
        expected = reference(*args, **kwargs)
        if isinstance(expected, float) and math.isnan(expected):
            raise ValueError(f"exercise {exercise}: the reference returned NaN on case {case.name!r}; fix the case")
        problem = _compare(got, expected, rtol, atol)
        if problem is None:
            continue
        for mistake, wrong in (mistakes or {}).items():
            wrong_output = _known_mistake(wrong, case)
            if wrong_output is not None and _compare(got, wrong_output, rtol, atol) is None:
                raise ExerciseFailed(
                    f"Exercise {exercise}, case {case.name!r}: {problem}. This is what {mistake} gives."
                )
        raise ExerciseFailed(f"Exercise {exercise}, case {case.name!r}: {problem}. Hint: {hint}")
    print(f"Exercise {exercise} passed ({len(cases)} cases).")


def _known_mistake(wrong: Callable[..., object], case: Case) -> object:
    """What a known wrong implementation gives on a case; None when it cannot run on it
    (a mistake that only makes sense for some cases must not hide the hint on the others)."""
    args, kwargs = _fresh(case)
    try:
        return wrong(*args, **kwargs)
    except Exception:  # the mistake does not apply to this case: no match
        return None


def _compare(got: object, expected: object, rtol: float, atol: float) -> str | None:
    if isinstance(expected, tuple):
        if not isinstance(got, tuple | list) or len(got) != len(expected):
            return f"expected a tuple of {len(expected)} values, got {_summary(got)}"
        for index, (got_item, expected_item) in enumerate(zip(got, expected, strict=True)):
            problem = _mismatch(got_item, expected_item, rtol, atol)
            if problem is not None:
                return f"output {index}: {problem}"
        return None
    return _mismatch(got, expected, rtol, atol)
