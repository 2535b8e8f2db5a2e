"""Student versions and offline marking of the course's graded exercises, with nbgrader.

    python tools/labs.py student [--out student] [--labs lab00 lab03]                 (make student)
    python tools/labs.py grade SUBMISSIONS [--out build/grades] [--labs lab02] [--jobs N]
                         [--timeout S] [--submission-timeout S] [--feedback]           (make grade)

Each instructor notebook ``notebooks/NN_name.ipynb`` is its own nbgrader assignment ``labNN``.

- ``student``: copies the chosen labs into ``source/labNN/`` of the course directory
  (``build/course``, or ``$LABS_COURSE_DIR``), runs ``nbgrader generate_assignment`` there
  (solutions and hidden tests removed, outputs cleared) and copies the student versions to
  ``--out``. nbgrader's own commands work on that course directory afterwards.
- ``grade``: marks every ``SUBMISSIONS/<student_id>/NN_name.ipynb`` (matched to its lab by file
  name). Each (student, lab) is marked by its own ``nbgrader autograde labNN --student ID`` in a
  course directory of its own (``--out``/work/<student>/<lab>/: a copy of that lab's source,
  release and gradebook, made once per lab in ``--out``/templates/), so ``--jobs`` of them run
  side by side without sharing a gradebook. A cell may run ``--timeout`` seconds (default: the
  300 of ``nbgrader_config.py``) before it is interrupted, a whole submission
  ``--submission-timeout`` before its processes are killed. Each mark is kept in
  ``--out``/results/<student>/<lab>.json; ``grades.csv`` (a row per student and lab, with
  ``status`` ok / warning / failed and the ``reason``) and ``grades_by_exercise.csv`` are
  rewritten from all results there, so a later batch adds to or replaces rows, never drops them.
  A faulty submission (not a notebook, truncated, killing or hanging its kernel, edited or
  deleted check cells) gets a row saying so and the rest are still marked.

Exit status of ``grade``: 0 when at least one submission was marked (faulty ones are listed in
the summary), 1 when none could be marked, 2 on bad usage. Configuration: ``nbgrader_config.py``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
TOOLS = REPO / "tools"
SUBMISSION_TIMEOUT = 1800  # seconds for one submission, all cells together, before its processes are killed
MAGIC = {b"\x89PNG": "PNG image", b"\xff\xd8\xff": "JPEG image", b"%PDF": "PDF", b"PK\x03\x04": "zip archive"}


class UsageError(ValueError):
    """A lab, folder or submission layout that the command line got wrong (exit status 2)."""


class Stopped(Exception):
    """Marking was stopped (Ctrl-C) before this submission was marked: it keeps its earlier row."""


def course_dir() -> Path:
    """The nbgrader course directory: ``$LABS_COURSE_DIR``, else ``build/course``."""
    return Path(os.environ.get("LABS_COURSE_DIR", REPO / "build" / "course")).resolve()


def all_labs() -> dict[str, Path]:
    """``{"lab00": notebooks/00_data_and_metrics.ipynb, ...}``: lab NN is the notebook numbered NN."""
    return {f"lab{path.name[:2]}": path for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))}


def select_labs(names: list[str] | None) -> dict[str, Path]:
    """The labs named (all when ``names`` is empty); unknown names raise ``UsageError`` naming the known ones."""
    labs = all_labs()
    unknown = sorted(set(names or []) - set(labs))
    if unknown:
        raise UsageError(f"unknown lab(s) {', '.join(unknown)}: choose from {', '.join(labs)}")
    return {lab: path for lab, path in labs.items() if not names or lab in names}


def with_scripts_on_path() -> None:
    """Put this Python's scripts folder on ``PATH``: nbgrader's gradebook runs ``alembic`` from it,
    and ``make`` calls ``.venv/bin/python`` without activating the virtual environment."""
    scripts = str(Path(sys.executable).parent)
    if scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join(filter(None, [scripts, os.environ.get("PATH")]))


def nbgrader_env(course: Path, runs: Path | None = None, threads: int | None = None) -> dict[str, str]:
    """The environment of an nbgrader process working on ``course`` and of the kernels it starts."""
    with_scripts_on_path()
    env = {**os.environ, "LABS_COURSE_DIR": str(course)}
    # the kernels import this checkout's spikelib; nbgrader imports tools/ipc_kernel.py
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), str(TOOLS), os.environ.get("PYTHONPATH")]))
    env.setdefault("SPIKELIB_DATA", str(REPO / "data"))  # the work folders may lie outside the repository
    env.setdefault("SPIKELIB_CONFIGS", str(REPO / "configs"))
    env.setdefault("SPIKELIB_CHECKPOINTS", str(REPO / "checkpoints"))  # notebooks 04-07 load, never train
    if runs is not None:
        env["SPIKELIB_RUNS"] = str(runs)  # training runs of a submission go to a throwaway folder
    if threads is not None:
        env.setdefault("OMP_NUM_THREADS", str(threads))  # kernels side by side share the cores
    return env


def nbgrader(course: Path, *args: str) -> None:
    """Run one nbgrader command on ``course`` with the repository's ``nbgrader_config.py``."""
    command = [sys.executable, "-m", "nbgrader", *args, "--log-level=WARN"]
    subprocess.run(command, cwd=REPO, env=nbgrader_env(course), check=True)


