"""The course's shape: numbered notebooks, committed from a real run, readable on GitHub.

nbval (``make test``) executes the notebooks; these checks look at the committed files,
which are what a reader sees before running anything.
"""

import json
import re
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
MAX_NOTEBOOK_BYTES = 3_000_000


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_notebooks_exist_and_are_numbered_in_teaching_order():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"
    numbers = []
    for path in NOTEBOOKS:
        match = re.fullmatch(r"(\d\d)_[a-z0-9_]+\.ipynb", path.name)
        assert match, f"{path.name}: expected NN_lower_case_name.ipynb"
        numbers.append(int(match.group(1)))
    assert numbers == list(range(len(numbers))), f"gaps or duplicates in numbering: {numbers}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_with_goal_and_run_time(path):
    cells = _load(path)["cells"]
    first = cells[0]
    assert first["cell_type"] == "markdown", f"{path.name}: first cell must be markdown"
    text = "".join(first["source"]).lower()
    assert "you will be able to" in text, f"{path.name}: first cell must state the learning goal"
    assert re.search(r"runs? in|run time|takes about", text), f"{path.name}: first cell must state the run time"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_one_parameters_cell(path):
    cells = _load(path)["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: expected one code cell tagged 'parameters', found {len(tagged)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_committed_from_a_clean_top_to_bottom_run(path):
    code = [c for c in _load(path)["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    counts = [c.get("execution_count") for c in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"{path.name}: execution counts {counts} show the notebook was not run once, top to bottom, "
        "from a fresh kernel; re-run it (jupyter nbconvert --execute --inplace) and commit the result"
    )
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: committed with an error output: {errors[0].get('ename')}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_outputs_stay_small(path):
    size = path.stat().st_size
    assert size < MAX_NOTEBOOK_BYTES, f"{path.name}: {size / 1e6:.1f} MB; shrink figures (dpi) or logs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_asserts_its_claims(path):
    source = "\n".join("".join(c["source"]) for c in _load(path)["cells"] if c["cell_type"] == "code")
    assert re.search(r"^\s*assert ", source, flags=re.M), f"{path.name}: no assert on what it claims"
