"""Session setup for the whole suite (``tests/`` and the notebooks that nbval executes).

- Training runs go to a throwaway folder (``SPIKELIB_RUNS``), so what happens to be in the
  checkout's ``runs/`` never changes a verdict: a local ``make test`` and CI's run the same.
- Every notebook kernel starts with the grading probes of ``tests/notebook_probes.py`` (an IPython
  startup file in a private ``IPYTHONDIR``): each notebook is executed once, and its check cells are
  also tried against the student's stub and the planted mistake in that same run.
- Tests marked ``after_notebooks`` run last, once every collected notebook has run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent
STARTUP = """\
import sys
sys.path.insert(0, {tests!r})
import notebook_probes
notebook_probes.install(get_ipython())
"""

NOTEBOOKS_RUN = pytest.StashKey[set]()
SCRATCH = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "after_notebooks: reads what the notebooks' run left; runs after them")
    scratch = config.stash[SCRATCH] = Path(tempfile.mkdtemp(prefix="spikelib-test-"))
    os.environ["SPIKELIB_RUNS"] = str(scratch / "runs")
    os.environ["SPIKELIB_PROBE_LOG"] = str(scratch / "probes.jsonl")
    startup = scratch / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-grading-probes.py").write_text(STARTUP.format(tests=str(REPO / "tests")), encoding="utf-8")
    os.environ["IPYTHONDIR"] = str(scratch / "ipython")
    config.stash[NOTEBOOKS_RUN] = set()


def pytest_unconfigure(config: pytest.Config) -> None:
    if SCRATCH in config.stash:
        shutil.rmtree(config.stash[SCRATCH], ignore_errors=True)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Notebook cells in file order, then the tests that read what their run left."""
    config.stash[NOTEBOOKS_RUN] = {Path(str(item.fspath)).stem for item in items if str(item.fspath).endswith(".ipynb")}
    items.sort(key=lambda item: item.get_closest_marker("after_notebooks") is not None)


@pytest.fixture(scope="session")
def notebooks_run(request: pytest.FixtureRequest) -> set[str]:
    """Stems of the notebooks this session executes (before any ``after_notebooks`` test)."""
    return request.config.stash[NOTEBOOKS_RUN]