def generate(course: Path, labs: dict[str, Path]) -> dict[str, Path]:
    """Copy each lab's notebook into ``source/labNN/`` and generate its student version in
    ``release/labNN/`` and its exercises in the gradebook; return ``{lab: released notebook}``."""
    for lab, notebook in labs.items():
        source = course / "source" / lab
        if source.exists():
            shutil.rmtree(source)
        source.mkdir(parents=True)
        shutil.copy2(notebook, source / notebook.name)
    if len(labs) > 1 and set(labs) == set(all_labs()):  # one nbgrader process for all: saves its start-up
        nbgrader(course, "generate_assignment", "lab[0-9][0-9]", "--force")
    else:  # one after the other: the labs share this course's gradebook
        for lab in labs:
            nbgrader(course, "generate_assignment", lab, "--force")
    return {lab: course / "release" / lab / notebook.name for lab, notebook in labs.items()}


def strip_run_metadata(path: Path) -> None:
    """Drop what the instructor's run left in the metadata (widget state, cell timings):
    the outputs are cleared already, and a student's kernel makes its own widgets."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    notebook.get("metadata", {}).pop("widgets", None)
    for cell in notebook["cells"]:
        cell.get("metadata", {}).pop("execution", None)
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def student(out: Path, labs: list[str] | None = None, course: Path | None = None) -> list[Path]:
    """Write the student versions of ``labs`` (all when empty) to ``out``; all labs empty ``out`` first."""
    chosen = select_labs(labs)
    released = generate(course or course_dir(), chosen)
    if not labs and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in released.values():
        shutil.copy2(path, out / path.name)
        strip_run_metadata(out / path.name)
        written.append(out / path.name)
    return written


# -- marking ------------------------------------------------------------------------------------


def template(lab: str, notebook: Path, out: Path) -> Path:
    """A course directory holding only ``lab`` (source, release, gradebook), remade when its notebook
    or ``nbgrader_config.py`` changed; each submission is marked in a copy of it."""
    folder = out / "templates" / lab
    stamp = hashlib.sha256(notebook.read_bytes() + (REPO / "nbgrader_config.py").read_bytes()).hexdigest()
    if (folder / "stamp").exists() and (folder / "stamp").read_text() == stamp:
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    generate(folder, {lab: notebook})
    (folder / "stamp").write_text(stamp)
    return folder


def max_scores(course: Path, lab: str) -> dict[str, float]:
    """``{grade_id: points}`` of the lab's graded cells, from its gradebook."""
    from nbgrader.api import Gradebook  # lazy: nbgrader is a course extra, not a spikelib dependency

    with_scripts_on_path()
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        [notebook] = gradebook.find_assignment(lab).notebooks
        return {cell.name: float(cell.max_score) for cell in notebook.grade_cells}


