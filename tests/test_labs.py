"""The coursework: every notebook's graded exercises follow the course's nbgrader convention, the
student versions fail exactly at their checks, and autograding marks what it should.

Three kinds of test, cheapest first:

(a) the convention, read from the committed notebooks (no execution): each exercise is a
    heading ``### Exercise N.k: title (P points)``, a solution cell whose one solution region
    lies inside a function body, and a locked check cell worth P points; a planted common
    mistake per notebook in ``tests/coursework/planted/<stem>.json``.
(b) the student versions, made by nbgrader (``tools/labs.py``, as ``make student`` does),
    executed as handed out: errors at the check cells, each an ``ExerciseFailed`` saying the
    exercise is not answered yet, and nowhere else.
(c) autograding (``nbgrader autograde``, as ``make grade`` does): the untouched student copies
    score 0 on every exercise, the solved copies (the instructor notebooks) full marks, and a
    copy with the planted mistake loses exactly its points.

Executing notebooks is the cost, so (b) and (c) share one autograde run per kind of copy
(untouched, solved, planted), run one after the other, and only notebooks that have
exercises are submitted (nbval executes the others in ``make test`` already).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spikelib.data import ensure_synthetic

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
PLANTED_DIR = Path(__file__).resolve().parent / "coursework" / "planted"
WORK_DIR = REPO / "build" / "test-labs"  # inside the repository: the notebooks find data/ from there
MIN_EXERCISES = 3
KINDS = ("untouched", "solved", "planted")

HEADING = re.compile(r"^### Exercise (\d+)\.(\d+): (.+) \((\d+) points?\)\s*$", re.M)
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"


def _load_labs_tool():
    spec = importlib.util.spec_from_file_location("labs_tool", REPO / "tools" / "labs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


labs = _load_labs_tool()


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
    indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
    stub = [indent + line for line in STUB.split("\n")]
    student = "\n".join(lines[:begin] + stub + lines[end + 1 :])  # what nbgrader hands out
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


# (b) and (c): one autograde run per kind of copy ------------------------------------------------


def _planted_copy(path: Path, out: Path) -> None:
    planted = json.loads((PLANTED_DIR / f"{path.stem}.json").read_text())
    notebook = json.loads(path.read_text(encoding="utf-8"))
    [cell] = [c for c in notebook["cells"] if _nbgrader(c).get("grade_id") == planted["grade_id"]]
    cell["source"] = planted["solution"]
    out.write_text(json.dumps(notebook, indent=1, ensure_ascii=False), encoding="utf-8")


@pytest.fixture(scope="module")
def graded():
    """Generate the student versions once, then autograde the three kinds of copy, one after the other.

    Returns ``{"release": Path, "with_exercises": [Path], kind: {"course": Path, "marks": ...}}``.
    """
    with_exercises = [path for path in NOTEBOOKS if exercises(path)]
    if not with_exercises:
        pytest.skip("no notebook has exercises")
    if WORK_DIR.exists():
        shutil.rmtree(WORK_DIR)
    ensure_synthetic(None, progress=False)  # once, before three kernels could race to generate it
    base = WORK_DIR / "base"
    release = labs.generate(base, with_exercises)
    results: dict = {"release": release, "with_exercises": with_exercises}
    returncodes = {}
    start = time.perf_counter()
    for kind in KINDS:
        course = WORK_DIR / kind
        shutil.copytree(base, course)
        submitted = course / "submitted" / kind / labs.ASSIGNMENT
        submitted.mkdir(parents=True)
        for path in with_exercises:
            if kind == "untouched":
                shutil.copy2(release / path.name, submitted / path.name)
            elif kind == "solved":
                shutil.copy2(path, submitted / path.name)
            else:
                _planted_copy(path, submitted / path.name)
        labs.with_scripts_on_path()
        command = [sys.executable, "-m", "nbgrader", "autograde", labs.ASSIGNMENT, "--force", "--log-level=WARN"]
        env = {
            **os.environ,
            "LABS_COURSE_DIR": str(course),
            "PYTHONPATH": str(REPO),
            "SPIKELIB_RUNS": str(course / "runs"),  # each copy trains its own models, no shared checkpoints
        }
        # One run at a time: kernels launched at the same moment by several processes can draw
        # the same free TCP port from jupyter_client, and one of them then dies or hangs (seen
        # here: a libzmq assertion in one kernel and a hung one in the next notebook).
        with (WORK_DIR / f"{kind}.log").open("w") as log:
            process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
            returncodes[kind] = process.wait(timeout=3600)
    for kind, returncode in returncodes.items():
        assert returncode == 0, f"nbgrader autograde ({kind}) failed:\n{(WORK_DIR / f'{kind}.log').read_text()[-3000:]}"
        course = WORK_DIR / kind
        results[kind] = {"course": course, "marks": labs.scores(course, [kind])[kind]}
    print(f"\nautograde of {len(with_exercises)} notebooks x {len(KINDS)} copies: {time.perf_counter() - start:.0f} s")
    return results


def _check_ids(path: Path) -> dict[str, int]:
    return {_nbgrader(e["check"])["grade_id"]: _nbgrader(e["check"])["points"] for e in exercises(path)}


def _errors(autograded: Path) -> dict[str, list[dict]]:
    """Error outputs of an executed notebook, by the grade_id (or index) of their cell."""
    found = {}
    for index, cell in enumerate(_cells(autograded)):
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            found[_nbgrader(cell).get("grade_id", f"cell {index}")] = errors
    return found


def test_student_versions_hold_no_solutions_no_hidden_tests_no_outputs(graded):
    for path in graded["with_exercises"]:
        student = graded["release"] / path.name
        text = student.read_text(encoding="utf-8")
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
            assert marker not in text, f"student {path.name} still holds {marker}"
        cells = _cells(student)
        assert not [c for c in cells if c.get("outputs")], f"student {path.name} has outputs"
        solutions = [c for c in cells if _nbgrader(c).get("solution")]
        assert len(solutions) == len(exercises(path))
        assert all("raise NotImplementedError()" in _source(c) for c in solutions)
        # everything else is the instructor's notebook, cell for cell
        assert [_source(c) for c in cells if not _nbgrader(c)] == [
            _source(c) for c in _cells(path) if not _nbgrader(c)
        ], f"student {path.name}: cells other than the exercises changed"


def test_student_versions_fail_exactly_at_the_checks_with_feedback(graded):
    for path in graded["with_exercises"]:
        autograded = graded["untouched"]["course"] / "autograded" / "untouched" / labs.ASSIGNMENT / path.name
        errors = _errors(autograded)
        assert set(errors) == set(_check_ids(path)), (
            f"student {path.name}: errors in {sorted(errors)}, expected at the checks {sorted(_check_ids(path))}"
        )
        for grade_id, outputs in errors.items():
            [error] = outputs
            number = grade_id.split("-")[1] + "." + grade_id.split("-")[2]
            assert error["ename"] == "ExerciseFailed", f"{path.name} {grade_id}: {error['ename']}: {error['evalue']}"
            assert error["evalue"].startswith(f"Exercise {number} is not answered yet"), error["evalue"]


def test_untouched_student_copies_score_zero(graded):
    for path in graded["with_exercises"]:
        marks = graded["untouched"]["marks"][path.stem]
        assert set(marks) == set(_check_ids(path)), f"{path.name}: graded cells {sorted(marks)}"
        assert all(score == 0 for score, _ in marks.values()), f"{path.name}: {marks}"
        assert {grade_id: max_score for grade_id, (_, max_score) in marks.items()} == _check_ids(path)


def test_solved_copies_get_full_marks(graded):
    for path in graded["with_exercises"]:
        marks = graded["solved"]["marks"][path.stem]
        assert marks and all(score == max_score > 0 for score, max_score in marks.values()), f"{path.name}: {marks}"
        autograded = graded["solved"]["course"] / "autograded" / "solved" / labs.ASSIGNMENT / path.name
        assert not _errors(autograded), f"solved {path.name}: {sorted(_errors(autograded))}"


def test_planted_mistake_loses_exactly_its_points(graded):
    for path in graded["with_exercises"]:
        planted = json.loads((PLANTED_DIR / f"{path.stem}.json").read_text())
        check_id = planted["grade_id"].replace("-solution", "-check")
        marks = graded["planted"]["marks"][path.stem]
        lost = {grade_id: max_score - score for grade_id, (score, max_score) in marks.items() if score < max_score}
        assert lost == {check_id: planted["points_lost"]}, f"planted {path.name}: lost {lost}"
        autograded = graded["planted"]["course"] / "autograded" / "planted" / labs.ASSIGNMENT / path.name
        errors = _errors(autograded)
        assert set(errors) == {check_id}, f"planted {path.name}: errors in {sorted(errors)}"
        [error] = errors[check_id]
        assert error["ename"] == "ExerciseFailed" and "not answered" not in error["evalue"], error["evalue"]
