"""Student versions and offline marking of the course's graded exercises, with nbgrader.

    python tools/labs.py student [--out student]          (make student)
    python tools/labs.py grade SUBMISSIONS [--out DIR]    (make grade SUBMISSIONS=...)

The notebooks in ``notebooks/`` are the instructor versions: solutions in, executed. This
script copies them into an nbgrader course directory (``build/course`` by default, or
``$LABS_COURSE_DIR``) as the assignment ``labs`` and runs nbgrader there:

- ``student``: ``nbgrader generate_assignment labs`` removes the solution regions and hidden
  tests and clears the outputs; the student versions are copied to ``--out``.
- ``grade``: each ``SUBMISSIONS/<student_id>/<notebook>.ipynb`` is copied to
  ``submitted/<student_id>/labs/``, ``nbgrader autograde labs`` executes and marks it, and
  the marks are written to ``grades.csv`` (one row per student: each notebook's score and the
  total) and ``grades_by_exercise.csv`` (one row per student and exercise), in ``--out``.
  ``--feedback`` also writes nbgrader's HTML feedback (``feedback/<student_id>/labs/``).

Configuration: ``nbgrader_config.py`` at the repository root.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
ASSIGNMENT = "labs"


def course_dir() -> Path:
    """The nbgrader course directory: ``$LABS_COURSE_DIR``, else ``build/course``."""
    return Path(os.environ.get("LABS_COURSE_DIR", REPO / "build" / "course")).resolve()


def with_scripts_on_path() -> None:
    """Put this Python's scripts folder on ``PATH``: nbgrader's gradebook runs ``alembic`` from it,
    and ``make`` calls ``.venv/bin/python`` without activating the virtual environment."""
    scripts = str(Path(sys.executable).parent)
    if scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join(filter(None, [scripts, os.environ.get("PATH")]))


def nbgrader(course: Path, *args: str) -> None:
    """Run one nbgrader command on ``course`` with the repository's ``nbgrader_config.py``."""
    with_scripts_on_path()
    env = {**os.environ, "LABS_COURSE_DIR": str(course)}
    # the kernels that execute the notebooks must import this checkout's spikelib
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "nbgrader", *args, "--log-level=WARN"]
    subprocess.run(command, cwd=REPO, env=env, check=True)


def write_source(course: Path, notebooks: list[Path] | None = None) -> list[Path]:
    """Copy the instructor notebooks into ``source/labs`` (replacing what was there)."""
    source = course / "source" / ASSIGNMENT
    if source.exists():
        shutil.rmtree(source)
    source.mkdir(parents=True)
    paths = sorted(NOTEBOOKS.glob("*.ipynb")) if notebooks is None else notebooks
    for path in paths:
        shutil.copy2(path, source / path.name)
    return [source / path.name for path in paths]


def generate(course: Path, notebooks: list[Path] | None = None) -> Path:
    """Write the student versions into ``release/labs`` and the exercises into the gradebook."""
    write_source(course, notebooks)
    nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")
    return course / "release" / ASSIGNMENT