def scores(course: Path, lab: str, student_id: str) -> dict[str, tuple[float, float]]:
    """``{grade_id: (score, max_score)}`` of one marked submission, from its gradebook."""
    from nbgrader.api import Gradebook

    with_scripts_on_path()
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        [notebook] = gradebook.find_assignment(lab).notebooks
        submitted = gradebook.find_submission_notebook(notebook.name, lab, student_id)
        return {grade.name: (float(grade.score), float(grade.max_score)) for grade in submitted.grades}


def not_a_notebook(path: Path) -> str | None:
    """Why ``path`` cannot be marked as a notebook, or ``None`` when it reads as one."""
    data = path.read_bytes()
    if not data.strip():
        return "not a notebook: the file is empty"
    for magic, kind in MAGIC.items():
        if data.startswith(magic):
            return f"not a notebook: a {kind} named .ipynb"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "not a notebook: binary data, not UTF-8 text"
    try:
        notebook = json.loads(text)
    except json.JSONDecodeError as error:
        if text.lstrip().startswith("{") and not text.rstrip().endswith("}"):
            return f"not a notebook: the JSON stops at line {text.count(chr(10)) + 1} (a truncated file?)"
        return f"not a notebook: not JSON ({error})"
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list) or "nbformat" not in notebook:
        return "not a notebook: JSON without a notebook's cells and nbformat"
    return None


def kill_tree(pid: int) -> None:
    """Kill a process, its process group and every descendant's group (kernels start their own session)."""
    import psutil  # lazy: a dependency of ipykernel, needed only here

    try:
        processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        processes = []
    groups = {pid}
    for process in processes:
        try:
            groups.add(os.getpgid(process.pid))
        except ProcessLookupError:
            pass
    for group in groups - {os.getpgrp()}:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


def notes_from_log(log: str) -> list[str]:
    """What nbgrader restored in a submission, from its log: edited and deleted locked cells."""
    notes = []
    for attribute, cell in re.findall(r"Attribute '(\w+)' for cell (\S+) has changed!", log):
        what = "edited locked cell" if attribute == "checksum" else f"changed the {attribute} of cell"
        notes.append(f"{what} {cell} (restored from the source)")
    for cell in re.findall(r"Missing grade cell (\S+) encountered", log):
        notes.append(f"deleted locked cell {cell} (restored from the source)")
    return notes


def _after(log: str) -> str:
    """ " after N s", N the cell timeout nbclient logged, or "" when it logged none."""
    seconds = re.search(r"Timeout waiting for execute reply \((\d+)s\)", log)
    return f" after {seconds.group(1)} s" if seconds else ""


def timeouts(autograded: Path, log: str) -> list[str]:
    """The cells of an executed notebook that ran out of time and were interrupted."""
    after = _after(log)
    notebook = json.loads(autograded.read_text(encoding="utf-8"))
    notes = []
    for index, cell in enumerate(notebook["cells"]):
        if any(output.get("ename") == "CellTimeoutError" for output in cell.get("outputs", [])):
            name = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", f"number {index}")
            notes.append(f"timed out{after} in cell {name} (interrupted; the later cells still ran)")
    return notes


def cell_named(notebook: Path, preview: str) -> str:
    """The grade_id (or number) of the first cell of ``notebook`` whose source starts with ``preview``."""
    for index, cell in enumerate(json.loads(notebook.read_text(encoding="utf-8"))["cells"]):
        source = "".join(cell.get("source", ""))
        if preview and source.startswith(preview):
            return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", f"number {index}")
    return "?"


