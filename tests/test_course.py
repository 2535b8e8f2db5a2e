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


ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:work|home|root|tmp|Users|usr|opt|mnt|var)/|\b[A-Z]:\\")
PROGRESS_BAR = re.compile(r"\d+%\|")
STRAY_REPR = re.compile(r"^\[?<(?:matplotlib|Figure|Axes)|^Text\(|^\[?Text\(")
INTERNAL_WORDS = re.compile(r"\b(?:helper|TODO|FIXME|XXX|issue #\d+|PR #\d+)\b", re.I)


def _output_texts(cell: dict) -> list[tuple[dict, str]]:
    texts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            texts.append((output, "".join(output["text"])))
        elif "data" in output:
            texts.append((output, "".join(output["data"].get("text/plain", ""))))
    return texts


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_outputs_are_clean(path):
    """What a reader sees on GitHub: no machine paths, no frozen progress bars, no warnings on
    stderr, no stray reprs, no words from the kitchen, and each figure once."""
    images = []
    for index, cell in enumerate(_load(path)["cells"]):
        where = f"{path.name}, cell {index}"
        match = INTERNAL_WORDS.search("".join(cell["source"]))
        assert not match, f"{where}: internal word {match[0]!r} in the text"
        for output, text in _output_texts(cell):
            assert not ABSOLUTE_PATH.search(text), f"{where}: an absolute path in the output: {text[:200]!r}"
            assert not PROGRESS_BAR.search(text), f"{where}: a progress bar in the output: {text[:200]!r}"
            is_stderr = output.get("output_type") == "stream" and output.get("name") == "stderr"
            assert not is_stderr, f"{where}: a warning on stderr was saved (e.g. matplotlib's findfont): {text[:200]!r}"
            match = INTERNAL_WORDS.search(text)
            assert not match, f"{where}: internal word {match[0]!r} in the output"
            data = output.get("data", {})
            if output.get("output_type") == "execute_result" and "image/png" not in data and len(data) == 1:
                assert not STRAY_REPR.search(text), f"{where}: a stray repr {text[:80]!r}; end the line with ';'"
            if "application/vnd.jupyter.widget-view+json" in data and "text/plain" in data:
                assert "HBox(" not in text and "FloatProgress" not in text, f"{where}: a progress widget was saved"
        images += [
            (index, output["data"]["image/png"])
            for output in cell.get("outputs", [])
            if "image/png" in output.get("data", {})
        ]
    seen: dict[str, int] = {}
    for index, png in images:
        assert png not in seen, f"{path.name}: cell {index} shows the same figure as cell {seen[png]}"
        seen[png] = index


def test_readme_links_every_notebook_and_the_instructors_guide():
    readme = (NOTEBOOK_DIR.parent / "README.md").read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        assert f"](notebooks/{path.name})" in readme, f"README: the course table must link notebooks/{path.name}"
    assert "](docs/instructors.md)" in readme and (NOTEBOOK_DIR.parent / "docs" / "instructors.md").exists()
