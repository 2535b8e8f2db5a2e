"""Grading probes, run inside each notebook's kernel while ``make test`` executes the notebook once.

After a check cell of an exercise has passed (the instructor's solution is in place), the probe
runs that check again, in a scratch copy of the kernel's namespace, against what nbgrader would
mark in its place:

- ``untouched``: the student version's stub (``raise NotImplementedError()``) with the check cell as
  nbgrader restores it for marking (hidden tests included);
- ``student``: the same stub with the check cell as the student sees it (hidden tests removed);
- ``planted``: the notebook's planted common mistake (``tests/coursework/planted/<notebook>.json``),
  where this exercise is the planted one.

Each outcome (the exception's name and message, or none) is appended as one JSON line to
``$SPIKELIB_PROBE_LOG``; ``tests/test_labs.py`` reads the verdicts once every notebook has run. The
probe leaves the kernel as it found it: names bound in the scratch namespace stay there, and the
random generators are restored, so the lesson after the check runs as if no probe had run.

Loaded by an IPython startup file that the root ``conftest.py`` writes; nothing here imports spikelib
at import time.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HIDDEN = ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"


def without_hidden_tests(source: str) -> str:
    """The check cell as the student version shows it."""
    while HIDDEN[0] in source:
        before, rest = source.split(HIDDEN[0], 1)
        source = before + rest.split(HIDDEN[1], 1)[1].lstrip("\n")
    return source


def stub_of(solution: str) -> str:
    """The solution cell as nbgrader hands it out: each solution region replaced by the stub, indented."""
    lines, out, inside = solution.split("\n"), [], False
    for line in lines:
        if "### BEGIN SOLUTION" in line:
            indent = line[: len(line) - len(line.lstrip())]
            out += [indent + stub_line for stub_line in STUB.split("\n")]
            inside = True
        elif "### END SOLUTION" in line:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)


def exercises_by_check(notebooks: Path = REPO / "notebooks") -> dict[str, dict[str, Any]]:
    """``{check cell source: exercise}`` for every graded exercise of the course."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(notebooks.glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        planted_path = REPO / "tests" / "coursework" / "planted" / f"{path.stem}.json"
        planted = json.loads(planted_path.read_text()) if planted_path.is_file() else {}
        for solution, check in zip(cells, cells[1:]):
            meta = solution.get("metadata", {}).get("nbgrader", {})
            if not meta.get("solution") or solution["cell_type"] != "code":
                continue
            solution_source, check_source = "".join(solution["source"]), "".join(check["source"])
            found[check_source.strip()] = {
                "notebook": path.stem,
                "grade_id": check.get("metadata", {}).get("nbgrader", {}).get("grade_id"),
                "solution": solution_source,
                "check": check_source,
                "planted": planted.get("solution") if planted.get("grade_id") == meta["grade_id"] else None,
            }
    return found


def _rng_state() -> tuple[Any, ...]:
    import numpy as np
    import torch

    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def _set_rng_state(state: tuple[Any, ...]) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(state[0])
    np.random.set_state(state[1])
    random.setstate(state[2])


def run_variant(namespace: dict[str, Any], solution: str, check: str) -> dict[str, Any]:
    """Define ``solution`` and run ``check`` in a copy of ``namespace``: the exception raised, if any."""
    scratch = dict(namespace)
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            exec(compile(solution, "<probe: solution>", "exec"), scratch)
            exec(compile(check, "<probe: check>", "exec"), scratch)
    except Exception as error:  # the verdict is the exception itself
        return {"ename": type(error).__name__, "evalue": str(error)}
    return {"ename": None, "evalue": None}


def probe(namespace: dict[str, Any], exercise: dict[str, Any]) -> dict[str, Any]:
    """The outcomes of the check against the stub, the student's view and the planted mistake."""
    state = _rng_state()
    try:
        stub = stub_of(exercise["solution"])
        record = {
            "notebook": exercise["notebook"],
            "grade_id": exercise["grade_id"],
            "untouched": run_variant(namespace, stub, exercise["check"]),
            "student": run_variant(namespace, stub, without_hidden_tests(exercise["check"])),
        }
        if exercise["planted"] is not None:
            record["planted"] = run_variant(namespace, exercise["planted"], exercise["check"])
        return record
    finally:
        _set_rng_state(state)


def install(shell: Any, log: str | None = None) -> None:
    """Probe every check cell that passes in ``shell`` (an IPython shell); records go to ``log``."""
    log = log or os.environ.get("SPIKELIB_PROBE_LOG")
    if not log:
        return
    exercises = exercises_by_check()

    def after_cell(result: Any) -> None:
        if result.error_before_exec is not None or result.error_in_exec is not None:
            return
        exercise = exercises.get((result.info.raw_cell or "").strip())
        if exercise is not None:
            with open(log, "a", encoding="utf-8") as file:
                file.write(json.dumps(probe(shell.user_ns, exercise)) + "\n")

    shell.events.register("post_run_cell", after_cell)