def failure(log: str, returncode: int, submitted: Path) -> str:
    """Why ``nbgrader autograde`` failed, in a line, from its log."""
    if "DeadKernelError" in log or "Kernel died" in log:
        return "failed: kernel died (the submission's code ended its Python process)"
    stuck = re.search(r"CellTimeoutError: A cell timed out .*?-{19}\n(.*?)\n\s*-{19}", log, re.S)
    if stuck:  # nbclient gives up on a cell that ignores the interrupt and fails the notebook
        cell = cell_named(submitted, "\n".join(line[4:] for line in stuck.group(1).splitlines()))
        return f"failed: timed out{_after(log)} in cell {cell}, and the kernel ignored the interrupt"
    errors = re.findall(r"^\s*([\w.]+(?:Error|Exception): .*)$", log, re.M)
    return f"failed: nbgrader autograde exited with {returncode}" + (f" ({errors[-1][:160]})" if errors else "")


def autograde(command: list[str], env: dict, log_path: Path, seconds: float, stop: threading.Event) -> int | None:
    """Run ``command`` (an ``nbgrader autograde``) into ``log_path``; return its exit status, or ``None``
    when it ran past ``seconds`` or ``stop`` was set and was killed with its kernel.

    Its temporary files (the kernel's ipc sockets among them) go to a folder removed afterwards,
    also when the kill left the kernel no chance to clean up.
    """
    scratch = tempfile.mkdtemp(prefix="labs-")  # short: a socket path must stay under 108 bytes
    try:
        with log_path.open("w") as log_file:
            process = subprocess.Popen(
                command,
                cwd=REPO,
                env={**env, "TMPDIR": scratch},
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a process group of its own, for kill_tree
            )
            deadline = time.monotonic() + seconds
            while (returncode := process.poll()) is None and time.monotonic() < deadline and not stop.is_set():
                time.sleep(0.5)
            if returncode is None:
                kill_tree(process.pid)
                process.wait()
            return returncode
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def mark(
    task: dict,
    out: Path,
    timeout: int | None,
    submission_timeout: int,
    threads: int,
    feedback: bool,
    stop: threading.Event,
) -> dict:
    """Mark one (student, lab) submission in its own course directory; return its result (also saved).

    Raises:
        Stopped: ``stop`` was set while nbgrader ran (its processes are killed, nothing is saved).
    """
    student_id, lab, path, course_template = task["student_id"], task["lab"], task["path"], task["template"]
    start = time.perf_counter()
    work = out / "work" / student_id / lab
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(course_template, work)
    submitted = work / "submitted" / student_id / lab
    submitted.mkdir(parents=True)
    shutil.copy2(path, submitted / path.name)
    maxima = max_scores(work, lab)
    result = {"student_id": student_id, "lab": lab, "notebook": path.stem, "status": "failed", "reason": ""}
    result["grades"] = {grade_id: [0.0, points] for grade_id, points in maxima.items()}
    problem = not_a_notebook(path)
    if problem:
        result["reason"] = problem
    else:
        command = [sys.executable, "-m", "nbgrader", "autograde", lab, "--student", student_id, "--log-level=WARN"]
        if timeout is not None:
            command.append(f"--Execute.timeout={timeout}")
        env = nbgrader_env(work, runs=work / "runs", threads=threads)
        log_path = work / "autograde.log"
        returncode = autograde(command, env, log_path, submission_timeout, stop)
        shutil.rmtree(work / "runs", ignore_errors=True)
        if stop.is_set() and returncode is None:
            raise Stopped(f"{student_id} {lab}")
        log = log_path.read_text(errors="replace")
        autograded = work / "autograded" / student_id / lab / path.name
        if returncode is None:
            result["reason"] = f"timed out: marking took over {submission_timeout} s, its processes were killed"
        elif returncode != 0 or not autograded.exists():
            result["reason"] = failure(log, returncode, submitted / path.name)
        else:
            result["grades"] = {k: list(v) for k, v in scores(work, lab, student_id).items()}
            notes = notes_from_log(log) + timeouts(autograded, log)
            if feedback:
                try:
                    nbgrader(work, "generate_feedback", lab, "--student", student_id)
                except subprocess.CalledProcessError:
                    notes.append("no feedback: nbgrader generate_feedback failed")
                else:
                    target = out / "feedback" / student_id / lab
                    shutil.rmtree(target, ignore_errors=True)
                    shutil.copytree(work / "feedback" / student_id / lab, target)
            result["status"], result["reason"] = ("warning" if notes else "ok"), "; ".join(notes)
    result["seconds"] = round(time.perf_counter() - start, 1)
    save_result(result, out)
    return result


