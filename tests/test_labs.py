"""The coursework: every notebook's graded exercises follow the course's nbgrader convention, and
the student versions fail, and mark, as they should. No notebook is executed here for it.

(a) the convention, read from the committed notebooks: each exercise is a heading
    ``### Exercise N.k: title (P points)``, a solution cell whose one solution region lies inside
    a function body, and a locked check cell worth P points; a planted common mistake per
    notebook in ``tests/coursework/planted/<stem>.json``.
(b) static proof that a student version can fail only at its check cells: a solution cell binds
    one name, and no later cell reads it or what a check cell binds from its check call on (so
    a stub or a failed check changes nothing after it), and hidden tests bind nothing the lesson reads.
(c) the grading probes (``tests/notebook_probes.py``): while ``make test`` executes each notebook
    once, every check cell that passes is run again, in the same kernel, against the stub
    (as nbgrader marks it, and as the student sees it) and against the planted mistake.
    Together with (b): the student version fails exactly at its checks with "not answered", the
    solved one at none, and the planted copy at the planted check alone, so nbgrader gives
    0 / full marks / full marks less exactly the planted points. ``tests/test_grading.py``
    runs nbgrader end to end on notebook 00, with its real point counting.
"""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path

import pytest
from notebook_probes import stub_of

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
PLANTED_DIR = Path(__file__).resolve().parent / "coursework" / "planted"
MIN_EXERCISES = 3

HEADING = re.compile(r"^### Exercise (\d+)\.(\d+): (.+) \((\d+) points?\)\s*$", re.M)


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _nbgrader(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _number(path: Path) -> int:
    return int(path.name[:2])


def exercises(path: Path) -> list[dict]:
    """The exercises of a notebook, in order: heading, solution and check cells and their indices."""
    cells = _cells(path)
    found = []
    for index, cell in enumerate(cells):
        if not _nbgrader(cell).get("solution") or cell["cell_type"] != "code":
            continue
        found.append(
            {
                "solution_index": index,
                "solution": cell,
                "heading": cells[index - 1] if index > 0 else None,
                "check_index": index + 1,
                "check": cells[index + 1] if index + 1 < len(cells) else None,
            }
        )
    return found


def _solution_region_in_function(source: str) -> str | None:
    """Why ``source`` is not one function whose body holds the one solution region, or None."""
    if source.count("### BEGIN SOLUTION") != 1 or source.count("### END SOLUTION") != 1:
        return "needs exactly one ### BEGIN SOLUTION / ### END SOLUTION pair"
    lines = source.split("\n")
    begin = next(i for i, line in enumerate(lines) if "### BEGIN SOLUTION" in line)
    end = next(i for i, line in enumerate(lines) if "### END SOLUTION" in line)
    if end < begin:
        return "### END SOLUTION comes before ### BEGIN SOLUTION"
    student = stub_of(source)  # what nbgrader hands out
    try:
        tree = ast.parse(student)
    except SyntaxError as error:
        return f"the student version does not parse: {error}"
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.FunctionDef | ast.ClassDef):
        return "the cell must hold exactly one function (or one class, e.g. an autograd Function) and nothing else"
    functions = [node for node in ast.walk(tree.body[0]) if isinstance(node, ast.FunctionDef)]
    raises = [node for function in functions for node in ast.walk(function) if isinstance(node, ast.Raise)]
    if not any(ast.unparse(node.exc) == "NotImplementedError()" for node in raises if node.exc):
        return "the solution region is not inside a function body"
    return None


# (a) the convention, on the committed notebooks ------------------------------------------------


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_enough_exercises(path):
    found = exercises(path)
    assert len(found) >= MIN_EXERCISES, (
        f"{path.name}: {len(found)} graded exercises, the course asks for at least {MIN_EXERCISES} per notebook"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_exercises_follow_the_convention(path):
    number = _number(path)
    grade_ids = [_nbgrader(cell)["grade_id"] for cell in _cells(path) if _nbgrader(cell)]
    assert len(grade_ids) == len(set(grade_ids)), f"{path.name}: duplicate grade_ids in {grade_ids}"
    for k, exercise in enumerate(exercises(path), start=1):
        where = f"{path.name}, exercise {number}.{k}"
        solution, check, heading = exercise["solution"], exercise["check"], exercise["heading"]
        assert _nbgrader(solution) == {
            "grade": False,
            "grade_id": f"ex-{number}-{k}-solution",
            "locked": False,
            "schema_version": 3,
            "solution": True,
            "task": False,
        }, f"{where}: solution cell metadata {_nbgrader(solution)}"
        problem = _solution_region_in_function(_source(solution))
        assert problem is None, f"{where}: {problem}"
        assert heading is not None and heading["cell_type"] == "markdown", f"{where}: no statement above it"
        match = HEADING.search(_source(heading))
        assert match, f"{where}: the statement must open with '### Exercise {number}.{k}: <title> (P points)'"
        assert (int(match[1]), int(match[2])) == (number, k), f"{where}: heading says {match[1]}.{match[2]}"
        assert check is not None and check["cell_type"] == "code", f"{where}: no check cell after the solution"
        meta = _nbgrader(check)
        assert meta.get("grade_id") == f"ex-{number}-{k}-check", f"{where}: check cell grade_id {meta.get('grade_id')}"
        assert meta.get("grade") is True and meta.get("locked") is True and not meta.get("solution"), where
        assert meta.get("points") == int(match[4]) > 0, f"{where}: heading says {match[4]} points, cell {meta}"
        check_source = _source(check)
        assert re.search(rf"check_(value|function)\(\s*\"{number}\.{k}\"", check_source), (
            f'{where}: the check cell must call check_value or check_function with exercise "{number}.{k}"'
        )
        assert check_source.count("### BEGIN HIDDEN TESTS") == check_source.count("### END HIDDEN TESTS") <= 1


_OWN_SCOPE = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.Lambda)


