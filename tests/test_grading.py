"""Marking at class scale with ``tools/labs.py grade``: faulty submissions, parallel workers, batches.

Lab 00 (``notebooks/00_data_and_metrics.ipynb``: exercises 0.1, 0.2, 0.3 worth 1, 2 and 3
points) is marked end to end by the real tool and nbgrader, in three grading calls:

1. ten students side by side (``--jobs 2``): the untouched student version, the solved
   (instructor) notebook, the planted mistake, and seven faulty submissions, each built here
   from the instructor or released notebook;
2. one more student, later: the rows of call 1 stay and nothing of call 1 is marked again;
3. an endless loop under a long cell timeout and a short whole-submission timeout: its
   processes, kernel included, are killed, and the call exits 1 (nothing could be marked).
"""

from __future__ import annotations

import asyncio
import csv
import importlib.util
import json
import os
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "00_data_and_metrics.ipynb"
PLANTED = json.loads((REPO / "tests" / "coursework" / "planted" / "00_data_and_metrics.json").read_text())
POINTS = {"ex-0-1-check": 1.0, "ex-0-2-check": 2.0, "ex-0-3-check": 3.0}
LOOP = "while True:\n    pass\n"
ENVIRONMENT = (
    "import spikelib, spikelib.paths\nprint('RUNS', spikelib.paths.runs_root())\nprint('SPIKELIB', spikelib.__file__)\n"
    "print('DATA', spikelib.paths.data_root())\nprint('CHECKPOINTS', spikelib.paths.checkpoints_dir())\n"
)
CELL_TIMEOUT = 15  # seconds; lab 00's slowest cell takes a few on a busy 2-core machine


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_tool", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


labs = _load_tool("labs")


def _grade_id(cell: dict) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _edited(source: Path, edit) -> str:
    """The notebook at ``source`` after ``edit(cells_by_grade_id, cells)``, as JSON text."""
    notebook = json.loads(source.read_text(encoding="utf-8"))
    edit({_grade_id(c): c for c in notebook["cells"] if _grade_id(c)}, notebook["cells"])
    return json.dumps(notebook, indent=1, ensure_ascii=False)


def _prepend(grade_id: str, code: str):
    def edit(by_id, cells):
        by_id[grade_id]["source"] = code + "".join(by_id[grade_id]["source"])

    return edit


def _replace(grade_id: str, code: str):
    def edit(by_id, cells):
        by_id[grade_id]["source"] = code

    return edit


def _delete(grade_id: str):
    def edit(by_id, cells):
        cells.remove(by_id[grade_id])

    return edit