def save_result(result: dict, out: Path) -> Path:
    """Write ``results/<student>/<lab>.json`` atomically (a row that is there stays whole)."""
    path = out / "results" / result["student_id"] / f"{result['lab']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(partial, path)
    return path


def write_grades(out: Path) -> tuple[Path, Path]:
    """``grades.csv`` (a row per student and lab) and ``grades_by_exercise.csv`` from every result in ``out``."""
    results = [json.loads(p.read_text()) for p in sorted((out / "results").glob("*/*.json"))]
    summary, detail = out / "grades.csv", out / "grades_by_exercise.csv"
    with summary.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["student_id", "lab", "notebook", "score", "max_score", "status", "reason"])
        for r in results:
            score, top = (sum(g[i] for g in r["grades"].values()) for i in (0, 1))
            writer.writerow(
                [r["student_id"], r["lab"], r["notebook"], f"{score:g}", f"{top:g}", r["status"], r["reason"]]
            )
    with detail.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["student_id", "lab", "notebook", "grade_id", "score", "max_score"])
        for r in results:
            for grade_id, (score, top) in sorted(r["grades"].items()):
                writer.writerow([r["student_id"], r["lab"], r["notebook"], grade_id, f"{score:g}", f"{top:g}"])
    return summary, detail


def find_submissions(submissions: Path, labs: dict[str, Path]) -> tuple[list[dict], list[str]]:
    """``[{student_id, lab, path}]`` for every notebook of ``labs`` found, and the files ignored."""
    by_name = {notebook.name: lab for lab, notebook in labs.items()}
    others = {notebook.name for notebook in all_labs().values()} - set(by_name)
    tasks, ignored = [], []
    for folder in sorted(p for p in submissions.iterdir() if p.is_dir()):
        for path in sorted(folder.glob("*.ipynb")):
            if path.name in by_name:
                tasks.append({"student_id": folder.name, "lab": by_name[path.name], "path": path})
            elif path.name not in others:
                ignored.append(f"{folder.name}/{path.name}")
    return tasks, ignored


def ensure_data() -> None:
    """Generate the course's dataset once, before kernels side by side would race to write it."""
    code = "from spikelib.data import ensure_synthetic; ensure_synthetic(progress=False)"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=nbgrader_env(course_dir()), check=True)