def _assigned_names(source: str) -> set[str]:
    """Names a cell binds at the notebook's top level (comprehension variables and the
    locals of functions stay in their own scope)."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
            return
        if isinstance(node, _OWN_SCOPE):
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_hidden_tests_leave_the_lesson_unchanged(path):
    """The student versions lose the hidden tests: a name they set must not be one the lesson
    reads later (a reseeded ``generator`` would change every random number after it)."""
    cells = _cells(path)
    for exercise in exercises(path):
        source = _source(exercise["check"])
        if "### BEGIN HIDDEN TESTS" not in source:
            continue
        hidden = source.split("### BEGIN HIDDEN TESTS", 1)[1].split("### END HIDDEN TESTS", 1)[0]
        visible_before = source.split("### BEGIN HIDDEN TESTS", 1)[0]
        set_here = _assigned_names(hidden) - _assigned_names(visible_before)
        later = cells[exercise["check_index"] + 1 :]
        lesson = "\n".join(_source(c) for c in later if c["cell_type"] == "code" and not _nbgrader(c))
        lesson_names = {n.id for n in ast.walk(ast.parse(lesson)) if isinstance(n, ast.Name)}
        clobbered = set_here & lesson_names
        assert not clobbered, (
            f"{path.name}, {_nbgrader(exercise['check'])['grade_id']}: hidden tests set {sorted(clobbered)}, "
            "names the lesson uses later; give them their own names (e.g. check_generator)"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_planted_mistake_names_an_exercise_and_its_points(path):
    found = exercises(path)
    if not found:
        pytest.skip(f"{path.name} has no exercises yet")
    planted_path = PLANTED_DIR / f"{path.stem}.json"
    assert planted_path.exists(), f"{path.name}: no planted common mistake in {planted_path.relative_to(REPO)}"
    planted = json.loads(planted_path.read_text())
    by_id = {_nbgrader(e["solution"])["grade_id"]: e for e in found}
    assert planted["grade_id"] in by_id, f"{planted_path.name}: {planted['grade_id']} is not a solution cell"
    exercise = by_id[planted["grade_id"]]
    assert planted["points_lost"] == _nbgrader(exercise["check"])["points"]
    assert planted["solution"].strip() != _source(exercise["solution"]).strip(), "the planted copy changes nothing"
    problem = _solution_region_in_function(planted["solution"])
    assert problem is None, f"{planted_path.name}: {problem}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_opens_with_prerequisites_and_closes_with_next_and_references(path):
    cells = _cells(path)
    before = _source(cells[1]) if len(cells) > 1 else ""
    assert cells[1]["cell_type"] == "markdown" and before.startswith("## Before you start"), (
        f"{path.name}: the cell after the title must be '## Before you start' with the prerequisites"
    )
    earlier = [p.name for p in NOTEBOOKS if _number(p) < _number(path)]
    if earlier:
        assert any(f"]({name})" in before for name in earlier), f"{path.name}: link the earlier notebooks it needs"
    closing = "\n".join(_source(c) for c in cells[-3:] if c["cell_type"] == "markdown")
    assert "## What's next" in closing, f"{path.name}: end with a '## What's next' cell"
    later = [p.name for p in NOTEBOOKS if _number(p) == _number(path) + 1]
    if later:
        assert f"]({later[0]})" in closing, f"{path.name}: 'What's next' must link {later[0]}"
    assert "## References" in closing, f"{path.name}: end with a '## References' list"
    references = closing.split("## References", 1)[1]
    entries = re.split(r"\n- ", "\n" + references.strip())[1:]
    assert entries, f"{path.name}: the references list is empty"
    for entry in entries:
        assert re.search(r"https://doi\.org/10\.\S+|arxiv\.org/abs/\d{4}\.\d{4,5}|arXiv:\d{4}\.\d{4,5}", entry), (
            f"{path.name}: reference without a DOI or arXiv link: {entry[:80]!r}"
        )


# (b) static proof: a stub or a failed check changes nothing after it ------------------------------

CHECK_CALLS = {"check_value", "check_function"}


def _binds(nodes: list[ast.stmt]) -> set[str]:
    return set().union(*(_assigned_names(ast.unparse(node)) for node in nodes)) if nodes else set()


def _reads(source: str) -> set[str]:
    """Names a cell reads that it does not bind itself (anywhere in it: a flow-insensitive bound)."""
    tree = ast.parse(source)
    loaded = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    return loaded - _assigned_names(source)


def _calls_a_check(node: ast.stmt) -> bool:
    return any(
        isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in CHECK_CALLS
        for call in ast.walk(node)
    )


def dependencies_on_graded_cells(path: Path) -> list[str]:
    """Each read, by a later cell, of a name that differs between the instructor and student versions.

    Those names: what a solution cell binds (a stub in the student version), and what a check cell
    binds from its first ``check_*`` call on (a failed check stops there). A check cell may read
    its own solution's name.
    """
    unsafe: dict[str, str] = {}  # name -> the graded cell that last bound it
    found = []
    for index, cell in enumerate(_cells(path)):
        if cell["cell_type"] != "code":
            continue
        source, meta = _source(cell), _nbgrader(cell)
        where = meta.get("grade_id", f"cell {index}")
        own = {n for n, cell_id in unsafe.items() if cell_id == where.replace("-check", "-solution")}
        found += [
            f"{where} reads {name!r}, bound by {unsafe[name]}" for name in sorted((_reads(source) & set(unsafe)) - own)
        ]
        if meta.get("solution"):
            unsafe.update(dict.fromkeys(_assigned_names(source), where))
        elif meta.get("grade"):
            body = ast.parse(source).body
            first = next((i for i, node in enumerate(body) if _calls_a_check(node)), len(body))
            for name in _binds(body[:first]):
                unsafe.pop(name, None)
            unsafe.update(dict.fromkeys(_binds(body[first:]), where))
        else:
            for name in _assigned_names(source):
                unsafe.pop(name, None)
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_later_cell_reads_what_a_student_version_changes(path):
    found = dependencies_on_graded_cells(path)
    assert not found, f"{path.name}: a student version would fail outside its checks: {found}"


def test_the_dependency_check_can_fail(tmp_path):
    cells = [
        {
            "cell_type": "code",
            "source": "def area(box):\n    return 0\n",
            "metadata": {"nbgrader": {"solution": True, "grade_id": "ex-9-1-solution"}},
        },
        {
            "cell_type": "code",
            "source": "check_function('9.1', area)\nresult = 1\n",
            "metadata": {"nbgrader": {"grade": True, "grade_id": "ex-9-1-check"}},
        },
        {"cell_type": "code", "source": "print(area(1), result)\n", "metadata": {}},
    ]
    path = tmp_path / "99_demo.ipynb"
    path.write_text(json.dumps({"cells": cells}))
    assert dependencies_on_graded_cells(path) == [
        "cell 2 reads 'area', bound by ex-9-1-solution",
        "cell 2 reads 'result', bound by ex-9-1-check",
    ]


# (c) the grading probes, read once every notebook has run ---------------------------------------


def _probe_records() -> dict[tuple[str, str], dict]:
    log = Path(os.environ.get("SPIKELIB_PROBE_LOG", "/nonexistent"))
    if not log.is_file():
        return {}
    records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {(r["notebook"], r["grade_id"]): r for r in records}


def _check_ids(path: Path) -> dict[str, int]:
    return {_nbgrader(e["check"])["grade_id"]: _nbgrader(e["check"])["points"] for e in exercises(path)}


@pytest.mark.after_notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_checks_fail_as_marked_on_stub_and_planted_mistake(path, notebooks_run):
    """Every check passed with the solution (else no record), failed with "not answered" on the stub,
    as marked and as the student sees it, and with its own feedback on the planted mistake."""
    if path.stem not in notebooks_run:
        pytest.skip(f"{path.name} was not executed in this session (make test runs every notebook)")
    records = _probe_records()
    planted = json.loads((PLANTED_DIR / f"{path.stem}.json").read_text())
    planted_check = planted["grade_id"].replace("-solution", "-check")
    for grade_id in _check_ids(path):
        record = records.get((path.stem, grade_id))
        assert record is not None, f"{path.name} {grade_id}: no probe record (did its check cell pass?)"
        number = ".".join(grade_id.split("-")[1:3])
        for view in ("untouched", "student"):
            outcome = record[view]
            assert outcome["ename"] == "ExerciseFailed", f"{path.name} {grade_id} ({view}): {outcome}"
            assert outcome["evalue"].startswith(f"Exercise {number} is not answered yet"), outcome["evalue"]
        if grade_id == planted_check:
            outcome = record["planted"]
            assert outcome["ename"] == "ExerciseFailed", f"{path.name} {grade_id} (planted): {outcome}"
            assert "not answered" not in outcome["evalue"], outcome["evalue"]
        else:
            assert "planted" not in record