def _submit(folder: Path, student_id: str, content: str | bytes) -> None:
    path = folder / student_id / NOTEBOOK.name
    path.parent.mkdir(parents=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")


def _rows(out: Path) -> dict[str, dict]:
    with (out / "grades.csv").open() as file:
        return {row["student_id"]: row for row in csv.DictReader(file) if row["lab"] == "lab00"}


def _by_exercise(out: Path) -> dict[str, dict[str, float]]:
    marks: dict[str, dict[str, float]] = {}
    with (out / "grades_by_exercise.csv").open() as file:
        for row in csv.DictReader(file):
            marks.setdefault(row["student_id"], {})[row["grade_id"]] = float(row["score"])
    return marks


@pytest.fixture(scope="module")
def marked(tmp_path_factory):
    """Run the three grading calls, in a folder outside the repository; return what each left behind."""
    work_dir = tmp_path_factory.mktemp("grading")
    out = work_dir / "grades"
    release = labs.template("lab00", NOTEBOOK, out) / "release" / "lab00" / NOTEBOOK.name
    solved = NOTEBOOK.read_text(encoding="utf-8")

    first = work_dir / "batch1"
    _submit(first, "untouched", release.read_text(encoding="utf-8"))
    _submit(first, "solved", solved)
    _submit(first, "planted", _edited(NOTEBOOK, _replace(PLANTED["grade_id"], PLANTED["solution"])))
    _submit(first, "truncated", solved[: len(solved) // 2])
    _submit(first, "png", b"\x89PNG\r\n\x1a\n" + bytes(64))
    _submit(first, "killer", _edited(NOTEBOOK, _prepend("ex-0-2-solution", "import os\nos._exit(1)\n")))
    _submit(first, "hang", _edited(NOTEBOOK, _prepend("ex-0-3-solution", LOOP)))
    ignore_interrupts = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    _submit(first, "stubborn", _edited(NOTEBOOK, _prepend("ex-0-1-solution", ignore_interrupts + LOOP)))
    _submit(first, "deleted", _edited(NOTEBOOK, _delete("ex-0-1-check")))
    _submit(first, "edited", _edited(NOTEBOOK, _replace("ex-0-2-check", "print('all good')\n")))
    status_1 = labs.main(["grade", str(first), "--out", str(out), "--jobs", "2", "--timeout", str(CELL_TIMEOUT)])
    rows_1 = _rows(out)
    stamps_1 = {p: p.stat().st_mtime_ns for p in (out / "work").rglob("autograded/*/lab00/*.ipynb")}
    stamps_1 |= {p: p.stat().st_mtime_ns for p in (out / "results").glob("*/lab00.json")}

    second = work_dir / "batch2"
    where = {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": ENVIRONMENT}
    _submit(second, "late", _edited(NOTEBOOK, lambda by_id, cells: cells.append(where)))
    status_2 = labs.main(["grade", str(second), "--out", str(out), "--labs", "lab00", "--jobs", "2"])
    rows_2 = _rows(out)
    stamps_2 = {p: p.stat().st_mtime_ns for p in stamps_1}

    third = work_dir / "batch3"
    _submit(third, "runaway", _edited(NOTEBOOK, _prepend("ex-0-1-solution", LOOP)))
    status_3 = labs.main(["grade", str(third), "--out", str(out), "--timeout", "300", "--submission-timeout", "20"])
    return {
        "out": out,
        "release": release,
        "status": (status_1, status_2, status_3),
        "rows_1": rows_1,
        "rows_2": rows_2,
        "stamps": (stamps_1, stamps_2),
        "rows_3": _rows(out),
        "by_exercise": _by_exercise(out),
    }


def _log(marked, student_id: str) -> str:
    return (marked["out"] / "work" / student_id / "lab00" / "autograde.log").read_text()


def test_a_call_with_faulty_submissions_exits_0_and_gives_every_student_a_row(marked):
    assert marked["status"][0] == 0
    expected = {"untouched", "solved", "planted", "truncated", "png", "killer", "hang", "stubborn", "deleted", "edited"}
    assert set(marked["rows_1"]) == expected


def test_untouched_student_version_scores_zero_without_warnings(marked):
    row = marked["rows_1"]["untouched"]
    assert (row["score"], row["max_score"], row["status"], row["reason"]) == ("0", "6", "ok", "")
    assert marked["by_exercise"]["untouched"] == dict.fromkeys(POINTS, 0.0)
    assert "checksum" not in _log(marked, "untouched")  # the hidden tests put back are no edit


def test_solved_notebook_gets_full_marks(marked):
    row = marked["rows_1"]["solved"]
    assert (row["score"], row["status"], row["reason"]) == ("6", "ok", "")
    assert marked["by_exercise"]["solved"] == POINTS


def test_planted_mistake_loses_exactly_its_points(marked):
    check_id = PLANTED["grade_id"].replace("-solution", "-check")
    expected = {**POINTS, check_id: POINTS[check_id] - PLANTED["points_lost"]}
    assert marked["by_exercise"]["planted"] == expected
    assert marked["rows_1"]["planted"]["status"] == "ok"


def test_truncated_and_non_notebook_files_are_named_and_score_zero(marked):
    truncated, png = marked["rows_1"]["truncated"], marked["rows_1"]["png"]
    assert truncated["status"] == png["status"] == "failed"
    assert (
        truncated["reason"].startswith("not a notebook: the JSON stops at line") and "truncated" in truncated["reason"]
    )
    assert png["reason"] == "not a notebook: a PNG image named .ipynb"
    assert truncated["score"] == png["score"] == "0" and truncated["max_score"] == png["max_score"] == "6"


def test_code_that_kills_its_kernel_fails_only_its_own_row(marked):
    row = marked["rows_1"]["killer"]
    assert (row["status"], row["score"]) == ("failed", "0")
    assert row["reason"] == "failed: kernel died (the submission's code ended its Python process)"


def test_a_hanging_cell_is_interrupted_after_the_cell_timeout_and_the_rest_is_marked(marked):
    row = marked["rows_1"]["hang"]
    assert row["status"] == "warning"
    assert f"timed out after {CELL_TIMEOUT} s in cell ex-0-3-solution (interrupted" in row["reason"]
    assert marked["by_exercise"]["hang"] == {**POINTS, "ex-0-3-check": 0.0}


def test_a_cell_that_ignores_the_interrupt_fails_its_row_and_leaves_no_kernel(marked):
    row = marked["rows_1"]["stubborn"]
    assert (row["status"], row["score"]) == ("failed", "0")
    expected = f"failed: timed out after {CELL_TIMEOUT} s in cell ex-0-1-solution, and the kernel ignored the interrupt"
    assert row["reason"] == expected
    assert not _still_running(marked["out"] / "work" / "stubborn")


def test_a_deleted_check_cell_is_put_back_and_said(marked):
    row = marked["rows_1"]["deleted"]
    assert row["status"] == "warning"
    assert row["reason"] == "deleted locked cell ex-0-1-check (restored from the source)"
    assert marked["by_exercise"]["deleted"] == POINTS


def test_an_edited_check_cell_is_restored_and_said(marked):
    row = marked["rows_1"]["edited"]
    assert (row["status"], row["reason"]) == ("warning", "edited locked cell ex-0-2-check (restored from the source)")
    assert "Attribute 'checksum' for cell ex-0-2-check has changed" in _log(marked, "edited")
    assert marked["by_exercise"]["edited"] == POINTS
    autograded = marked["out"] / "work" / "edited" / "lab00" / "autograded" / "edited" / "lab00" / NOTEBOOK.name
    [check] = [c for c in json.loads(autograded.read_text())["cells"] if _grade_id(c) == "ex-0-2-check"]
    assert "all good" not in "".join(check["source"]) and "BEGIN HIDDEN TESTS" in "".join(check["source"])


def test_a_second_batch_adds_its_rows_and_marks_nothing_again(marked):
    assert marked["status"][1] == 0
    assert set(marked["rows_2"]) == set(marked["rows_1"]) | {"late"}
    assert {k: v for k, v in marked["rows_2"].items() if k != "late"} == marked["rows_1"]
    assert (marked["rows_2"]["late"]["score"], marked["rows_2"]["late"]["status"]) == ("6", "ok")
    stamps_1, stamps_2 = marked["stamps"]
    assert len(stamps_1) >= 10 and stamps_2 == stamps_1  # autograded notebooks and results untouched


def _still_running(work: Path) -> list[psutil.Process]:
    """Processes whose SPIKELIB_RUNS lies in ``work``: the nbgrader and kernel of one submission."""
    left = []
    for process in psutil.process_iter():
        try:
            if str(work) in process.environ().get("SPIKELIB_RUNS", ""):
                left.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    return left


def test_the_kernel_imports_this_checkout_reads_its_data_and_checkpoints_and_writes_runs_to_a_throwaway_folder(marked):
    autograded = marked["out"] / "work" / "late" / "lab00" / "autograded" / "late" / "lab00" / NOTEBOOK.name
    [output] = json.loads(autograded.read_text())["cells"][-1]["outputs"]
    lines = dict(line.split(" ", 1) for line in "".join(output["text"]).splitlines())
    assert lines["RUNS"] == str(marked["out"] / "work" / "late" / "lab00" / "runs")
    assert lines["SPIKELIB"] == str(REPO / "spikelib" / "__init__.py")
    assert lines["DATA"] == str(REPO / "data") and lines["CHECKPOINTS"] == str(REPO / "checkpoints")
    assert not (marked["out"] / "work" / "late" / "lab00" / "runs").exists()  # removed after marking


def test_kernels_started_at_once_get_private_ipc_folders_removed_at_shutdown():
    IpcKernelManager = _load_tool("ipc_kernel").IpcKernelManager

    async def start_two() -> list[str]:
        managers = [IpcKernelManager(), IpcKernelManager()]
        await asyncio.gather(
            *(m.start_kernel(extra_arguments=["--HistoryManager.hist_file=:memory:"]) for m in managers)
        )
        folders = [os.path.dirname(m.ip) for m in managers]
        try:
            for manager in managers:
                client = manager.client()
                client.start_channels()
                await client.wait_for_ready(timeout=60)
                client.stop_channels()
            assert all(os.stat(folder).st_mode & 0o777 == 0o700 for folder in folders)
        finally:
            await asyncio.gather(*(m.shutdown_kernel(now=True) for m in managers))
        return folders

    folders = asyncio.run(start_two())
    assert len(set(folders)) == 2
    assert not any(os.path.exists(folder) for folder in folders)


def test_a_submission_past_its_timeout_is_killed_with_its_kernel(marked):
    assert marked["status"][2] == 1  # nothing in that call could be marked
    row = marked["rows_3"]["runaway"]
    assert (row["status"], row["score"]) == ("failed", "0")
    assert row["reason"] == "timed out: marking took over 20 s, its processes were killed"
    assert not _still_running(marked["out"] / "work" / "runaway")
    assert len(marked["rows_3"]) == 12  # the earlier rows are still there


def test_student_versions_have_no_solutions_and_no_hidden_tests(marked):
    text = marked["release"].read_text(encoding="utf-8")
    for marker in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS"):
        assert marker not in text