def grade(
    submissions: Path,
    out: Path,
    labs: list[str] | None = None,
    jobs: int | None = None,
    timeout: int | None = None,
    submission_timeout: int = SUBMISSION_TIMEOUT,
    feedback: bool = False,
) -> list[dict]:
    """Mark the submissions of ``labs`` (all when empty) in ``submissions``, ``jobs`` at a time;
    rewrite ``out/grades.csv`` and ``out/grades_by_exercise.csv``; return this batch's results."""
    chosen = select_labs(labs)
    if not submissions.is_dir():
        raise UsageError(f"no folder {submissions}: expected SUBMISSIONS/<student_id>/<NN_name>.ipynb")
    tasks, ignored = find_submissions(submissions.resolve(), chosen)
    for name in ignored:
        print(f"ignored {name}: not the file name of a lab ({', '.join(p.name for p in chosen.values())})")
    if not tasks:
        raise UsageError(
            f"no submissions found in {submissions}: expected one folder per student, each holding that "
            "student's notebooks under their handed-out names (SUBMISSIONS/<student_id>/<NN_name>.ipynb)"
        )
    out = out.resolve()
    jobs = max(1, jobs or os.cpu_count() or 1)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    needed = sorted({task["lab"] for task in tasks})
    stop = threading.Event()
    with ThreadPoolExecutor(jobs) as pool:
        data = pool.submit(ensure_data)
        templates = dict(zip(needed, pool.map(lambda lab: template(lab, chosen[lab], out), needed)))
        data.result()
        for task in tasks:
            task["template"] = templates[task["lab"]]

        def run(numbered: tuple[int, dict]) -> dict | None:
            number, task = numbered
            if stop.is_set():
                return None
            try:
                result = mark(task, out, timeout, submission_timeout, threads, feedback, stop)
            except Stopped:
                return None
            except Exception as error:  # noqa: BLE001 (one submission's trouble must not stop the class)
                result = {**task, "notebook": task["path"].stem, "status": "failed", "grades": {}, "seconds": 0}
                result["reason"] = f"failed: {type(error).__name__}: {error}"[:300]
                del result["path"], result["template"]
                save_result(result, out)
            reason = f": {result['reason']}" if result["reason"] else ""
            print(
                f"[{number}/{len(tasks)}] {task['student_id']} {task['lab']} {result['status']}{reason} "
                f"({result['seconds']:.0f} s)",
                flush=True,
            )
            return result

        try:
            results = [r for r in pool.map(run, enumerate(tasks, 1)) if r is not None]
        except KeyboardInterrupt:
            stop.set()  # the workers kill their nbgrader and kernel within a second and save nothing
            pool.shutdown(wait=True, cancel_futures=True)
            write_grades(out)
            print(f"stopped: the submissions marked so far are in {out / 'grades.csv'}", file=sys.stderr)
            raise
    write_grades(out)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make_student = commands.add_parser("student", help="write the student versions")
    make_student.add_argument("--out", type=Path, default=REPO / "student")
    make_student.add_argument("--labs", nargs="*", default=[], help="lab00 ... lab07 (default: all)")
    make_grade = commands.add_parser("grade", help="mark a folder of submissions")
    make_grade.add_argument("submissions", type=Path, help="a folder with one sub-folder of notebooks per student")
    make_grade.add_argument("--out", type=Path, default=REPO / "build" / "grades")
    make_grade.add_argument("--labs", nargs="*", default=[], help="lab00 ... lab07 (default: all)")
    make_grade.add_argument("--jobs", type=int, default=None, help="submissions marked side by side (default: CPUs)")
    make_grade.add_argument("--timeout", type=int, default=None, help="seconds per cell (nbgrader_config.py: 300)")
    make_grade.add_argument(
        "--submission-timeout", type=int, default=SUBMISSION_TIMEOUT, help="seconds per submission, all cells"
    )
    make_grade.add_argument("--feedback", action="store_true", help="also write nbgrader's HTML feedback")
    args = parser.parse_args(argv)
    try:
        if args.command == "student":
            written = student(args.out, args.labs)
            print(f"{len(written)} student notebooks in {args.out}")
            return 0
        start = time.perf_counter()
        results = grade(
            args.submissions, args.out, args.labs, args.jobs, args.timeout, args.submission_timeout, args.feedback
        )
    except UsageError as error:
        parser.error(str(error))  # exits 2
    except KeyboardInterrupt:
        return 130  # grade() has said what was kept
    counts = {status: sum(r["status"] == status for r in results) for status in ("ok", "warning", "failed")}
    print(
        f"marked {len(results)} submissions in {time.perf_counter() - start:.0f} s: "
        + ", ".join(f"{n} {status}" for status, n in counts.items())
    )
    for r in results:
        if r["status"] != "ok":
            print(f"  {r['student_id']} {r['lab']} {r['status']}: {r['reason']}")
    print(f"grades written to {args.out / 'grades.csv'} and {args.out / 'grades_by_exercise.csv'}")
    return 0 if counts["ok"] + counts["warning"] else 1


if __name__ == "__main__":
    sys.exit(main())