def strip_run_metadata(path: Path) -> None:
    """Drop what the instructor's run left in the metadata (widget state, cell timings):
    the outputs are cleared already, and a student's kernel makes its own widgets."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    notebook.get("metadata", {}).pop("widgets", None)
    for cell in notebook["cells"]:
        cell.get("metadata", {}).pop("execution", None)
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def student(out: Path, course: Path | None = None) -> list[Path]:
    """Generate the student versions and copy them to ``out`` (emptied first)."""
    course = course or course_dir()
    release = generate(course)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    written = []
    for path in sorted(release.glob("*.ipynb")):
        shutil.copy2(path, out / path.name)
        strip_run_metadata(out / path.name)
        written.append(out / path.name)
    return written


def submit(course: Path, submissions: Path) -> list[str]:
    """Copy ``submissions/<student_id>/*.ipynb`` into ``submitted/<student_id>/labs/``; return the ids."""
    students = sorted(p.name for p in submissions.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))
    if not students:
        raise SystemExit(
            f"no submissions found in {submissions}: expected one folder per student, "
            "each holding that student's notebooks (SUBMISSIONS/<student_id>/<notebook>.ipynb)"
        )
    for student_id in students:
        target = course / "submitted" / student_id / ASSIGNMENT
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for path in sorted((submissions / student_id).glob("*.ipynb")):
            shutil.copy2(path, target / path.name)
    return students


def scores(course: Path, students: list[str]) -> dict[str, dict[str, dict[str, tuple[float, float]]]]:
    """Marks from the gradebook: ``{student: {notebook: {grade_id: (score, max_score)}}}``."""
    from nbgrader.api import Gradebook  # lazy: nbgrader is a course extra, not a spikelib dependency

    with_scripts_on_path()
    marks: dict[str, dict[str, dict[str, tuple[float, float]]]] = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        assignment = gradebook.find_assignment(ASSIGNMENT)
        for student_id in students:
            marks[student_id] = {}
            for notebook in assignment.notebooks:
                submitted = gradebook.find_submission_notebook(notebook.name, ASSIGNMENT, student_id)
                marks[student_id][notebook.name] = {
                    grade.name: (float(grade.score), float(grade.max_score)) for grade in submitted.grades
                }
    return marks


def write_grades(marks: dict[str, dict[str, dict[str, tuple[float, float]]]], out: Path) -> tuple[Path, Path]:
    """``grades.csv`` (a row per student) and ``grades_by_exercise.csv`` (a row per student and exercise)."""
    out.mkdir(parents=True, exist_ok=True)
    notebooks = sorted({name for by_notebook in marks.values() for name in by_notebook})
    summary, detail = out / "grades.csv", out / "grades_by_exercise.csv"
    with summary.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["student_id", *notebooks, "total", "max_total"])
        for student_id, by_notebook in marks.items():
            totals = [sum(s for s, _ in by_notebook.get(name, {}).values()) for name in notebooks]
            max_total = sum(m for name in notebooks for _, m in by_notebook.get(name, {}).values())
            writer.writerow([student_id, *(f"{t:g}" for t in totals), f"{sum(totals):g}", f"{max_total:g}"])
    with detail.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["student_id", "notebook", "grade_id", "score", "max_score"])
        for student_id, by_notebook in marks.items():
            for name in notebooks:
                for grade_id, (score, max_score) in sorted(by_notebook.get(name, {}).items()):
                    writer.writerow([student_id, name, grade_id, f"{score:g}", f"{max_score:g}"])
    return summary, detail


def grade(submissions: Path, out: Path, course: Path | None = None, feedback: bool = False) -> Path:
    """Mark every student's notebooks in ``submissions`` offline; return the path of ``grades.csv``."""
    course = course or course_dir()
    if not (course / "release" / ASSIGNMENT).is_dir() or not (course / "gradebook.db").exists():
        generate(course)  # the gradebook must know the exercises and the released checksums
    students = submit(course, submissions.resolve())
    nbgrader(course, "autograde", ASSIGNMENT, "--force")
    if feedback:
        nbgrader(course, "generate_feedback", ASSIGNMENT, "--force")
    summary, _ = write_grades(scores(course, students), out)
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make_student = commands.add_parser("student", help="write the student versions")
    make_student.add_argument("--out", type=Path, default=REPO / "student")
    make_grade = commands.add_parser("grade", help="mark a folder of submissions")
    make_grade.add_argument("submissions", type=Path, help="a folder with one sub-folder of notebooks per student")
    make_grade.add_argument("--out", type=Path, default=REPO / "build" / "grades")
    make_grade.add_argument("--feedback", action="store_true", help="also write nbgrader's HTML feedback")
    args = parser.parse_args(argv)
    if args.command == "student":
        written = student(args.out)
        print(f"{len(written)} student notebooks in {args.out}")
    else:
        summary = grade(args.submissions, args.out, feedback=args.feedback)
        print(summary.read_text(), end="")
        print(f"grades written to {summary} and {summary.with_name('grades_by_exercise.csv')}")


if __name__ == "__main__":
    main()
